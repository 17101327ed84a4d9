"""Property tests over many seeded fault schedules (the simulator runs the real core).

Every failure names its seed and the command that replays it, e.g.
    python -m node.sim --seed S --mode quorum --nodes 5 --rounds 20
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core import Message, Mode, MsgType, PlantedBug, Promise, Role, Timing
from node.sim import Network, random_schedule, replay_command, run_schedule

ROUNDS = 20
T = Timing()
seeds = st.integers(0, 2**32 - 1)


def search(mode: Mode, n: int, planted_bugs: frozenset[PlantedBug], max_seeds: int) -> tuple[int, list[str]] | None:
    """The first seed in 0..max_seeds-1 whose schedule violates P1 or P3, with the violations."""
    for seed in range(max_seeds):
        violations = run_schedule(random_schedule(seed, n, mode, ROUNDS), planted_bugs=planted_bugs).net.violations()
        if violations:
            return seed, violations
    return None


# ---- quorum mode: safety always, agreement after the heal -------------------------------------------


@settings(max_examples=800, deadline=None, derandomize=True, database=None)
@given(seed=seeds, n=st.sampled_from([3, 4, 5, 7]))
def test_quorum_is_safe_and_agrees_after_heal(seed: int, n: int) -> None:
    schedule = random_schedule(seed, n, Mode.QUORUM, ROUNDS)
    result = run_schedule(schedule)
    net = result.net
    replay = f"seed {seed}; replay: {replay_command(seed, Mode.QUORUM, n, ROUNDS)}"
    assert net.unique_leader_per_epoch(), f"P1 violated, {replay}: {net.violations()}"
    assert net.no_overlapping_leadership(), f"P3 violated, {replay}: {net.violations()}"
    assert result.agreed_after_ticks is not None, f"P4: no leader {schedule.heal_ticks} ticks after heal, {replay}"
    # ...and, once a lease held up by the faults has had time to lapse and be replaced, it stays.
    net.run(2 * T.election_timeout_ticks)
    agreed = net.agreed_leader()
    net.run(5 * T.election_timeout_ticks)
    assert agreed is not None and net.agreed_leader() == agreed, f"leadership churned after the heal, {replay}"
    assert not net.violations(), f"{replay}: {net.violations()}"


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(seed=seeds, mode=st.sampled_from(list(Mode)))
def test_a_seed_replays_exactly(seed: int, mode: Mode) -> None:
    runs = [run_schedule(random_schedule(seed, 5, mode, ROUNDS)).net for _ in range(2)]
    a, b = runs
    assert (a.views, a.events, a.faults, a.sent, a.dropped) == (b.views, b.events, b.faults, b.sent, b.dropped)


# ---- the checks can fail: classic Bully and planted bugs ----------------------------------------------


def test_classic_split_brain_is_found() -> None:
    found = search(Mode.CLASSIC, 5, frozenset(), max_seeds=50)
    assert found is not None, "no classic split-brain within 50 seeds"
    seed, violations = found
    overlaps = [v for v in violations if v.startswith("P3")]  # two leaders at the same time
    assert overlaps, violations
    print(f"\nclassic split-brain at seed {seed}: {overlaps[0]}\nreplay: {replay_command(seed, Mode.CLASSIC, 5, ROUNDS)}")


@pytest.mark.parametrize("bug", [PlantedBug.DOUBLE_ACK, PlantedBug.IGNORE_LEASE, PlantedBug.FORGET_PROMISE])
def test_planted_bug_is_caught(bug: PlantedBug) -> None:
    found = search(Mode.QUORUM, 3, frozenset({bug}), max_seeds=300)
    assert found is not None, f"{bug.value}: no violation within 300 seeds; the checks may be blind"
    seed, violations = found
    print(f"\n{bug.value} caught at seed {seed}: {violations[0]}\nreplay: {replay_command(seed, Mode.QUORUM, 3, ROUNDS, [bug])}")


# ---- the simulator's own rules --------------------------------------------------------------------


def test_crashed_destination_refuses_and_a_cut_link_blackholes() -> None:
    net = Network(0, 3, Mode.QUORUM)
    net.crash(3)
    net.cut(1, 2)
    net.inject(Message(MsgType.COORDINATOR, 3, 1, 5))  # 1's ack goes to crashed 3
    assert (net.refused, net.dropped) == (1, 0)
    net.inject(Message(MsgType.COORDINATOR, 2, 1, 6))  # 1's refusal goes into the cut 1->2
    assert (net.refused, net.dropped) == (1, 1)
    net.run(2)
    assert net.delivered[MsgType.COORDINATOR_ACK] == 0


def test_paused_node_receives_its_messages_on_resume() -> None:
    net = Network(0, 3, Mode.QUORUM)
    net.pause(1, 30)
    net.inject(Message(MsgType.COORDINATOR, 1, 2, 5))  # 2 answers 1, which is asleep
    net.run(29)
    assert not net.running(1) and net.delivered[MsgType.COORDINATOR_ACK] == 0
    net.run(1)
    assert net.running(1) and net.delivered[MsgType.COORDINATOR_ACK] == 1


def test_in_flight_messages_never_reach_a_restarted_node() -> None:
    net = Network(0, 3, Mode.QUORUM)
    net.set_delay(5, 5)
    net.inject(Message(MsgType.COORDINATOR, 1, 2, 5))  # the ack to 1 is on the wire for 5 ticks
    net.crash(1)
    net.restart(1)
    net.run(6)
    assert net.delivered[MsgType.COORDINATOR_ACK] == 0


def test_restart_rebuilds_from_the_persisted_promise_only() -> None:
    net = Network(0, 5, Mode.QUORUM)
    assert net.run_until_agreed(10 * T.election_timeout_ticks) is not None
    net.crash(5)
    assert net.view(5) is None and net.no_overlapping_leadership()
    net.restart(5)
    assert net.elector(5).promise == net.persisted[5] == Promise(1, 5)
    assert net.view(5).role == Role.FOLLOWER and net.view(5).leader_id is None


def test_a_leader_crashed_while_paused_led_until_its_lease_ran_out() -> None:
    net = Network(0, 5, Mode.QUORUM)
    assert net.run_until_agreed(10 * T.election_timeout_ticks) is not None
    paused_at = net.now
    net.pause(5, 4 * T.election_timeout_ticks)
    net.run(2 * T.election_timeout_ticks)
    net.crash(5)
    (interval,) = [i for i in net.intervals if i.node == 5]
    assert paused_at < interval.end_tick <= paused_at + T.leader_lease_ticks
    assert net.no_overlapping_leadership(), net.violations()
