"""The user's own write is part of the fenced operation, on real servers: it commits with the claim,
a refused write runs none of it, and an error in it rolls the claim back too (PostgreSQL and SQLite
transactions, asyncio and blocking; Redis scripts)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import psycopg
import pytest
import redis
from fencelib import run

from node.client.fencing import (
    BlockingPostgresFence,
    BlockingRedisFence,
    BlockingSqliteFence,
    EpochTaken,
    FenceState,
    PostgresFence,
    RedisFence,
    SqliteFence,
    StaleEpoch,
)
from node.launcher.cluster import wait_for

pytestmark = pytest.mark.integration


class UserError(Exception):
    pass


# ---- PostgreSQL -------------------------------------------------------------------------------------


def pg_rows(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT name, runs FROM jobs ORDER BY name").fetchall()


def pg_jobs_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE jobs (name TEXT PRIMARY KEY, runs INT NOT NULL)")


def test_postgres_the_users_write_commits_with_the_claim_or_not_at_all(postgres_url: str):
    pg_jobs_table(postgres_url)

    async def scenario() -> None:
        fence = PostgresFence(postgres_url)
        try:
            async with fence.transaction("jobs/a", 1, 5) as conn:
                await conn.execute("INSERT INTO jobs VALUES ('a', 1)")
            assert pg_rows(postgres_url) == [("a", 1)]
            assert await fence.read("jobs/a") == FenceState(5, 1, None)

            ran = False
            with pytest.raises(StaleEpoch):  # refused on entry: the block never runs
                async with fence.transaction("jobs/a", 2, 4) as conn:
                    ran = True
                    await conn.execute("UPDATE jobs SET runs = runs + 1")
            assert not ran
            with pytest.raises(EpochTaken):
                async with fence.transaction("jobs/a", 2, 5):
                    ran = True
            assert not ran and pg_rows(postgres_url) == [("a", 1)]

            # An error in the user's part rolls back the claim with it: epoch 6 is not taken.
            with pytest.raises(UserError):
                async with fence.transaction("jobs/a", 2, 6) as conn:
                    await conn.execute("UPDATE jobs SET runs = runs + 1")
                    raise UserError
            with pytest.raises(psycopg.errors.UniqueViolation):  # so does an error of PostgreSQL's
                async with fence.transaction("jobs/a", 2, 6) as conn:
                    await conn.execute("INSERT INTO jobs VALUES ('a', 1)")
            assert pg_rows(postgres_url) == [("a", 1)]
            assert await fence.read("jobs/a") == FenceState(5, 1, None)
            async with fence.transaction("jobs/a", 1, 5) as conn:  # the owner still owns epoch 5
                await conn.execute("UPDATE jobs SET runs = runs + 1")
            assert pg_rows(postgres_url) == [("a", 2)]
        finally:
            await fence.close()

    run(scenario)


def test_postgres_claim_inside_the_users_own_transaction(postgres_url: str):
    pg_jobs_table(postgres_url)

    async def scenario() -> None:
        fence = PostgresFence(postgres_url)
        conn = await psycopg.AsyncConnection.connect(postgres_url)
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO jobs VALUES ('b', 1)")
                await fence.claim(conn, "jobs/b", 3, 7)
            with pytest.raises(StaleEpoch):
                async with conn.transaction():
                    await conn.execute("INSERT INTO jobs VALUES ('c', 1)")  # before the claim: rolled back too
                    await fence.claim(conn, "jobs/b", 1, 6)
            assert pg_rows(postgres_url) == [("b", 1)]
            assert await fence.read("jobs/b") == FenceState(7, 3, None)
        finally:
            await conn.close()
            await fence.close()

    run(scenario)


def waiting_on_a_lock(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return (
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            > 0
        )


def test_postgres_a_claim_waits_for_the_open_transaction_that_holds_the_resource(postgres_url: str):
    """Blocking API, two threads: the old leader's transaction is open (checked and claimed) when the new
    leader's begins; the new one waits for the row lock, then is judged on what the old one committed."""
    pg_jobs_table(postgres_url)
    fence = BlockingPostgresFence(postgres_url)
    claimed = threading.Event()
    outcome: list[object] = []

    def new_leader() -> None:
        claimed.wait(10)
        try:
            with fence.transaction("jobs/d", 2, 2) as conn:
                conn.execute("UPDATE jobs SET runs = 100")
            outcome.append("accepted")
        except Exception as exc:  # noqa: BLE001 (reported below)
            outcome.append(exc)

    thread = threading.Thread(target=new_leader)
    thread.start()
    try:
        with fence.transaction("jobs/d", 1, 1) as conn:
            conn.execute("INSERT INTO jobs VALUES ('d', 1)")
            claimed.set()
            wait_for(lambda: waiting_on_a_lock(postgres_url), 10, what="the new leader to wait for the row lock")
        thread.join(10)
        assert outcome == ["accepted"] and pg_rows(postgres_url) == [("d", 100)]
        assert fence.read("jobs/d") == FenceState(2, 2, None)
        with pytest.raises(StaleEpoch):
            with fence.transaction("jobs/d", 1, 1):
                pass
    finally:
        thread.join(10)
        fence.close()


def test_postgres_first_claims_of_a_new_resource_race_without_errors(postgres_url: str):
    """Eight threads, each with its own connection, make the first-ever claim of one resource at once:
    the row is created once (the others' INSERT ... ON CONFLICT waits, then does nothing), and each is
    judged on the newest committed claim. No unique violation, no lost claim."""
    fences = [BlockingPostgresFence(postgres_url) for _ in range(8)]
    for fence in fences:
        fence.read("warm-up")  # the table exists and every connection is open before the race
    start = threading.Barrier(len(fences))
    outcomes: dict[int, object] = {}

    def first_claim(i: int) -> None:
        start.wait(10)
        try:
            fences[i].write("fresh", i + 1, i + 1, b"%d" % (i + 1))
            outcomes[i + 1] = "accepted"
        except Exception as exc:  # noqa: BLE001 (checked below)
            outcomes[i + 1] = exc

    threads = [threading.Thread(target=first_claim, args=(i,)) for i in range(len(fences))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    try:
        assert set(outcomes) == set(range(1, 9))
        assert all(o == "accepted" or isinstance(o, StaleEpoch) for o in outcomes.values()), outcomes
        assert outcomes[8] == "accepted" and fences[0].read("fresh") == FenceState(8, 8, b"8")
    finally:
        for fence in fences:
            fence.close()


def test_postgres_makes_its_table_on_first_use_and_a_named_one(postgres_url: str):
    fence = BlockingPostgresFence(postgres_url, table="leader_fence")
    try:
        fence.write("x", 1, 1, b"v")
        with psycopg.connect(postgres_url) as conn:
            assert conn.execute("SELECT resource, epoch, writer, value FROM leader_fence").fetchall() == [
                ("x", 1, 1, b"v")
            ]
            assert conn.execute("SELECT to_regclass('bullyproof_fence')").fetchone() == (None,)
    finally:
        fence.close()
    with pytest.raises(ValueError, match="identifier"):
        BlockingPostgresFence(postgres_url, table="fence; DROP TABLE jobs")


# ---- SQLite -------------------------------------------------------------------------------------------


def sqlite_rows(path: str) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT name, runs FROM jobs ORDER BY name").fetchall()


def test_sqlite_the_users_write_commits_with_the_claim_or_not_at_all(tmp_path):
    path = str(tmp_path / "app.db")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE jobs (name TEXT PRIMARY KEY, runs INT NOT NULL)")

    async def scenario() -> None:
        fence = SqliteFence(path)
        async with fence.transaction("jobs/a", 1, 5) as tx:
            await tx.execute("INSERT INTO jobs VALUES ('a', 1)")
            assert await tx.execute("SELECT runs FROM jobs") == [(1,)]
        assert sqlite_rows(path) == [("a", 1)] and await fence.read("jobs/a") == FenceState(5, 1, None)
        with pytest.raises(StaleEpoch):
            async with fence.transaction("jobs/a", 2, 4) as tx:
                raise AssertionError("a refused transaction runs no statement")
        with pytest.raises(UserError):
            async with fence.transaction("jobs/a", 2, 6) as tx:
                await tx.execute("UPDATE jobs SET runs = runs + 1")
                raise UserError
        with pytest.raises(sqlite3.IntegrityError):
            await fence.apply("jobs/a", 2, 6, lambda conn: conn.execute("INSERT INTO jobs VALUES ('a', 9)"))
        assert sqlite_rows(path) == [("a", 1)] and await fence.read("jobs/a") == FenceState(5, 1, None)
        assert await fence.apply("jobs/a", 2, 6, lambda conn: conn.execute("UPDATE jobs SET runs = 2").rowcount) == 1
        assert sqlite_rows(path) == [("a", 2)] and await fence.read("jobs/a") == FenceState(6, 2, None)

    run(scenario)


def test_sqlite_blocking_and_a_claim_in_the_users_own_transaction(tmp_path):
    path = str(tmp_path / "app.db")
    fence = BlockingSqliteFence(path)
    with fence.transaction("jobs/a", 1, 1) as conn:  # the table of the fence is made in the same transaction
        conn.execute("CREATE TABLE jobs (name TEXT PRIMARY KEY, runs INT NOT NULL)")
        conn.execute("INSERT INTO jobs VALUES ('a', 1)")
    with pytest.raises(UserError):
        with fence.transaction("jobs/a", 2, 2) as conn:
            conn.execute("UPDATE jobs SET runs = 50")
            raise UserError
    assert sqlite_rows(path) == [("a", 1)] and fence.read("jobs/a") == FenceState(1, 1, None)

    own = sqlite3.connect(path, isolation_level=None)
    try:
        own.execute("BEGIN IMMEDIATE")
        own.execute("UPDATE jobs SET runs = 3")
        fence.claim(own, "jobs/a", 2, 3)
        own.execute("COMMIT")
        own.execute("BEGIN IMMEDIATE")
        own.execute("UPDATE jobs SET runs = 4")
        with pytest.raises(StaleEpoch):
            fence.claim(own, "jobs/a", 1, 1)
        own.execute("ROLLBACK")
    finally:
        own.close()
    assert sqlite_rows(path) == [("a", 3)] and fence.read("jobs/a") == FenceState(3, 2, None)


# ---- Redis ---------------------------------------------------------------------------------------------


def test_redis_keys_are_set_with_the_claim_or_not_at_all(redis_url: str):
    async def scenario() -> None:
        fence = RedisFence(redis_url)
        try:
            await fence.set("job", 1, 5, {"job:last": "run 1", "job:by": "1"})
            with pytest.raises(StaleEpoch):
                await fence.set("job", 2, 4, {"job:last": "stale run"})
            with pytest.raises(EpochTaken):
                await fence.set("job", 2, 5, {"job:last": "intruder"})
            assert await fence.client.mget("job:last", "job:by") == [b"run 1", b"1"]
            assert await fence.read("job") == FenceState(5, 1, None)
            # The user's Lua sees its own KEYS and ARGV; what it returns comes back.
            got = await fence.eval(
                "job",
                1,
                5,
                "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('INCR', KEYS[2])",
                keys=["job:last", "job:count"],
                args=["run 2"],
            )
            assert got == 1 and await fence.client.get("job:last") == b"run 2"
            # An error in the user's Lua claims nothing: epoch 6 is still free, the owner still writes at 5.
            with pytest.raises(redis.ResponseError, match="boom"):
                await fence.eval("job", 2, 6, "error('boom')")
            with pytest.raises(redis.ResponseError):  # INCR of a string: Redis's own error
                await fence.eval("job", 2, 6, "return redis.call('INCR', KEYS[1])", keys=["job:last"])
            assert await fence.read("job") == FenceState(5, 1, None)
            await fence.write("job", 1, 5, b"v")
            assert await fence.read("job") == FenceState(5, 1, b"v")
        finally:
            await fence.close()

    run(scenario)


def test_redis_falls_back_to_eval_when_the_server_lost_its_scripts(redis_url: str):
    fence = BlockingRedisFence(redis_url)
    try:
        fence.write("r", 1, 1, b"a")
        fence.client.script_flush()  # as after a restart
        fence.write("r", 1, 2, b"b")  # EVALSHA fails with NOSCRIPT, EVAL runs (and caches) it
        (sha,) = {sha for (_, with_value), (_, sha) in fence._scripts._shas.items() if with_value}
        assert fence.client.script_exists(sha) == [True]
        assert fence.read("r") == FenceState(2, 1, b"b")
    finally:
        fence.close()


def test_redis_compares_epochs_beyond_double_precision_exactly(redis_url: str):
    """Lua's numbers are doubles: 2^60 and 2^60 + 1 are one number there, two epochs here."""
    fence = BlockingRedisFence(redis_url)
    try:
        fence.write("r", 1, 2**60 + 1, b"new")
        with pytest.raises(StaleEpoch):
            fence.write("r", 2, 2**60, b"old")
        with pytest.raises(StaleEpoch):
            fence.write("r", 2, 999_999_999_999_999_999, b"fewer digits")
        fence.write("r", 2, 2**63 - 1, b"max")
        assert fence.read("r") == FenceState(2**63 - 1, 2, b"max")
    finally:
        fence.close()


def test_sqlite_a_transaction_cancelled_while_it_waits_for_the_lock_claims_nothing(tmp_path):
    """asyncio: the task is cancelled while its thread waits for SQLite's write lock; once the thread
    gets it, it rolls back (the claim with it) and lets the lock go."""
    path = tmp_path / "app.db"
    holder = BlockingSqliteFence(path)
    holder.write("r", 1, 1, b"first")

    async def scenario() -> None:
        fence = SqliteFence(path, timeout_s=10)
        entered = asyncio.Event()

        async def enter_and_stay() -> None:
            async with fence.transaction("r", 5, 5):  # epoch 5: had it committed, epoch 3 below would be stale
                entered.set()
                await asyncio.sleep(60)

        with holder.transaction("r", 1, 1):  # holds the write lock, while the event loop runs on
            stuck = asyncio.create_task(enter_and_stay())
            await asyncio.sleep(0.2)
            stuck.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stuck
            assert not entered.is_set()
        await fence.write("r", 3, 3, b"after")  # the lock was let go, and epoch 5 never claimed
        assert await fence.read("r") == FenceState(3, 3, b"after")

    run(scenario)
