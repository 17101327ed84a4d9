"""Three bugs planted in each adapter (`_planted`, off unless a test asks), each shown to misbehave by
a deterministic scenario that the correct adapter passes, on the real server:

* check-outside-transaction: the old leader checks, a new leader writes, the old leader writes: its
  stale write is accepted and overwrites the newer epoch (the interleaving is forced with the
  adapter's test hook between check and write);
* equal-is-stale (`<=` for `<`): a leader's second write in its own epoch is refused;
* no-writer-check: a second writer in an epoch already claimed is accepted.
"""

from __future__ import annotations

import threading

import pytest
from fencelib import Target, run

from node.client.fencing import EpochTaken, FenceBug, FenceState, StaleEpoch, open_fence

pytestmark = pytest.mark.integration

KINDS = ("sqlite", "postgres", "redis")
NEW_LEADER_TIMEOUT_S = 15.0
LOCK_WAIT_S = 0.3  # how long the old leader lets a correct adapter's new leader wait on its lock


@pytest.fixture(params=KINDS)
def kind_target(request: pytest.FixtureRequest, make) -> Target:
    return make(request.param)


def paused_old_leader(target: Target, planted: frozenset[FenceBug]) -> tuple[str, FenceState]:
    """Old leader (writer 1, epoch 1) checks; a new leader (writer 2, epoch 2) writes; the old leader
    goes on. Returns the old leader's outcome and the record at the end."""
    r = target.resource("planted" if planted else "correct")
    new_leader = target.blocking()  # in a thread of its own, as another process would be
    threads: list[threading.Thread] = []

    def between_check_and_write(resource: str, writer_id: int, epoch: int) -> None:
        if writer_id != 1:
            return
        thread = threading.Thread(target=new_leader.write, args=(r, 2, 2, b"new leader"))
        threads.append(thread)
        thread.start()
        # Planted: nothing holds the new leader back, wait until it wrote. Correct: it waits for the
        # old leader's lock (SQLite, PostgreSQL) and this gives up after LOCK_WAIT_S; either way the
        # outcome is the same, only how long the new leader waited differs.
        thread.join(NEW_LEADER_TIMEOUT_S if planted else LOCK_WAIT_S)

    async def scenario() -> tuple[str, FenceState]:
        old_leader = target.fence(_planted=planted, _between_check_and_write=between_check_and_write)
        try:
            try:
                await old_leader.write(r, 1, 1, b"old leader")
                outcome = "accepted"
            except StaleEpoch:
                outcome = "refused"
            if not threads:  # the check and the write are one script (Redis): there is no "between"
                new_leader.write(r, 2, 2, b"new leader")
            for thread in threads:
                thread.join(NEW_LEADER_TIMEOUT_S)
                assert not thread.is_alive()
            return outcome, await old_leader.read(r)
        finally:
            await old_leader.close()
            new_leader.close()

    return run(scenario)


def test_check_outside_the_transaction_lets_a_stale_write_overwrite_a_newer_epoch(kind_target: Target):
    # Correct: the old leader's write is ordered before the new leader's (it held the lock, or the
    # script ran whole), so the new leader's write is what remains.
    outcome, state = paused_old_leader(kind_target, frozenset())
    assert outcome == "accepted" and state == FenceState(2, 2, b"new leader")

    outcome, state = paused_old_leader(kind_target, frozenset({FenceBug.CHECK_OUTSIDE_TRANSACTION}))
    assert outcome == "accepted" and state == FenceState(1, 1, b"old leader"), "the planted bug went unnoticed"


def test_equal_is_stale_refuses_a_leaders_second_write_in_its_epoch(kind_target: Target):
    async def scenario(planted: frozenset[FenceBug]) -> None:
        fence = kind_target.fence(_planted=planted)
        r = kind_target.resource(str(len(planted)))
        try:
            await fence.write(r, 1, 1, b"first")
            await fence.write(r, 1, 1, b"second")
        finally:
            await fence.close()

    run(lambda: scenario(frozenset()))
    with pytest.raises(StaleEpoch):
        run(lambda: scenario(frozenset({FenceBug.EQUAL_IS_STALE})))


def test_no_writer_check_accepts_two_writers_in_one_epoch(kind_target: Target):
    async def scenario(planted: frozenset[FenceBug]) -> FenceState:
        fence = kind_target.fence(_planted=planted)
        r = kind_target.resource(str(len(planted)))
        try:
            await fence.write(r, 1, 1, b"owner")
            await fence.write(r, 2, 1, b"intruder")
            return await fence.read(r)
        finally:
            await fence.close()

    with pytest.raises(EpochTaken):
        run(lambda: scenario(frozenset()))
    assert run(lambda: scenario(frozenset({FenceBug.NO_WRITER_CHECK}))) == FenceState(1, 2, b"intruder")


def test_the_fenced_store_takes_no_planted_bug_from_the_client():
    with pytest.raises(ValueError, match="in the store process"):
        open_fence("bullyproof-store://127.0.0.1:1", _planted=[FenceBug.NO_WRITER_CHECK])
