"""What every fence shares: the rule (the fenced store's own `decide`), the record it keeps per
resource, the handle a term of leadership gets, and the bugs tests plant. No I/O here."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol

from node.client.fencing.errors import EpochTaken, FencingRefused, StaleEpoch
from node.store.db import MAX_INT64, MAX_WRITER_ID, decide

TABLE = "bullyproof_fence"  # PostgreSQL and SQLite: one row per resource, in the user's own database
# With `log=True`: the table (PostgreSQL, SQLite) or stream key (Redis) of the log of accepted writes.
LOG = "bullyproof_fence_log"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class FenceState(NamedTuple):
    """A resource's fence record: the highest epoch accepted, the writer that claimed it, and the value
    last written with `write` (None if none was). (0, 0, None) for a resource never written."""

    epoch: int
    writer_id: int
    value: bytes | None


NEVER_WRITTEN = FenceState(0, 0, None)


class AcceptedWrite(NamedTuple):
    """One entry of a fence's log of accepted writes (made with `log=True`): its position in the log
    (`seq`, rising in the order the database decided), the resource, the epoch and writer it was
    accepted from, the value written (None for a claim made by `transaction`, `claim`, `set` or `eval`,
    which leave the value alone), and when the database accepted it (its own clock, Unix nanoseconds)."""

    seq: int
    resource: str
    epoch: int
    writer_id: int
    value: bytes | None
    unix_ns: int


def log_name(log: bool | str, what: str) -> str | None:
    """The log's table or key from a fence's `log=` option: None (no log), LOG, or the name given."""
    if log is False or log is None:
        return None
    if log is True:
        return LOG
    if not isinstance(log, str) or not log:
        raise ValueError(f"log must be True, False or a {what} name, got {log!r}")
    return log


def check_read_log(after_seq: int, limit: int) -> None:
    if not isinstance(after_seq, int) or after_seq < 0:
        raise ValueError(f"after_seq must be an integer >= 0, got {after_seq!r}")
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")


def no_log(fence: object) -> ValueError:
    return ValueError(f"{fence!r} keeps no log of accepted writes: make it with log=True")


class Fence(Protocol):
    """What every asyncio fence does (a harness drives them all alike; `open_fence` makes one from a URL).
    Each adapter also runs your own write in the same transaction or script as the check: see its class."""

    async def write(self, resource: str, writer_id: int, epoch: int, value: bytes) -> int | None:
        """Record `value` for `resource` if `epoch` is current there; else raise StaleEpoch or EpochTaken.
        Returns the write's seq in the fence's log of accepted writes, None if it keeps none."""

    async def read(self, resource: str) -> FenceState: ...

    async def close(self) -> None: ...


class FenceBug(enum.Enum):
    """Bugs a test plants in an adapter (`_planted=`) to show that the tests catch them. Never in use."""

    CHECK_OUTSIDE_TRANSACTION = "check-outside-transaction"  # read and judge, then write in another transaction
    EQUAL_IS_STALE = "equal-is-stale"  # `epoch <= highest` is stale: a writer's second write in its epoch is refused
    NO_WRITER_CHECK = "no-writer-check"  # an epoch already claimed is accepted from another writer too


def planted_bugs(planted: Iterable[FenceBug | str]) -> frozenset[FenceBug]:
    return frozenset(FenceBug(bug) for bug in planted)


def check_claim(resource: str, writer_id: int, epoch: int) -> None:
    """The same bounds as the fenced store's (epochs and writer ids fit a signed 64-bit column)."""
    if not isinstance(resource, str) or not resource:
        raise ValueError("resource must be a non-empty string")
    if not 0 < writer_id <= MAX_WRITER_ID:
        raise ValueError(f"writer_id must be in 1..{MAX_WRITER_ID}, got {writer_id}")
    if not 0 < epoch <= MAX_INT64:
        raise ValueError(f"epoch must be in 1..{MAX_INT64}, got {epoch}")


def check_identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{what} {name!r}: want a plain SQL identifier (letters, digits, _; at most 63)")
    return name


def judge(
    resource: str,
    writer_id: int,
    epoch: int,
    highest_epoch: int,
    owner_id: int,
    planted: frozenset[FenceBug] = frozenset(),
) -> None:
    """Raise StaleEpoch or EpochTaken if the record (highest_epoch, owner_id) refuses this write.

    The rule is the fenced store's `decide`, unchanged; `planted` swaps in a bug for tests."""
    if FenceBug.EQUAL_IS_STALE in planted and epoch <= highest_epoch:
        reason: str | None = f"stale epoch {epoch} <= highest {highest_epoch}"
    elif FenceBug.NO_WRITER_CHECK in planted:
        reason = f"stale epoch {epoch} < highest {highest_epoch}" if epoch < highest_epoch else None
    else:
        reason = decide(highest_epoch, owner_id, writer_id, epoch)
    if reason is not None:
        refusal = StaleEpoch if epoch < highest_epoch or FenceBug.EQUAL_IS_STALE in planted else EpochTaken
        raise refusal(epoch, highest_epoch, reason, resource=resource, writer_id=writer_id, owner_id=owner_id)


def refused(resource: str, writer_id: int, epoch: int, kind: str, highest_epoch: int, owner_id: int) -> FencingRefused:
    """The exception for a refusal decided elsewhere (in a Redis script): kind is 'stale' or 'taken'."""
    if kind == "stale":
        return StaleEpoch(
            epoch,
            highest_epoch,
            f"stale epoch {epoch} < highest {highest_epoch}",
            resource=resource,
            writer_id=writer_id,
            owner_id=owner_id,
        )
    return EpochTaken(
        epoch,
        highest_epoch,
        f"epoch {epoch} already owned by writer {owner_id}",
        resource=resource,
        writer_id=writer_id,
        owner_id=owner_id,
    )


Hook = Callable[[str, int, int], Any]  # (resource, writer_id, epoch): tests pause a write between check and write


class FencedTerm:
    """A fence bound to one term of leadership: every write through it carries the term's epoch and
    the leader's node id as writer, so the work never passes them. Get one with `token.fenced(fence)`.

    It does not look at whether the term has ended: the resource decides. A write from a term that
    lost leadership is refused there (StaleEpoch) once the next leader has written to that resource,
    which is the only thing that can make such a write unsafe. Each method is the fence's own method of
    the same name with (writer_id, epoch) filled in, so it is async or blocking as the fence is, and a
    method the fence lacks (`eval` on SQLite, `transaction` on Redis) raises AttributeError.
    """

    def __init__(self, fence: Any, writer_id: int, epoch: int) -> None:
        self.fence = fence
        self.writer_id = writer_id
        self.epoch = epoch

    def __repr__(self) -> str:
        return f"FencedTerm({type(self.fence).__name__}, writer_id={self.writer_id}, epoch={self.epoch})"

    def write(self, resource: str, value: bytes) -> Any:
        """Record `value` in the resource's fence record (every fence); returns its seq in the fence's
        log of accepted writes (None without one)."""
        return self.fence.write(resource, self.writer_id, self.epoch, value)

    def read(self, resource: str) -> Any:
        return self.fence.read(resource)

    def transaction(self, resource: str) -> Any:
        """PostgreSQL, SQLite: a transaction in which the fence is checked and claimed; run your SQL in it."""
        return self.fence.transaction(resource, self.writer_id, self.epoch)

    def claim(self, connection: Any, resource: str) -> Any:
        """PostgreSQL, SQLite: check and claim the fence inside a transaction you opened yourself."""
        return self.fence.claim(connection, resource, self.writer_id, self.epoch)

    def apply(self, resource: str, fn: Callable[[Any], Any]) -> Any:
        """SQLite (asyncio): run fn(connection) in the fenced transaction, in its thread."""
        return self.fence.apply(resource, self.writer_id, self.epoch, fn)

    def set(self, resource: str, values: Any) -> Any:
        """Redis: set these keys to these values in the script that checks and claims the fence."""
        return self.fence.set(resource, self.writer_id, self.epoch, values)

    def eval(self, resource: str, script: str, keys: Iterable[str] = (), args: Iterable[Any] = ()) -> Any:
        """Redis: run your Lua (its own KEYS and ARGV) after the check, before the claim, in one script."""
        return self.fence.eval(resource, self.writer_id, self.epoch, script, keys, args)
