"""The Ring election (node/core/ring.py) through the deterministic simulator.

Textbook figures: with one initiator an election is one lap of the token and one lap of the
coordinator message, 2n passes; concurrent initiators add the passes of the tokens that Chang-Roberts
suppression swallows. Like classic Bully it needs no consent, so a partition gives each side a leader.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from node.core import BecameLeader, ElectionStarted, Message, Mode, MsgType, Promise, Reason, Role, SteppedDown, Timing
from node.core.ring import RingElector
from node.core.types import Config
from node.sim.network import Network

RING = Mode("ring")
T = Timing()
SETTLE_TICKS = 10 * T.election_timeout_ticks
PASSES = (MsgType.RING_ELECTION, MsgType.RING_COORDINATOR)

# Stagger wider than a lap of 15 nodes: the highest survivor's token is back before anyone else
# times out, so there is exactly one initiator.
SOLO = Timing(rank_stagger_ticks=20, jitter_ticks=5)
# Every survivor times out in the same tick: n-1 concurrent initiators.
ALL_AT_ONCE = Timing(rank_stagger_ticks=0, jitter_ticks=0)


def settled(n: int, seed: int = 0, timing: Timing = T) -> Network:
    net = Network(seed, n, RING, timing)
    assert net.run_until_agreed(SETTLE_TICKS) is not None, "no leader at cold start"
    return net


def all_events(net: Network, kind: type, since_tick: int = 0) -> list:
    return [e for e in net.events if isinstance(e.event, kind) and e.tick >= since_tick]


# ---- electing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_cold_start_elects_the_highest_id(n: int) -> None:
    net = settled(n)
    assert net.agreed_leader() == (n, 1)
    net.run(20 * T.election_timeout_ticks)  # and keeps it: no lease to lose, heartbeats keep followers
    assert net.agreed_leader() == (n, 1)
    assert len(all_events(net, BecameLeader)) == 1
    assert not net.violations()


def test_the_leader_persists_its_epoch_before_it_announces_it() -> None:
    elector = RingElector(Config(1, (1,)), Promise(), random.Random(0), 0)
    out = elector.tick(10 * T.election_timeout_ticks)  # alone: its token comes straight back
    assert out.persist == Promise(1, 1)
    assert [type(e) for e in out.events] == [ElectionStarted, BecameLeader]


def test_kill_leader_next_highest_wins_with_a_higher_epoch() -> None:
    net = settled(5)
    net.crash(5)
    assert net.run_until_agreed(SETTLE_TICKS) is not None
    assert net.agreed_leader() == (4, 2)
    net.crash(4)
    assert net.run_until_agreed(SETTLE_TICKS) is not None
    assert net.agreed_leader() == (3, 3)
    assert not net.violations()


def test_a_restarted_leader_never_reuses_its_epoch_and_does_not_bully() -> None:
    net = settled(3)
    net.crash(3)
    assert net.run_until_agreed(SETTLE_TICKS) is not None and net.agreed_leader() == (2, 2)
    net.restart(3)
    assert net.persisted[3] == Promise(1, 3)
    net.run(5 * T.election_timeout_ticks)
    assert net.agreed_leader() == (2, 2)  # the ring has no preemption: 3 just follows
    net.crash(2)
    assert net.run_until_agreed(SETTLE_TICKS) is not None
    assert net.agreed_leader() == (3, 3) and net.persisted[3] == Promise(3, 3)


# ---- skipping dead successors ------------------------------------------------------------------------


def election_ticks(net: Network, node: int, since: int) -> int:
    net.run_until(lambda: bool(net.events_of(node, BecameLeader, since)), SETTLE_TICKS)
    started = net.events_of(node, ElectionStarted, since)[-1][0]
    return net.events_of(node, BecameLeader, since)[0][0] - started


def test_a_crashed_successor_is_skipped_at_once() -> None:
    """Connection refused: the pass goes to the next member one tick later, no ack wait."""
    net = settled(5, timing=SOLO)
    since = net.now
    net.crash(5)  # 4's successor
    net.crash(2)  # and one more on the way round
    ticks = election_ticks(net, 4, since)
    # 4 -> 5 (refused) -> 1 -> 2 (refused) -> 3 -> 4: one tick per pass, refusals reported a tick later.
    assert ticks <= 7, ticks
    assert net.run_until_agreed(SETTLE_TICKS) is not None and net.agreed_leader() == (4, 2)


def test_a_silent_successor_is_skipped_after_the_ack_wait() -> None:
    net = settled(5, timing=SOLO)
    since = net.now
    net.crash(5)
    net.pause(2, 10 * T.election_timeout_ticks)  # SIGSTOP: no refusal, no ack
    ticks = election_ticks(net, 4, since)
    assert T.alive_wait_ticks <= ticks <= T.alive_wait_ticks + 6, ticks
    net.run_until(lambda: net.agreed_among([1, 3, 4]) == (4, 2), SETTLE_TICKS)
    net.resume(2)
    assert net.run_until_agreed(SETTLE_TICKS) is not None and net.agreed_leader() == (4, 2)


def test_alone_a_node_elects_itself() -> None:
    net = settled(4)
    for m in (4, 3, 2):
        net.crash(m)
    assert net.run_until_agreed(SETTLE_TICKS) is not None and net.agreed_leader() == (1, 2)


def test_an_initiator_that_dies_mid_lap_does_not_leave_a_token_circling() -> None:
    """The token skips its crashed initiator; the first node that sees it twice drops it, and the
    election timeouts start a new election."""
    net = settled(5, timing=SOLO)
    since = net.now
    net.crash(5)
    net.run_until(lambda: net.view(4).role == Role.CANDIDATE, SETTLE_TICKS)
    net.tick()
    net.crash(4)  # its token is on the way to 1
    assert net.run_until_agreed(SETTLE_TICKS) is not None and net.agreed_leader()[0] == 3
    before = net.sent[MsgType.RING_ELECTION]
    net.run(5 * T.election_timeout_ticks)
    assert net.sent[MsgType.RING_ELECTION] == before  # nothing left circling
    assert len(all_events(net, BecameLeader, since)) == 1


# ---- message counts --------------------------------------------------------------------------------------


def failover(n: int, timing: Timing, seed: int = 0) -> tuple[Counter[MsgType], int]:
    """Crash the leader n; count ring messages until every lap is over, and the initiators."""
    net = settled(n, seed, timing)
    net.run(2 * T.election_timeout_ticks)
    before, since = net.sent.copy(), net.now
    net.crash(n)
    assert net.run_until_agreed(SETTLE_TICKS) is not None and net.agreed_leader()[0] == n - 1
    net.run(2 * T.election_timeout_ticks)  # let the coordinator lap finish
    return net.sent - before, len(all_events(net, ElectionStarted, since))


@pytest.mark.parametrize("n", [3, 5, 9, 15])
def test_one_initiator_costs_the_textbook_2n_passes(n: int) -> None:
    sent, initiators = failover(n, SOLO)
    assert initiators == 1
    # n-1 live passes and one refused try at the dead leader, for the token and for the result.
    assert sent[MsgType.RING_ELECTION] == n and sent[MsgType.RING_COORDINATOR] == n
    assert sent[MsgType.RING_ACK] == 2 * (n - 1)


def test_messages_per_election_vs_n() -> None:
    rows = {}
    for n in (3, 5, 9, 15):
        row = {}
        for name, timing in (("solo", SOLO), ("default", T), ("all-at-once", ALL_AT_ONCE)):
            sent, initiators = failover(n, timing)
            passes = sum(sent[t] for t in PASSES)
            row[name] = (initiators, passes, sent[MsgType.RING_ACK])
            assert 2 * n <= passes, (n, name, passes)
            # Suppression keeps even n-1 concurrent initiators linear here: the token moves to the next
            # higher id, so a lower initiator's token dies at the first initiator above it.
            assert passes <= 4 * n, (n, name, passes)
        rows[n] = row
    print("\nring: (initiators, token+coordinator passes, acks) per election after the leader's crash")
    for n, row in rows.items():
        print(f"  n={n:2d} (2n={2 * n:2d}): " + "  ".join(f"{k} {v}" for k, v in row.items()))
    assert rows[15]["all-at-once"][0] == 14 and rows[15]["all-at-once"][1] > rows[15]["solo"][1]


def test_suppression_leaves_one_result_lap_for_many_initiators() -> None:
    sent, initiators = failover(9, ALL_AT_ONCE)
    assert initiators == 8
    assert sent[MsgType.RING_COORDINATOR] == 9  # only the highest initiator's token came back


# ---- no quorum: split brain, and the heal -----------------------------------------------------------------


def test_partition_elects_one_leader_per_side() -> None:
    net = settled(5)
    net.partition([[4, 5], [1, 2, 3]])
    net.run_until(lambda: net.agreed_among([1, 2, 3]) is not None, SETTLE_TICKS)
    assert net.agreed_among([1, 2, 3]) == (3, 2)
    assert sorted(net.leaders()) == [3, 5]  # the old leader never doubts itself: no lease
    assert not net.no_overlapping_leadership()
    assert any(v.startswith("P3") for v in net.violations())


def test_after_the_heal_the_newer_epoch_wins() -> None:
    net = settled(5)
    net.partition([[4, 5], [1, 2, 3]])
    net.run_until(lambda: net.agreed_among([1, 2, 3]) is not None, SETTLE_TICKS)
    healed_at = net.now
    net.heal()
    assert net.run_until_agreed(SETTLE_TICKS) is not None
    assert net.agreed_leader() == (3, 2)
    ((_, down),) = net.events_of(5, SteppedDown, healed_at)
    assert down.reason == Reason.HIGHER_EPOCH


def test_split_sides_with_equal_epochs_reunite_under_the_higher_id() -> None:
    """Both sides elect epoch 2; after the heal the leaders' (epoch, id) order decides."""
    net = settled(4)
    net.partition([[1, 2], [3, 4]])
    net.crash(4)
    net.run_until(lambda: net.agreed_among([1, 2]) == (2, 2) and net.agreed_among([3]) == (3, 2), SETTLE_TICKS)
    assert any(v.startswith("P1") for v in net.violations())  # epoch 2 twice: nothing stops it
    net.heal()
    net.restart(4)
    assert net.run_until_agreed(SETTLE_TICKS) is not None
    assert net.agreed_leader() == (3, 2)


# ---- resigning ------------------------------------------------------------------------------------------------


def test_resign_ignores_the_successor_hint_and_abstains() -> None:
    net = settled(5)
    resigned_at = net.now
    out = net.resign(5, successor=2)
    assert [type(e) for e in out.events] == [SteppedDown] and out.events[0].reason == Reason.RESIGNED
    assert {m.dst for m in out.messages if m.resigning} == {1, 2, 3, 4}
    assert net.run_until_agreed(T.election_timeout_ticks) is not None
    assert net.agreed_leader() == (4, 2)  # the highest id that did not resign, not the hint
    assert not net.events_of(5, BecameLeader, resigned_at)


def test_a_stale_heartbeat_is_refused_with_the_newer_epoch() -> None:
    net = settled(3)
    net.crash(3)
    assert net.run_until_agreed(SETTLE_TICKS) is not None and net.agreed_leader() == (2, 2)
    out = net.inject(Message(MsgType.HEARTBEAT, 3, 1, 1, round=9))  # from the old leader's epoch
    (ack,) = out.messages
    assert ack.type == MsgType.HEARTBEAT_ACK and not ack.granted and ack.promised_epoch == 2
    assert net.view(1).leader_id == 2
