"""Fencing in a SQLite database (the standard library's sqlite3): the check, the claim and your write
in one transaction that holds SQLite's write lock from its first statement (BEGIN IMMEDIATE), so
writers, in this process or another, are decided one at a time.

    fence = SqliteFence("app.db")
    async with token.fenced(fence).transaction("jobs/nightly") as tx:   # StaleEpoch, EpochTaken
        await tx.execute("UPDATE jobs SET last_run = ? WHERE name = 'nightly'", (now,))

BlockingSqliteFence is the same without asyncio; SqliteFence runs it in a thread.

With `log=True` every accepted claim also appends a row to a log table (default bullyproof_fence_log:
seq, resource, epoch, writer, value, unix_ns) in the same transaction; `write` returns the row's seq
and `read_log` reads the log back (AcceptedWrite). Writers hold the database's write lock, so seqs
rise in the order writes were decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from node.client.fencing.base import (
    NEVER_WRITTEN,
    TABLE,
    AcceptedWrite,
    FenceBug,
    FenceState,
    Hook,
    check_claim,
    check_identifier,
    check_read_log,
    judge,
    log_name,
    no_log,
    planted_bugs,
)

T = TypeVar("T")
_KEEP = object()  # claim without touching the record's value


class BlockingSqliteFence:
    """Fenced transactions on the SQLite database at `path` (created if missing), one connection each.

    The fence record is a table (`table`, default bullyproof_fence: resource, epoch, writer, value)
    created in that database on first use. `timeout_s` is how long a writer waits for another's
    transaction to end (sqlite3's busy timeout) before sqlite3.OperationalError("database is locked").
    `log`: True (or a table name) to keep a log of the accepted writes as well (see the module's doc).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        table: str = TABLE,
        timeout_s: float = 5.0,
        log: bool | str = False,
        _planted: Iterable[FenceBug | str] = (),
        _between_check_and_write: Hook | None = None,
    ) -> None:
        self.path = Path(path)
        self.table = check_identifier(table, "table")
        log = log_name(log, "table")
        self.log = None if log is None else check_identifier(log, "log table")
        self.timeout_s = timeout_s
        self._planted = planted_bugs(_planted)
        self._hook = _between_check_and_write

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def connect(self) -> sqlite3.Connection:
        """A connection in autocommit mode: transactions are the explicit BEGIN ... COMMIT of `transaction`."""
        return sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)

    @contextlib.contextmanager
    def transaction(self, resource: str, writer_id: int, epoch: int) -> Iterator[sqlite3.Connection]:
        """A transaction in which the fence of `resource` is checked and claimed for (writer_id, epoch):
        run your statements on the connection it gives; they commit together with the claim when the
        block ends, and roll back with it if the block raises. Raises StaleEpoch or EpochTaken (a
        subclass of FencingRefused) on entry if the epoch is not current, having changed nothing."""
        yield from self._transaction(resource, writer_id, epoch, _KEEP)

    def write(self, resource: str, writer_id: int, epoch: int, value: bytes) -> int | None:
        """Record `value` in the resource's fence record, if the epoch is current (else as transaction);
        returns its seq in the log of accepted writes (None without `log`)."""
        seq: list[int | None] = []
        for _ in self._transaction(resource, writer_id, epoch, bytes(value), seq):
            pass
        return seq[0]

    def read_log(self, after_seq: int = 0, limit: int = 1000) -> list[AcceptedWrite]:
        """The log's accepted writes with seq above `after_seq`, in seq order, at most `limit` of them."""
        check_read_log(after_seq, limit)
        if self.log is None:
            raise no_log(self)
        with contextlib.closing(self.connect()) as conn:
            try:
                rows = conn.execute(
                    f'SELECT seq, resource, epoch, writer, value, unix_ns FROM "{self.log}"'
                    " WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                ).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise
        return [AcceptedWrite(s, r, e, w, None if v is None else bytes(v), t) for s, r, e, w, v, t in rows]

    def read(self, resource: str) -> FenceState:
        with contextlib.closing(self.connect()) as conn:
            try:
                row = conn.execute(
                    f'SELECT epoch, writer, value FROM "{self.table}" WHERE resource = ?', (resource,)
                ).fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return NEVER_WRITTEN
                raise
        return NEVER_WRITTEN if row is None else FenceState(row[0], row[1], None if row[2] is None else bytes(row[2]))

    def claim(self, conn: sqlite3.Connection, resource: str, writer_id: int, epoch: int) -> int | None:
        """Check and claim the fence inside a transaction you opened on `conn` (BEGIN IMMEDIATE, so the
        write lock is yours from the start), before your own write. On StaleEpoch or EpochTaken roll it back.
        Returns the claim's seq in the log of accepted writes (None without `log`)."""
        return self._claim(conn, resource, writer_id, epoch, _KEEP)

    def close(self) -> None:
        """Nothing to close: each transaction has its own connection."""

    # ---- inside -----------------------------------------------------------------------------------

    def _transaction(
        self, resource: str, writer_id: int, epoch: int, value: object, seq: list[int | None] | None = None
    ) -> Iterator[sqlite3.Connection]:
        """The fenced transaction; its claim's seq in the log (or None) is appended to `seq`."""
        check_claim(resource, writer_id, epoch)
        with contextlib.closing(self.connect()) as conn:
            try:
                if FenceBug.CHECK_OUTSIDE_TRANSACTION in self._planted:
                    highest, owner = self._current(conn, resource)  # its own (autocommit) transaction
                    judge(resource, writer_id, epoch, highest, owner, self._planted)
                    self._pause(resource, writer_id, epoch)
                    conn.execute("BEGIN IMMEDIATE")
                    claimed = self._record(conn, resource, writer_id, epoch, value)
                else:
                    conn.execute("BEGIN IMMEDIATE")
                    claimed = self._claim(conn, resource, writer_id, epoch, value)
                if seq is not None:
                    seq.append(claimed)
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _claim(self, conn: sqlite3.Connection, resource: str, writer_id: int, epoch: int, value: object) -> int | None:
        check_claim(resource, writer_id, epoch)
        highest, owner = self._current(conn, resource)
        judge(resource, writer_id, epoch, highest, owner, self._planted)
        self._pause(resource, writer_id, epoch)
        return self._record(conn, resource, writer_id, epoch, value)

    def _current(self, conn: sqlite3.Connection, resource: str) -> tuple[int, int]:
        query = f'SELECT epoch, writer FROM "{self.table}" WHERE resource = ?'
        try:
            row = conn.execute(query, (resource,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            # First use: the table is made in the caller's transaction (a failed statement does not
            # end a SQLite transaction), so it exists from then on unless that transaction rolls back.
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{self.table}" (resource TEXT PRIMARY KEY,'
                " epoch INTEGER NOT NULL, writer INTEGER NOT NULL, value BLOB)"
            )
            row = conn.execute(query, (resource,)).fetchone()
        return (row[0], row[1]) if row else (0, 0)

    def _record(self, conn: sqlite3.Connection, resource: str, writer_id: int, epoch: int, value: object) -> int | None:
        """Claim the record (and set its value unless _KEEP); append to the log: its seq, or None."""
        if value is _KEEP:
            conn.execute(
                f'INSERT INTO "{self.table}" (resource, epoch, writer) VALUES (?, ?, ?) ON CONFLICT (resource)'
                " DO UPDATE SET epoch = excluded.epoch, writer = excluded.writer",
                (resource, epoch, writer_id),
            )
        else:
            conn.execute(
                f'INSERT INTO "{self.table}" (resource, epoch, writer, value) VALUES (?, ?, ?, ?)'
                " ON CONFLICT (resource) DO UPDATE SET epoch = excluded.epoch, writer = excluded.writer,"
                " value = excluded.value",
                (resource, epoch, writer_id, value),
            )
        if self.log is None:
            return None
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{self.log}" (seq INTEGER PRIMARY KEY AUTOINCREMENT,'
            " resource TEXT NOT NULL, epoch INTEGER NOT NULL, writer INTEGER NOT NULL, value BLOB,"
            " unix_ns INTEGER NOT NULL)"
        )
        return conn.execute(
            f'INSERT INTO "{self.log}" (resource, epoch, writer, value, unix_ns) VALUES (?, ?, ?, ?, ?)',
            (resource, epoch, writer_id, None if value is _KEEP else value, time.time_ns()),
        ).lastrowid

    def _pause(self, resource: str, writer_id: int, epoch: int) -> None:
        if self._hook is not None:
            self._hook(resource, writer_id, epoch)


class AsyncSqliteTransaction:
    """The connection of one fenced SQLite transaction, for asyncio: each call runs in the transaction's
    own thread and returns what sqlite3 fetched."""

    def __init__(self, conn: sqlite3.Connection, run: Callable[..., Any]) -> None:
        self.connection = conn
        self._run = run

    async def execute(self, sql: str, parameters: Any = ()) -> list[Any]:
        return await self._run(lambda: self.connection.execute(sql, parameters).fetchall())

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> None:
        await self._run(lambda: self.connection.executemany(sql, parameters))

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(connection) in the transaction's thread: for several statements, or a library's own code."""
        return await self._run(lambda: fn(self.connection))


class SqliteFence:
    """BlockingSqliteFence for asyncio: the same arguments; SQLite's calls run in a worker thread, each
    transaction in one thread of its own, so the event loop never waits on the database's lock."""

    def __init__(self, path: str | Path, **options: Any) -> None:
        self.blocking = BlockingSqliteFence(path, **options)

    def __repr__(self) -> str:
        return f"SqliteFence({str(self.blocking.path)!r})"

    async def write(self, resource: str, writer_id: int, epoch: int, value: bytes) -> int | None:
        return await asyncio.to_thread(self.blocking.write, resource, writer_id, epoch, value)

    async def read(self, resource: str) -> FenceState:
        return await asyncio.to_thread(self.blocking.read, resource)

    async def read_log(self, after_seq: int = 0, limit: int = 1000) -> list[AcceptedWrite]:
        return await asyncio.to_thread(self.blocking.read_log, after_seq, limit)

    async def apply(self, resource: str, writer_id: int, epoch: int, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(connection) in a fenced transaction, all in one worker thread: the check and claim, then
        your statements, then COMMIT (ROLLBACK of both if fn raises). Returns what fn returns."""

        def whole() -> T:
            with self.blocking.transaction(resource, writer_id, epoch) as conn:
                return fn(conn)

        return await asyncio.to_thread(whole)

    @contextlib.asynccontextmanager
    async def transaction(self, resource: str, writer_id: int, epoch: int) -> AsyncIterator[AsyncSqliteTransaction]:
        """As BlockingSqliteFence.transaction; `await tx.execute(sql, parameters)` runs your statements."""
        loop = asyncio.get_running_loop()
        # One thread for the whole transaction, so its calls run in order: a call whose await was
        # cancelled still finishes before the ROLLBACK queued after it.
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bullyproof-sqlite")
        cm = self.blocking.transaction(resource, writer_id, epoch)
        entered: list[sqlite3.Connection] = []

        def run(fn: Callable[[], T]) -> asyncio.Future[T]:
            return loop.run_in_executor(thread, fn)

        def enter() -> sqlite3.Connection:
            entered.append(cm.__enter__())
            return entered[0]

        def leave(exc: BaseException | None) -> None:
            if entered:  # ROLLBACK if exc, else COMMIT; a refusal on entry left nothing to end
                cm.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

        try:
            try:
                conn = await run(enter)
            except BaseException as exc:  # cancelled while waiting for the lock: undo once it is taken
                thread.submit(leave, exc)
                raise
            try:
                yield AsyncSqliteTransaction(conn, run)
            except BaseException as exc:
                await asyncio.shield(run(functools.partial(leave, exc)))
                raise
            await run(functools.partial(leave, None))
        finally:
            thread.shutdown(wait=False)

    async def claim(self, conn: sqlite3.Connection, resource: str, writer_id: int, epoch: int) -> int | None:
        return await asyncio.to_thread(self.blocking.claim, conn, resource, writer_id, epoch)

    async def close(self) -> None:
        self.blocking.close()
