"""What a node tells a client who asks who leads (View.answer, KnownLeader) and P6, the judge of it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from node.core import Message, Mode, MsgType, QuorumBully, Role, Timing, View
from node.core.known import KnownLeader
from node.sim.network import Network
from node.sim.swarm import runtime_timing

ET = runtime_timing(0).election_timeout_ticks
TIMING = Timing()  # heartbeat 10 ticks (the grace), election timeout 50 (the cap)


def _no_majority_anywhere(mode: str, elector_factory=None) -> Network:
    """The leader (5) killed, the rest split 2/2: candidates on each side get their partner's ack and
    never a majority."""
    net = Network(7, 5, mode, runtime_timing(0), elector_factory=elector_factory)
    assert net.run_until_agreed(20 * ET) is not None
    leader = net.agreed_leader()[0]
    net.crash(leader)
    rest = [m for m in net.members if m != leader]
    net.partition([[rest[0], rest[3]], [rest[1], rest[2], leader]])  # e.g. 1,4 / 2,3 with 5 dead
    net.run(10 * ET)
    return net


@pytest.mark.parametrize("mode", ["quorum", "raft"])
def test_a_candidate_that_never_won_is_never_named(mode) -> None:
    net = _no_majority_anywhere(mode)
    crashed_at = next(f.tick for f in net.faults if f.description.startswith("crash"))
    late = [a for a in net.all_answers() if a.end > crashed_at + ET]
    assert late == [], late  # nobody leads, so nobody is named
    assert net.answer_violations() == []


class _NamesWhomItAcked(QuorumBully):
    """The old rule: a follower names whomever it acknowledged, while its promise lasts."""

    def view(self, now: int) -> View:
        v = super().view(now)
        if v.role == Role.FOLLOWER and self.leader_id is not None and now < self.promise_until:
            return replace(v, leader_id=self.leader_id, epoch=self.epoch)
        return v


def test_p6_catches_a_follower_that_names_the_candidate_it_acknowledged() -> None:
    net = _no_majority_anywhere("quorum", elector_factory=_NamesWhomItAcked)
    found = net.answer_violations()
    assert found and "when it did not lead" in found[0], found


@pytest.mark.parametrize("mode", ["quorum", "raft"])
def test_followers_stop_naming_a_leader_cut_off_when_its_lease_ends(mode) -> None:
    net = Network(3, 5, mode, runtime_timing(0))
    assert net.run_until_agreed(20 * ET) is not None
    leader = net.agreed_leader()[0]
    net.isolate(leader)
    net.run(2 * ET)
    stepped = [i for i in net.closed_intervals() if i.node == leader]
    assert stepped and stepped[-1].end < net.now  # its lease ran out: it stepped down
    named_until = max(a.end for a in net.all_answers() if a.leader == leader and a.node != leader)
    # No later than the lease's end plus the heartbeat's transit (one tick here) and one heartbeat
    # interval of grace: before the followers' promises (0.8 election timeouts from the last heartbeat) ran out.
    assert named_until <= stepped[-1].end + net.heartbeat_transit_ticks + net.timing.heartbeat_interval_ticks + 1
    assert net.answer_violations() == []


def test_a_leader_names_itself_only_while_its_lease_is_valid() -> None:
    assert View(1, Role.LEADER, 3, 1, lease_valid=True).answer == (1, 3)
    assert View(1, Role.LEADER, 3, 1, lease_valid=False).answer is None
    assert View(2, Role.FOLLOWER, 3, 1, lease_valid=False).answer == (1, 3)
    assert View(2, Role.CANDIDATE, 3, None, lease_valid=False).answer is None


def test_known_leader_never_names_backwards_and_counts_the_lease_down_on_a_slower_clock() -> None:
    known = KnownLeader()
    known.heard(100, Message(MsgType.HEARTBEAT, 5, 1, 7, round=1, lease_remaining=30), TIMING)
    assert known.named(100) == (5, 7) and known.named(136) == (5, 7) and known.named(137) is None  # 30 * 0.9 + 10
    known.heard(110, Message(MsgType.HEARTBEAT, 4, 1, 6, round=9, lease_remaining=30), TIMING)
    assert known.named(110) == (5, 7)  # an older epoch's late heartbeat
    known.heard(120, Message(MsgType.HEARTBEAT, 5, 1, 7, round=2, lease_remaining=10**6), TIMING)
    assert known.named(174) == (5, 7) and known.named(175) is None  # capped at an election timeout
    known.released(5, 7)
    assert known.named(121) is None
    known.heard(122, Message(MsgType.HEARTBEAT, 5, 1, 7, round=2, lease_remaining=30), TIMING)
    assert known.named(122) is None  # a duplicate from the epoch that resigned
    known.led(1, 8)
    known.heard(123, Message(MsgType.HEARTBEAT, 5, 1, 7, round=3, lease_remaining=30), TIMING)
    assert known.named(123) is None  # we led a later epoch ourselves


def test_a_transfer_sticks_against_preemption_until_resign() -> None:
    hold_ticks = 300
    net = Network(11, 5, Mode.QUORUM, runtime_timing(hold_ticks))
    assert net.run_until_agreed(20 * ET) is not None and net.agreed_leader()[0] == 5
    net.transfer(5, 2)
    net.run_until(lambda: (net.agreed_leader() or (0,))[0] == 2, 10 * ET)
    net.run(3 * hold_ticks)  # node 5 acks every heartbeat for three hold-downs: it would preempt
    assert net.agreed_leader()[0] == 2
    net.resign(2)  # the operator ends the transfer's hold: Bully order again
    net.run_until(lambda: (net.agreed_leader() or (0,))[0] == 5, 10 * ET)
    assert net.violations() == []


def test_a_preemption_handover_is_not_a_transfer() -> None:
    """4 leads while 5 is down; 5 returns and preempts after the hold-down; 5 then keeps no hold."""
    hold_ticks = 100
    net = Network(12, 5, Mode.QUORUM, runtime_timing(hold_ticks))
    assert net.run_until_agreed(20 * ET) is not None
    net.crash(5)
    net.run_until(lambda: (net.agreed_leader() or (0,))[0] == 4, 20 * ET)
    net.restart(5)
    net.run_until(lambda: (net.agreed_leader() or (0,))[0] == 5, 3 * hold_ticks + 20 * ET)
    assert net.elector(5).keep_after_transfer is False


@pytest.mark.parametrize("mode", ["quorum", "raft"])
def test_a_slow_link_does_not_make_the_answer_flicker(mode) -> None:
    """A round trip longer than a heartbeat interval leaves a short announced lease (it counts only
    rounds already acknowledged); the grace of one interval keeps followers naming the leader."""
    net = Network(5, 5, mode, runtime_timing(0))
    assert net.run_until_agreed(20 * ET) is not None
    leader = net.agreed_leader()[0]
    net.set_delay(12, 12)
    net.run(ET)
    since = net.now
    net.run(4 * ET)
    spans = [a for a in net.all_answers() if a.node != leader and a.end >= since]
    assert len(spans) == len(net.members) - 1 and all(a.leader == leader for a in spans), spans
    assert net.answer_violations() == []
