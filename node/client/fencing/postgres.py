"""Fencing in PostgreSQL (psycopg 3): the check, the claim and your write in one transaction.

    fence = PostgresFence("postgresql://app@127.0.0.1/app")
    async with token.fenced(fence).transaction("jobs/nightly") as conn:   # StaleEpoch, EpochTaken
        await conn.execute("UPDATE jobs SET last_run = now() WHERE name = 'nightly'")

In that transaction the fence row of the resource is created if missing (INSERT ... ON CONFLICT DO
NOTHING, which waits for a concurrent transaction inserting the same row), then locked (SELECT ... FOR
UPDATE, which in READ COMMITTED waits for the lock and then reads the row's newest committed version),
judged, and claimed; your statements follow under that lock and commit with the claim, or roll back
with it. So writers of one resource are decided one at a time in commit order, whatever isolation level
the connection runs (at REPEATABLE READ or SERIALIZABLE a concurrent claim makes PostgreSQL raise a
serialization failure instead: retry it). BlockingPostgresFence is the same without asyncio.

With `log=True` every accepted claim also appends a row to a log table (default bullyproof_fence_log:
seq, resource, epoch, writer, value, unix_ns) in the same transaction; `write` returns the row's seq
and `read_log` reads the log back (AcceptedWrite). The seq is taken under the fence row's lock, so one
resource's rows rise in the order its writes were decided (a rolled-back transaction leaves a gap).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

import psycopg
from psycopg import sql

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

MAX_IDLE = 4  # connections a fence keeps open between transactions (a conninfo string's own small pool)
# pg_advisory_xact_lock key held while creating the table, so two first uses do not both create it
CREATE_LOCK_KEY = int.from_bytes(b"bullypro", "big") >> 1
_KEEP = object()  # claim without touching the record's value


class _Statements:
    """The fence's SQL for one table name."""

    def __init__(self, table: str, log: str | None = None) -> None:
        t = sql.Identifier(check_identifier(table, "table"))
        self.table = table
        self.log = log
        self.exists = sql.SQL("SELECT to_regclass(quote_ident({}))").format(sql.Literal(table))
        self.create = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (resource TEXT PRIMARY KEY, epoch BIGINT NOT NULL,"
            " writer BIGINT NOT NULL, value BYTEA)"
        ).format(t)
        self.insert = sql.SQL(
            "INSERT INTO {} (resource, epoch, writer) VALUES (%s, 0, 0) ON CONFLICT (resource) DO NOTHING"
        ).format(t)
        self.lock = sql.SQL("SELECT epoch, writer FROM {} WHERE resource = %s FOR UPDATE").format(t)
        self.peek = sql.SQL("SELECT epoch, writer FROM {} WHERE resource = %s").format(t)
        self.read = sql.SQL("SELECT epoch, writer, value FROM {} WHERE resource = %s").format(t)
        self.claim = sql.SQL("UPDATE {} SET epoch = %s, writer = %s WHERE resource = %s").format(t)
        self.claim_value = sql.SQL("UPDATE {} SET epoch = %s, writer = %s, value = %s WHERE resource = %s").format(t)
        # The planted check-outside-transaction bug writes without looking: an upsert.
        self.record = sql.SQL(
            "INSERT INTO {} (resource, epoch, writer) VALUES (%s, %s, %s) ON CONFLICT (resource)"
            " DO UPDATE SET epoch = excluded.epoch, writer = excluded.writer"
        ).format(t)
        self.record_value = sql.SQL(
            "INSERT INTO {} (resource, epoch, writer, value) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (resource) DO UPDATE SET epoch = excluded.epoch,"
            " writer = excluded.writer, value = excluded.value"
        ).format(t)
        if log is not None:
            lt = sql.Identifier(check_identifier(log, "log table"))
            self.log_exists = sql.SQL("SELECT to_regclass(quote_ident({}))").format(sql.Literal(log))
            self.create_log = sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (seq BIGSERIAL PRIMARY KEY, resource TEXT NOT NULL,"
                " epoch BIGINT NOT NULL, writer BIGINT NOT NULL, value BYTEA, unix_ns BIGINT NOT NULL)"
            ).format(lt)
            self.append = sql.SQL(
                "INSERT INTO {} (resource, epoch, writer, value, unix_ns) VALUES"
                " (%s, %s, %s, %s, (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint) RETURNING seq"
            ).format(lt)
            self.read_log = sql.SQL(
                "SELECT seq, resource, epoch, writer, value, unix_ns FROM {} WHERE seq > %s ORDER BY seq LIMIT %s"
            ).format(lt)

    def appended(
        self, resource: str, writer_id: int, epoch: int, value: object
    ) -> tuple[sql.Composed, tuple[Any, ...]]:
        return self.append, (resource, epoch, writer_id, None if value is _KEEP else value)

    def update(self, resource: str, writer_id: int, epoch: int, value: object) -> tuple[sql.Composed, tuple[Any, ...]]:
        if value is _KEEP:
            return self.claim, (epoch, writer_id, resource)
        return self.claim_value, (epoch, writer_id, value, resource)

    def upsert(self, resource: str, writer_id: int, epoch: int, value: object) -> tuple[sql.Composed, tuple[Any, ...]]:
        if value is _KEEP:
            return self.record, (resource, epoch, writer_id)
        return self.record_value, (resource, epoch, writer_id, value)


def _accepted(row: tuple[Any, ...]) -> AcceptedWrite:
    seq, resource, epoch, writer, value, unix_ns = row
    return AcceptedWrite(seq, resource, epoch, writer, None if value is None else bytes(value), unix_ns)


def _state(row: tuple[Any, ...] | None) -> FenceState:
    return (
        NEVER_WRITTEN
        if row is None or row[0] == 0
        else FenceState(row[0], row[1], row[2] if row[2] is None else bytes(row[2]))
    )


class PostgresFence:
    """Fenced transactions in a PostgreSQL database, with psycopg's AsyncConnection.

    `connection`: a conninfo string or URL (postgresql://USER@HOST:PORT/DB; the fence keeps up to
    MAX_IDLE connections open, in autocommit mode between its transactions), or a callable returning an
    async context manager of a connection, such as psycopg_pool's `pool.connection`. The fence record
    is a table (`table`, default bullyproof_fence: resource, epoch, writer, value) in that database,
    created on first use if missing (the role then needs CREATE on the schema; or create it yourself
    with the statement in `_Statements.create`). `log`: True (or a table name) to keep a log of the
    accepted writes as well (see the module's doc; made on first use the same way).
    """

    def __init__(
        self,
        connection: str | Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection]],
        *,
        table: str = TABLE,
        log: bool | str = False,
        _planted: Iterable[FenceBug | str] = (),
        _between_check_and_write: Hook | None = None,
    ) -> None:
        self._sql = _Statements(table, log_name(log, "table"))
        self._connect = connection if callable(connection) else self._pooled
        self._conninfo = connection if isinstance(connection, str) else None
        self._idle: list[psycopg.AsyncConnection] = []
        self._table_ready = False
        self._planted = planted_bugs(_planted)
        self._hook = _between_check_and_write

    def __repr__(self) -> str:
        return f"PostgresFence(table={self._sql.table!r})"

    @contextlib.asynccontextmanager
    async def transaction(self, resource: str, writer_id: int, epoch: int) -> AsyncIterator[psycopg.AsyncConnection]:
        """A transaction in which the fence of `resource` is checked and claimed for (writer_id, epoch):
        run your statements on the connection it gives; they commit with the claim when the block
        ends, and roll back with it if the block raises. Raises StaleEpoch or EpochTaken (subclasses
        of FencingRefused) on entry if the epoch is not current, having changed nothing."""
        async with self._transaction(resource, writer_id, epoch, _KEEP) as (conn, _):
            yield conn

    async def write(self, resource: str, writer_id: int, epoch: int, value: bytes) -> int | None:
        """Record `value` in the resource's fence record, if the epoch is current (else as transaction);
        returns its seq in the log of accepted writes (None without `log`)."""
        async with self._transaction(resource, writer_id, epoch, bytes(value)) as (_, seq):
            pass
        return seq

    async def read_log(self, after_seq: int = 0, limit: int = 1000) -> list[AcceptedWrite]:
        """The log's accepted writes with seq above `after_seq`, in seq order, at most `limit` of them."""
        check_read_log(after_seq, limit)
        if self._sql.log is None:
            raise no_log(self)
        await self._ensure_table()
        async with self._connect() as conn:
            async with conn.transaction():
                rows = await (await conn.execute(self._sql.read_log, (after_seq, limit))).fetchall()
        return [_accepted(row) for row in rows]

    async def read(self, resource: str) -> FenceState:
        await self._ensure_table()
        async with self._connect() as conn:
            async with conn.transaction():
                return _state(await (await conn.execute(self._sql.read, (resource,))).fetchone())

    async def claim(self, conn: psycopg.AsyncConnection, resource: str, writer_id: int, epoch: int) -> int | None:
        """Check and claim the fence inside a transaction you opened on `conn`, before your own write;
        the row stays locked until that transaction ends. On StaleEpoch or EpochTaken roll it back.
        Returns the claim's seq in the log of accepted writes (None without `log`)."""
        await self._ensure_table()
        return await self._claim(conn, resource, writer_id, epoch, _KEEP)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    # ---- inside -----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transaction(
        self, resource: str, writer_id: int, epoch: int, value: object
    ) -> AsyncIterator[tuple[psycopg.AsyncConnection, int | None]]:
        check_claim(resource, writer_id, epoch)
        await self._ensure_table()
        async with self._connect() as conn:
            if FenceBug.CHECK_OUTSIDE_TRANSACTION in self._planted:
                async with conn.transaction():
                    row = await (await conn.execute(self._sql.peek, (resource,))).fetchone()
                judge(resource, writer_id, epoch, *(row or (0, 0)), self._planted)
                await self._pause(resource, writer_id, epoch)
                async with conn.transaction():
                    await conn.execute(*self._sql.upsert(resource, writer_id, epoch, value))
                    yield conn, await self._append(conn, resource, writer_id, epoch, value)
                return
            async with conn.transaction():
                yield conn, await self._claim(conn, resource, writer_id, epoch, value)

    async def _claim(
        self, conn: psycopg.AsyncConnection, resource: str, writer_id: int, epoch: int, value: object
    ) -> int | None:
        check_claim(resource, writer_id, epoch)
        await conn.execute(self._sql.insert, (resource,))
        highest, owner = await (await conn.execute(self._sql.lock, (resource,))).fetchone()
        judge(resource, writer_id, epoch, highest, owner, self._planted)
        await self._pause(resource, writer_id, epoch)
        await conn.execute(*self._sql.update(resource, writer_id, epoch, value))
        return await self._append(conn, resource, writer_id, epoch, value)

    async def _append(
        self, conn: psycopg.AsyncConnection, resource: str, writer_id: int, epoch: int, value: object
    ) -> int | None:
        if self._sql.log is None:
            return None
        return (await (await conn.execute(*self._sql.appended(resource, writer_id, epoch, value))).fetchone())[0]

    async def _ensure_table(self) -> None:
        if self._table_ready:
            return
        async with self._connect() as conn:
            async with conn.transaction():
                if (await (await conn.execute(self._sql.exists)).fetchone())[0] is None:
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK_KEY,))
                    await conn.execute(self._sql.create)
                if (
                    self._sql.log is not None
                    and (await (await conn.execute(self._sql.log_exists)).fetchone())[0] is None
                ):
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK_KEY,))
                    await conn.execute(self._sql.create_log)
        self._table_ready = True

    async def _pause(self, resource: str, writer_id: int, epoch: int) -> None:
        if self._hook is not None and inspect.isawaitable(result := self._hook(resource, writer_id, epoch)):
            await result

    @contextlib.asynccontextmanager
    async def _pooled(self) -> AsyncIterator[psycopg.AsyncConnection]:
        conn = (
            self._idle.pop() if self._idle else await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        )
        try:
            yield conn
        finally:
            if (
                conn.closed
                or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
                or len(self._idle) >= MAX_IDLE
            ):
                await conn.close()
            else:
                self._idle.append(conn)


class BlockingPostgresFence:
    """PostgresFence without asyncio (psycopg's Connection): the same arguments and methods, blocking.
    `connection` may be a callable returning a context manager of a Connection (psycopg_pool's
    `ConnectionPool.connection`). Safe to share between threads: each transaction has its own connection."""

    def __init__(
        self,
        connection: str | Callable[[], AbstractContextManager[psycopg.Connection]],
        *,
        table: str = TABLE,
        log: bool | str = False,
        _planted: Iterable[FenceBug | str] = (),
        _between_check_and_write: Hook | None = None,
    ) -> None:
        import threading

        self._sql = _Statements(table, log_name(log, "table"))
        self._connect = connection if callable(connection) else self._pooled
        self._conninfo = connection if isinstance(connection, str) else None
        self._idle: list[psycopg.Connection] = []
        self._idle_lock = threading.Lock()
        self._table_ready = False
        self._planted = planted_bugs(_planted)
        self._hook = _between_check_and_write

    def __repr__(self) -> str:
        return f"BlockingPostgresFence(table={self._sql.table!r})"

    @contextlib.contextmanager
    def transaction(self, resource: str, writer_id: int, epoch: int) -> Iterator[psycopg.Connection]:
        """As PostgresFence.transaction."""
        with self._transaction(resource, writer_id, epoch, _KEEP) as (conn, _):
            yield conn

    def write(self, resource: str, writer_id: int, epoch: int, value: bytes) -> int | None:
        with self._transaction(resource, writer_id, epoch, bytes(value)) as (_, seq):
            pass
        return seq

    def read_log(self, after_seq: int = 0, limit: int = 1000) -> list[AcceptedWrite]:
        """As PostgresFence.read_log."""
        check_read_log(after_seq, limit)
        if self._sql.log is None:
            raise no_log(self)
        self._ensure_table()
        with self._connect() as conn, conn.transaction():
            return [_accepted(row) for row in conn.execute(self._sql.read_log, (after_seq, limit)).fetchall()]

    def read(self, resource: str) -> FenceState:
        self._ensure_table()
        with self._connect() as conn, conn.transaction():
            return _state(conn.execute(self._sql.read, (resource,)).fetchone())

    def claim(self, conn: psycopg.Connection, resource: str, writer_id: int, epoch: int) -> int | None:
        """As PostgresFence.claim."""
        self._ensure_table()
        return self._claim(conn, resource, writer_id, epoch, _KEEP)

    def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    @contextlib.contextmanager
    def _transaction(
        self, resource: str, writer_id: int, epoch: int, value: object
    ) -> Iterator[tuple[psycopg.Connection, int | None]]:
        check_claim(resource, writer_id, epoch)
        self._ensure_table()
        with self._connect() as conn:
            if FenceBug.CHECK_OUTSIDE_TRANSACTION in self._planted:
                with conn.transaction():
                    row = conn.execute(self._sql.peek, (resource,)).fetchone()
                judge(resource, writer_id, epoch, *(row or (0, 0)), self._planted)
                self._pause(resource, writer_id, epoch)
                with conn.transaction():
                    conn.execute(*self._sql.upsert(resource, writer_id, epoch, value))
                    yield conn, self._append(conn, resource, writer_id, epoch, value)
                return
            with conn.transaction():
                yield conn, self._claim(conn, resource, writer_id, epoch, value)

    def _claim(self, conn: psycopg.Connection, resource: str, writer_id: int, epoch: int, value: object) -> int | None:
        check_claim(resource, writer_id, epoch)
        conn.execute(self._sql.insert, (resource,))
        highest, owner = conn.execute(self._sql.lock, (resource,)).fetchone()
        judge(resource, writer_id, epoch, highest, owner, self._planted)
        self._pause(resource, writer_id, epoch)
        conn.execute(*self._sql.update(resource, writer_id, epoch, value))
        return self._append(conn, resource, writer_id, epoch, value)

    def _append(self, conn: psycopg.Connection, resource: str, writer_id: int, epoch: int, value: object) -> int | None:
        if self._sql.log is None:
            return None
        return conn.execute(*self._sql.appended(resource, writer_id, epoch, value)).fetchone()[0]

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        with self._connect() as conn, conn.transaction():
            if conn.execute(self._sql.exists).fetchone()[0] is None:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK_KEY,))
                conn.execute(self._sql.create)
            if self._sql.log is not None and conn.execute(self._sql.log_exists).fetchone()[0] is None:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK_KEY,))
                conn.execute(self._sql.create_log)
        self._table_ready = True

    def _pause(self, resource: str, writer_id: int, epoch: int) -> None:
        if self._hook is not None:
            self._hook(resource, writer_id, epoch)

    @contextlib.contextmanager
    def _pooled(self) -> Iterator[psycopg.Connection]:
        with self._idle_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = psycopg.Connection.connect(self._conninfo, autocommit=True)
        try:
            yield conn
        finally:
            keep = not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            with self._idle_lock:
                if keep and len(self._idle) < MAX_IDLE:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()
