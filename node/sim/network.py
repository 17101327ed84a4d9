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

The parts: node/sim/world.py (clocks, the queue, each directed link's faults and holds),
processes.py (what SIGKILL and SIGSTOP do), store.py (the store's own rule), recorder.py (the
history a real run records: views, process events, grants and releases, store decisions, answers,
faults, in ticks), judged from it alone by node.history's judges, the same ones the chaos checkers
apply to a real run's recording (docs/design.md section 7). Every elector's protocol instants
(node.core.instants) are counted in `coverage` and listed per tick in `reached`, for schedules
(node/sim/schedule.py) that wait for them and the explorer (node/sim/explore.py) that drives this:

    bullyproof sim explore --budget-s 60
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from node.core import (
    REPLY_TYPE,
    BecameLeader,
    Config,
    Elector,
    Event,
    Membership,
    MembershipChanged,
    MembershipRefused,
    Message,
    Mode,
    MsgType,
    Output,
    PlantedBug,
    Promise,
    PromiseReleased,
    Reached,
    Role,
    SteppedDown,
    Timing,
    View,
    check_mode_options,
    configuration_id,
    instants_of_output,
    mode_info,
)
from node.core.membership import CONFLICT, STALE
from node.history import (
    Answer,
    Grant,
    History,
    Interval,
    Release,
    Seen,
    Span,
    Verdict,
    agreement,
    judge,
    late_writes,
    no_overlap,
    no_overlap_by_grants,
    true_answers,
    unique_leaders,
    violation_lines,
)
from node.sim.processes import Process
from node.sim.recorder import FaultRecord, NodeEvent, Recorder, ViewChange
from node.sim.store import SimStore, StoreRecord, StoreWrite
from node.sim.world import STORE, Clocks, Hold, Link, LinkFaults, Links, Queue, carry

__all__ = ["Network", "FaultRecord", "NodeEvent", "StoreRecord", "ViewChange", "describe_event", "timeline"]


_REPLY_TYPES = frozenset(REPLY_TYPE.values())


@dataclass(frozen=True)
class _InFlight:
    recipient: int
    incarnation: int  # a message never reaches a later incarnation (its connection died)
    msg: Message
    failed: bool  # a send_failed notice for msg, going back to its sender
    sent_tick: int = 0


class Network:
    """Nodes 1..n over one seeded network. Every random choice comes from `seed`.

    The parts: the world (node.sim.world: clocks, the queue, each link's faults and holds), the
    processes (node.sim.processes), the store (node.sim.store) and the recorder (node.sim.recorder:
    the history, which node.history judges). This class joins them and is what schedules and tests drive."""

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
        timings: Mapping[int, Timing] | None = None,
        member_lists: Mapping[int, Sequence[int]] | None = None,
        joining: Iterable[int] = (),
    ) -> None:
        if n <= 0:
            raise ValueError(f"need at least one node, got {n}")
        self.seed = seed
        self.mode = Mode(mode)
        self.timing = timing
        # Each node's timing: `timing` unless `timings` names another (members may differ, as in a
        # rolling change of the election timeout; restart(node, timing) changes one).
        self.timings: dict[int, Timing] = {m: (timings or {}).get(m, timing) for m in range(1, n + 1)}
        # Each node's member list: all of 1..n unless `member_lists` gives it another (a node started
        # with a stale list; restart(node, members=...) changes one). A message from a node on another
        # list is refused on arrival, as the runtime refuses it (node.runtime.wire).
        self.member_lists: dict[int, tuple[int, ...]] = {}
        self._configuration: dict[int, int] = {}
        for m in range(1, n + 1):
            self._set_members(m, (member_lists or {}).get(m, range(1, n + 1)))
        self.configuration_refusals = 0
        # Nodes started to join (Config.join): outside the configuration until a leader adds them; the
        # others start with the list of everyone else. Only modes that change membership.
        self.joining = frozenset(joining)
        if self.joining:
            if not mode_info(mode).membership_changes:
                raise ValueError(f"mode {Mode(mode).value} cannot change membership: no node can join")
            first = [m for m in range(1, n + 1) if m not in self.joining]
            for m in first:
                self._set_members(m, (member_lists or {}).get(m, first))
        self.first_lists = dict(self.member_lists)  # what each node was first started with (`stale`)
        self.planted_bugs = planted_bugs
        check_mode_options(self.mode, mode_options)
        self.mode_options = mode_options
        # An elector other than the mode's own (experiments: e.g. Raft with another timeout range).
        self.elector_factory = elector_factory or mode_info(self.mode).factory
        self.members = tuple(range(1, n + 1))
        self.clocks = Clocks(self.members, clock_rates)
        self.rng = random.Random(f"{seed}:network")
        self.links = Links()
        self.store = SimStore(planted_bugs)
        self.persisted: dict[int, Promise] = {m: Promise() for m in self.members}
        self.sent: Counter[MsgType] = Counter()
        self.delivered: Counter[MsgType] = Counter()
        self.dropped = 0  # cut or lost on the way: the sender is not told
        self.refused = 0  # to a crashed node: the sender gets send_failed
        self.record = Recorder(
            self.members,
            self.mode,
            self.timings,
            self.clocks,
            self.store.log,
            self._paused_lease_end,
            seed,
            sorted(b.value for b in planted_bugs),
            sorted(mode_options),
            voters=[m for m in range(1, n + 1) if m not in self.joining] if self.joining else None,
        )
        self._queue: Queue[_InFlight | StoreWrite] = Queue()
        # Protocol instants (node.core.instants): how often each was reached in this run, those reached
        # since the last tick began (node, name), and every combination of phases the nodes were in.
        self.coverage: Counter[str] = Counter()
        self.reached: list[tuple[int, str]] = []
        self.phase_combos: set[tuple[str, ...]] = set()
        self._nodes = {m: Process(self._build_elector(m, 0)) for m in self.members}
        for m in self.members:
            self._record_view(m)

    # -- clocks ----------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        return self.clocks.now

    def local(self, node: int, tick: int | None = None) -> int:
        """What node's clock reads at global `tick` (default: now)."""
        return self.clocks.local(node, tick)

    def global_tick(self, node: int, local_tick: int) -> int:
        """The first global tick at which node's clock reads at least `local_tick`."""
        return self.clocks.global_tick(node, local_tick)

    # -- faults on the links ----------------------------------------------------------------------
    # Each takes `links` (directed (src, dst) pairs) to act on those only; without, every link.

    def set_delay(self, min_delay_ticks: int, max_delay_ticks: int, links: Iterable[Link] | None = None) -> None:
        self._links_change(
            links,
            f"delay {min_delay_ticks}..{max_delay_ticks} ticks",
            min_delay_ticks=min_delay_ticks,
            max_delay_ticks=max_delay_ticks,
        )

    def set_drop(self, probability: float, links: Iterable[Link] | None = None) -> None:
        self._links_change(links, f"drop {probability:.2f}", drop_probability=probability)

    def set_duplicate(self, probability: float, links: Iterable[Link] | None = None) -> None:
        """Deliver each message a second time, with its own delay, with this probability."""
        self._links_change(links, f"duplicate {probability:.2f}", duplicate_probability=probability)

    def _links_change(self, links: Iterable[Link] | None, what: str, **faults: object) -> None:
        chosen = None if links is None else sorted(set(links))
        for link in chosen or ():
            self._check_member(*link)
        LinkFaults(**{**LinkFaults().__dict__, **faults})  # ValueError for a bad value, before anything changes
        self.links.change(chosen, **faults)
        self._link_fault(what + ("" if chosen is None else " on " + ", ".join(f"{a}->{b}" for a, b in chosen)))

    def cut(self, a: int, b: int) -> None:
        """Drop every message a->b (one way only)."""
        self._check_member(a, b)
        self.links.change([(a, b)], cut=True)
        self._link_fault(f"cut {a}->{b}")

    def isolate(self, node: int) -> None:
        self._check_member(node)
        others = [m for m in self.members if m != node]
        self.links.change([(node, m) for m in others] + [(m, node) for m in others], cut=True)
        self._link_fault(f"isolate {node}")

    def partition(self, groups: Sequence[Iterable[int]]) -> None:
        """Cut every link between different groups; the groups must cover the membership exactly."""
        sets = [frozenset(g) for g in groups]
        listed = [m for g in sets for m in g]
        if sorted(listed) != list(self.members):
            raise ValueError(f"partition groups {groups} must cover members {self.members} exactly once")
        self.links.change([(a, b) for g in sets for h in sets if g is not h for a in g for b in h], cut=True)
        self._link_fault("partition " + " | ".join(",".join(map(str, sorted(g))) for g in sets))

    @property
    def cut_links(self) -> set[Link]:
        return self.links.cut_links()

    # Named faults, recorded as a real harness records them (a `fault` start with its name and what it
    # did): the fault registry's interface drives these (node/sim/target.py); schedules use the above.

    def drop_links(self, links: Iterable[Link], fault: str, detail: Mapping[str, object]) -> None:
        """Drop every message on these directed links (a blackhole, as `cut`), as fault `fault`."""
        chosen = sorted(set(links))
        self._check_member(*(n for link in chosen for n in link))
        self.links.change(chosen, cut=True)
        self._named_fault(fault, detail)

    def degrade_links(self, links: Iterable[Link], fault: str, detail: Mapping[str, object], **faults: object) -> None:
        """Set these LinkFaults fields (delays, drop, duplicate) on these directed links, as fault `fault`."""
        chosen = sorted(set(links))
        self._check_member(*(n for link in chosen for n in link))
        LinkFaults(**{**LinkFaults().__dict__, **faults})  # ValueError for a bad value, before anything changes
        self.links.change(chosen, **faults)
        self._named_fault(fault, detail)

    def lift(self, fault: str, links: Iterable[Link]) -> None:
        """Fault `fault` ends: its links are healthy again (whatever else was set on them too)."""
        self._release(self.links.heal(sorted(set(links))))
        self._named_fault(fault, {}, "stop")

    def _named_fault(self, fault: str, detail: Mapping[str, object], action: str = "start") -> None:
        self._fault(f"{fault} {dict(detail)}" if action == "start" else f"{fault} ends")
        self.record.link_fault(fault, action, dict(detail))

    def hold(self, src: int, dst: int, kind: str, count: int, until: str, max_ticks: int) -> None:
        """Keep messages src->dst (0: any node) of `kind` back until a node reaches the instant `until`
        (or max_ticks pass): see node.sim.world.Hold."""
        self._check_member(*(x for x in (src, dst) if x))
        if count < 0 or max_ticks <= 0:
            raise ValueError(f"hold needs count >= 0 and max_ticks > 0, got {count}, {max_ticks}")
        self.links.holds.append(Hold(src, dst, kind, count, until, self.now + max_ticks))
        self._link_fault(
            f"hold {src or '*'}->{dst or '*'} {kind} x{count or 'all'} until {until} (at most {max_ticks} ticks)"
        )

    def heal_link(self, a: int, b: int) -> None:
        """Restore the link a->b (one way): no cut, drop, duplicate or hold, one-tick delay."""
        self._check_member(a, b)
        self._release(self.links.heal([(a, b)]))
        self._link_fault(f"heal {a}->{b}", "stop")

    def heal(self) -> None:
        """Restore the links: no cuts, drops, duplicates or holds, one-tick delay. Processes and clocks stay."""
        self._release(self.links.heal())
        self._fault("heal")
        self.record.healed()

    def _release(self, holds: Iterable[Hold]) -> None:
        """What the ended holds kept back goes on its way now, each after its link's delay."""
        for hold in holds:
            for item in hold.held:
                self._transmit(item, item.msg.src, item.msg.dst)

    # -- faults on the processes -----------------------------------------------------------------

    def crash(self, node: int) -> None:
        state = self._live_state(node, "crash")
        end_tick = self._paused_lease_end(node)
        state.crash()
        self.record.crashed(node, end_tick, state.incarnation)
        self._fault(f"crash {node}")
        self._record_view(node)

    def _paused_lease_end(self, node: int) -> int:
        """Now, or for a paused node when its lease ran out: it never woke up to notice."""
        state = self._nodes[node]
        if state.paused_until_tick is None:
            return self.now
        ticks = range(state.paused_since_tick, self.now)
        return next((t for t in ticks if not state.elector.view(self.local(node, t)).lease_valid), self.now)

    def _set_members(self, node: int, members: Iterable[int]) -> None:
        listed = tuple(sorted(set(members)))
        if node not in listed or any(m not in range(1, len(self.timings) + 1) for m in listed):
            raise ValueError(
                f"node {node} cannot run the member list {listed}: it must list itself and only nodes "
                f"1..{len(self.timings)}"
            )
        self.member_lists[node] = listed
        self._configuration[node] = configuration_id(listed)

    def restart(self, node: int, timing: Timing | None = None, members: Sequence[int] | None = None) -> None:
        """Rebuild the node from nothing but its last persisted promise; with `timing`, under new
        timings (one step of a rolling change). What it promised keeps the window it was granted
        for, as the runtime's promise file keeps it in milliseconds (Promise.restored)."""
        self._check_member(node)
        state = self._nodes[node]
        if not state.crashed:
            raise ValueError(f"node {node} is running; crash it first")
        change = ""
        if timing is not None and timing != self.timings[node]:
            window = self.persisted[node].window_ticks(self.timings[node])
            self.persisted[node] = self.persisted[node].restored(window, timing)
            self.timings[node] = timing
            self.record.ran.add(timing)
            change = f" and election timeout {timing.election_timeout_ticks}"
        if members is not None and tuple(sorted(members)) != self.member_lists[node]:
            self._set_members(node, members)
            change += f" and members {','.join(map(str, self.member_lists[node]))}"
        self._nodes[node] = Process(self._build_elector(node, state.incarnation + 1), state.incarnation + 1)
        self.record.restarted(node, state.incarnation + 1)
        self._fault(f"restart {node} with {self.persisted[node]}{change}")
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
        if state.paused_until_tick is None:
            self.record.paused(node, state.incarnation)
        state.pause(self.now, ticks)
        self._fault(f"pause {node} for {ticks} ticks")

    def resume(self, node: int) -> None:
        state = self._live_state(node, "resume")
        if state.paused_until_tick is None:
            return
        self.record.resumed(node, self._paused_lease_end(node), state.incarnation)
        held = state.resume()
        self._fault(f"resume {node}")
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
        self.clocks.advance()
        self.reached = []
        for m in self.members:
            until = self._nodes[m].paused_until_tick
            if until is not None and until <= self.now:
                self.resume(m)
        while (item := self._queue.pop_due(self.now)) is not None:
            self._deliver(item)
        views: dict[int, View] = {}  # each running node's view after its tick (nothing later changes it)
        for m in self.members:
            state = self._nodes[m]
            if state.running:
                if not self.sleepy or self.local(m) >= state.wake_tick:
                    self._apply(m, state.elector.tick(self.local(m)))
                    state.wake_tick = state.elector.next_deadline(self.local(m))
                views[m] = self._leader_duty(m)
        phases = []
        for m in self.members:
            v = views.get(m)
            self.record.answer(m, None if v is None else v.answer)
            if v is None:
                phases.append("down")
                continue
            elector = self._nodes[m].elector
            phases.append(str(getattr(elector, "phase", v.role.value)))
            if v.role != Role.FOLLOWER:
                self._reach(m, v.role.value)
            for name in elector.instants(self.local(m)):
                self._reach(m, name)
        self.phase_combos.add(tuple(sorted(phases)))
        if self.links.holds:
            self._release(self.links.holds_ending([name for _, name in self.reached], self.now))

    def _reach(self, node: int, instant: str) -> None:
        self.coverage[instant] += 1
        self.reached.append((node, instant))

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
        self._apply(msg.dst, out, msg)
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

    def change_membership(self, node: int, voters: Sequence[int], learners: Sequence[int] = ()) -> Output:
        """An operator asks `node` to move the cluster to (voters, learners) (`bullyproof member`);
        MembershipRefused (nothing changed) unless node leads and the change is one it may make."""
        if not self.running(node):
            raise ValueError(f"node {node} is not running")
        elector = self._nodes[node].elector
        if not mode_info(self.mode).membership_changes:
            raise MembershipRefused(f"mode {self.mode.value} cannot change membership")
        out = elector.change_membership(self.local(node), tuple(voters), tuple(learners))
        self._fault(
            f"members at {node}: voters {','.join(map(str, sorted(voters)))}"
            + (f" learners {','.join(map(str, sorted(learners)))}" if learners else "")
        )
        self._apply(node, out)
        return out

    def membership(self, node: int) -> Membership | None:
        """The configuration `node` runs (None: a mode that keeps its start-up list)."""
        return getattr(self._nodes[node].elector, "membership", None) if self.running(node) else None

    # -- looking -----------------------------------------------------------------------------------

    def running(self, node: int) -> bool:
        return self._nodes[node].running

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
        return self.agreed_among([m for m in self.members if self.running(m) and self._in_configuration(m)])

    def _in_configuration(self, node: int) -> bool:
        """Whether node is a voter or learner of the configuration it runs (a node joining, or one
        removed, follows no one and is not asked)."""
        m = self.membership(node)
        return m is None or node in m.everyone

    def agreed_among(self, nodes: Sequence[int]) -> tuple[int, int] | None:
        """Like agreed_leader, among `nodes` only (e.g. the majority side of a partition)."""
        views = {m: self.view(m) for m in nodes}
        agreed = agreement(
            {
                m: None if v is None else Seen(v.leader_id, v.epoch, v.role == Role.LEADER and v.lease_valid)
                for m, v in views.items()
            }
        )
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
        return [
            (e.tick, e.event)
            for e in self.events
            if e.node == node and isinstance(e.event, kind) and e.tick >= since_tick
        ]

    # -- the record (node.sim.recorder) --------------------------------------------------------------

    @property
    def views(self) -> list[ViewChange]:
        return self.record.views

    @property
    def events(self) -> list[NodeEvent]:
        return self.record.events

    @property
    def faults(self) -> list[FaultRecord]:
        return self.record.faults

    @property
    def heartbeat_transit_ticks(self) -> int:
        return self.record.heartbeat_transit_ticks

    @property
    def store_log(self) -> list[StoreRecord]:
        return self.store.log

    @property
    def store_highest_epoch(self) -> int:
        return self.store.highest_epoch

    @store_highest_epoch.setter
    def store_highest_epoch(self, epoch: int) -> None:
        self.store.highest_epoch = epoch

    # -- the properties: node.history's judges over the run's history (node.sim.recorder) -------------

    def history(self) -> History:
        """The run so far as a node.history History, in ticks (built once per state of the run)."""
        return self.record.judged()

    def verdicts(self) -> list[Verdict]:
        """P1, P2, P3, P3g and P6 judged on the run so far (node.history.judge)."""
        return judge(self.history())

    def unique_leader_per_epoch(self) -> bool:
        """P1: at most one node ever becomes leader of a given epoch."""
        return unique_leaders(self.history()).ok

    def no_overlapping_leadership(self) -> bool:
        """P3: leadership intervals of different nodes never overlap."""
        return no_overlap(self.history()).ok

    def violations(self) -> list[str]:
        """Every safety property that failed, each line starting with its id (P1, P2, P3, P3g, P6)."""
        return violation_lines(self.verdicts(), self.history())

    def grant_violations(self) -> list[str]:
        """P3 judged from the followers' grants (promising modes only): a member granting while its
        promise to another lived, a leader acting outside its majority's promises, two nodes backed
        at once."""
        h = self.history()
        return violation_lines([no_overlap_by_grants(h)], h)

    def answer_violations(self) -> list[str]:
        """P6: no answer named a leader that did not lead then (node.history.false_answers)."""
        h = self.history()
        return violation_lines([true_answers(h)], h)

    def disagreement(self) -> str | None:
        """When the self-reported P3 and the grant-based one disagree, say how."""
        h = self.history()
        by_grants = no_overlap_by_grants(h)
        if not by_grants.applicable:
            return None
        own, grants = not no_overlap(h).ok, not by_grants.ok
        if own == grants:
            return None
        if own:
            return "leaders' own reports overlap, followers' grants do not"
        return "followers' grants show unsafe leadership the leaders' own reports do not"

    @property
    def intervals(self) -> list[Interval]:
        """Every leadership interval, the open ones ending now (or where a paused leader's lease ran out)."""
        return self.history().intervals

    def closed_intervals(self) -> list[Interval]:
        return self.history().intervals

    @property
    def promises(self) -> list[Grant | Release]:
        """Every grant (a node's vote for itself included) and release, in the order they happened."""
        return self.history().promise_record

    @property
    def grants(self) -> list[Grant]:
        return [p for p in self.promises if isinstance(p, Grant)]

    def backed(self) -> dict[int, list[Span]]:
        """When each node had a majority behind it: its own vote (while up and not promised to
        another node) plus every other member's live grant window to it."""
        return self.history().backed

    @property
    def answers(self) -> list[Answer]:
        """What nodes told clients who asked who leads: the answers they no longer give."""
        return [
            Answer(e["node"], e["leader"], e["epoch"], e["t_ns"], e["end_ns"])
            for e in self.record.history
            if e["kind"] == "answer"
        ]

    def all_answers(self) -> list[Answer]:
        """Every answer, those still given ending now."""
        return self.history().answers

    def accepted_after_lease_end(self) -> list[tuple[StoreRecord, int]]:
        """Store writes accepted after their writer's leadership of that epoch (and of any newer epoch
        of its own) had ended, with the lateness (node.history.late_writes)."""
        late, _ = late_writes(self.history())
        return [(self.store_log[w.entry.seq - 1], w.late) for w in late]

    # -- internals ---------------------------------------------------------------------------------

    def _build_elector(self, node: int, incarnation: int) -> Elector:
        config = Config(
            node,
            self.member_lists[node],
            self.timings[node],
            self.planted_bugs,
            self.mode_options,
            join=node in self.joining,
        )
        rng = random.Random(f"{self.seed}:node:{node}:{incarnation}")
        return self.elector_factory(config, self.persisted[node], rng, self.local(node))

    def _check_member(self, *nodes: int) -> None:
        for node in nodes:
            if node not in self._nodes:
                raise ValueError(f"node {node} is not a member of {self.members}")

    def _live_state(self, node: int, what: str) -> Process:
        self._check_member(node)
        state = self._nodes[node]
        if state.crashed:
            raise ValueError(f"cannot {what} node {node}: it is crashed")
        return state

    def _fault(self, description: str) -> None:
        self.record.fault(description)

    def _link_fault(self, description: str, action: str = "start") -> None:
        self._fault(description)
        self.record.link_fault(description, action)

    def _apply(self, node: int, out: Output, request: Message | None = None) -> None:
        """What a step of `node` put out (answering `request`, if a message was delivered)."""
        for name in instants_of_output(out):
            self._reach(node, name)
        self.record.releases(node, out.events)
        # Persist before send: the promise is durable before any message of this output leaves.
        if out.persist is not None:
            self.persisted[node] = out.persist
            self.record.persisted(node, out.persist)
        for msg in out.messages:
            if msg.refusal in (STALE, CONFLICT):
                self.configuration_refusals += 1
            self.record.sent(node, msg, request)
            self._send(msg)
        stepdown = None
        for event in out.events:
            self.record.event(node, event)
            if isinstance(event, BecameLeader):
                self._nodes[node].next_write_tick = self.now  # the new epoch's first store action: a claim
            elif isinstance(event, SteppedDown):
                stepdown = event
        self._record_view(node, stepdown)
        # A message (or resign) may have started a timer or left one due: tick at once, as the runtime does.
        self._nodes[node].wake_tick = self.local(node)

    def _leader_duty(self, node: int) -> View:
        """What the runtime's leader does with the store: claim the epoch at once, then write regularly.
        Returns the node's view (the tick reuses it)."""
        state = self._nodes[node]
        v = state.elector.view(self.local(node))
        if v.role != Role.LEADER or not v.lease_valid or self.now < state.next_write_tick:
            return v
        state.next_write_tick = self.now + self.timings[node].heartbeat_interval_ticks
        self._transmit(StoreWrite(node, v.epoch, self.now), node, STORE)
        return v

    def _send(self, msg: Message) -> None:
        self.sent[msg.type] += 1
        if self.links.is_cut(msg.src, msg.dst):
            self.dropped += 1  # blackhole: the sender learns nothing
            return
        target = self._nodes[msg.dst]
        if target.crashed:  # connection refused, reported back after one tick
            self.refused += 1
            self._queue.put(self.now + 1, _InFlight(msg.src, self._nodes[msg.src].incarnation, msg, failed=True))
            return
        if msg.membership is None and self._configuration[msg.src] != self._configuration[msg.dst]:
            # Another member list: never counted. The receiver refuses a request (its sender is told,
            # as the runtime's gRPC error tells it) and drops a reply. Neither list can change while
            # the message is on its way: a restart starts a new incarnation, which old messages miss.
            self.configuration_refusals += 1
            if msg.type not in _REPLY_TYPES:
                self._queue.put(self.now + 1, _InFlight(msg.src, self._nodes[msg.src].incarnation, msg, failed=True))
            return
        item = _InFlight(msg.dst, target.incarnation, msg, failed=False, sent_tick=self.now)
        hold = self.links.hold_for(msg) if self.links.holds else None
        if hold is not None:
            hold.taken += 1
            hold.held.append(item)
            return
        self._transmit(item, msg.src, msg.dst)

    def _transmit(self, item: _InFlight | StoreWrite, src: int, dst: int) -> None:
        """Lose it, or deliver it after the link's delay, maybe twice (duplicates)."""
        delays = carry(self.rng, self.links.of(src, dst))
        if not delays:
            self.dropped += 1
        for delay in delays:
            self._queue.put(self.now + delay, item)

    def _deliver(self, item: _InFlight | StoreWrite) -> None:
        if isinstance(item, StoreWrite):
            self.record.stored(self.store.write(item, self.now))
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
            if (
                item.msg.type == MsgType.HEARTBEAT and not item.msg.resigning
            ):  # how late a follower's evidence may be (P6)
                self.record.heartbeat_transit(self.now - item.sent_tick)
            out = state.elector.step(now, item.msg)
        self._apply(item.recipient, out, None if item.failed else item.msg)

    def _record_view(self, node: int, stepdown: SteppedDown | None = None) -> None:
        self.record.view(node, self.view(node), stepdown)


def describe_event(event: Event) -> str:
    if isinstance(event, SteppedDown):
        return f"stepped down epoch {event.epoch} ({event.reason}, lease_end_tick={event.lease_end_tick})"
    if isinstance(event, BecameLeader):
        return f"became leader epoch {event.epoch}"
    if isinstance(event, PromiseReleased):
        return f"released its promise to node {event.leader} (epoch {event.epoch})"
    if isinstance(event, Reached):
        return f"reached {event.instant}"
    if isinstance(event, MembershipChanged):
        return ("agreed " if event.committed else "runs ") + event.membership.describe()
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
