"""Named chaos scenarios: each breaks a running cluster in one way, then heals it.

A scenario is a function over a Context: a world (node.faults.ScenarioWorld) and a seeded generator. The
world is real processes through Toxiproxy (chaos/harness.py ChaosCluster) or the simulator
(node/sim/target.py SimTarget): a scenario that uses only the registry's faults that both can do
(its `faults`, node.faults.FAULTS) runs unchanged in either, judged by the same judge
(chaos/simulated.py runs it in the simulator; `chaos list --describe` says where each runs).

A scenario only acts (faults, pauses, kills) and waits; it never judges. The verdict comes from the
checkers, over the recorded history. Durations are in election timeouts so a scenario means the
same thing at any timing; every random choice comes from the seeded `rng`.

A scenario that exists for one dangerous moment (a restart inside a lease, the leader cut off on
the minority side) also carries that moment as an `Instant`: a predicate over the recorded history,
judged after the run. On real processes a busy machine can shift the schedule past its moment; the
report then says so, and a test that needs the moment retries with the next seed.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import observer_channel
from node.config import DEFAULT_TIMING
from node.core import MsgType, mode_info
from node.faults import FAULTS, REAL, SIM, WORLDS, ScenarioWorld
from node.history import (
    Grant,
    GrantWindow,
    Interval,
    grant_windows,
    history_members,
    leadership_intervals,
    recorded_promises,
    sort_events,
    up_spans,
)
from node.observer import HandoverFailed

from .checkers import _origin_ns, _rel
from .harness import STORE, ChaosCluster


@dataclass(frozen=True)
class Context:
    """What a scenario acts on: a world (node.faults.ScenarioWorld: real processes through Toxiproxy, a
    ChaosCluster, or the simulator, node.sim.target.SimTarget) and the run's seeded generator."""

    world: ScenarioWorld
    rng: random.Random

    def wait(self, election_timeouts: float) -> None:
        """Let time pass (really, or simulated), in election timeouts of the cluster's timing."""
        self.world.sleep(election_timeouts * self.world.election_timeout_ms / 1000)

    def hold_then_heal(self, election_timeouts: float = 4) -> None:
        """Keep the fault long enough for leases to run out and a new leader to form, then heal."""
        self.wait(election_timeouts)
        self.world.heal()

    def leader_and_others(self) -> tuple[int, list[int]]:
        """The leader to aim at, and every other node in a seeded random order."""
        leader = self.leader()
        others = [n for n in self.world.ids if n != leader]
        self.rng.shuffle(others)
        return leader, others

    def leader(self) -> int:
        """The leader to aim at: the agreed one, else whoever claims it with the highest epoch."""
        agreed = self.world.leader()
        if agreed:
            return agreed[0]
        claimed = self.world.current_leader()
        return claimed if claimed is not None else max(self.world.ids)


@dataclass(frozen=True)
class ScenarioTiming:
    """The cluster timing a scenario runs at unless the caller overrides it (run_scenario, CLI flags).

    Most scenarios mean the same at any timing (their waits are in election timeouts) and use the
    cluster defaults; a scenario that lines faults up against heartbeat rounds declares its own.
    """

    heartbeat_interval_ms: int = DEFAULT_TIMING.heartbeat_interval_ms
    election_timeout_ms: int = DEFAULT_TIMING.election_timeout_ms
    preempt_hold_down_ms: int = (
        DEFAULT_TIMING.preempt_hold_down_ms
    )  # 0 = a higher node never takes over from a lower leader

    def describe(self) -> str:
        hold = "no preemption" if not self.preempt_hold_down_ms else f"preempt hold-down {self.preempt_hold_down_ms} ms"
        return f"heartbeat {self.heartbeat_interval_ms} ms, election timeout {self.election_timeout_ms} ms, {hold}"


SCENARIO_DEFAULT_TIMING = ScenarioTiming()

Events = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Instant:
    """The moment a scenario exists for, judged from the recorded history after the run (never
    from wall-clock guesses during it). ``judge`` takes the sorted history and answers whether the
    moment happened, with evidence either way (nodes, epochs, times relative to the first event)."""

    description: str
    judge: Callable[[Events], tuple[bool, str]]
    promises: bool = False  # a moment made of followers' promises: modes that make none never reach it


@dataclass(frozen=True)
class InstantResult:
    description: str
    reached: bool
    evidence: str

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "reached": self.reached, "evidence": self.evidence}


Scenario = Callable[[Context], None]
SCENARIOS: dict[str, Scenario] = {}
DESCRIPTIONS: dict[str, str] = {}
TIMINGS: dict[str, ScenarioTiming] = {}
INSTANTS: dict[str, Instant] = {}
# The fault kinds each scenario uses (node.faults), and the worlds it runs in: those that can do every
# one of them (node.faults.FaultKind.worlds), less any a scenario excludes for what else it needs.
FAULTS_USED: dict[str, tuple[str, ...]] = {}
WORLDS_OF: dict[str, frozenset[str]] = {}
# Scenarios that change membership: how many of the cluster's nodes start outside the configuration
# (to be added). They run only in modes that change membership (node.core.ModeInfo.membership_changes).
SPARES: dict[str, int] = {}


def scenario(
    name: str,
    description: str,
    faults: tuple[str, ...],
    timing: ScenarioTiming = SCENARIO_DEFAULT_TIMING,
    instant: Instant | None = None,
    spares: int = 0,
    worlds: frozenset[str] = frozenset(WORLDS),
) -> Callable[[Scenario], Scenario]:
    """Register a scenario. `faults` are the registry's kinds it uses (node.faults.FAULTS); it runs in
    the worlds that can do all of them, and only `worlds` (a scenario that reads heartbeat rounds off
    real processes, say, runs on them only). Its code uses only node.faults.ScenarioWorld wherever it can run
    in the simulator too."""
    for kind in faults:
        if kind not in FAULTS:
            raise KeyError(f"scenario {name}: no fault kind {kind!r} in node.faults")

    def register(fn: Scenario) -> Scenario:
        SCENARIOS[name] = fn
        DESCRIPTIONS[name] = description
        TIMINGS[name] = timing
        FAULTS_USED[name] = faults
        WORLDS_OF[name] = frozenset(worlds).intersection(*(FAULTS[kind].worlds for kind in faults))
        if instant is not None:
            INSTANTS[name] = instant
        if spares:
            SPARES[name] = spares
        return fn

    return register


def simulated_scenarios() -> list[str]:
    """The scenarios that run in the simulator too (chaos/simulated.py)."""
    return [name for name in SCENARIOS if SIM in WORLDS_OF[name]]


def describe_faults(name: str) -> str:
    """What the scenario's faults are, in the registry's words."""
    return "; ".join(f"{kind}: {FAULTS[kind].description}" for kind in FAULTS_USED[name])


def scenarios_for(mode: str) -> list[str]:
    """The scenarios a mode can run: those that change membership need a mode that changes it."""
    return [name for name in SCENARIOS if name not in SPARES or mode_info(mode).membership_changes]


def judge_instant(name: str, mode: str, events: Events) -> InstantResult | None:
    """Whether a run of scenario ``name`` reached its moment; None for a scenario without one (or
    whose moment is made of promises, in a mode that makes none)."""
    instant = INSTANTS.get(name)
    if instant is None or (instant.promises and not mode_info(mode).promises):
        return None
    reached, evidence = instant.judge(sort_events(events))
    return InstantResult(instant.description, reached, evidence)


# ---- readings the instants share (over a sorted history) -----------------------------------------


def _faults_started(ordered: Events, name: str) -> list[Mapping[str, Any]]:
    return [e for e in ordered if e["kind"] == "fault" and e["action"] == "start" and e["name"] == name]


def _fault_end_ns(ordered: Events, start: Mapping[str, Any]) -> int:
    """When the fault begun by ``start`` was lifted (its stop, or a heal), else the end of the history."""
    for e in ordered:
        if e["t_ns"] >= start["t_ns"] and (
            e["kind"] == "heal" or (e["kind"] == "fault" and e["action"] == "stop" and e["name"] == start["name"])
        ):
            return e["t_ns"]
    return ordered[-1]["t_ns"]


def _leading_at(intervals: Sequence[Interval], t_ns: int) -> list[Interval]:
    return [iv for iv in intervals if iv.start <= t_ns < iv.end]


def _requests_to(ordered: Events, node: int, type_: MsgType, start_ns: int, end_ns: int) -> list[Mapping[str, Any]]:
    """Requests of ``type_`` that ``node`` received (its own "message" events) during [start_ns, end_ns).

    A node records at most 100 a second (the rest only counted): a request left out can make a run
    look as if it missed its instant, which costs a retry, never a false "reached"."""
    return [
        e
        for e in ordered
        if e["kind"] == "message"
        and e["type"] == type_.value
        and e["node"] == node
        and e["dst"] == node
        and "error" not in e
        and start_ns <= e["t_ns"] < end_ns
    ]


def _describe_leaders(leaders: Sequence[Interval]) -> str:
    return ", ".join(f"node {iv.node} (epoch {iv.epoch})" for iv in leaders) or "no node"


def _leader_cut_off(fault: str, target: Callable[[Mapping[str, Any]], int], what: str) -> Instant:
    """The instant of a fault aimed at the leader: the node it cut off led when it began."""

    def judge(ordered: Events) -> tuple[bool, str]:
        origin, intervals = _origin_ns(ordered), leadership_intervals(ordered)
        seen = []
        for start in _faults_started(ordered, fault):
            node, leaders = target(start["detail"]), _leading_at(intervals, start["t_ns"])
            when = f"{fault} began at {_rel(start['t_ns'], origin)}"
            led = [iv for iv in leaders if iv.node == node]
            if led:
                return True, f"{when} on node {node}, which led epoch {led[0].epoch}"
            seen.append(f"{when} on node {node}, but {_describe_leaders(leaders)} led")
        return False, "; ".join(seen) or f"no {fault} fault was recorded"

    return Instant(f"the node {what} led when the fault began", judge)


@scenario(
    "leader-blackholed",
    "every link to and from the leader silently drops; then heal",
    ("blackhole", "heal"),
    instant=_leader_cut_off("blackhole", lambda detail: detail["node"], "blackholed"),
)
def leader_blackholed(ctx: Context) -> None:
    ctx.world.blackhole(ctx.leader())
    ctx.hold_then_heal()


def _leader_on_minority_side(ordered: Events) -> tuple[bool, str]:
    origin, intervals = _origin_ns(ordered), leadership_intervals(ordered)
    majority = len(history_members(ordered)) // 2 + 1
    seen = []
    for start in _faults_started(ordered, "partition"):
        when = f"the partition {start['detail']['groups']} began at {_rel(start['t_ns'], origin)}"
        leaders = _leading_at(intervals, start["t_ns"])
        for iv in leaders:
            side = next(g for g in start["detail"]["groups"] if iv.node in g)
            if len(side) < majority:
                return True, f"{when} with node {iv.node} (epoch {iv.epoch}) leading on the minority side {side}"
        seen.append(f"{when} while {_describe_leaders(leaders)} led, not on a minority side")
    return False, "; ".join(seen) or "no partition was recorded"


@scenario(
    "partition-leader-minority",
    "majority/minority partition with the old leader in the minority",
    ("partition", "heal"),
    instant=Instant("the leader was on the minority side when the partition began", _leader_on_minority_side),
)
def partition_leader_minority(ctx: Context) -> None:
    ids = ctx.world.ids
    leader, others = ctx.leader_and_others()
    minority_size = (len(ids) - 1) // 2  # leader + these stay below a majority
    minority = sorted([leader, *others[: minority_size - 1]])
    majority = sorted(n for n in ids if n not in minority)
    ctx.world.partition([minority, majority])
    ctx.hold_then_heal()


@scenario(
    "no-majority-anywhere",
    "SIGKILL the leader, split the rest into halves too small to elect; then heal and restart",
    ("kill", "partition", "heal", "restart"),
)
def no_majority_anywhere(ctx: Context) -> None:
    # Candidates on both sides keep proposing and are acknowledged by their side's other node without
    # ever reaching a majority: what that node tells a client who asks who leads must not name them.
    leader, others = ctx.leader_and_others()
    ctx.world.kill(leader)
    half = len(others) // 2
    ctx.world.partition([sorted(others[:half]), sorted(others[half:])])
    ctx.wait(5)
    ctx.world.heal()
    ctx.world.restart(leader)


@scenario("random-halves", "a random split into two halves; then heal", ("partition", "heal"))
def random_halves(ctx: Context) -> None:
    ids = list(ctx.world.ids)
    ctx.rng.shuffle(ids)
    cut = ctx.rng.randint(1, len(ids) - 1)
    ctx.world.partition([sorted(ids[:cut]), sorted(ids[cut:])])
    ctx.hold_then_heal()


@scenario(
    "one-way",
    "the leader's outgoing links drop (it still hears everyone); then heal",
    ("one-way", "heal"),
    instant=_leader_cut_off("one-way", lambda detail: detail["from"], "whose outgoing links dropped"),
)
def one_way(ctx: Context) -> None:
    leader = ctx.leader()
    ctx.world.one_way(leader, [n for n in ctx.world.ids if n != leader])
    ctx.hold_then_heal()


def _bridge_torn(ordered: Events) -> tuple[bool, str]:
    origin = _origin_ns(ordered)
    windows = grant_windows(recorded_promises(ordered))
    seen = []
    for start in _faults_started(ordered, "bridge"):
        allowed = {int(node): set(peers) for node, peers in start["detail"]["allowed"].items()}
        middle = next(node for node, peers in allowed.items() if peers == set(allowed) - {node})
        side = {node: frozenset({node, *peers} - {middle}) for node, peers in allowed.items() if node != middle}
        end_ns = _fault_end_ns(ordered, start)
        proposals = _requests_to(ordered, middle, MsgType.COORDINATOR, start["t_ns"], end_ns)
        for proposal in proposals:
            candidate = proposal["src"]
            held = [
                w
                for w in windows
                if w.node == middle
                and w.start < proposal["t_ns"] < w.end
                and w.leader in side
                and candidate in side
                and w.leader not in side[candidate]
            ]
            if held:
                w = held[0]
                return True, (
                    f"bridge node {middle} held a promise to node {w.leader} (epoch {w.epoch}, until "
                    f"{_rel(w.end, origin)}) when node {candidate} of the other side proposed epoch "
                    f"{proposal['epoch']} at {_rel(proposal['t_ns'], origin)}"
                )
        seen.append(
            f"bridge node {middle} got {len(proposals)} proposal(s) between {_rel(start['t_ns'], origin)} and "
            f"{_rel(end_ns, origin)}, none while it held a live promise to the proposer's other side"
        )
    return False, "; ".join(seen) or "no bridge was recorded"


@scenario(
    "bridge",
    "two halves that cannot talk, and one node in the middle that talks to both",
    ("reachability", "heal"),
    instant=Instant(
        "the bridge node held a live promise to one side when the other side's candidate proposed",
        _bridge_torn,
        promises=True,
    ),
)
def bridge(ctx: Context) -> None:
    ids = list(ctx.world.ids)
    leader, others = ctx.leader_and_others()
    middle = others[0]
    rest = [leader, *others[1:]]
    half = len(rest) // 2
    a, b = set(rest[:half]), set(rest[half:])  # the leader lands in the smaller side `a`
    allowed = {n: (a | {middle} if n in a else b | {middle} if n in b else set(ids)) - {n} for n in ids}
    ctx.world.reachability(allowed, "bridge")
    ctx.hold_then_heal()


@scenario(
    "majorities-ring", "each node sees a majority, but every node's majority is different", ("reachability", "heal")
)
def majorities_ring(ctx: Context) -> None:
    ids = list(ctx.world.ids)
    ctx.rng.shuffle(ids)
    n = len(ids)
    side = (n // 2 + 1) // 2  # fewest neighbours per side so that self + 2*side is a majority
    allowed = {}
    for i, node in enumerate(ids):
        near = {ids[(i + k) % n] for k in range(-side, side + 1)}
        allowed[node] = near - {node}
    ctx.world.reachability(allowed, "majorities-ring")
    ctx.hold_then_heal()


@scenario("leader-pause", "SIGSTOP the leader for longer than its lease, then SIGCONT it", ("pause", "resume", "heal"))
def leader_pause(ctx: Context) -> None:
    leader = ctx.leader()
    ctx.world.pause(leader)
    ctx.wait(4)
    ctx.world.resume(leader)
    ctx.world.heal()


@scenario(
    "flapping-link",
    "the leader's links drop and return, again and again, near the timeout",
    ("blackhole", "clear", "heal"),
)
def flapping_link(ctx: Context) -> None:
    leader = ctx.leader()
    for i in range(5):
        ctx.world.blackhole(leader, fault=f"flap-{i}")
        ctx.wait(ctx.rng.uniform(0.5, 1.5))
        ctx.world.clear(f"flap-{i}")
        ctx.wait(ctx.rng.uniform(0.3, 1.0))
    ctx.world.heal()


# Real processes only: the latency is on the replies (Toxiproxy's downstream), which a simulated link,
# carrying all one node sends another, cannot single out.
@scenario(
    "latency-near-timeout",
    "every peer link slowed to about half an election timeout, with jitter",
    ("latency", "heal"),
    worlds=frozenset({REAL}),
)
def latency_near_timeout(ctx: Context) -> None:
    et = ctx.world.election_timeout_ms
    ctx.world.degrade("latency", ctx.world.all_peer_links(), "latency", {"latency": et // 2, "jitter": et // 5})
    ctx.wait(5)
    ctx.world.heal()


@scenario(
    "rolling-timing-change",
    "the election timeout changed node by node (x2, then x0.6), leader last; "
    "midway the leader loses a follower still on the old timing",
    ("retime", "one-way", "heal"),
)
def rolling_timing_change(ctx: Context) -> None:
    # With timings that differ, a follower on a shorter timeout must still outlast the lease of a
    # leader on a longer one (the announced lease); the cut makes a candidate of the follower that
    # lost the leader while the others run mixed timings.
    base = ctx.world.election_timeout_ms
    for timeout_ms in (2 * base, base * 3 // 5):
        longest = max(timeout_ms, base) / base  # waits are in the cluster's (base) election timeouts
        leader, others = ctx.leader_and_others()
        for i, node in enumerate([*others, leader]):
            ctx.world.retime(node, timeout_ms)
            ctx.wait(1.5 * longest)
            if i == 0 and len(others) > 1:
                ctx.world.one_way(leader, [others[1]], fault=f"mixed-timings-{timeout_ms}")
                ctx.wait(3 * longest)
                ctx.world.heal()
    ctx.world.heal()


def _grew_and_shrank(ordered: Events) -> tuple[bool, str]:
    """The configuration grew by the spares and shrank back to as many voters, its first leader removed."""
    meta = next((e for e in ordered if e["kind"] == "meta"), {})
    first = sorted(meta.get("voters", []))
    changes = [e for e in ordered if e["kind"] == "membership"]
    if not first or not changes:
        return False, "no configuration changed (or the run started without spares)"
    largest = max(len(e["voters"]) for e in changes)
    grown = len(history_members(ordered))
    if largest < grown:
        return False, f"the configuration never reached {grown} voters (at most {largest})"
    peak = next(i for i, e in enumerate(changes) if len(e["voters"]) == largest)
    last = changes[-1]
    if peak == len(changes) - 1 or len(last["voters"]) != len(first):
        return False, f"it grew to {largest} voters but did not shrink back to {len(first)} (last: {last['voters']})"
    origin = _origin_ns(ordered)
    return True, (
        f"voters {first} grew to {largest} by {_rel(changes[peak]['t_ns'], origin)} and shrank to "
        f"{last['voters']} by {_rel(last['t_ns'], origin)}"
    )


@scenario(
    "membership-grow-shrink",
    "three voters grow to five and shrink back to three (the leader removed "
    "too), one member at a time: a follower cut off during the first change, another killed during the second",
    ("member", "blackhole", "heal", "kill", "restart"),
    instant=Instant("the configuration grew to five voters and shrank back to three", _grew_and_shrank),
    spares=2,
)
def membership_grow_shrink(ctx: Context) -> None:
    cc = ctx.world
    spares = list(cc.joining)
    voters = [n for n in cc.ids if n not in spares]
    leader = ctx.leader()
    followers = [n for n in voters if n != leader]
    ctx.rng.shuffle(followers)
    cut, killed = followers[0], followers[-1]

    def change(action: str, node: int) -> None:
        with contextlib.suppress(HandoverFailed, TimeoutError):  # the checkers judge what happened
            cc.change_membership(action, node)

    cc.blackhole(cut, fault="cut-while-adding")  # it misses the change, and learns it after the heal
    change("add", spares[0])
    ctx.wait(1)
    cc.heal()
    ctx.wait(1)
    cc.kill(killed)  # down while the cluster grows past it
    change("add", spares[1])
    ctx.wait(1)
    cc.restart(killed)
    ctx.wait(2)
    change("remove", ctx.leader())  # the leader hands over first
    ctx.wait(1)
    change("remove", cut)
    ctx.wait(1)
    cc.heal()


@scenario("kill-restart-loop", "SIGKILL the leader and restart it, three times", ("kill", "restart", "heal"))
def kill_restart_loop(ctx: Context) -> None:
    for _ in range(3):
        leader = ctx.leader()
        ctx.world.kill(leader)
        ctx.wait(2.5)
        ctx.world.restart(leader)
        ctx.wait(2)
    ctx.world.heal()


def _restarted_having_promised(ordered: Events) -> tuple[bool, str]:
    origin, intervals = _origin_ns(ordered), leadership_intervals(ordered)
    members = sorted(history_members(ordered))
    up = up_spans(ordered, members)
    # The moment every process was down at once: the last kill before the first start after it.
    kills = [e["t_ns"] for e in ordered if e["kind"] == "process" and e["action"] == "kill" and e["node"] in members]
    all_down = next((t for t in kills if not any(s.start <= t < s.end for spans in up.values() for s in spans)), None)
    if all_down is None:
        return False, "the members were never all down at once"
    promised = {g.node for g in recorded_promises(ordered) if isinstance(g, Grant) and g.at < all_down}
    promised |= {iv.node for iv in intervals if iv.start < all_down}
    if missing := [n for n in members if n not in promised]:
        return False, f"node(s) {missing} had promised no epoch when every node was down ({_rel(all_down, origin)})"
    if never := [n for n in members if not any(s.start > all_down for s in up[n])]:
        return False, f"node(s) {never} did not start again after every node was down"
    led_before = {iv.node for iv in intervals if iv.start < all_down}
    first = next((iv for iv in intervals if iv.start > all_down), None)
    if first is None:
        return False, "every node restarted having promised an epoch, but none led afterwards"
    if first.node in led_before:
        return False, (
            f"every node restarted having promised an epoch, but the first to lead afterwards, node "
            f"{first.node}, had led before"
        )
    return True, (
        f"every node was down at {_rel(all_down, origin)} having promised an epoch, and restarted; node "
        f"{first.node}, which had never led, led epoch {first.epoch} first at {_rel(first.start, origin)}"
    )


@scenario(
    "full-restart",
    "leadership handed down the low ids, every node SIGKILLed, restarted highest-last",
    ("transfer", "kill", "restart", "heal"),
    instant=Instant(
        "every node restarted having promised an epoch, and one that had never led led first",
        _restarted_having_promised,
        promises=True,
    ),
)
def full_restart(ctx: Context) -> None:
    # Epochs climb through several leaders (the highest id first, then the low ids by transfer,
    # never the second-highest). After the restart the second-highest leads first, and only durable
    # promises keep its epoch above all of those: a cluster that forgot them reuses one (P1).
    ids = sorted(ctx.world.ids)
    highest = ids[-1]
    for target in ids[:-2]:
        with contextlib.suppress(HandoverFailed, TimeoutError):
            ctx.world.transfer(target)
    for node in ids:
        ctx.world.kill(node)
    ctx.wait(0.5)
    for node in ids[:-1]:
        ctx.world.restart(node)
    with contextlib.suppress(TimeoutError):  # the checkers judge; we only wait for a chance to lead
        ctx.world.wait_for_leader(timeout_s=20 * ctx.world.election_timeout_ms / 1000, exclude=[highest])
    ctx.world.restart(highest)
    ctx.wait(1)
    ctx.world.heal()


class _Rounds:
    """How many heartbeats one node has received (GetStatus on its unproxied client port), polled
    closely enough to line a fault up against the leader's heartbeat rounds."""

    def __init__(self, cc: ChaosCluster, node: int) -> None:
        assert cc.cluster is not None
        self.channel = observer_channel(cc.cluster.spec.node(node).client_address)
        self.stub = pb_grpc.LeadershipStub(self.channel)

    def count(self) -> int | None:
        try:
            return self.stub.GetStatus(pb.GetStatusRequest(), timeout=0.3).messages_received.get("heartbeat", 0)
        except grpc.RpcError:
            return None

    def next_round(self, timeout_s: float) -> float | None:
        """Wait for the next heartbeat to arrive; the monotonic time it was seen, or None."""
        deadline = time.monotonic() + timeout_s
        before = self.count()
        while time.monotonic() < deadline:
            time.sleep(0.01)
            now = self.count()
            if before is None:
                before = now
            elif now is not None and now > before:
                return time.monotonic()
        return None

    def close(self) -> None:
        self.channel.close()


def _asked_to_elect_inside_promise(ordered: Events) -> tuple[bool, str]:
    origin = _origin_ns(ordered)
    windows = grant_windows(recorded_promises(ordered))
    restarts = [
        e for e in ordered if e["kind"] == "process" and e["action"] == "restart" and isinstance(e["node"], int)
    ]
    seen = []
    for restart in restarts:
        node, at = restart["node"], restart["t_ns"]
        live: list[GrantWindow] = [w for w in windows if w.node == node and w.start <= at < w.end]
        if not live:
            seen.append(f"node {node} restarted at {_rel(at, origin)} holding no live promise")
            continue
        window = max(live, key=lambda w: w.end)
        asked = _requests_to(ordered, node, MsgType.ELECTION, at, window.end)
        if asked:
            return True, (
                f"node {node} restarted at {_rel(at, origin)} inside its promise to node {window.leader} "
                f"(epoch {window.epoch}, until {_rel(window.end, origin)}); node {asked[0]['src']} asked it "
                f"to elect at {_rel(asked[0]['t_ns'], origin)}"
            )
        seen.append(
            f"node {node} restarted at {_rel(at, origin)} inside its promise to node {window.leader}, but no "
            f"one asked it to elect before that promise ended at {_rel(window.end, origin)}"
        )
    return False, "; ".join(seen) or "no node was restarted"


@scenario(
    "quick-restart-in-lease",
    "leader cut one way from a minority; a follower its lease rests on is SIGKILLed, restarted and asked to elect",
    ("transfer", "one-way", "latency", "restart", "heal"),
    timing=ScenarioTiming(heartbeat_interval_ms=1000, election_timeout_ms=3000, preempt_hold_down_ms=0),
    worlds=frozenset({REAL}),  # it lines the restart up against heartbeat rounds read off real nodes
    instant=Instant(
        "a node restarted inside a promise it had given was asked to elect before that promise ended",
        _asked_to_elect_inside_promise,
        promises=True,
    ),
)
def quick_restart_in_lease(ctx: Context) -> None:
    # The reviewed split brain (tests/unit/test_core.py, quick_restart_inside_the_promise_window) on
    # real processes. A lower node L leads and the highest node R follows it (hence no preemption
    # in this scenario's timing). L's links to a minority C are cut one way, so its lease rests on
    # a bare majority that includes R. R is SIGKILLed and restarted at once, just before L's next
    # round would reach it: it boots inside its promise window to L, knowing no leader. The highest
    # of C has stopped hearing L, times out and sends Election to R, while L's lease (from the last
    # round R acknowledged) still runs and before L's next round reaches R. R is the highest id:
    # no one answers it Alive. A node that voted for itself there (planted bug boot-self-vote)
    # would win C's votes and lead beside L (P3); the fixed node waits out its window.
    #
    # Times, with heartbeat H = 1 s and election timeout ET = 3 s (Timing.from_ms): L's lease runs
    # 0.7 ET = 2.1 s from sending a round, a follower's promise 0.8 ET = 2.4 s from receipt, and a
    # follower elects ET + rank * H/5 + U(0, H/2) after the last round it heard. Cut right after
    # round h: the highest of C (rank 2, only L and R are above it) sends Election at h + 3.4-3.9 s,
    # between rounds h+3 and h+4, its promise to L long over. R acknowledges rounds h+1 and h+2,
    # so L's lease runs to h + 4.1 s. Killed and restarted 50 ms before L sends round h+3, R misses
    # it (and L's channel to R then backs off for about H/2) and is back in about 0.1-0.3 s, before
    # the Election. L answers that Election with a round of its own, at once: the 50 ms of latency
    # on L->R keeps that round behind the Election at R (one hop, though over a fresh connection).
    cc = ctx.world
    ids = sorted(cc.ids)
    if len(ids) < 3:  # no minority to cut off: only the quick restart of a follower
        leader = ctx.leader()
        cc.process(next(n for n in ids if n != leader), "restart")
        ctx.hold_then_heal(1)
        return
    leader = ctx.leader()
    if leader == ids[-1]:
        with contextlib.suppress(HandoverFailed, TimeoutError):
            cc.transfer(ids[-2])  # so that the highest id can be the follower that restarts
        with contextlib.suppress(TimeoutError):
            cc.wait_for_leader(timeout_s=4 * cc.election_timeout_ms / 1000)
        leader = ctx.leader()
    restarted = max(n for n in ids if n != leader)
    others = sorted((n for n in ids if n not in (leader, restarted)), reverse=True)
    first, rest = others[0], others[1:]  # the highest of the others times out first
    ctx.rng.shuffle(rest)
    cut = [first, *rest[: len(ids) - (len(ids) // 2 + 1) - 1]]  # everyone beyond a bare majority

    period_s = cc.heartbeat_interval_ms / 1000
    latency_s = 0.05
    watch_cut, watch_restarted = _Rounds(cc, first), _Rounds(cc, restarted)
    try:
        round_h = watch_cut.next_round(3 * period_s)
        if round_h is None:
            return
        cc.one_way(leader, cut)  # round h is the last they hear
        cc.degrade(
            "slow-leader-link",
            [(leader, restarted)],
            "latency",
            {"latency": int(latency_s * 1000), "jitter": 0},
            ("upstream",),
        )
        time.sleep(max(0.0, round_h + period_s / 2 - time.monotonic()))
        round_1 = watch_restarted.next_round(3 * period_s)
        round_2 = watch_restarted.next_round(3 * period_s) if round_1 is not None else None
        if round_2 is None:
            return
        period = min(max(round_2 - round_1, 0.9 * period_s), 1.1 * period_s)
        sent_3 = round_2 + period - latency_s  # when L will send round h+3 (and dial R anew)
        time.sleep(max(0.0, sent_3 - 0.05 - time.monotonic()))
        cc.process(restarted, "restart")
    finally:
        watch_cut.close()
        watch_restarted.close()
        ctx.wait(0.7)  # past the end of L's lease: whatever was going to happen has happened
        cc.heal()


# The simulator's store never stops.
@scenario(
    "store-restart",
    "SIGKILL and restart the fenced store while the leader writes",
    ("restart", "heal"),
    worlds=frozenset({REAL}),
)
def store_restart(ctx: Context) -> None:
    ctx.wait(1)
    ctx.world.process(STORE, "restart")
    ctx.wait(2)
    ctx.world.heal()


@scenario(
    "random-mix",
    "a seeded random mix of the faults above over several rounds, with heal phases",
    ("partition", "blackhole", "refuse", "one-way", "pause", "kill", "latency", "bandwidth", "slicer", "reset-peer"),
)
def random_mix(ctx: Context) -> None:
    ids = ctx.world.ids
    for round_ in range(4):
        kind = ctx.rng.choice(
            [
                "halves",
                "isolate",
                "refuse",
                "one-way",
                "pause",
                "kill",
                "latency",
                "bandwidth",
                "slicer",
                "reset",
                "store",
            ]
        )
        leader = ctx.leader()
        victim = ctx.rng.choice([leader, ctx.rng.choice(ids)])
        fault = f"mix-{round_}-{kind}"
        if kind == "halves":
            shuffled = ctx.rng.sample(ids, len(ids))
            cut = ctx.rng.randint(1, len(ids) - 1)
            ctx.world.partition([sorted(shuffled[:cut]), sorted(shuffled[cut:])], fault)
        elif kind == "isolate":
            ctx.world.blackhole(victim, fault)
        elif kind == "refuse":
            ctx.world.refuse(victim, fault)
        elif kind == "store":
            ctx.world.process(STORE, "restart")
        elif kind == "one-way":
            ctx.world.one_way(victim, ctx.rng.sample([n for n in ids if n != victim], 2), fault)
        elif kind == "pause":
            ctx.world.process(victim, "pause")
        elif kind == "kill":
            ctx.world.process(victim, "kill")
        elif kind == "latency":
            ctx.world.degrade(
                fault, ctx.world.all_peer_links(), "latency", {"latency": ctx.rng.randint(20, 200), "jitter": 30}
            )
        elif kind == "bandwidth":
            ctx.world.degrade(fault, ctx.world.all_peer_links(), "bandwidth", {"rate": ctx.rng.choice([1, 4, 16])})
        elif kind == "slicer":
            ctx.world.degrade(
                fault, ctx.world.all_peer_links(), "slicer", {"average_size": 16, "size_variation": 8, "delay": 500}
            )
        elif kind == "reset":
            ctx.world.degrade(
                fault, [(victim, n) for n in ids if n != victim], "reset_peer", {"timeout": 0}, ("upstream",)
            )
        ctx.wait(ctx.rng.uniform(1.5, 3))
        if kind == "pause":
            ctx.world.process(victim, "resume")
        elif kind == "kill":
            ctx.world.process(victim, "restart")
        ctx.world.heal()
        ctx.wait(2)
