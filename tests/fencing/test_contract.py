"""Every fence keeps the same promise, on its real server (SQLite file, PostgreSQL, Redis, the fenced
store): a write below the highest epoch accepted for its resource is refused (StaleEpoch), so is an
epoch another writer claimed first (EpochTaken), and the claiming writer may write again in its epoch.
Written once against the interface a harness uses (open_fence, write, read)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import pytest
from fencelib import Target, run

from node.client import LeaseToken
from node.client.fencing import NEVER_WRITTEN, EpochTaken, FenceState, FencingRefused, StaleEpoch

pytestmark = pytest.mark.integration


def test_a_write_is_accepted_and_read_back(target: Target):
    async def scenario() -> None:
        fence = target.fence()
        try:
            r = target.resource()
            assert await fence.read(r) == NEVER_WRITTEN
            await fence.write(r, 1, target.e(1), b"first")
            assert await fence.read(r) == FenceState(target.e(1), 1, b"first")
        finally:
            await fence.close()

    run(scenario)


def test_a_stale_epoch_is_refused_and_changes_nothing(target: Target):
    async def scenario() -> None:
        fence = target.fence()
        try:
            r = target.resource()
            await fence.write(r, 2, target.e(2), b"new leader")
            with pytest.raises(StaleEpoch) as refused:
                await fence.write(r, 1, target.e(1), b"old leader, late")
            assert isinstance(refused.value, FencingRefused)
            assert (refused.value.epoch, refused.value.highest_epoch) == (target.e(1), target.e(2))
            assert refused.value.resource == r and refused.value.writer_id == 1
            assert await fence.read(r) == FenceState(target.e(2), 2, b"new leader")
        finally:
            await fence.close()

    run(scenario)


def test_an_epoch_claimed_by_another_writer_is_refused(target: Target):
    async def scenario() -> None:
        fence = target.fence()
        try:
            r = target.resource()
            await fence.write(r, 1, target.e(3), b"owner")
            with pytest.raises(EpochTaken) as refused:
                await fence.write(r, 2, target.e(3), b"intruder")
            assert (refused.value.epoch, refused.value.highest_epoch) == (target.e(3), target.e(3))
            if target.kind != "store":  # the store's reply does not name the owner
                assert refused.value.owner_id == 1
            assert await fence.read(r) == FenceState(target.e(3), 1, b"owner")
        finally:
            await fence.close()

    run(scenario)


def test_the_claiming_writer_writes_again_in_its_epoch(target: Target):
    async def scenario() -> None:
        fence = target.fence()
        try:
            r = target.resource()
            await fence.write(r, 1, target.e(1), b"one")
            await fence.write(r, 1, target.e(1), b"two")
            await fence.write(r, 1, target.e(2), b"three")  # a later term of the same node
            assert await fence.read(r) == FenceState(target.e(2), 1, b"three")
        finally:
            await fence.close()

    run(scenario)


def test_a_term_handle_carries_its_epoch_and_node(target: Target):
    async def scenario() -> None:
        fence = target.fence()
        try:
            r = target.resource()
            old, new = LeaseToken(node_id=1, epoch=target.e(1)), LeaseToken(node_id=2, epoch=target.e(2))
            await old.fenced(fence).write(r, b"old term")
            await new.fenced(fence).write(r, b"new term")
            with pytest.raises(StaleEpoch):
                await old.fenced(fence).write(r, b"old term, after the new one wrote")
            assert await new.fenced(fence).read(r) == FenceState(target.e(2), 2, b"new term")
        finally:
            await fence.close()

    run(scenario)


@dataclass(frozen=True)
class Attempt:
    writer_id: int
    epoch: int
    started: float
    ended: float
    outcome: str  # "accepted", "stale", "taken"
    highest_epoch: int | None = None


def test_racing_writers_end_with_only_the_highest_epoch_accepted(target: Target):
    """Six writers, each with its own connection, two pairs sharing an epoch, write at once. Whatever
    the interleaving: one writer per epoch, no write accepted after a higher epoch's write had been
    accepted and acknowledged (real time, this process's clock), and at the end only the highest
    epoch's writer is accepted."""
    writers = {1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4}  # writer id: epoch
    rounds = 4
    r = target.resource("race")

    async def scenario() -> list[Attempt]:
        attempts: list[Attempt] = []
        ready = asyncio.Barrier(len(writers))

        async def writer(writer_id: int, epoch: int) -> None:
            fence = target.fence()
            rng = random.Random(writer_id)
            try:
                await fence.read(r)  # connected (and the table made) before the race starts
                await ready.wait()
                await asyncio.sleep(epoch * 0.003)  # lower epochs tend to start first: refusals of each kind
                for i in range(rounds):
                    await asyncio.sleep(rng.uniform(0, 0.005))
                    started = time.monotonic()
                    try:
                        await fence.write(r, writer_id, target.e(epoch), f"{writer_id}:{i}".encode())
                        outcome, highest = "accepted", None
                    except StaleEpoch as exc:
                        outcome, highest = "stale", exc.highest_epoch
                    except EpochTaken as exc:
                        outcome, highest = "taken", exc.highest_epoch
                    attempts.append(Attempt(writer_id, target.e(epoch), started, time.monotonic(), outcome, highest))
            finally:
                await fence.close()

        await asyncio.gather(*(writer(w, e) for w, e in writers.items()))
        # Afterwards: the highest epoch's writer is accepted, every other refused.
        fence = target.fence()
        try:
            await fence.write(r, 6, target.e(4), b"last")
            for w, e in writers.items():
                if w != 6:
                    with pytest.raises(FencingRefused):
                        await fence.write(r, w, target.e(e), b"after the race")
            assert await fence.read(r) == FenceState(target.e(4), 6, b"last")
        finally:
            await fence.close()
        return attempts

    attempts = run(scenario)
    accepted = [a for a in attempts if a.outcome == "accepted"]
    owners: dict[int, set[int]] = {}
    for a in accepted:
        owners.setdefault(a.epoch, set()).add(a.writer_id)
    assert all(len(ids) == 1 for ids in owners.values()), f"an epoch accepted from two writers: {owners}"
    assert owners[target.e(4)] == {6}  # nothing is above epoch 4: all of writer 6's writes are accepted
    late = [(b, a) for a in accepted for b in accepted if a.epoch > b.epoch and a.ended < b.started]
    assert not late, f"accepted after a higher epoch was acknowledged: {late[:3]}"
    for a in attempts:
        if a.outcome == "stale":
            assert a.highest_epoch > a.epoch
        elif a.outcome == "taken":
            assert a.highest_epoch == a.epoch
