"""Deterministic simulator: the pure election core joined by a seeded, tick-based in-memory network.

Every elector is the real one from `make_elector`; only the world around it is simulated, and the
world can do everything the runtime can: delay (also past the lease), drop, duplicate and reorder
messages; cut links one way, isolate, partition; crash a node and restart it after any delay, zero
included (from its persisted promise only); pause it (SIGSTOP-like: its inbound messages queue up and
arrive on resume); resign, transfer, and hold-down preemption (a timing setting); run each node's
clock at its own rate (skew); and a fenced store that leaders claim and write, with the store's own
rule. A message to a crashed node comes back to its sender as `send_failed` one tick later
(connection refused); a cut or dropped message just vanishes (blackhole).

Time: the network counts global ticks; each node sees `floor(global * rate)` on its own clock.

The history records view changes, BecameLeader / SteppedDown events, leadership intervals, every
granted acknowledgement with the promise window the elector holds (Timing.promise_hold_ticks on the
follower's clock), every vote for itself, releases (only where the core reports one:
PromiseReleased) and the store's log. The properties below read only that history. Faults and
schedules live in node/sim/explore.py, which drives this network:

    bullyproof sim explore --budget-s 60
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from node.core import (
    BecameLeader,
    Elector,
    Config,
    Event,
    Message,
    Mode,
    MsgType,
    Output,
    PROMISE_REPLY_TYPES,
    PlantedBug,
    Promise,
    PromiseReleased,
    Role,
    SteppedDown,
    Timing,
    View,
    check_mode_options,
    mode_info,
)
from node.history import (
    Answer,
    Grant,
    Interval,
    Release,
    Span,
    agreement,
    backed_overlaps,
    backed_spans,
    double_promises,
    epochs_led,
    false_answers,
    grant_windows,
    outside_backing,
    overlapping_pairs,
    own_votes,
    Seen,
)
from node.store.db import decide as store_decide


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
class StoreRecord:
    tick: int  # when the store decided
    sent_tick: int
    writer: int
    epoch: int
    accepted: bool
    reason: str


@dataclass(frozen=True)
class _InFlight:
    recipient: int
    incarnation: int  # a message never reaches a later incarnation (its connection died)
    msg: Message
    failed: bool  # a send_failed notice for msg, going back to its sender
    sent_tick: int = 0


@dataclass(frozen=True)
class _StoreWrite:
    writer: int
    epoch: int
    sent_tick: int


@dataclass
class _Node:
    elector: Elector
    incarnation: int = 0
    crashed: bool = False
    paused_until_tick: int | None = None
    paused_since_tick: int = 0
    held: list[_InFlight] = field(default_factory=list)
    last_view: tuple[Role | None, int, int | None] | None = None
    next_write_tick: int = 0
    wake_tick: int = 0  # local tick of the elector's next deadline (sleepy networks tick it only then)


# ---- the network --------------------------------------------------------------------------------


class Network:
    """Nodes 1..n over one seeded network. Every random choice comes from `seed`."""

    # Tick each elector only at its next_deadline, as the runtime does, instead of every tick. The
    # tests run schedules both ways and require the same history: skipped ticks were no-ops.
    sleepy = False

    def __init__(
        self,
        seed: int,
        n: int,
        mode: Mode | str,
        timing: Timing = Timing(),
        planted_bugs: frozenset[PlantedBug] = frozenset(),
        clock_rates: dict[int, Fraction] | None = None,
        elector_factory: Callable[[Config, Promise, random.Random, int], Elector] | None = None,
        mode_options: frozenset[str] = frozenset(),
    ) -> None:
        if n <= 0:
            raise ValueError(f"need at least one node, got {n}")
        self.seed = seed
        self.mode = Mode(mode)
        self.timing = timing
        self.planted_bugs = planted_bugs
        check_mode_options(self.mode, mode_options)
        self.mode_options = mode_options
        # An elector other than the mode's own (experiments: e.g. Raft with another timeout range).
        self.elector_factory = elector_factory or mode_info(self.mode).factory
        self.members = tuple(range(1, n + 1))
        self.now = 0
        self.rng = random.Random(f"{seed}:network")
        self.min_delay_ticks = 1
        self.max_delay_ticks = 1
        self.drop_probability = 0.0
        self.duplicate_probability = 0.0
        self.cut_links: set[tuple[int, int]] = set()
        self.rates: dict[int, Fraction] = {m: Fraction(1) for m in self.members}
        for node, rate in (clock_rates or {}).items():
            self._check_rate(node, rate)
            self.rates[node] = Fraction(rate)
        self.persisted: dict[int, Promise] = {m: Promise() for m in self.members}
        self.sent: Counter[MsgType] = Counter()
        self.delivered: Counter[MsgType] = Counter()
        self.dropped = 0  # cut or lost on the way: the sender is not told
        self.refused = 0  # to a crashed node: the sender gets send_failed
        self.views: list[ViewChange] = []
        self.events: list[NodeEvent] = []
        self.faults: list[FaultRecord] = []
        self.intervals: list[Interval] = []  # closed ones; see closed_intervals() for all
        # Every grant (a node's vote for itself included) and release, in the order they happened.
        self.promises: list[Grant | Release] = []
        self._up: dict[int, list[list[int | None]]] = {m: [[0, None]] for m in self.members}  # [start, end)
        self.store_log: list[StoreRecord] = []
        self.store_highest_epoch = 0
        self.store_owner = 0
        self._open_interval: dict[int, tuple[int, int]] = {}  # node -> (epoch, start tick)
        self._lease_expired: set[Interval] = set()  # closed intervals that ended as their lease ran out
        # What each node would tell a client who asked who leads (P6): closed answers, and the open one.
        self.answers: list[Answer] = []
        self._answering: dict[int, tuple[int, int, int]] = {}  # node -> (leader, epoch, since tick)
        self.heartbeat_transit_ticks = 0  # the longest a delivered heartbeat spent on its way
        self._queue: list[tuple[int, int, _InFlight | _StoreWrite]] = []
        self._seq = 0
        self._nodes = {m: _Node(self._build_elector(m, 0)) for m in self.members}
        for m in self.members:
            self._record_view(m)

    # -- clocks ----------------------------------------------------------------------------------

    def local(self, node: int, tick: int | None = None) -> int:
        """What node's clock reads at global `tick` (default: now)."""
        return math.floor((self.now if tick is None else tick) * self.rates[node])

    def global_tick(self, node: int, local_tick: int) -> int:
        """The first global tick at which node's clock reads at least `local_tick`."""
        return math.ceil(local_tick / self.rates[node])

    @staticmethod
    def _check_rate(node: int, rate: Fraction | float) -> None:
        if not 0.5 <= rate <= 2:
            raise ValueError(f"clock rate of node {node} must be within 0.5..2, got {float(rate)}")

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

    def set_duplicate(self, probability: float) -> None:
        """Deliver each message a second time, with its own delay, with this probability."""
        if not 0.0 <= probability < 1.0:
            raise ValueError(f"duplicate probability must be in [0, 1), got {probability}")
        self.duplicate_probability = probability
        self._fault(f"duplicate {probability:.2f}")

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
        """Restore the links: no cuts, drops or duplicates, one-tick delay. Processes and clocks stay."""
        self.cut_links.clear()
        self.drop_probability = self.duplicate_probability = 0.0
        self.min_delay_ticks = self.max_delay_ticks = 1
        self._fault("heal")

    def crash(self, node: int) -> None:
        state = self._live_state(node, "crash")
        end_tick = self._paused_lease_end(node)
        state.crashed = True
        state.paused_until_tick = None
        state.held.clear()
        # Counted up through the tick it crashed in: an interval lasts at least its first tick.
        self._up[node][-1][1] = self.now + 1
        self._close_interval(node, end_tick)
        self._fault(f"crash {node}")
        self._record_view(node)

    def _paused_lease_end(self, node: int) -> int:
        """Now, or for a paused node when its lease ran out: it never woke up to notice."""
        state = self._nodes[node]
        if state.paused_until_tick is None:
            return self.now
        ticks = range(state.paused_since_tick, self.now)
        return next((t for t in ticks if not state.elector.view(self.local(node, t)).lease_valid), self.now)

    def restart(self, node: int) -> None:
        """Rebuild the node from nothing but its last persisted promise."""
        self._check_member(node)
        state = self._nodes[node]
        if not state.crashed:
            raise ValueError(f"node {node} is running; crash it first")
        self._nodes[node] = _Node(self._build_elector(node, state.incarnation + 1), state.incarnation + 1)
        self._up[node].append([self.now, None])
        self._fault(f"restart {node} with {self.persisted[node]}")
        self._record_view(node)

    def restart_all(self) -> None:
        """Every node SIGKILLed and restarted at once (a power cut): only what was persisted survives."""
        for m in self.members:
            if not self._nodes[m].crashed:
                self.crash(m)
        for m in self.members:
            self.restart(m)

    def crash_restart(self, node: int) -> None:
        """SIGKILL and an immediate restart, within one tick (a fast supervisor)."""
        self.crash(node)
        self.restart(node)

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
                state = self._nodes[m]
                if not self.sleepy or self.local(m) >= state.wake_tick:
                    self._apply(m, state.elector.tick(self.local(m)))
                    state.wake_tick = state.elector.next_deadline(self.local(m))
                self._leader_duty(m)
        self._record_answers()

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
        out = self._nodes[msg.dst].elector.step(self.local(msg.dst), msg)
        self._apply(msg.dst, out)
        return out

    def resign(self, node: int, successor: int = 0) -> Output:
        """Resign (with a successor: a leadership transfer); nothing happens unless node leads."""
        if not self.running(node):
            raise ValueError(f"node {node} is not running")
        out = self._nodes[node].elector.resign(self.local(node), successor)
        self._fault(f"resign {node}" + (f" to {successor}" if successor else ""))
        self._apply(node, out)
        return out

    def transfer(self, node: int, successor: int) -> Output:
        return self.resign(node, successor)

    # -- looking -----------------------------------------------------------------------------------

    def running(self, node: int) -> bool:
        state = self._nodes[node]
        return not state.crashed and state.paused_until_tick is None

    def crashed(self, node: int) -> bool:
        return self._nodes[node].crashed

    def elector(self, node: int) -> Elector:
        return self._nodes[node].elector

    def view(self, node: int) -> View | None:
        return None if self._nodes[node].crashed else self._nodes[node].elector.view(self.local(node))

    def leaders(self) -> list[int]:
        """Running nodes that are leader in their own view now."""
        return [m for m in self.members if self.running(m) and self.view(m).role == Role.LEADER]

    def agreed_leader(self) -> tuple[int, int] | None:
        """(leader, epoch) if every running node follows it and it leads (with a valid lease) itself."""
        return self.agreed_among([m for m in self.members if self.running(m)])

    def agreed_among(self, nodes: Sequence[int]) -> tuple[int, int] | None:
        """Like agreed_leader, among `nodes` only (e.g. the majority side of a partition)."""
        views = {m: self.view(m) for m in nodes}
        agreed = agreement({
            m: None if v is None else Seen(v.leader_id, v.epoch, v.role == Role.LEADER and v.lease_valid)
            for m, v in views.items()
        })
        return None if agreed is None else (agreed.leader, agreed.epoch)

    def run_until(self, predicate: Callable[[], object], max_ticks: int) -> int:
        """Tick until predicate() holds; the ticks it took. TimeoutError if not within max_ticks."""
        for taken in range(max_ticks + 1):
            if predicate():
                return taken
            if taken < max_ticks:
                self.tick()
        raise TimeoutError(f"condition not reached within {max_ticks} ticks (now {self.now})")

    def events_of(self, node: int, kind: type, since_tick: int = 0) -> list[tuple[int, Event]]:
        """(tick, event) of every `kind` event of `node` from `since_tick` on."""
        return [(e.tick, e.event) for e in self.events if e.node == node and isinstance(e.event, kind) and e.tick >= since_tick]

    # -- properties (read only the history) ---------------------------------------------------------

    def unique_leader_per_epoch(self) -> bool:
        """P1: at most one node ever becomes leader of a given epoch."""
        return not self._p1_violations()

    def no_overlapping_leadership(self) -> bool:
        """P3: leadership intervals of different nodes never overlap."""
        return not self._p3_violations()

    def violations(self) -> list[str]:
        """Every safety property that failed, each line starting with its id (P1, P2, P3, P3g, P6)."""
        return (self._p1_violations() + self._p2_violations() + self._p3_violations() + self.grant_violations()
                + self.answer_violations())

    def _p1_violations(self) -> list[str]:
        led = epochs_led((e.node, e.event.epoch, e.tick) for e in self.events if isinstance(e.event, BecameLeader))
        return [f"P1: epoch {ep} has leaders {sorted(ns)}" for ep, ns in sorted(led.items()) if len(ns) > 1]

    def _p2_violations(self) -> list[str]:
        """P2: the store never accepts an epoch below one it accepted, nor one epoch from two writers."""
        found = []
        highest = 0
        owner: dict[int, int] = {}
        for r in self.store_log:
            if not r.accepted:
                continue
            if r.epoch < highest:
                found.append(f"P2: store accepted epoch {r.epoch} from node {r.writer} at tick {r.tick} after epoch {highest}")
            if owner.setdefault(r.epoch, r.writer) != r.writer:
                found.append(f"P2: store accepted epoch {r.epoch} from nodes {owner[r.epoch]} and {r.writer}")
            highest = max(highest, r.epoch)
        return found

    def closed_intervals(self) -> list[Interval]:
        """Every interval, the open ones ending now (or where a paused leader's lease ran out)."""
        still_open = [
            Interval(node, epoch, start, max(start + 1, self._paused_lease_end(node)))
            for node, (epoch, start) in self._open_interval.items()
        ]
        return sorted([*self.intervals, *still_open], key=lambda i: (i.start, i.node))

    def _p3_violations(self) -> list[str]:
        return [
            f"P3: node {a.node} epoch {a.epoch} [{a.start},{a.end}) overlaps node {b.node} epoch {b.epoch} [{b.start},{b.end})"
            for a, b in overlapping_pairs(self.closed_intervals())
        ]

    # -- the checker that does not trust the leader: what followers granted ----------------------------

    @property
    def grants(self) -> list[Grant]:
        return [p for p in self.promises if isinstance(p, Grant)]

    def backed(self) -> dict[int, list[Span]]:
        """When each node had a majority behind it: its own vote (while up and not promised to
        another node) plus every other member's live grant window to it."""
        windows = grant_windows(self.promises)
        up = {m: [Span(s, self.now + 1 if e is None else e) for s, e in spans] for m, spans in self._up.items()}
        return backed_spans(self.members, windows, own_votes(up, windows))

    def grant_violations(self) -> list[str]:
        """P3 judged from the followers' grants (promising modes only), with node.history's rules:

        * a member granted a node (itself included) while its promise to another was live;
        * a leader that acted (by its own report) after its majority's promises had run out;
        * two nodes backed by majorities' promises at once.
        """
        if not mode_info(self.mode).promises:
            return []
        found = [
            f"P3g: node {d.node} granted {'itself' if d.leader == d.node else f'node {d.leader}'} (epoch {d.epoch}) "
            f"at tick {d.at} while its promise to node {d.other} (epoch {d.other_epoch}) lasted until tick {d.until}"
            for d in double_promises(self.promises)
        ]
        backed = self.backed()
        found += [
            f"P3g: node {i.node} led epoch {i.epoch} during [{i.start},{i.end}) but no majority's promises "
            f"backed it during [{gaps[0].start},{gaps[0].end})" + (f" and {len(gaps) - 1} more gaps" if len(gaps) > 1 else "")
            for i, gaps in outside_backing(self.closed_intervals(), backed)
        ]
        found += [
            f"P3g: grants backed nodes {a} and {b} at once during [{span.start},{span.end})"
            for a, b, span in backed_overlaps(backed)
        ]
        return found

    def disagreement(self) -> str | None:
        """When the self-reported P3 and the grant-based one disagree, say how."""
        if not mode_info(self.mode).promises:
            return None
        own, grants = bool(self._p3_violations()), bool(self.grant_violations())
        if own == grants:
            return None
        if own:
            return "leaders' own reports overlap, followers' grants do not"
        return "followers' grants show unsafe leadership the leaders' own reports do not"

    # -- what fencing did ------------------------------------------------------------------------------

    def accepted_after_lease_end(self) -> list[tuple[StoreRecord, int]]:
        """Store writes accepted after their writer's leadership of that epoch had ended, with the lateness."""
        late = []
        for r in self.store_log:
            if not r.accepted:
                continue
            ends = [i.end for i in self.closed_intervals() if i.node == r.writer and i.epoch == r.epoch]
            if ends and all(e <= r.tick for e in ends):
                late.append((r, r.tick - max(ends)))
        return late

    # -- internals ---------------------------------------------------------------------------------

    def _build_elector(self, node: int, incarnation: int) -> Elector:
        config = Config(node, self.members, self.timing, self.planted_bugs, self.mode_options)
        rng = random.Random(f"{self.seed}:node:{node}:{incarnation}")
        return self.elector_factory(config, self.persisted[node], rng, self.local(node))

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
        # A release happened in the step, before anything the step persisted (a successor's vote for
        # itself right after its leader released it must not look like a vote inside that promise).
        for event in out.events:
            if isinstance(event, PromiseReleased):
                self.promises.append(Release(self.now, node, event.leader, event.epoch))
        # Persist before send: the promise is durable before any message of this output leaves.
        if out.persist is not None:
            self.persisted[node] = out.persist
            if out.persist.leader_id == node:  # a vote for itself: a grant, as far as rule 4 goes
                self.promises.append(Grant(self.now, node, node, out.persist.epoch, self.now))
        for msg in out.messages:
            if msg.type in PROMISE_REPLY_TYPES and msg.granted:
                # The window the protocol promises (the electors hold it), counted on the follower's clock.
                window_end = self.global_tick(node, self.local(node) + self.timing.promise_hold_ticks)
                self.promises.append(Grant(self.now, node, msg.dst, msg.epoch, window_end))
            self._send(msg)
        for event in out.events:
            self._record_event(node, event)
        self._record_view(node)
        # A message (or resign) may have started a timer or left one due: tick at once, as the runtime does.
        self._nodes[node].wake_tick = self.local(node)

    def _leader_duty(self, node: int) -> None:
        """What the runtime's leader does with the store: claim the epoch at once, then write regularly."""
        state = self._nodes[node]
        v = state.elector.view(self.local(node))
        if v.role != Role.LEADER or not v.lease_valid or self.now < state.next_write_tick:
            return
        state.next_write_tick = self.now + self.timing.heartbeat_interval_ticks
        self._transmit(_StoreWrite(node, v.epoch, self.now))

    def _send(self, msg: Message) -> None:
        self.sent[msg.type] += 1
        if (msg.src, msg.dst) in self.cut_links:
            self.dropped += 1  # blackhole: the sender learns nothing
            return
        target = self._nodes[msg.dst]
        if target.crashed:  # connection refused, reported back after one tick
            self.refused += 1
            self._enqueue(self.now + 1, _InFlight(msg.src, self._nodes[msg.src].incarnation, msg, failed=True))
            return
        self._transmit(_InFlight(msg.dst, target.incarnation, msg, failed=False, sent_tick=self.now))

    def _transmit(self, item: _InFlight | _StoreWrite) -> None:
        """Lose it, or deliver it after a random delay, maybe twice (duplicates)."""
        if self.rng.random() < self.drop_probability:
            self.dropped += 1
            return
        copies = 2 if self.duplicate_probability and self.rng.random() < self.duplicate_probability else 1
        for _ in range(copies):
            self._enqueue(self.now + self.rng.randint(self.min_delay_ticks, self.max_delay_ticks), item)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _enqueue(self, due_tick: int, item: _InFlight | _StoreWrite) -> None:
        heapq.heappush(self._queue, (due_tick, self._next_seq(), item))

    def _deliver(self, item: _InFlight | _StoreWrite) -> None:
        if isinstance(item, _StoreWrite):
            self._store_decide(item)
            return
        state = self._nodes[item.recipient]
        if state.crashed or state.incarnation != item.incarnation:
            return
        if state.paused_until_tick is not None:
            state.held.append(item)
            return
        now = self.local(item.recipient)
        if item.failed:
            out = state.elector.send_failed(now, item.msg)
        else:
            self.delivered[item.msg.type] += 1
            if item.msg.type == MsgType.HEARTBEAT and not item.msg.resigning:  # how late a follower's evidence may be (P6)
                self.heartbeat_transit_ticks = max(self.heartbeat_transit_ticks, self.now - item.sent_tick)
            out = state.elector.step(now, item.msg)
        self._apply(item.recipient, out)

    def _store_decide(self, write: _StoreWrite) -> None:
        reason = store_decide(self.store_highest_epoch, self.store_owner, write.writer, write.epoch)
        if PlantedBug.STALE_STORE in self.planted_bugs:
            reason = None
        if reason is None and write.epoch >= self.store_highest_epoch:
            self.store_highest_epoch, self.store_owner = write.epoch, write.writer
        self.store_log.append(StoreRecord(self.now, write.sent_tick, write.writer, write.epoch, reason is None, reason or ""))

    def _record_event(self, node: int, event: Event) -> None:
        self.events.append(NodeEvent(self.now, node, event))
        if isinstance(event, BecameLeader):
            self._close_interval(node, self.now)  # classic re-proposes while leading
            self._open_interval[node] = (event.epoch, self.now)
            self._nodes[node].next_write_tick = self.now  # the new epoch's first store action: a claim
        elif isinstance(event, SteppedDown):
            end_tick = self.now
            # After a pause the lease ran out before the node could notice; it did nothing since.
            if event.reason == "lease_expired" and event.lease_end_tick is not None:
                end_tick = min(end_tick, self.global_tick(node, event.lease_end_tick))
            closed = self._close_interval(node, end_tick)
            if closed is not None and event.reason == "lease_expired":
                self._lease_expired.add(closed)

    def _close_interval(self, node: int, end_tick: int) -> Interval | None:
        opened = self._open_interval.pop(node, None)
        if opened is None:
            return None
        epoch, start = opened
        # An announced leadership lasts at least the tick it was announced in, even if the lease
        # it came with had already run out: the application was told it leads.
        interval = Interval(node, epoch, start, max(start + 1, end_tick))
        self.intervals.append(interval)
        return interval

    def _record_answers(self) -> None:
        """After each tick: what each node would answer GetLeader now (a crashed or paused node answers
        nothing). An answer held from the tick it was first seen through the tick before it changed."""
        for m in self.members:
            v = self.view(m) if self.running(m) else None
            now_answer = None if v is None else v.answer
            open_answer = self._answering.get(m)
            if open_answer is not None and now_answer != open_answer[:2]:
                leader, epoch, since = self._answering.pop(m)
                self.answers.append(Answer(m, leader, epoch, since, self.now - 1))
                open_answer = None
            if open_answer is None and now_answer is not None:
                self._answering[m] = (*now_answer, self.now)

    def all_answers(self) -> list[Answer]:
        return self.answers + [Answer(m, l, e, since, self.now) for m, (l, e, since) in self._answering.items()]

    def answer_violations(self) -> list[str]:
        """P6: no answer named a leader that did not lead then (node.history.false_answers)."""
        # The longest transit, the follower's grace of one heartbeat interval, and the tick it floors to.
        transit = self.heartbeat_transit_ticks + self.timing.heartbeat_interval_ticks + 1
        horizon = self.timing.leader_lease_ticks if mode_info(self.mode).promises else 2 * self.timing.election_timeout_ticks
        false = false_answers(self.all_answers(), self.closed_intervals(), transit, horizon,
                              lease_ended=lambda i: i in self._lease_expired)
        return [
            f"P6: node {a.node} named node {a.leader} leader of epoch {a.epoch} during ticks [{a.start},{a.end}], "
            f"when it did not lead (tolerance: {transit} ticks of transit, {horizon} after a leadership ended early)"
            for a in false
        ]

    def _record_view(self, node: int) -> None:
        state = self._nodes[node]
        if state.crashed:
            key: tuple[Role | None, int, int | None] = (None, 0, None)
        else:
            v = state.elector.view(self.local(node))
            key = (v.role, v.epoch, v.leader_id)
        if key != state.last_view:
            state.last_view = key
            self.views.append(ViewChange(self.now, node, *key))


def describe_event(event: Event) -> str:
    if isinstance(event, SteppedDown):
        return f"stepped down epoch {event.epoch} ({event.reason}, lease_end_tick={event.lease_end_tick})"
    if isinstance(event, BecameLeader):
        return f"became leader epoch {event.epoch}"
    if isinstance(event, PromiseReleased):
        return f"released its promise to node {event.leader} (epoch {event.epoch})"
    return f"election started (highest epoch seen {event.epoch})"


def timeline(net: Network, views: bool = False) -> list[str]:
    """The run as text lines: faults, node events (and view changes), in tick order."""
    lines: list[tuple[int, int, str]] = [(f.tick, 0, f"fault  {f.description}") for f in net.faults]
    lines += [(e.tick, 1, f"node {e.node}: {describe_event(e.event)}") for e in net.events]
    if views:
        lines += [
            (v.tick, 2, f"view {v.node}: {v.role.value if v.role else 'crashed'} epoch {v.epoch} leader {v.leader_id}")
            for v in net.views
        ]
    return [f"{tick:6d}  {text}" for tick, _, text in sorted(lines, key=lambda line: (line[0], line[1]))]
