"""One history, one judge: node.history's History and its judges, the same for a recording (ns) and
for the simulator (ticks)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from node.core import Message, Mode, MsgType, PlantedBug
from node.history import (
    NS,
    TICKS,
    AnswerTolerance,
    History,
    HistoryWriter,
    Interval,
    agreement_after_heal,
    check_event,
    describe,
    judge,
    leadership,
    no_lost_writes,
    read_history,
    violation_lines,
)
from node.sim.network import Network, timeline
from node.sim.swarm import runtime_timing

MS_PER_TICK = 10


def events(unit_per_tick: int) -> list[dict[str, Any]]:
    """A quorum run of nodes 1..3 that breaks every safety property once; times in ticks times
    ``unit_per_tick`` (1: ticks; 10 ms in nanoseconds: a recording)."""

    def at(tick: int, kind: str, **fields: Any) -> dict[str, Any]:
        scaled = {k: v * unit_per_tick if k in ("until_ns", "lease_end_ns", "end_ns") else v for k, v in fields.items()}
        return {"t_ns": tick * unit_per_tick, "kind": kind, **scaled}

    return [
        at(0, "meta", seed=1, mode="quorum", scenario="both units", nodes=[1, 2, 3]),
        at(1, "grant", node=3, leader=3, epoch=1, promise_ms=0),
        at(1, "grant", node=1, leader=3, epoch=1, promise_ms=0, until_ns=25),
        at(1, "grant", node=2, leader=3, epoch=1, promise_ms=0, until_ns=25),
        at(2, "view", node=3, role="leader", epoch=1, leader=3, reason=""),
        at(2, "view", node=1, role="follower", epoch=1, leader=3, reason=""),
        at(3, "store", seq=1, writer=3, epoch=1, key="claim/3/1", accepted=True, reason=""),
        at(3, "answer", node=1, leader=3, epoch=1, end_ns=20),
        at(20, "grant", node=1, leader=2, epoch=2, promise_ms=0, until_ns=44),  # inside its promise to 3
        at(21, "view", node=2, role="leader", epoch=2, leader=2, reason=""),
        at(22, "store", seq=2, writer=2, epoch=2, key="claim/2/2", accepted=True, reason=""),
        at(23, "store", seq=3, writer=3, epoch=1, key="duty/3/1/1", accepted=True, reason=""),  # stale
        # 3 believed its lease ran to 28; its followers' promises ended at 25.
        at(30, "view", node=3, role="follower", epoch=1, leader=None, reason="lease_expired", lease_end_ns=28),
        at(40, "view", node=1, role="leader", epoch=2, leader=1, reason=""),  # epoch 2 twice
        at(40, "view", node=2, role="follower", epoch=2, leader=1, reason=""),
        at(50, "answer", node=2, leader=1, epoch=5, end_ns=51),  # an epoch nobody led
        at(60, "heal"),
    ]


def both() -> tuple[History, History]:
    ns_per_tick = MS_PER_TICK * 1_000_000
    in_ticks = History(events(1), TICKS, tolerance=AnswerTolerance(2, 5))
    in_ns = History(events(ns_per_tick), NS, tolerance=AnswerTolerance(2 * ns_per_tick, 5 * ns_per_tick))
    return in_ticks, in_ns


def as_ticks(line: str) -> str:
    """A line told in ms and seconds, told in ticks of 10 ms instead."""
    line = re.sub(r"t=\+(\d+\.\d+)s", lambda m: f"tick {round(float(m[1]) * 1000 / MS_PER_TICK)}", line)

    def length(m: re.Match[str]) -> str:
        ticks = round(float(m[1]) / MS_PER_TICK)
        return f"{ticks} tick" + ("" if ticks == 1 else "s")

    return re.sub(r"(\d+\.\d) ms", length, line)


def test_one_history_judged_in_ticks_and_in_ns_gives_the_same_verdicts() -> None:
    in_ticks, in_ns = both()
    verdicts_ticks, verdicts_ns = judge(in_ticks), judge(in_ns)
    assert [(v.id, v.ok, [type(f) for f in v.findings]) for v in verdicts_ticks] == [
        (v.id, v.ok, [type(f) for f in v.findings]) for v in verdicts_ns
    ]
    assert [v.id for v in verdicts_ticks if not v.ok] == ["P1", "P2", "P3", "P3g", "P6"]
    lines_ticks = violation_lines(verdicts_ticks, in_ticks)
    assert lines_ticks == [as_ticks(line) for line in violation_lines(verdicts_ns, in_ns)]
    assert "P3: node 3 (epoch 1) and node 2 (epoch 2) both led from tick 21 for 7 ticks" in lines_ticks
    assert (
        "P3g: node 3 led epoch 1 (tick 2 for 26 ticks) 3 ticks outside a majority's live promises, "
        "first from tick 25 for 3 ticks"
    ) in lines_ticks
    assert (
        "P3g: node 1 granted node 2 (epoch 2) at t=+0.200s while its promise to node 3 (epoch 1) lasted 50.0 ms more"
    ) in violation_lines(verdicts_ns, in_ns)


def test_every_verdict_is_data() -> None:
    """ok is decided by the findings alone, which are values; words come only from describe."""
    in_ticks, _ = both()
    verdicts = [*judge(in_ticks), no_lost_writes(in_ticks), agreement_after_heal(in_ticks, 100)]
    assert {v.id for v in verdicts} == {"P1", "P2", "P3", "P3g", "P4", "P5", "P6"}
    for v in verdicts:
        assert isinstance(v.ok, bool) and v.ok == (not v.findings)
        for finding in v.findings:
            assert dataclasses.is_dataclass(finding) and not isinstance(finding, type)
            assert not any(isinstance(value, str) for value in dataclasses.asdict(finding).values())
            assert describe(finding, in_ticks)
    p3 = next(v for v in verdicts if v.id == "P3")
    [overlap] = p3.findings
    assert (overlap.first, overlap.second) == (Interval(3, 1, 2, 28), Interval(2, 2, 21, 40))


def test_a_mode_without_promises_is_not_judged_by_grants() -> None:
    in_ticks = History(events(1), TICKS, promises=False, tolerance=AnswerTolerance(2, 5))
    [p3g] = [v for v in judge(in_ticks) if v.id == "P3g"]
    assert p3g.ok and not p3g.applicable and p3g.findings == ()


def test_a_recording_does_not_see_inside_a_paused_leader_but_the_simulator_does() -> None:
    """A recording's pause ends a leadership there and a resume reopens it; the simulator's pause
    event says when the paused leader's lease ran out, and the leadership runs on through the pause
    up to that instant (the old simulator's rule, now in the one judge)."""
    lead = {"t_ns": 10, "kind": "view", "node": 3, "role": "leader", "epoch": 1, "leader": 3}
    pause = {"t_ns": 100, "kind": "process", "node": 3, "action": "pause", "pid": 1}
    resume = {"t_ns": 500, "kind": "process", "node": 3, "action": "resume", "pid": 1}
    down = {
        "t_ns": 500,
        "kind": "view",
        "node": 3,
        "role": "follower",
        "epoch": 1,
        "leader": None,
        "reason": "lease_expired",
        "lease_end_ns": 180,
    }
    recorded = [lead, pause, resume, down]
    assert leadership(recorded, 600)[0] == [Interval(3, 1, 10, 100)]
    simulated = [lead, {**pause, "lease_end_ns": 180}, resume, down]
    intervals, by_lease = leadership(simulated, 600)
    assert intervals == [Interval(3, 1, 10, 180)] and by_lease == {Interval(3, 1, 10, 180)}
    # Resumed with its lease still valid (or without a lease, as classic): one leadership, no gap.
    still = [lead, {**pause, "lease_end_ns": 500}, resume]
    assert leadership(still, 600)[0] == [Interval(3, 1, 10, 600)]
    # Killed while paused, its lease out at 180: it led until then.
    killed = [
        lead,
        {**pause, "lease_end_ns": 180},
        {"t_ns": 300, "kind": "process", "node": 3, "action": "kill", "pid": 1},
    ]
    assert leadership(killed, 600)[0] == [Interval(3, 1, 10, 180)]


def test_a_leader_restarted_leads_no_longer_than_until_its_new_process_starts() -> None:
    """The harness records a restart before it kills the old process and the start after: the old
    leader's leadership ends by the start at the latest, however long the new process takes to report
    its boot view (seen under load: two seconds, which made a healthy rolling change look split)."""
    lead = {"t_ns": 10, "kind": "view", "node": 5, "role": "leader", "epoch": 12, "leader": 5}
    restart = {"t_ns": 100, "kind": "process", "node": 5, "action": "restart", "pid": 1}
    start = {"t_ns": 180, "kind": "process", "node": 5, "action": "start", "pid": 2, "election_timeout_ms": 1000}
    boot = {"t_ns": 2_000, "kind": "view", "node": 5, "role": "follower", "epoch": 12, "leader": None, "reason": "boot"}
    assert leadership([lead, restart, start, boot], 3_000)[0] == [Interval(5, 12, 10, 180)]
    # Without a start (the new process never came up) the old one may still run: no end but the run's.
    assert leadership([lead, restart], 3_000)[0] == [Interval(5, 12, 10, 3_000)]


def test_an_announced_leadership_lasts_at_least_one_tick() -> None:
    """Told it leads at tick 5, with a lease already over: the application was told, so it led
    through tick 5. A recording has no such unit: the empty interval is dropped."""
    lead = {"t_ns": 5, "kind": "view", "node": 1, "role": "leader", "epoch": 1, "leader": 1}
    down = {
        "t_ns": 5,
        "kind": "view",
        "node": 1,
        "role": "follower",
        "epoch": 1,
        "leader": None,
        "reason": "lease_expired",
        "lease_end_ns": 4,
    }
    assert leadership([lead, down], 9, TICKS.instant)[0] == [Interval(1, 1, 5, 6)]
    assert leadership([lead, down], 9, NS.instant)[0] == []


def _short_run() -> Network:
    """Resign, pause the leader past its lease, crash and restart a follower, isolate and heal."""
    net = Network(2, 3, Mode.QUORUM, runtime_timing(0))
    assert net.run_until_agreed(500) is not None
    net.resign(net.agreed_leader()[0])
    assert net.run_until_agreed(500) is not None
    leader = net.agreed_leader()[0]
    follower = next(m for m in net.members if m != leader)
    net.pause(leader, 60)
    net.run(80)
    net.crash(follower)
    net.isolate(leader)
    net.run(40)
    net.heal()
    net.restart(follower)
    assert net.run_until_agreed(500) is not None
    return net


def test_the_simulators_events_are_valid_history_events(tmp_path: Path) -> None:
    net = _short_run()
    recorded = net.record.events_now()
    assert {e["kind"] for e in recorded} >= {
        "meta",
        "view",
        "grant",
        "release",
        "process",
        "store",
        "answer",
        "fault",
        "heal",
    }
    assert {e["action"] for e in recorded if e["kind"] == "process"} == {"pause", "resume", "kill", "start"}
    assert [problem for e in recorded for problem in check_event(e)] == []
    path = tmp_path / "sim.jsonl"
    with HistoryWriter(path) as writer:
        for e in recorded:
            writer.write(e)
    read = read_history(path)
    assert len(read) == len(recorded)
    # Read back, the same events get the same verdicts the network gives.
    h = net.history()
    again = History(read, TICKS, promises=h.promises, tolerance=h.tolerance, end=h.end)
    assert judge(again) == judge(h) and net.violations() == []


def test_the_timeline_tells_every_event_of_the_run() -> None:
    """`bullyproof sim run` and `replay` print it; a Reached event (a protocol instant) used to stop them."""
    lines = timeline(_short_run(), views=True)
    assert any("reached " in line for line in lines) and any("became leader" in line for line in lines)


def test_a_leader_that_leaves_without_a_stepdown_event_leads_no_more() -> None:
    """Found by running the old and the new judge side by side: the simulator's own copy of P3 took
    leadership from the electors' BecameLeader/SteppedDown events, so a leader whose view stopped
    saying "leader" without a SteppedDown (double-ack: a leader acknowledges another's Coordinator
    and silently follows) led on in its judgement until its next event, a P3 overlap its own reports
    never showed. Judged from the views, as a real run is, it led until its view changed."""
    net = Network(0, 3, Mode.QUORUM, runtime_timing(0), frozenset({PlantedBug.DOUBLE_ACK}))
    assert net.run_until_agreed(500) is not None
    leader, epoch = net.agreed_leader()
    other = next(m for m in net.members if m != leader)
    net.inject(Message(MsgType.COORDINATOR, other, leader, epoch))
    left_at = net.now
    assert net.view(leader).role.value == "follower"
    assert not [e for e in net.events if e.node == leader and type(e.event).__name__ == "SteppedDown"]
    net.run(20)
    [interval] = [i for i in net.intervals if i.node == leader]
    assert interval.end == left_at
