"""Property tests over many seeded swarm schedules (the simulator runs the real core), and the
explorer's own power: every planted bug must be found, and shrunk to a short schedule.

Every failure names its seed; `bullyproof sim run --seed S [--nodes N]` replays the schedule and
`bullyproof sim replay FILE` replays a printed (minimal) script.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core import CLOCK_DRIFT_BOUND, Message, Mode, MsgType, PlantedBug, Role, Timing, mode_info
from node.history import Release, double_promises
from node.sim.explore import explore
from node.sim.network import Network
from node.sim.schedule import Schedule, run_schedule
from node.sim.swarm import BEYOND_DRIFT, SwarmSettings, runtime_timing, swarm_schedule

T = Timing()
SCHEDULES = Path(__file__).parent / "schedules"
seeds = st.integers(0, 2**32 - 1)


# ---- quorum mode: safety always, agreement after the heal -------------------------------------------


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(seed=seeds)
def test_quorum_is_safe_and_agrees_after_heal(seed: int) -> None:
    """Random sizes 1..7, every fault kind, skew within the bound: P1, P2, P3, P3g and P4 hold."""
    outcome = run_schedule(swarm_schedule(seed))
    replay = f"seed {seed}; replay: bullyproof sim run --seed {seed}\n{outcome.schedule.to_script()}"
    assert not outcome.violations, f"{replay}\n{outcome.violations}"


# Every other mode whose acknowledgements are promises gets the same property, with fewer examples
# (quorum keeps its 400 above; the explorer is the long search).
OTHER_PROMISING_MODES = [m for m in Mode if mode_info(m).promises and m != Mode.QUORUM]


@pytest.mark.parametrize("mode", OTHER_PROMISING_MODES, ids=lambda m: m.value)
@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(seed=seeds)
def test_promising_modes_are_safe_and_agree_after_heal(mode: Mode, seed: int) -> None:
    """The swarm property over each other promising mode (raft): P1, P2, P3, P3g and P4 hold."""
    outcome = run_schedule(swarm_schedule(seed, SwarmSettings(mode=mode)))
    replay = (
        f"seed {seed}; replay: bullyproof sim run --mode {mode.value} --seed {seed}\n{outcome.schedule.to_script()}"
    )
    assert not outcome.violations, f"{replay}\n{outcome.violations}"


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(seed=seeds, mode=st.sampled_from(list(Mode)))
def test_a_seed_and_its_script_replay_exactly(seed: int, mode: Mode) -> None:
    first = run_schedule(swarm_schedule(seed, SwarmSettings(mode=mode)))
    again = run_schedule(swarm_schedule(seed, SwarmSettings(mode=mode)))
    script = run_schedule(Schedule.from_script(first.schedule.to_script()))
    for other in (again, script):
        a, b = first.net, other.net
        assert (a.views, a.events, a.faults, a.sent, a.grants, a.store_log) == (
            b.views,
            b.events,
            b.faults,
            b.sent,
            b.grants,
            b.store_log,
        )


def test_the_regression_schedules_hold() -> None:
    """Schedules the explorer once found failing (each file says what it found) pass now."""
    files = sorted(SCHEDULES.glob("*.sched"))
    assert files
    for path in files:
        outcome = run_schedule(Schedule.from_script(path.read_text()))
        assert not outcome.violations, f"{path.name}: {outcome.violations}"


@pytest.mark.xfail(strict=True, reason="open: a leader's reassert and a refused proposer retry in lock-step (P4)")
@pytest.mark.parametrize("path", sorted((SCHEDULES / "open").glob("*.sched")), ids=lambda p: p.stem)
def test_the_open_schedules_hold(path) -> None:
    """Schedules that still fail on the clean core (each file says why): known gaps, kept so that the
    fix is seen (this test then passes, and strict xfail fails it: move the file up a folder)."""
    outcome = run_schedule(Schedule.from_script(path.read_text()))
    assert not outcome.violations, f"{path.name}: {outcome.violations}"


# ---- the checks can fail: classic Bully, planted bugs, clocks beyond the bound ----------------------------


def test_classic_split_brain_is_found() -> None:
    report = explore(
        60, SwarmSettings(mode=Mode.CLASSIC, nodes=5), stop_at_first=True, max_schedules=200, shrink_budget_s=5
    )
    assert report.findings, "no classic split brain within 200 schedules"
    assert any(v.startswith(("P1", "P3")) for v in report.findings[0].violations)


# The schedule at which the explorer first fails each planted bug at seed 0 (`bullyproof sim bugs
# --schedules 1500 --mode M`); the test allows twice that, plus 50. A count, not a time, so the test does
# not depend on the machine's speed. The independent bugs the explorer has not found yet are listed
# apart (docs/explorer.md: bugs nobody here planted); each has a hand-made failing scenario in test_independent_bugs.
FIRST_FAILING = {
    ("quorum", "double-ack"): 3,
    ("quorum", "ignore-lease"): 8,
    ("quorum", "forget-promise"): 54,
    ("quorum", "stale-store"): 114,
    ("quorum", "boot-self-vote"): 10,
    ("quorum", "persist-after-reply"): 804,
    ("quorum", "wrong-round-ack"): 582,
    ("quorum", "early-release"): 7,
    ("quorum", "lease-from-receipt"): 9,
    ("quorum", "half-is-majority"): 3,
    ("quorum", "short-promise"): 3,
    ("quorum", "old-resign-releases"): 863,
    ("quorum", "ack-keeps-window"): 3,
    ("quorum", "lease-from-next-beat"): 14,
    ("quorum", "boot-window-from-zero"): 54,
    ("quorum", "lease-as-long-as-promise"): 369,
    ("raft", "stale-store"): 83,
    ("raft", "term-only-persist"): 34,
    ("raft", "vote-window-is-lease"): 30,
    ("raft", "late-vote-until-deadline"): 50,
    # members running different timings (test_timing_changes)
    ("quorum", "announced-lease-ignored"): 10,
    ("quorum", "hold-not-persisted"): 91,
    ("raft", "announced-lease-ignored"): 109,
    ("raft", "hold-not-persisted"): 109,
    # independent, second batch (measured blind, after the search was tuned); persist-new-leader-only is now
    # found first where it fails to persist a membership change (P4 after restart_all)
    ("quorum", "persist-new-leader-only"): 14,
    ("raft", "vote-by-window"): 9,
    ("raft", "lease-from-win"): 260,
    ("raft", "persist-before-self-vote"): 583,
    # membership changes (test_membership, test_membership_review*)
    ("quorum", "membership-not-persisted"): 14,
    ("quorum", "adopts-any-configuration"): 172,
    ("quorum", "removed-still-counted"): 225,
    ("quorum", "new-configuration-releases"): 279,
    ("raft", "membership-not-persisted"): 232,
    ("raft", "adopts-any-configuration"): 279,
    ("raft", "removed-still-counted"): 154,
    ("raft", "new-configuration-releases"): 73,
}
# lease-check-on-tick was found at 133 by the simulator's old event-based judge; the one judge (which reads
# views, as real runs are judged) sees no violation in it: see test_independent_bugs.
NOT_FOUND_YET = {
    "reassert-keeps-grants",
    "round-without-epoch",
    "late-ack-until-timeout",
    "release-any-term",
    "lease-check-on-tick",
    "late-beat-names-resigned",
    "reassert-adopts-epoch",
}


def test_every_planted_bug_is_either_found_or_listed_as_not_found_yet() -> None:
    listed = {bug for _, bug in FIRST_FAILING} | NOT_FOUND_YET
    assert listed == {b.value for b in PlantedBug}
    for mode, bug in FIRST_FAILING:
        assert PlantedBug(bug) in mode_info(mode).planted_bugs, (mode, bug)


# The search itself runs in the tests for the bugs found within SEARCHED_UP_TO schedules; the others (each
# costs the suite a minute or more) are searched by `make power` (which prints every first failing
# schedule), and their minimal failing schedules are replayed below: the judge must still see them.
SEARCHED_UP_TO = 150
BUG_SCHEDULES = SCHEDULES / "bugs"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "bug"), sorted(k for k, first in FIRST_FAILING.items() if first <= SEARCHED_UP_TO), ids=lambda x: x
)
def test_the_explorer_finds_every_planted_bug(mode: str, bug: str) -> None:
    limit = 2 * FIRST_FAILING[mode, bug] + 50
    report = explore(
        600,
        SwarmSettings(mode=Mode(mode), planted_bugs=frozenset({PlantedBug(bug)})),
        stop_at_first=True,
        max_schedules=limit,
        shrink_budget_s=30,
    )
    assert report.findings, f"{bug}: not found within {limit} schedules; the checks may be blind"
    finding = report.findings[0]
    # Greedy shrinking: small, not minimal.
    assert len(finding.schedule.commands) <= min(25, finding.original_commands), finding.schedule.to_script()
    print(f"\n{bug}: {finding.violations[0]} after {report.schedules} schedules\n{finding.schedule.to_script()}")


def test_every_bug_not_searched_here_has_its_failing_schedule() -> None:
    """A schedule per bug the tests do not search for; the schedules of bugs the search finds sooner
    now, or no longer, stay as regressions (the judge must still see them)."""
    heavy = {bug for (_, bug), first in FIRST_FAILING.items() if first > SEARCHED_UP_TO}
    saved = {p.stem for p in BUG_SCHEDULES.glob("*.sched")}
    assert heavy <= saved, heavy - saved
    assert saved <= {b.value for b in PlantedBug}, saved


@pytest.mark.parametrize("path", sorted(BUG_SCHEDULES.glob("*.sched")), ids=lambda p: p.stem)
def test_a_found_bug_schedule_fails_with_its_bug_and_holds_without(path) -> None:
    schedule = Schedule.from_script(path.read_text())
    assert schedule.planted_bugs == {PlantedBug(path.stem)}
    assert run_schedule(schedule).violations, f"{path.name}: the judge no longer sees this bug"
    clean = run_schedule(replace(schedule, planted_bugs=frozenset()))
    assert not clean.violations, f"{path.name} fails on the clean core too: {clean.violations}"


def test_clocks_beyond_the_drift_bound_break_safety_and_the_checker_sees_it() -> None:
    """A leader whose clock runs slow and followers whose clocks run fast: the lease outlives the promises."""
    rates = {1: Fraction(1 + BEYOND_DRIFT), 2: Fraction(1 + BEYOND_DRIFT), 3: Fraction(1 - BEYOND_DRIFT)}
    net = Network(0, 3, Mode.QUORUM, runtime_timing(0), clock_rates=rates)
    assert net.run_until_agreed(500) is not None and net.agreed_leader()[0] == 3
    net.isolate(3)
    net.run(200)
    assert any(v.startswith("P3g") for v in net.violations()), net.violations()
    within = {m: Fraction(1 + (CLOCK_DRIFT_BOUND if m < 3 else -CLOCK_DRIFT_BOUND)) for m in (1, 2, 3)}
    net = Network(0, 3, Mode.QUORUM, runtime_timing(0), clock_rates=within)
    assert net.run_until_agreed(500) is not None
    net.isolate(3)
    net.run(200)
    assert not net.violations()


def test_the_grant_checker_judges_without_trusting_the_leader() -> None:
    """A leader that renews its lease from when acks arrive, under slow links: its own report says it
    led alone, but it led after its followers' promises had run out, and the grant checker says so."""
    net = Network(3, 3, Mode.QUORUM, runtime_timing(0), frozenset({PlantedBug.LEASE_FROM_RECEIPT}))
    assert net.run_until_agreed(500) is not None
    net.set_delay(12, 12)  # a round trip (24 ticks) still inside the coordinator wait (25): a leader stands
    net.run(60)
    assert net.run_until_agreed(500) is not None
    leader = net.agreed_leader()[0]
    for m in net.members:
        if m != leader:
            net.cut(leader, m)  # its last heartbeats' acks are on their way back; no new grants
    net.run(100)
    unbacked = [v for v in net.grant_violations() if "outside a majority's live promises" in v]
    assert unbacked, net.violations()
    assert net.disagreement() is not None or net._p3_violations()


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


def test_duplicates_arrive_twice() -> None:
    net = Network(0, 3, Mode.QUORUM)
    net.set_duplicate(0.99)
    net.inject(Message(MsgType.COORDINATOR, 2, 1, 5))
    net.run(2)
    assert net.delivered[MsgType.COORDINATOR_ACK] == 2


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
    net.crash_restart(1)
    net.run(6)
    assert net.delivered[MsgType.COORDINATOR_ACK] == 0


def test_restart_rebuilds_from_the_persisted_promise_only() -> None:
    net = Network(0, 5, Mode.QUORUM)
    assert net.run_until_agreed(10 * T.election_timeout_ticks) is not None
    net.crash(5)
    assert net.view(5) is None and net.no_overlapping_leadership()
    net.restart(5)
    assert net.elector(5).promise == net.persisted[5] and net.elector(5).promise.names == (1, 5)
    assert net.view(5).role == Role.FOLLOWER and net.view(5).leader_id is None


def test_a_leader_crashed_while_paused_led_until_its_lease_ran_out() -> None:
    net = Network(0, 5, Mode.QUORUM)
    assert net.run_until_agreed(10 * T.election_timeout_ticks) is not None
    paused_at = net.now
    net.pause(5, 4 * T.election_timeout_ticks)
    net.run(2 * T.election_timeout_ticks)
    net.crash(5)
    (interval,) = [i for i in net.intervals if i.node == 5]
    assert paused_at < interval.end <= paused_at + T.leader_lease_ticks
    assert net.no_overlapping_leadership(), net.violations()


@pytest.mark.parametrize("mode", [m for m in Mode if mode_info(m).promises], ids=lambda m: m.value)
def test_a_recorded_grant_window_is_the_one_the_elector_holds(mode: Mode) -> None:
    """Each grant is recorded with the window its follower honours (Timing.promise_hold_ticks on its
    own clock, which may run fast or slow): no shorter (the grant checker would see a leader led
    outside its backing), no longer (it would see a vote inside a promise that had ended)."""
    rates = {1: Fraction(21, 20), 2: Fraction(19, 20), 3: Fraction(1)}
    net = Network(0, 3, mode, runtime_timing(0), clock_rates=rates)
    assert net.run_until_agreed(500) is not None
    leader = net.agreed_leader()[0]
    net.run(3 * T.heartbeat_interval_ticks + 7)
    for follower in (m for m in net.members if m != leader):
        last = max((g for g in net.grants if g.node == follower and g.leader == leader), key=lambda g: g.at)
        holds_until = net.global_tick(follower, net.elector(follower).promise_until)
        assert last.until == holds_until, (follower, last, holds_until)


@pytest.mark.parametrize("mode", [m for m in Mode if mode_info(m).promises], ids=lambda m: m.value)
def test_a_release_is_recorded_only_where_the_follower_released(mode: Mode) -> None:
    """A follower restarted inside its promise honours a window from boot. Quorum then ignores the
    resigning heartbeat of the leader it promised (it follows no one yet): its promise stands and no
    release may be recorded (the grant checker would cut its window short). Raft knows whom it
    promised from its persisted vote and does release. Recorded release <=> released promise."""
    net = Network(0, 3, mode)
    assert net.run_until_agreed(10 * T.election_timeout_ticks) is not None
    leader = net.agreed_leader()[0]
    restarted, other = sorted(m for m in net.members if m != leader)
    net.crash_restart(restarted)
    net.resign(leader)
    resigned_at = net.now
    net.run(1)  # the resigning heartbeats arrive (one tick on the wire); nobody has granted since
    released = {r.node for r in net.promises if isinstance(r, Release) and r.at >= resigned_at and r.leader == leader}
    holding = {m for m in (restarted, other) if net.elector(m).promise_until > net.local(m)}
    assert released == {restarted, other} - holding
    assert holding == ({restarted} if mode == Mode.QUORUM else set())
    assert not double_promises(net.promises), net.violations()


def test_a_skewed_clock_runs_at_its_rate() -> None:
    net = Network(0, 2, Mode.QUORUM, clock_rates={1: Fraction(21, 20)})
    net.run(100)
    assert (net.local(1), net.local(2)) == (105, 100)
    assert net.global_tick(1, 105) == 100


def test_the_leader_claims_the_store_at_once_and_the_store_fences() -> None:
    net = Network(0, 3, Mode.QUORUM)
    assert net.run_until_agreed(500) is not None
    net.run(1)  # the claim is on the wire for one tick
    first = net.store_log[0]
    became = next(e.tick for e in net.events if e.node == first.writer and type(e.event).__name__ == "BecameLeader")
    assert first.accepted and first.sent_tick == became
    net.store_highest_epoch += 5  # a newer epoch was accepted meanwhile: the leader's next write is stale
    net.run(T.heartbeat_interval_ticks + 2)
    assert not net.store_log[-1].accepted and "stale" in net.store_log[-1].reason
