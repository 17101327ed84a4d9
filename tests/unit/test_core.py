"""Scenario tests of the election core, joined through the deterministic simulator.

Time is in ticks and every run is seeded, so asserting on tick counts and message counts is exact.
"""

from __future__ import annotations

from collections import Counter

import pytest

from node.core import (
    BecameLeader,
    Config,
    ElectionStarted,
    Message,
    Mode,
    MsgType,
    Output,
    PlantedBug,
    Role,
    SteppedDown,
    Timing,
)
from node.sim.network import Network

T = Timing()
SETTLE_TICKS = 10 * T.election_timeout_ticks
ELECTION_TYPES = (MsgType.ELECTION, MsgType.ALIVE, MsgType.COORDINATOR, MsgType.COORDINATOR_ACK)
# Tests of the Bully ordering (the highest id wins, Election/Alive); raft has its own (test_raft.py).
BULLY_MODES = [Mode.CLASSIC, Mode.QUORUM]


def settled(n: int, mode: Mode | str, seed: int = 0, timing: Timing = T) -> Network:
    net = Network(seed, n, mode, timing)
    assert net.run_until_agreed(SETTLE_TICKS) is not None, "no leader at cold start"
    return net


def only_reply(out: Output) -> Message:
    assert len(out.messages) == 1, out.messages
    return out.messages[0]


def coordinator(src: int, dst: int, epoch: int) -> Message:
    return Message(MsgType.COORDINATOR, src, dst, epoch)


# ---- electing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", BULLY_MODES)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_cold_start_elects_the_highest_id(mode: Mode, n: int) -> None:
    net = settled(n, mode)
    assert net.agreed_leader() == (n, 1)
    assert net.unique_leader_per_epoch() and net.no_overlapping_leadership()


@pytest.mark.parametrize("mode", BULLY_MODES)
def test_leadership_is_stable_without_faults(mode: Mode) -> None:
    net = settled(5, mode)
    net.run(20 * T.election_timeout_ticks)
    assert net.agreed_leader() == (5, 1)
    assert len([e for e in net.events if isinstance(e.event, BecameLeader)]) == 1


@pytest.mark.parametrize("mode", list(Mode))
def test_single_node_cluster_keeps_its_leadership(mode: Mode) -> None:
    """A majority of one is itself: the lease renews without any peer."""
    net = settled(1, mode)
    net.run(20 * T.election_timeout_ticks)
    assert net.agreed_leader() == (1, 1)
    assert not net.events_of(1, SteppedDown)


@pytest.mark.parametrize("mode", BULLY_MODES)
def test_kill_leader_next_highest_wins_with_higher_epoch(mode: Mode) -> None:
    net = settled(5, mode)
    _, old_epoch = net.agreed_leader()
    net.crash(5)
    assert net.run_until_agreed(SETTLE_TICKS) is not None
    leader, epoch = net.agreed_leader()
    assert leader == 4 and epoch > old_epoch
    assert net.unique_leader_per_epoch() and net.no_overlapping_leadership()


def test_isolated_quorum_leader_steps_down_within_its_lease() -> None:
    net = settled(5, Mode.QUORUM)
    _, old_epoch = net.agreed_leader()
    isolated_at = net.now
    net.isolate(5)
    net.run_until(lambda: net.agreed_among([1, 2, 3, 4]) is not None, SETTLE_TICKS)

    ((down_tick, down),) = net.events_of(5, SteppedDown, isolated_at)
    assert down.reason == "lease_expired" and down.epoch == old_epoch
    assert down_tick <= isolated_at + T.leader_lease_ticks
    ((won_tick, won),) = net.events_of(4, BecameLeader, isolated_at)
    assert won.epoch > old_epoch and won_tick >= down.lease_end_tick
    assert net.view(5).role == Role.FOLLOWER
    assert net.unique_leader_per_epoch() and net.no_overlapping_leadership(), net.violations()


def test_classic_isolated_leader_keeps_leading_split_brain() -> None:
    """The textbook algorithm, shown failing: the old leader never doubts itself."""
    net = settled(5, Mode.CLASSIC)
    net.partition([[4, 5], [1, 2, 3]])
    net.run_until(lambda: net.agreed_among([1, 2, 3]) is not None, SETTLE_TICKS)
    assert sorted(net.leaders()) == [3, 5]
    assert not net.no_overlapping_leadership()


def test_leader_steps_down_when_a_follower_promised_its_epoch_to_another() -> None:
    """Found by the simulator (e.g. seed 43): 4 and 5 both proposed epoch 1; 5 won it. Node 4 keeps
    its durable promise (1, 4), so it must refuse 5 in epoch 1 forever, while 5 keeps answering 4's
    Elections with Alive. Without a new epoch the cluster never agrees after the heal."""
    net = Network(0, 5, Mode.QUORUM)
    net.cut(4, 5)
    net.cut(5, 4)
    net.run(80)
    assert net.persisted[4].names == (1, 4) and net.persisted[3].names == (1, 5)
    net.heal()
    assert net.run_until_agreed(SETTLE_TICKS) is not None
    assert net.agreed_leader()[1] > 1
    assert net.unique_leader_per_epoch() and net.no_overlapping_leadership()


def test_candidate_paused_past_its_lease_does_not_announce_a_dead_leadership() -> None:
    """Found by the simulator (e.g. seed 1050): 5 proposed, was paused, and on resume counted the
    held acks, announcing leadership of an epoch whose lease had run out long ago, while 4 led a
    newer epoch. A proposal that outlived its wait must be dropped before any late ack counts."""
    net = Network(0, 5, Mode.QUORUM)
    net.run_until(lambda: net.view(5).role == Role.CANDIDATE, SETTLE_TICKS)
    proposed_epoch = net.persisted[5].epoch
    net.pause(5, 2 * T.election_timeout_ticks)
    net.run_until(lambda: net.agreed_among([1, 2, 3, 4]) is not None, SETTLE_TICKS)
    net.run(2 * T.election_timeout_ticks)  # 5 resumes, its held acks are delivered
    assert net.running(5)
    assert proposed_epoch not in [won.epoch for _, won in net.events_of(5, BecameLeader)]
    assert net.unique_leader_per_epoch() and net.no_overlapping_leadership(), net.violations()


@pytest.mark.parametrize("delay_ticks, elected", [(5, True), (6, False)])
def test_no_leadership_is_announced_with_a_lease_already_over(delay_ticks: int, elected: bool) -> None:
    """Timing.from_ms(100, 150, 10) allows coordinator_wait (20) > leader_lease (11): acks that take
    a 12-tick round trip arrive inside the wait but after the lease they would grant has ended."""
    timing = Timing.from_ms(heartbeat_interval_ms=100, election_timeout_ms=150, tick_ms=10)
    assert timing.coordinator_wait_ticks > timing.leader_lease_ticks
    net = Network(0, 3, Mode.QUORUM, timing)
    net.set_delay(delay_ticks, delay_ticks)
    net.run(10 * timing.election_timeout_ticks)
    assert bool(net.events_of(3, BecameLeader)) == elected
    assert net.unique_leader_per_epoch() and net.no_overlapping_leadership()


# ---- promises -----------------------------------------------------------------------------------


def test_follower_with_a_live_lease_refuses_a_coordinator() -> None:
    net = settled(5, Mode.QUORUM)
    _, epoch = net.agreed_leader()
    ack = only_reply(net.inject(coordinator(4, 1, epoch + 1)))
    assert ack.type == MsgType.COORDINATOR_ACK and ack.dst == 4
    assert not ack.granted and ack.promised_epoch == epoch
    assert net.view(1).leader_id == 5


def test_a_node_never_acknowledges_two_leaders_for_one_epoch() -> None:
    net = Network(0, 5, Mode.QUORUM)
    assert only_reply(net.inject(coordinator(3, 1, 7))).granted
    assert net.persisted[1].names == (7, 3)
    assert not only_reply(net.inject(coordinator(4, 1, 7))).granted
    heartbeat = Message(MsgType.HEARTBEAT, 4, 1, 7, round=1)
    assert not only_reply(net.inject(heartbeat)).granted
    net.run(T.promise_hold_ticks)  # the live-lease rule no longer blocks; the epoch rule does
    assert not only_reply(net.inject(coordinator(4, 1, 7))).granted
    assert not only_reply(net.inject(coordinator(4, 1, 6))).granted
    assert only_reply(net.inject(coordinator(4, 1, 8))).granted
    assert net.persisted[1].names == (8, 4)


def test_persist_comes_with_the_grant_that_reveals_it() -> None:
    net = Network(0, 3, Mode.QUORUM)
    out = net.inject(coordinator(3, 1, 2))
    assert out.persist.names == (2, 3) and only_reply(out).granted
    again = net.inject(Message(MsgType.HEARTBEAT, 3, 1, 2, round=1))
    assert again.persist is None and only_reply(again).granted  # nothing new to make durable


def test_restart_keeps_the_promise_and_honours_the_boot_promise_period() -> None:
    net = Network(0, 5, Mode.QUORUM)
    assert only_reply(net.inject(coordinator(3, 1, 7))).granted
    net.tick()
    net.crash(1)
    net.restart(1)
    assert net.elector(1).promise.names == (7, 3)
    below = only_reply(net.inject(coordinator(4, 1, 6)))
    assert not below.granted and below.promised_epoch == 7
    # It may have acknowledged 3 just before the crash: refuse others for a full promise period.
    assert not only_reply(net.inject(coordinator(4, 1, 8))).granted
    net.run(T.promise_hold_ticks)
    assert only_reply(net.inject(coordinator(4, 1, 8))).granted


def quick_restart_inside_the_promise_window(planted_bugs: frozenset[PlantedBug] = frozenset()) -> Network:
    """The reviewed split brain (issue: split brain after a quick restart), step by step.

    Node 2 leads (3 was down during the election), 2->1 is cut one way so 2's lease rests on 3's
    acks, and 3 crashes and restarts right after acknowledging a round, just before node 1 times
    out and asks it to elect.
    """
    net = Network(0, 3, Mode.QUORUM, planted_bugs=planted_bugs)
    net.crash(3)
    assert net.run_until_agreed(SETTLE_TICKS) is not None and net.agreed_leader()[0] == 2
    net.restart(3)
    net.run(2 * T.election_timeout_ticks)
    assert net.agreed_leader()[0] == 2  # no hold-down preemption in the core's default timing
    net.cut(2, 1)
    net.run(2)  # a heartbeat already on the wire still arrives
    deadline = net.elector(1).election_deadline  # node 1 sends Election at this tick
    while net.now < deadline:
        net.tick()
        just_acked = net.elector(3).promise_until == net.now + T.promise_hold_ticks
        if just_acked and 0 < deadline + 1 - net.now < T.heartbeat_interval_ticks:
            net.crash(3)
            net.restart(3)
            break
    else:
        raise AssertionError("the schedule did not line up")
    net.run(T.election_timeout_ticks)
    return net


def test_a_quick_restart_inside_a_promise_window_does_not_vote_for_itself() -> None:
    net = quick_restart_inside_the_promise_window()
    assert net.no_overlapping_leadership() and net.unique_leader_per_epoch(), net.violations()
    assert not net.events_of(3, BecameLeader, since_tick=net.now - T.election_timeout_ticks)  # it waited
    net.heal()
    assert net.run_until_agreed(SETTLE_TICKS) is not None
    assert net.no_overlapping_leadership() and net.unique_leader_per_epoch(), net.violations()


def test_boot_self_vote_bug_splits_the_brain() -> None:
    """The same schedule with the old rule planted back in: two leaders at once."""
    net = quick_restart_inside_the_promise_window(frozenset({PlantedBug.BOOT_SELF_VOTE}))
    assert any(v.startswith("P3") for v in net.violations()), net.violations()


def test_forget_promise_bug_acknowledges_below_the_old_promise() -> None:
    """The planted defect the property tests must catch, shown directly."""
    net = Network(0, 5, Mode.QUORUM, planted_bugs=frozenset({PlantedBug.FORGET_PROMISE}))
    assert only_reply(net.inject(coordinator(3, 1, 7))).granted
    net.crash(1)
    net.restart(1)
    net.run(T.promise_hold_ticks)  # the bug keeps the boot promise period, loses the epoch
    assert only_reply(net.inject(coordinator(4, 1, 6))).granted


# ---- handing over ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", BULLY_MODES)
def test_resign_hands_over_quickly(mode: Mode) -> None:
    net = settled(5, mode)
    resigned_at = net.now
    out = net.resign(5)
    assert [type(e) for e in out.events] == [SteppedDown] and out.events[0].reason == "resigned"
    assert {m.dst for m in out.messages if m.resigning} == {1, 2, 3, 4}
    net.run_until(lambda: bool(net.events_of(4, BecameLeader, resigned_at)), T.election_timeout_ticks)
    handover_ticks = net.events_of(4, BecameLeader, resigned_at)[0][0] - resigned_at
    # A crash costs an election timeout; a resignation only the stagger, jitter and one alive wait.
    assert handover_ticks < T.election_timeout_ticks // 2, handover_ticks
    if mode == Mode.QUORUM:
        assert net.run_until_agreed(T.election_timeout_ticks) is not None
        assert net.agreed_leader()[0] == 4
    assert net.unique_leader_per_epoch() and net.no_overlapping_leadership()


@pytest.mark.parametrize("mode", BULLY_MODES)
def test_send_failed_skips_the_alive_wait(mode: Mode) -> None:
    """Connection refused from a crashed higher node means nobody will answer Alive: go at once.
    A paused (silent) higher node gives no such feedback, so the candidate waits alive_wait_ticks."""

    def election_to_victory_ticks(fault: str) -> int:
        net = settled(5, mode)
        since = net.now
        if fault == "crash":
            net.crash(5)
        else:
            net.pause(5, 10 * T.election_timeout_ticks)
        net.run_until(lambda: bool(net.events_of(4, BecameLeader, since)), SETTLE_TICKS)
        started = net.events_of(4, ElectionStarted, since)[-1][0]
        return net.events_of(4, BecameLeader, since)[0][0] - started

    assert election_to_victory_ticks("crash") <= 3
    assert election_to_victory_ticks("pause") >= T.alive_wait_ticks


# ---- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"heartbeat_interval_ticks": 0}, "heartbeat_interval_ticks must be > 0"),
        ({"alive_wait_ticks": -1}, "alive_wait_ticks must be > 0"),
        ({"coordinator_wait_ticks": 0}, "coordinator_wait_ticks must be > 0"),
        ({"jitter_ticks": -1}, ">= 0"),
        ({"rank_stagger_ticks": -1}, ">= 0"),
        ({"leader_lease_ticks": 40, "follower_promise_ticks": 40}, "leader_lease_ticks < follower_promise_ticks"),
        ({"follower_promise_ticks": 51}, "follower_promise_ticks <= election_timeout_ticks"),
        ({"heartbeat_interval_ticks": 35}, "heartbeat_interval_ticks must be shorter"),
    ],
)
def test_timing_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Timing(**kwargs)


def test_timing_from_ms() -> None:
    t = Timing.from_ms(heartbeat_interval_ms=100, election_timeout_ms=1000, tick_ms=10)
    assert (t.heartbeat_interval_ticks, t.election_timeout_ticks) == (10, 100)
    assert t.heartbeat_interval_ticks < t.leader_lease_ticks < t.follower_promise_ticks <= t.election_timeout_ticks
    with pytest.raises(ValueError, match="tick_ms"):
        Timing.from_ms(100, 1000, 0)
    with pytest.raises(ValueError):
        Timing.from_ms(heartbeat_interval_ms=100, election_timeout_ms=100, tick_ms=10)


@pytest.mark.parametrize(
    "node_id, members, match",
    [
        (0, (0, 1), "positive integer"),
        (1, (1, 1, 2), "duplicate"),
        (3, (1, 2), "not in membership"),
        (1, (1, -2), "must be positive"),
    ],
)
def test_config_validation(node_id: int, members: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Config(node_id, members)


def test_config_peers_and_majority() -> None:
    config = Config(2, (1, 2, 3, 4))
    assert config.peers == (1, 3, 4) and config.majority == 3


# ---- message counts: the known Bully figures --------------------------------------------------

# Stagger wider than jitter: the election order is exactly the id order.
ORDERED = Timing(rank_stagger_ticks=6, jitter_ticks=5)


def failover_messages(n: int, mode: Mode, lowest_first: bool = False) -> Counter[MsgType]:
    """Crash the leader n; count messages until the survivors agree. With lowest_first, nodes
    2..n-1 are paused until node 1 has started its election (it detects the crash first)."""
    net = settled(n, mode, timing=ORDERED)
    before = net.sent.copy()
    net.crash(n)
    middle = list(range(2, n))
    if lowest_first:
        for m in middle:
            net.pause(m, SETTLE_TICKS)
        net.run_until(lambda: net.view(1).role == Role.CANDIDATE, SETTLE_TICKS)
        for m in middle:
            net.resume(m)
    assert net.run_until_agreed(SETTLE_TICKS) is not None
    assert net.agreed_leader()[0] == n - 1
    return net.sent - before


@pytest.mark.parametrize("n", range(3, 10))
def test_classic_best_case_sends_n_minus_2_coordinators(n: int) -> None:
    sent = failover_messages(n, Mode.CLASSIC)
    assert sent[MsgType.COORDINATOR] == n - 2
    assert sent[MsgType.ELECTION] == 1 and sent[MsgType.ALIVE] == 0


def test_classic_worst_case_is_quadratic() -> None:
    counts = {}
    for n in range(5, 10):
        sent = failover_messages(n, Mode.CLASSIC, lowest_first=True)
        counts[n] = sent[MsgType.ELECTION] + sent[MsgType.ALIVE]
        assert counts[n] >= (n - 1) * (n - 2) // 2, (n, counts[n])
    print("\nclassic, lowest id detects first: ELECTION+ALIVE per failover", counts)
    # Quadratic, not linear: the count per node keeps growing with n.
    assert counts[9] / 9 > 1.5 * counts[5] / 5


def test_quorum_messages_per_election_are_linear() -> None:
    counts = {}
    for n in range(3, 26):
        sent = failover_messages(n, Mode.QUORUM)
        counts[n] = sum(sent[t] for t in ELECTION_TYPES)
        assert counts[n] <= 3 * n, (n, counts[n])
    print("\nquorum, highest survivor detects first: election messages per failover", counts)
