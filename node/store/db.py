"""The fenced store's rules and its durable log (SQLite), with no gRPC and no asyncio.

A write is accepted only if its epoch is current: not below the highest epoch ever accepted, and, at
that epoch, only from the writer that first claimed it. Every attempt, accepted or rejected, becomes
one row of the log, committed with fsync before the decision is returned (docs/design.md P2, P5).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# SQLite integers are signed 64-bit; the wire's uint64/uint32 must fit what we store.
MAX_INT64 = 2**63 - 1
MAX_WRITER_ID = 2**32 - 1
MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 64 * 1024
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
PAGE_BYTES = 1024 * 1024  # a ReadLog page stays far below gRPC's default 4 MiB receive limit
ENTRY_OVERHEAD_BYTES = 64  # numbers and framing of one entry, roughly

# A new leader's first store action is a write under this key (an ordinary write: the store needs no
# special case): it raises the highest accepted epoch at once, so an older leader's write still in
# flight is rejected from then on instead of after the new leader's first duty period.
CLAIM_KEY_PREFIX = "claim/"


def claim_key(writer_id: int, epoch: int) -> str:
    return f"{CLAIM_KEY_PREFIX}{writer_id}/{epoch}"


SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,
    writer_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    accepted INTEGER NOT NULL,
    reason TEXT NOT NULL,
    recorded_unix_ns INTEGER NOT NULL,
    recorded_monotonic_ns INTEGER NOT NULL
)
"""


class StoreInputError(ValueError):
    """The caller sent something the store cannot record; the message names the field and the limit."""


class StoreOpenError(Exception):
    """The database cannot be opened: locked by another store process, or not a store database."""


@dataclass(frozen=True)
class WriteDecision:
    accepted: bool
    highest_epoch: int  # after this decision
    seq: int
    reason: str  # empty when accepted


@dataclass(frozen=True)
class LogEntry:
    seq: int
    writer_id: int
    epoch: int
    key: str
    value: bytes
    accepted: bool
    reason: str
    recorded_unix_ns: int
    recorded_monotonic_ns: int


def decide(highest_epoch: int, owner_id: int, writer_id: int, epoch: int) -> str | None:
    """Why this write must be rejected, or None to accept it. Pure: the whole fencing rule."""
    if epoch < highest_epoch:
        return f"stale epoch {epoch} < highest {highest_epoch}"
    if epoch == highest_epoch and writer_id != owner_id:
        return f"epoch {epoch} already owned by writer {owner_id}"
    return None


def check_write(writer_id: int, epoch: int, key: str, value: bytes) -> None:
    if not 0 < writer_id <= MAX_WRITER_ID:
        raise StoreInputError(f"writer_id must be in 1..{MAX_WRITER_ID}, got {writer_id}")
    if not 0 < epoch <= MAX_INT64:
        raise StoreInputError(f"epoch must be in 1..{MAX_INT64}, got {epoch}")
    if not key:
        raise StoreInputError("key must not be empty")
    try:
        key_bytes = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise StoreInputError(f"key is not valid UTF-8 ({exc.reason})") from None
    if key_bytes > MAX_KEY_BYTES:
        raise StoreInputError(f"key must be at most {MAX_KEY_BYTES} bytes of UTF-8, got {key_bytes}")
    if len(value) > MAX_VALUE_BYTES:
        raise StoreInputError(f"value must be at most {MAX_VALUE_BYTES} bytes, got {len(value)}")


def check_read(after_seq: int, limit: int) -> None:
    if not 0 <= after_seq <= MAX_INT64:
        raise StoreInputError(f"after_seq must be in 0..{MAX_INT64}, got {after_seq}")
    if not 0 < limit <= MAX_LIMIT:
        raise StoreInputError(f"limit must be in 1..{MAX_LIMIT}, got {limit}")


class FencedStoreDB:
    """The store's state: the log on disk, plus the highest accepted epoch and its owner in memory.

    Safe to call from any thread; calls are serialized, so a decision and the row that records it
    can never interleave with another write. Only one FencedStoreDB (in any process) may hold a file.
    """

    def __init__(self, path: Path, busy_timeout_s: float = 5.0, accept_stale: bool = False) -> None:
        self.path = path
        self.accept_stale = accept_stale  # PlantedBug.STALE_STORE: test-only, see node.config
        self._lock = threading.Lock()
        # Autocommit: each INSERT is its own transaction, committed (and fsynced) before it returns.
        self._conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        try:
            # An exclusive lock held for the connection's life: a second store on the same file would
            # keep its own idea of the highest epoch and accept what this one rejects.
            self._conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreOpenError(f"{path}: cannot use WAL journal mode (got {mode!r})")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(SCHEMA)
            self._conn.execute("BEGIN EXCLUSIVE")  # take the lock now, not at the first write
            self._conn.execute("COMMIT")
            row = self._conn.execute(
                "SELECT epoch, writer_id FROM log WHERE accepted = 1 ORDER BY epoch DESC, seq ASC LIMIT 1"
            ).fetchone()
        except sqlite3.OperationalError as exc:
            self._conn.close()
            if "locked" in str(exc):
                raise StoreOpenError(f"{path} is locked: another store is using it") from None
            raise StoreOpenError(f"{path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreOpenError(f"{path} is not a store database ({exc})") from None
        except StoreOpenError:
            self._conn.close()
            raise
        self.highest_epoch, self.owner_id = row if row else (0, 0)

    def write(self, writer_id: int, epoch: int, key: str, value: bytes) -> WriteDecision:
        check_write(writer_id, epoch, key, value)
        with self._lock:
            reason = None if self.accept_stale else decide(self.highest_epoch, self.owner_id, writer_id, epoch)
            cur = self._conn.execute(
                "INSERT INTO log (writer_id, epoch, key, value, accepted, reason, recorded_unix_ns, "
                "recorded_monotonic_ns)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    writer_id,
                    epoch,
                    key,
                    bytes(value),
                    reason is None,
                    reason or "",
                    time.time_ns(),
                    time.monotonic_ns(),
                ),
            )
            # Memory changes only after the row is durable: a failed commit leaves the state as it was.
            if reason is None and epoch >= self.highest_epoch:
                self.highest_epoch, self.owner_id = epoch, writer_id
            return WriteDecision(reason is None, self.highest_epoch, cur.lastrowid, reason or "")

    def read_log(self, after_seq: int = 0, limit: int = DEFAULT_LIMIT) -> tuple[list[LogEntry], int, int]:
        """Entries with seq > after_seq in seq order, the highest epoch and its owner. At most `limit`
        entries and about PAGE_BYTES of keys and values (always at least one entry): a page of large
        values must still fit in a reply a reader can take, and readers page on by after_seq."""
        check_read(after_seq, limit)
        entries: list[LogEntry] = []
        size = 0
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, writer_id, epoch, key, value, accepted, reason, recorded_unix_ns, recorded_monotonic_ns"
                " FROM log WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            for s, w, e, k, v, a, r, u, m in rows:
                size += len(k) + len(v) + len(r or "") + ENTRY_OVERHEAD_BYTES
                if entries and size > PAGE_BYTES:
                    break
                entries.append(LogEntry(s, w, e, k, bytes(v), bool(a), r, u, m))
            highest_epoch, owner_id = self.highest_epoch, self.owner_id
        return entries, highest_epoch, owner_id

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> FencedStoreDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
