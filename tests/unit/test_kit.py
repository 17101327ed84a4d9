"""The elector kit (node/core/kit.py): the parts every algorithm shares behave alike in all of them."""

from __future__ import annotations

import random

import pytest

from node.core import REGISTRY, REPLY_TYPE, Config, Message, MsgType, Promise, Timing, make_elector, mode_info
from node.core.kit import REFUSALS, ElectorKit
from node.core.membership import MembershipRefused
from node.core.types import Batch
from node.sim.schedule import run_schedule
from node.sim.swarm import SwarmSettings, swarm_schedule

REPLIES = frozenset(REPLY_TYPE.values())


def test_every_refusal_a_core_makes_says_why(monkeypatch) -> None:
    """Whatever the mode and the schedule, a reply that refuses names the rule (one of REFUSALS): the
    runtime words it, it never guesses it."""
    seen: dict[str, int] = {}
    freeze = Batch.freeze

    def checked(batch: Batch):
        for m in batch.messages:
            if m.type in REPLIES and not m.granted:
                assert m.refusal in REFUSALS, m
                seen[m.refusal] = seen.get(m.refusal, 0) + 1
            else:
                assert not m.refusal, m
        return freeze(batch)

    monkeypatch.setattr(Batch, "freeze", checked)
    for mode in REGISTRY:
        for seed in range(12):
            run_schedule(swarm_schedule(seed, SwarmSettings(mode=mode)))
    # The rules these schedules exercise; every one of them is reached.
    assert {"epoch-stale", "epoch-promised", "leading", "promise-live", "lower-id", "other-leader"} <= seen.keys(), seen


def test_a_refusal_must_be_one_the_kit_knows() -> None:
    e = make_elector("quorum", Config(1, (1, 2, 3), Timing()), Promise(), random.Random(0), 0)
    request = Message(MsgType.COORDINATOR, 2, 1, 1)
    for wrong in (True, False, "nope"):
        with pytest.raises(ValueError, match="one of REFUSALS"):
            e._reply(Batch(), request, wrong)


@pytest.mark.parametrize("mode", list(REGISTRY))
def test_a_reply_for_a_role_the_node_does_not_hold_is_dropped(mode: str) -> None:
    """Dispatch by role: a follower that never asked anything ignores every reply (nothing sent, nothing
    persisted, no event), whatever its epoch says."""
    e = make_elector(mode, Config(1, (1, 2, 3), Timing()), Promise(), random.Random(0), 0)
    for reply in sorted(REPLIES, key=str):
        if reply == MsgType.RING_ACK:
            continue  # a pass ack: no role waits for it more than another
        out = e.step(1, Message(reply, 2, 1, 0, granted=True))
        assert out.persist is None and not out.messages and not out.events, (reply, out)


def test_the_registry_asks_the_elector_what_it_can_do() -> None:
    for info in REGISTRY.values():
        assert issubclass(info.factory, ElectorKit)
        assert info.transfers == info.factory.TRANSFERS
        assert info.membership_changes == info.factory.CHANGES_MEMBERSHIP
    assert not mode_info("ring").transfers and mode_info("quorum").membership_changes


@pytest.mark.parametrize("mode", [m for m in REGISTRY if not mode_info(m).membership_changes])
def test_a_mode_that_keeps_its_list_refuses_a_change(mode: str) -> None:
    e = make_elector(mode, Config(1, (1, 2, 3), Timing()), Promise(), random.Random(0), 0)
    with pytest.raises(MembershipRefused, match="keeps its start-up list"):
        e.change_membership(0, (1, 2))


def test_the_peer_rpcs_of_each_mode_come_from_its_electors_dispatch_table() -> None:
    from node.runtime.wire import MODE_RPCS

    assert MODE_RPCS == {
        "classic": {"Election", "Alive", "Coordinator", "Heartbeat"},
        "quorum": {"Election", "Alive", "Coordinator", "Heartbeat"},
        "ring": {"RingElection", "RingCoordinator", "Heartbeat"},
        "raft": {"PreVote", "RequestVote", "Heartbeat"},
    }
