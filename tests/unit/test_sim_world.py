"""The simulated world in parts: faults on one directed link, holding messages until a protocol
instant, the instants the electors name, and what the swarm draws (options, hold-down, timings)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from node.config import check_timings
from node.core import CLOCK_DRIFT_BOUND, Mode, MsgType, mode_info
from node.sim.explore import mutate, rare_instant
from node.sim.network import Network
from node.sim.schedule import Runner, Schedule, run_schedule
from node.sim.swarm import SwarmSettings, accepted_timings, runtime_timing, swarm_schedule

TIMING = runtime_timing(0)


def _settled(n: int = 3, mode: str = "quorum", seed: int = 1) -> tuple[Network, int]:
    net = Network(seed, n, mode, TIMING)
    net.run_until_agreed(400)
    leader, _ = net.agreed_leader()
    return net, leader


def test_a_fault_on_one_link_leaves_the_others_alone() -> None:
    net, leader = _settled()
    follower = next(m for m in net.members if m != leader)
    other = next(m for m in net.members if m not in (leader, follower))
    net.set_delay(30, 30, links=[(leader, follower)])
    assert net.links.of(leader, follower).min_delay_ticks == 30
    assert net.links.of(follower, leader).min_delay_ticks == 1  # the other direction is untouched
    assert net.links.of(leader, other).min_delay_ticks == 1
    net.set_drop(0.5)  # no link named: every link, the one set apart included
    assert net.links.of(leader, follower).drop_probability == net.links.of(leader, other).drop_probability == 0.5
    assert net.links.of(leader, follower).min_delay_ticks == 30


def test_heal_link_restores_one_link_only() -> None:
    net, leader = _settled()
    others = [m for m in net.members if m != leader]
    net.isolate(leader)
    net.heal_link(leader, others[0])
    assert not net.links.is_cut(leader, others[0])
    assert net.links.is_cut(others[0], leader) and net.links.is_cut(leader, others[1])
    with pytest.raises(ValueError, match="not a member"):
        net.heal_link(leader, 9)


def test_bad_link_faults_are_refused_and_change_nothing() -> None:
    net, leader = _settled()
    with pytest.raises(ValueError, match="drop probability"):
        net.set_drop(1.5, links=[(1, 2)])
    with pytest.raises(ValueError, match="delay"):
        net.set_delay(5, 2)
    assert net.links.of(1, 2).drop_probability == 0 and net.links.default.max_delay_ticks == 1


def test_a_held_round_of_acks_is_released_by_its_instant() -> None:
    """Hold every ack to the leader until its lease is about to end: the lease runs out although
    every follower acknowledged, then the acks arrive (late) once the instant is reached."""
    net, leader = _settled(3)
    net.hold(0, leader, "reply", 0, "lease-end", 500)
    start = net.now
    net.run_until(lambda: any(n == leader and i == "lease-end" for n, i in net.reached), 200)
    held_at_instant = [h for h in net.links.holds]
    assert not held_at_instant, "the hold ends at its instant"
    assert net.now - start >= TIMING.leader_lease_ticks - TIMING.heartbeat_interval_ticks - 2
    assert net.coverage["lease-end"] >= 1
    assert not net.violations()


def test_a_hold_that_never_sees_its_instant_ends_after_max_ticks() -> None:
    net, leader = _settled(3)
    follower = next(m for m in net.members if m != leader)
    delivered = net.delivered[MsgType.HEARTBEAT]
    net.hold(leader, follower, "heartbeat", 1, "won-again", 20)
    net.run(19)
    assert len(net.links.holds) == 1 and len(net.links.holds[0].held) == 1  # one message caught, the rest pass
    assert net.delivered[MsgType.HEARTBEAT] > delivered
    net.run(2)
    assert not net.links.holds


@pytest.mark.parametrize("mode", ["quorum", "raft"])
def test_a_restarted_follower_is_inside_its_boot_window(mode: str) -> None:
    net, leader = _settled(3, mode)
    follower = next(m for m in net.members if m != leader)
    net.crash_restart(follower)
    net.tick()
    assert (follower, "boot-window") in net.reached


def test_a_proposal_in_a_minority_fails_and_says_so() -> None:
    net, leader = _settled(5)
    net.isolate(leader)
    net.run(60)  # the old leader cannot renew; the others elect
    loner = leader
    assert net.coverage["stepdown-lease_expired"] >= 1
    net.run_until(lambda: any(n == loner and i == "proposal-failed" for n, i in net.reached), 400)


@pytest.mark.parametrize("mode", ["quorum", "raft"])
def test_the_same_leader_winning_again_is_an_instant(mode: str) -> None:
    net, leader = _settled(1, mode)  # alone: after it resigns, nobody else can win
    assert net.coverage["won-again"] == 0
    net.resign(leader)
    net.run_until(lambda: net.coverage["won-again"] == 1, 400)
    assert net.agreed_leader()[0] == leader


def test_until_waits_for_any_instant_and_names_the_node() -> None:
    script = f"""@nodes 3
@mode raft
@seed 4
@timing {" ".join(f"{k}={v}" for k, v in TIMING.__dict__.items())}
run 200
crash L
until pre-vote-won * 400
crash T
"""
    outcome = run_schedule(Schedule.from_script(script))
    assert outcome.schedule.commands[-1][0] == "crash"  # T named a node: a raft node won its pre-vote
    assert outcome.net.coverage["pre-vote-won"] >= 1


def test_an_unknown_instant_gets_a_clear_error() -> None:
    timing = " ".join(f"{k}={v}" for k, v in TIMING.__dict__.items())
    script = f"@nodes 3\n@mode quorum\n@seed 1\n@timing {timing}\nuntil no-such-thing * 5\n"
    with pytest.raises(ValueError, match="no instant 'no-such-thing'.*known: .*ack"):
        Runner(Schedule.from_script(script))


@pytest.mark.parametrize("mode", ["quorum", "raft"])
def test_every_instant_is_named_with_a_meaning(mode: str) -> None:
    instants = mode_info(mode).instants
    assert {"ack", "lease-end", "deadline", "boot-window", "won-again"} <= set(instants)
    assert all(meaning for meaning in instants.values())


def test_the_swarm_draws_every_option_hold_down_zero_and_the_tightest_timings() -> None:
    raft = [swarm_schedule(seed, SwarmSettings(mode=Mode.RAFT)) for seed in range(60)]
    assert {s.mode_options for s in raft} == {frozenset(), frozenset({"no-pre-vote"})}
    assert any(s.timing.preempt_hold_down_ticks == 0 for s in raft)
    timings = accepted_timings()
    for t in timings:  # each accepted by a node
        assert check_timings(t.heartbeat_interval_ticks * 10, t.election_timeout_ticks * 10, 10) == t
    tightest = timings[0].drift_margin
    assert CLOCK_DRIFT_BOUND <= tightest < 1 / 18  # 1/19: the tightest margin node.config accepts
    drawn = [swarm_schedule(seed, SwarmSettings()).timing for seed in range(200)]
    assert any(t.drift_margin == tightest for t in drawn)
    fixed = swarm_schedule(1, SwarmSettings(mode=Mode.RAFT, mode_options=frozenset()))
    assert fixed.mode_options == frozenset()


def test_mutations_are_schedules_that_run() -> None:
    rng = random.Random(0)
    parents = [swarm_schedule(seed, SwarmSettings(nodes=3)) for seed in range(5)]
    for k in range(40):
        child = mutate(parents[k % 5], rng, donor=parents[(k + 1) % 5])
        run_schedule(child)  # no error: every edit keeps the commands well formed
        assert Schedule.from_script(child.to_script()) == child


def test_guided_mutations_prefer_instants_rarely_reached() -> None:
    rng = random.Random(0)
    names = sorted(mode_info(Mode.QUORUM).instants)
    seen = Counter({f"i:{name}": 500 for name in names if name != "reassert-failed"})
    drawn = Counter(rare_instant(Mode.QUORUM, rng, seen) for _ in range(3000))
    # Never reached weighs 1, reached in 500 schedules 1/sqrt(501): about 0.045 each.
    assert drawn["reassert-failed"] > 5 * max(drawn[n] for n in names if n != "reassert-failed"), drawn
    parents = [swarm_schedule(seed, SwarmSettings(nodes=3)) for seed in range(5)]
    for k in range(40):  # the weighted path keeps schedules well formed too
        child = mutate(parents[k % 5], rng, donor=parents[(k + 1) % 5], seen=seen)
        assert Schedule.from_script(child.to_script()) == child
