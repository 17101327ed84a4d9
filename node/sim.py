"""Deterministic simulator: the pure election core joined by a seeded, tick-based in-memory network.

Every elector is the real one from `make_elector`; only the world around it is simulated. Per tick the
network delivers the messages that are due, then ticks every running node. Faults: delay, drop, one-way
cuts, isolation, partitions, crash + restart (from the persisted promise only), pause (SIGSTOP-like:
messages queue up and arrive on resume). A message to a crashed node comes back to its sender as
`send_failed` one tick later (connection refused); a cut or dropped message just vanishes (blackhole).

The history records view changes, BecameLeader / SteppedDown events and leadership intervals, and the
checks below read only that history. A run is fully determined by its seed:

    python -m node.sim --seed 7 --mode quorum --nodes 5 --rounds 20
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from node.core import (
    BecameLeader,
    BullyElector,
    Config,
    Event,
    Message,
    Mode,
    MsgType,
    Output,
    PlantedBug,
    Promise,
    Role,
    SteppedDown,
    Timing,
    View,
    make_elector,
)

# ---- what the history holds ---------------------------------------------------------------------


@dataclass(frozen=True)
class ViewChange:
    tick: int
    node: int
    role: Role | None  # None: the node crashed
    epoch: int
    leader_id: int | None


@dataclass(frozen=True)
class NodeEvent:
    tick: int
    node: int
    event: Event


@dataclass(frozen=True)
class FaultRecord:
    tick: int
    description: str


@dataclass(frozen=True)
class Interval:
    """A node's leadership, [start_tick, end_tick) in ticks; end_tick None while it lasts.

    It ends at the stepdown or the crash, or at the lease end when the lease ran out first (the
    node was paused and could not notice).
    """

    node: int
    epoch: int
    start_tick: int
    end_tick: int | None = None


@dataclass(frozen=True)
class _InFlight:
    recipient: int
    incarnation: int  # a message never reaches a later incarnation (its connection died)
    msg: Message
    failed: bool  # a send_failed notice for msg, going back to its sender


@dataclass
class _Node:
    elector: BullyElector
    incarnation: int = 0
    crashed: bool = False
    paused_until_tick: int | None = None
    paused_since_tick: int = 0
    held: list[_InFlight] = field(default_factory=list)
    last_view: tuple[Role | None, int, int | None] | None = None


# ---- the network --------------------------------------------------------------------------------


class Network:
    """Nodes 1..n over one seeded network. Every random choice comes from `seed`."""

    def __init__(
        self,
        seed: int,
        n: int,
        mode: Mode | str,
        timing: Timing = Timing(),
        planted_bugs: frozenset[PlantedBug] = frozenset(),
    ) -> None:
        if n <= 0:
            raise ValueError(f"need at least one node, got {n}")
        self.seed = seed
        self.mode = Mode(mode)
        self.timing = timing
        self.planted_bugs = planted_bugs
        self.members = tuple(range(1, n + 1))
        self.now = 0
        self.rng = random.Random(f"{seed}:network")
        self.min_delay_ticks = 1
        self.max_delay_ticks = 1
        self.drop_probability = 0.0
        self.cut_links: set[tuple[int, int]] = set()
        self.persisted: dict[int, Promise] = {m: Promise() for m in self.members}
        self.sent: Counter[MsgType] = Counter()
        self.delivered: Counter[MsgType] = Counter()
        self.dropped = 0  # cut or lost on the way: the sender is not told
        self.refused = 0  # to a crashed node: the sender gets send_failed
        self.views: list[ViewChange] = []
        self.events: list[NodeEvent] = []
        self.faults: list[FaultRecord] = []
        self.intervals: list[Interval] = []
        self._open_interval: dict[int, int] = {}  # node -> index into intervals
        self._queue: list[tuple[int, int, _InFlight]] = []
        self._seq = 0
        self._nodes = {m: _Node(self._build_elector(m, 0)) for m in self.members}
        for m in self.members:
            self._record_view(m)

    # -- faults ----------------------------------------------------------------------------------

    def set_delay(self, min_delay_ticks: int, max_delay_ticks: int) -> None:
        if not 1 <= min_delay_ticks <= max_delay_ticks:
            raise ValueError(f"need 1 <= min <= max delay, got {min_delay_ticks}, {max_delay_ticks}")
        self.min_delay_ticks, self.max_delay_ticks = min_delay_ticks, max_delay_ticks
        self._fault(f"delay {min_delay_ticks}..{max_delay_ticks} ticks")

    def set_drop(self, probability: float) -> None:
        if not 0.0 <= probability < 1.0:
            raise ValueError(f"drop probability must be in [0, 1), got {probability}")
        self.drop_probability = probability
        self._fault(f"drop {probability:.2f}")

    def cut(self, a: int, b: int) -> None:
        """Drop every message a->b (one way only)."""
        self._check_member(a, b)
        self.cut_links.add((a, b))
        self._fault(f"cut {a}->{b}")

    def isolate(self, node: int) -> None:
        self._check_member(node)
        self.cut_links |= {(node, m) for m in self.members if m != node}
        self.cut_links |= {(m, node) for m in self.members if m != node}
        self._fault(f"isolate {node}")

    def partition(self, groups: Sequence[Iterable[int]]) -> None:
        """Cut every link between different groups; the groups must cover the membership exactly."""
        sets = [frozenset(g) for g in groups]
        listed = [m for g in sets for m in g]
        if sorted(listed) != list(self.members):
            raise ValueError(f"partition groups {groups} must cover members {self.members} exactly once")
        self.cut_links |= {(a, b) for g in sets for h in sets if g is not h for a in g for b in h}
        self._fault("partition " + " | ".join(",".join(map(str, sorted(g))) for g in sets))

    def heal(self) -> None:
        """Restore the links: no cuts, no drops, one-tick delay. Processes stay as they are."""
        self.cut_links.clear()
        self.drop_probability = 0.0
        self.min_delay_ticks = self.max_delay_ticks = 1
        self._fault("heal")

    def crash(self, node: int) -> None:
        state = self._live_state(node, "crash")
        end_tick = self.now
        if state.paused_until_tick is not None:
            # It never woke up to notice its lease ran out: its leadership ended with the lease.
            ticks = range(state.paused_since_tick, self.now)
            end_tick = next((t for t in ticks if not state.elector.view(t).lease_valid), self.now)
        state.crashed = True
        state.paused_until_tick = None
        state.held.clear()
        self._close_interval(node, end_tick)
        self._fault(f"crash {node}")
        self._record_view(node)

    def restart(self, node: int) -> None:
        """Rebuild the node from nothing but its last persisted promise."""
        self._check_member(node)
        state = self._nodes[node]
        if not state.crashed:
            raise ValueError(f"node {node} is running; crash it first")
        self._nodes[node] = _Node(self._build_elector(node, state.incarnation + 1), state.incarnation + 1)
        self._fault(f"restart {node} with {self.persisted[node]}")
        self._record_view(node)

    def pause(self, node: int, ticks: int) -> None:
        """Stop the node for `ticks` (SIGSTOP): no ticks, messages to it queue up until it resumes."""
        state = self._live_state(node, "pause")
        if ticks <= 0:
            raise ValueError(f"pause needs ticks > 0, got {ticks}")
        if state.paused_until_tick is None:
            state.paused_since_tick = self.now
        state.paused_until_tick = self.now + ticks
        self._fault(f"pause {node} for {ticks} ticks")

    def resume(self, node: int) -> None:
        state = self._live_state(node, "resume")
        if state.paused_until_tick is None:
            return
        state.paused_until_tick = None
        self._fault(f"resume {node}")
        held, state.held = state.held, []
        for item in held:
            self._deliver(item)

    def heal_all(self) -> None:
        """The end of a fault schedule: heal the links, resume paused nodes, restart crashed ones."""
        self.heal()
        for m in self.members:
            if self._nodes[m].crashed:
                self.restart(m)
            else:
                self.resume(m)

    # -- driving ---------------------------------------------------------------------------------

    def tick(self) -> None:
        self.now += 1
        for m in self.members:
            until = self._nodes[m].paused_until_tick
            if until is not None and until <= self.now:
                self.resume(m)
        while self._queue and self._queue[0][0] <= self.now:
            self._deliver(heapq.heappop(self._queue)[2])
        for m in self.members:
            if self.running(m):
                self._apply(m, self._nodes[m].elector.tick(self.now))

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick()

    def run_until_agreed(self, max_ticks: int) -> int | None:
        """Tick until all running nodes agree on a leader; the ticks it took, or None."""
        for taken in range(max_ticks + 1):
            if self.agreed_leader() is not None:
                return taken
            if taken < max_ticks:
                self.tick()
        return None

    def inject(self, msg: Message) -> Output:
        """Deliver a hand-made message to msg.dst right now (tests); its output goes through the network."""
        if not self.running(msg.dst):
            raise ValueError(f"node {msg.dst} is not running")
        out = self._nodes[msg.dst].elector.step(self.now, msg)
        self._apply(msg.dst, out)
        return out

    def resign(self, node: int) -> Output:
        if not self.running(node):
            raise ValueError(f"node {node} is not running")
        out = self._nodes[node].elector.resign(self.now)
        self._apply(node, out)
        return out

    # -- looking -----------------------------------------------------------------------------------

    def running(self, node: int) -> bool:
        state = self._nodes[node]
        return not state.crashed and state.paused_until_tick is None

    def elector(self, node: int) -> BullyElector:
        return self._nodes[node].elector

    def view(self, node: int) -> View | None:
        return None if self._nodes[node].crashed else self._nodes[node].elector.view(self.now)

    def leaders(self) -> list[int]:
        """Running nodes that are leader in their own view now."""
        return [m for m in self.members if self.running(m) and self.elector(m).view(self.now).role == Role.LEADER]

    def agreed_leader(self) -> tuple[int, int] | None:
        """(leader, epoch) if every running node follows it and it leads (with a valid lease) itself."""
        views = [self.elector(m).view(self.now) for m in self.members if self.running(m)]
        if not views or views[0].leader_id is None:
            return None
        leader, epoch = views[0].leader_id, views[0].epoch
        if any(v.leader_id != leader or v.epoch != epoch for v in views):
            return None
        if not self.running(leader):
            return None
        own = self.elector(leader).view(self.now)
        return (leader, epoch) if own.role == Role.LEADER and own.lease_valid else None

    # -- properties (read only the history) ---------------------------------------------------------

    def unique_leader_per_epoch(self) -> bool:
        """P1: at most one node ever becomes leader of a given epoch."""
        return not self._p1_violations()

    def no_overlapping_leadership(self) -> bool:
        """P3: leadership intervals of different nodes never overlap."""
        return not self._p3_violations()

    def violations(self) -> list[str]:
        return self._p1_violations() + self._p3_violations()

    def _p1_violations(self) -> list[str]:
        winners: dict[int, set[int]] = {}
        for e in self.events:
            if isinstance(e.event, BecameLeader):
                winners.setdefault(e.event.epoch, set()).add(e.node)
        return [f"P1: epoch {ep} has leaders {sorted(ns)}" for ep, ns in sorted(winners.items()) if len(ns) > 1]

    def _p3_violations(self) -> list[str]:
        spans = sorted(
            ((i.start_tick, self.now if i.end_tick is None else i.end_tick, i) for i in self.intervals),
            key=lambda span: span[:2],
        )
        found = []
        for k, (start, end, a) in enumerate(spans):
            for start2, end2, b in spans[k + 1 :]:
                if start2 >= end:
                    break
                if a.node != b.node and start < end2:
                    found.append(
                        f"P3: node {a.node} epoch {a.epoch} [{start},{end}) overlaps "
                        f"node {b.node} epoch {b.epoch} [{start2},{end2})"
                    )
        return found

    # -- internals ---------------------------------------------------------------------------------

    def _build_elector(self, node: int, incarnation: int) -> BullyElector:
        config = Config(node, self.members, self.timing, self.planted_bugs)
        rng = random.Random(f"{self.seed}:node:{node}:{incarnation}")
        return make_elector(self.mode, config, self.persisted[node], rng, self.now)

    def _check_member(self, *nodes: int) -> None:
        for node in nodes:
            if node not in self._nodes:
                raise ValueError(f"node {node} is not a member of {self.members}")

    def _live_state(self, node: int, what: str) -> _Node:
        self._check_member(node)
        state = self._nodes[node]
        if state.crashed:
            raise ValueError(f"cannot {what} node {node}: it is crashed")
        return state

    def _fault(self, description: str) -> None:
        self.faults.append(FaultRecord(self.now, description))

    def _apply(self, node: int, out: Output) -> None:
        # Persist before send: the promise is durable before any message of this output leaves.
        if out.persist is not None:
            self.persisted[node] = out.persist
        for msg in out.messages:
            self._send(msg)
        for event in out.events:
            self._record_event(node, event)
        self._record_view(node)

    def _send(self, msg: Message) -> None:
        self.sent[msg.type] += 1
        if (msg.src, msg.dst) in self.cut_links or self.rng.random() < self.drop_probability:
            self.dropped += 1  # blackhole: the sender learns nothing
            return
        target = self._nodes[msg.dst]
        if target.crashed:  # connection refused, reported back after one tick
            self.refused += 1
            self._enqueue(self.now + 1, _InFlight(msg.src, self._nodes[msg.src].incarnation, msg, failed=True))
            return
        delay = self.rng.randint(self.min_delay_ticks, self.max_delay_ticks)
        self._enqueue(self.now + delay, _InFlight(msg.dst, target.incarnation, msg, failed=False))

    def _enqueue(self, due_tick: int, item: _InFlight) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (due_tick, self._seq, item))

    def _deliver(self, item: _InFlight) -> None:
        state = self._nodes[item.recipient]
        if state.crashed or state.incarnation != item.incarnation:
            return
        if state.paused_until_tick is not None:
            state.held.append(item)
            return
        if item.failed:
            out = state.elector.send_failed(self.now, item.msg)
        else:
            self.delivered[item.msg.type] += 1
            out = state.elector.step(self.now, item.msg)
        self._apply(item.recipient, out)

    def _record_event(self, node: int, event: Event) -> None:
        self.events.append(NodeEvent(self.now, node, event))
        if isinstance(event, BecameLeader):
            self._close_interval(node, self.now)  # classic re-proposes while leading
            self._open_interval[node] = len(self.intervals)
            self.intervals.append(Interval(node, event.epoch, self.now))
        elif isinstance(event, SteppedDown):
            end_tick = self.now
            # After a pause the lease ran out before the node could notice; it did nothing since.
            if event.reason == "lease_expired" and event.lease_end_tick is not None:
                end_tick = min(end_tick, event.lease_end_tick)
            self._close_interval(node, end_tick)

    def _close_interval(self, node: int, end_tick: int) -> None:
        index = self._open_interval.pop(node, None)
        if index is not None:
            interval = self.intervals[index]
            # An announced leadership lasts at least the tick it was announced in, even if the lease
            # it came with had already run out: the application was told it leads.
            self.intervals[index] = replace(interval, end_tick=max(interval.start_tick + 1, end_tick))

    def _record_view(self, node: int) -> None:
        state = self._nodes[node]
        if state.crashed:
            key: tuple[Role | None, int, int | None] = (None, 0, None)
        else:
            v = state.elector.view(self.now)
            key = (v.role, v.epoch, v.leader_id)
        if key != state.last_view:
            state.last_view = key
            self.views.append(ViewChange(self.now, node, *key))


# ---- random fault schedules ---------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """Call Network.<action>(*args) (the action "run" calls nothing), then run `run_ticks` ticks."""

    action: str
    args: tuple[object, ...] = ()
    run_ticks: int = 0


@dataclass(frozen=True)
class Schedule:
    seed: int
    n: int
    mode: Mode
    steps: tuple[Step, ...]
    timing: Timing
    heal_ticks: int  # after the last step (heal_all), agreement must come within this many ticks


@dataclass(frozen=True)
class ScheduleResult:
    net: Network
    heal_tick: int
    agreed_after_ticks: int | None


def random_schedule(seed: int, n: int, mode: Mode | str, rounds: int, timing: Timing = Timing()) -> Schedule:
    """`rounds` random faults (each followed by a random run), then heal_all and a long heal phase."""
    if n < 2:
        raise ValueError(f"a fault schedule needs at least 2 nodes, got {n}")
    rng = random.Random(f"{seed}:schedule")
    members = list(range(1, n + 1))
    crashed: set[int] = set()
    paused_until: dict[int, int] = {}
    now = 0
    steps: list[Step] = [Step("run", (), timing.election_timeout_ticks * 2)]  # a leader first, usually
    now += steps[0].run_ticks
    for _ in range(rounds):
        running = [m for m in members if m not in crashed and paused_until.get(m, 0) <= now]
        choices = ["drop", "delay", "cut", "partition", "isolate", "heal", "crash", "crash", "pause", "pause"]
        if crashed:
            choices += ["restart"] * 3
        kind = rng.choice(choices)
        if kind in ("crash", "pause", "isolate") and not running:
            kind = "heal"
        if kind == "drop":
            step = Step("set_drop", (rng.choice([0.05, 0.1, 0.2, 0.4]),))
        elif kind == "delay":
            low = rng.randint(1, 4)
            step = Step("set_delay", (low, low + rng.randint(0, timing.heartbeat_interval_ticks + 5)))
        elif kind == "cut":
            a, b = rng.sample(members, 2)
            step = Step("cut", (a, b))
        elif kind == "partition":
            shuffled = rng.sample(members, n)
            cuts = sorted(rng.sample(range(1, n), rng.randint(1, min(2, n - 1))))
            bounds = [0, *cuts, n]
            step = Step("partition", (tuple(tuple(sorted(shuffled[i:j])) for i, j in zip(bounds, bounds[1:])),))
        elif kind == "isolate":
            step = Step("isolate", (rng.choice(running),))
        elif kind == "heal":
            step = Step("heal")
        elif kind == "crash":
            victim = rng.choice([m for m in members if m not in crashed])
            crashed.add(victim)
            paused_until.pop(victim, None)
            step = Step("crash", (victim,))
        elif kind == "restart":
            revived = rng.choice(sorted(crashed))
            crashed.discard(revived)
            step = Step("restart", (revived,))
        else:
            # Mostly longer than the lease: the node must find out on resume that it lost it.
            ticks = rng.randint(timing.leader_lease_ticks + 1, 3 * timing.election_timeout_ticks)
            if rng.random() < 0.3:
                ticks = rng.randint(1, timing.leader_lease_ticks)
            victim = rng.choice(running)
            paused_until[victim] = now + ticks
            step = Step("pause", (victim, ticks))
        step = replace(step, run_ticks=rng.randint(1, 2 * timing.election_timeout_ticks))
        steps.append(step)
        now += step.run_ticks
    steps.append(Step("heal_all"))
    return Schedule(seed, n, Mode(mode), tuple(steps), timing, heal_ticks=6 * timing.election_timeout_ticks)


def run_schedule(schedule: Schedule, planted_bugs: frozenset[PlantedBug] = frozenset()) -> ScheduleResult:
    net = Network(schedule.seed, schedule.n, schedule.mode, schedule.timing, planted_bugs)
    for step in schedule.steps:
        if step.action != "run":
            getattr(net, step.action)(*step.args)
        net.run(step.run_ticks)
    heal_tick = net.now
    return ScheduleResult(net, heal_tick, net.run_until_agreed(schedule.heal_ticks))


def replay_command(seed: int, mode: Mode | str, n: int, rounds: int, planted_bugs: Iterable[PlantedBug] = ()) -> str:
    bugs = "".join(f" --bug {b.value}" for b in planted_bugs)
    return f"python -m node.sim --seed {seed} --mode {Mode(mode).value} --nodes {n} --rounds {rounds}{bugs}"


# ---- replaying one seed -------------------------------------------------------------------------


def _describe(event: Event) -> str:
    if isinstance(event, SteppedDown):
        return f"stepped down epoch {event.epoch} ({event.reason}, lease_end_tick={event.lease_end_tick})"
    if isinstance(event, BecameLeader):
        return f"became leader epoch {event.epoch}"
    return f"election started (highest epoch seen {event.epoch})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.sim", description="Replay one simulated fault schedule.")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.QUORUM.value)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--bug", action="append", default=[], choices=[b.value for b in PlantedBug])
    parser.add_argument("--views", action="store_true", help="also print every view change")
    args = parser.parse_args(argv)

    schedule = random_schedule(args.seed, args.nodes, args.mode, args.rounds)
    result = run_schedule(schedule, planted_bugs=frozenset(PlantedBug(b) for b in args.bug))
    net = result.net
    lines: list[tuple[int, int, str]] = [(f.tick, 0, f"fault  {f.description}") for f in net.faults]
    lines += [(e.tick, 1, f"node {e.node}: {_describe(e.event)}") for e in net.events]
    if args.views:
        lines += [
            (v.tick, 2, f"view {v.node}: {v.role.value if v.role else 'crashed'} epoch {v.epoch} leader {v.leader_id}")
            for v in net.views
        ]
    for tick, _, text in sorted(lines, key=lambda line: (line[0], line[1])):
        print(f"{tick:6d}  {text}")
    counts = ", ".join(f"{t.value}={net.sent[t]}" for t in MsgType)
    print(f"messages sent: {counts}; dropped {net.dropped}, refused {net.refused}")
    violations = net.violations()
    for v in violations:
        print(f"VIOLATION {v}")
    if result.agreed_after_ticks is None:
        print(f"NO AGREEMENT within {schedule.heal_ticks} ticks after the final heal at tick {result.heal_tick}")
    else:
        leader, epoch = net.agreed_leader() or (None, None)
        print(f"agreed on leader {leader} epoch {epoch} {result.agreed_after_ticks} ticks after the final heal")
    return 1 if violations or result.agreed_after_ticks is None else 0


if __name__ == "__main__":
    sys.exit(main())
