"""Members running different timings: one step of a rolling change of the election timeout.

A lease is counted on the leader's timing and a promise on the follower's. Before leaders announced
their lease (Message.lease_ticks), a follower restarted with a shorter election timeout held its
own, shorter window: cut off from the leader just after it acknowledged, it backed a new candidate
while the old leader's lease still ran. PlantedBug.ANNOUNCED_LEASE_IGNORED is that old rule; the
scenarios require a split brain with it and none without.
"""

from __future__ import annotations

import pytest

from node.core import Mode, PlantedBug, Promise, Timing
from node.sim.network import Network

LONG = Timing.from_ms(heartbeat_interval_ms=10, election_timeout_ms=100, tick_ms=1)  # lease 70
SHORT = Timing.from_ms(heartbeat_interval_ms=10, election_timeout_ms=50, tick_ms=1)  # window 41


def renewed(net: Network, node: int):
    """True on the first check after `node` renewed its promise window (it just acknowledged)."""
    last = [net.elector(node).promise_until]

    def check() -> bool:
        until = net.elector(node).promise_until
        changed, last[0] = until > last[0], until
        return changed

    return check


def just_after_the_ack(mode: Mode, bugs: frozenset[PlantedBug]) -> tuple[Network, int, int, int]:
    """Every node runs LONG; the leader x stands. Follower f is restarted with SHORT (a rolling change
    of its election timeout) and backs x again. x is cut from the other follower g; the run stops
    just after f acknowledged, timed so that f's own window would end shortly before g asks for votes
    and x's lease shortly after. Returns (net, x, f, g)."""
    net = Network(0, 3, mode, LONG, bugs)
    assert net.run_until_agreed(600) is not None
    x = net.agreed_leader()[0]
    f, g = (m for m in net.members if m != x)
    net.crash(f)
    net.restart(f, SHORT)
    assert net.run_until(lambda: net.agreed_leader() is not None and net.agreed_leader()[0] == x, 300) is not None
    net.run(20)
    net.cut(x, g)
    net.run(1)
    # g asks for votes at its election deadline (quorum: after asking the higher ids, raft: a pre-vote).
    asks_at = net.global_tick(g, net.elector(g).election_deadline)
    net.run_until(lambda: net.now >= asks_at - 45, 300)
    net.run_until(renewed(net, f), 2 * LONG.heartbeat_interval_ticks)
    return net, x, f, g


def shorter_follower(mode: Mode, bugs: frozenset[PlantedBug]) -> tuple[Network, int, int, int]:
    """...and then x is cut from f too."""
    net, x, f, g = just_after_the_ack(mode, bugs)
    net.cut(x, f)
    net.run(300)
    return net, x, f, g


@pytest.mark.parametrize("mode", [Mode.QUORUM, Mode.RAFT])
def test_a_follower_with_a_shorter_timeout_outlasts_the_leaders_announced_lease(mode: Mode) -> None:
    clean, x, f, g = shorter_follower(mode, frozenset())
    assert not clean.violations(), clean.violations()
    moved_on = clean.agreed_among([f, g])  # x is still cut off from both
    assert moved_on is not None and moved_on[0] != x, moved_on
    # f held its grant to x for the window x's lease needs, not its own.
    assert SHORT.hold_ticks_for(LONG.leader_lease_ticks) > SHORT.promise_hold_ticks

    old, *_ = shorter_follower(mode, frozenset({PlantedBug.ANNOUNCED_LEASE_IGNORED}))
    assert any(v.startswith(("P3", "P1")) for v in old.violations()), old.violations()


def test_the_window_survives_a_restart_with_a_shorter_timeout() -> None:
    """f granted x a window longer than its own (x's lease is longer), crashed, and came back with an even
    shorter timeout: from boot it still refuses everyone for that window."""
    promise = Promise(4, 3, hold_ticks=LONG.hold_ticks_for(LONG.leader_lease_ticks + 30))
    window = promise.window_ticks(LONG)
    restored = promise.restored(window, SHORT)
    assert restored.window_ticks(SHORT) == window > SHORT.promise_hold_ticks
    # Its own window under the old timing is kept too, when the new one is shorter.
    own = Promise(4, 3).restored(Promise(4, 3).window_ticks(LONG), SHORT)
    assert own.window_ticks(SHORT) == LONG.promise_hold_ticks


@pytest.mark.parametrize("mode", [Mode.QUORUM, Mode.RAFT])
def test_a_follower_restarted_inside_a_long_window_keeps_it(mode: Mode) -> None:
    """The same cut, but f is restarted (with its shorter timeout) right after it acknowledged: the
    window it granted x comes back from its promise file, unless the longer window was never written."""

    def run(bugs: frozenset[PlantedBug]) -> Network:
        net, x, f, _ = just_after_the_ack(mode, bugs)
        assert net.persisted[f].hold_ticks == (0 if bugs else SHORT.hold_ticks_for(LONG.leader_lease_ticks))
        net.cut(x, f)
        net.crash(f)
        net.restart(f)
        net.run(300)
        return net

    clean = run(frozenset())
    assert not clean.violations(), clean.violations()
    broken = run(frozenset({PlantedBug.HOLD_NOT_PERSISTED}))
    assert any(v.startswith(("P3", "P1")) for v in broken.violations()), broken.violations()


def test_restarting_a_node_under_new_timings_rewrites_its_command_line_or_refuses_first() -> None:
    """`bullyproof restart N --election-timeout-ms X`: the flag is changed in place, every other kept; a
    combination no node accepts is refused before anything is stopped."""
    from node.config import ConfigError
    from node.launcher.cluster import retimed_argv

    argv = [
        "python",
        "-m",
        "node.cli",
        "node",
        "--id",
        "2",
        "--heartbeat-interval-ms",
        "100",
        "--election-timeout-ms",
        "500",
        "--mode",
        "quorum",
    ]
    changed = retimed_argv(argv, {"--election-timeout-ms": 1000})
    assert changed == [*argv[:-3], "1000", "--mode", "quorum"] and argv[-3] == "500"
    with pytest.raises(ConfigError, match="at least 3x"):
        retimed_argv(argv, {"--election-timeout-ms": 200})
    with pytest.raises(ConfigError, match="not a timing flag"):
        retimed_argv(argv, {"--mode": 3})


# ---- the explorer draws mixed timings and rolling changes ----------------------------------------


def test_mixed_timings_are_drawn_apart_and_leave_the_rest_of_each_schedule_alone(monkeypatch) -> None:
    import node.sim.swarm as swarm
    from node.sim.schedule import Schedule
    from node.sim.swarm import SwarmSettings, swarm_schedule

    monkeypatch.setattr(swarm, "MEMBERSHIP_SHARE", 0.0)  # membership changes are drawn apart too (their own test)
    schedules = [swarm_schedule(seed, SwarmSettings(mode=Mode.RAFT)) for seed in range(300)]
    mixed = [s for s in schedules if s.retimed or any(c[0] == "retime" for c in s.commands)]
    assert 0.15 * len(schedules) < len(mixed) < 0.45 * len(schedules)
    assert any(s.retimed for s in mixed) and any(c[0] == "retime" for s in mixed for c in s.commands)
    for s in mixed:
        assert Schedule.from_script(s.to_script()) == s
        for _node, timeout in s.retimed:
            assert s.timing_with(timeout).election_timeout_ticks == timeout  # one node.config accepts
    # The same seeds with the drawing of mixed timings switched off: every other command is the same.
    share = swarm.MIXED_TIMINGS_SHARE
    swarm.MIXED_TIMINGS_SHARE = 0.0
    try:
        plain = [swarm_schedule(seed, SwarmSettings(mode=Mode.RAFT)) for seed in range(300)]
    finally:
        swarm.MIXED_TIMINGS_SHARE = share
    for with_mixed, without in zip(schedules, plain):
        assert [c for c in with_mixed.commands if c[0] != "retime"] == list(without.commands)
        assert with_mixed.timing == without.timing and not without.retimed


def test_a_retime_command_restarts_the_node_under_the_new_timing() -> None:
    from node.sim.schedule import Schedule, run_schedule

    script = """@nodes 3
@mode quorum
@seed 4
@timing heartbeat_interval_ticks=10 election_timeout_ticks=50 leader_lease_ticks=35 follower_promise_ticks=40 alive_wait_ticks=10 coordinator_wait_ticks=25 rank_stagger_ticks=2 jitter_ticks=5 preempt_hold_down_ticks=0
@retimed 1=100
run 200
retime L 30
retime F 20
run 100
"""
    outcome = run_schedule(Schedule.from_script(script))
    timeouts = {m: outcome.net.timings[m].election_timeout_ticks for m in outcome.net.members}
    # The leader now runs 30; 20 is refused (node.config wants 3 heartbeat intervals), so that command did nothing.
    assert list(timeouts.values()).count(30) == 1 and 20 not in timeouts.values(), timeouts
    assert [c[0] for c in outcome.schedule.commands].count("retime") == 1
    assert not outcome.violations, outcome.violations
