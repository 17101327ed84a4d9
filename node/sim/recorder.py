"""What a simulated run records, and the properties judged from that record alone.

The record: view changes, the electors' events (BecameLeader, SteppedDown, ...), leadership
intervals, every granted acknowledgement with the promise window the elector holds
(Timing.promise_hold_ticks on the follower's clock), every vote for itself, releases (only where
the core reports one: PromiseReleased), what each node would answer a client (P6), when each node
was up, faults, and the store's log. Times are global ticks. The rules come from node.history, the
same ones the chaos checkers apply to real runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from node.core import (
    BecameLeader,
    Event,
    Message,
    Mode,
    PROMISE_REPLY_TYPES,
    Promise,
    PromiseReleased,
    Role,
    SteppedDown,
    Timing,
    View,
    mode_info,
)
from node.history import (
    TICKS,
    Answer,
    AnswerTolerance,
    History,
    Verdict,
    judge,
    violation_lines,
    Grant,
    Interval,
    Release,
    Span,
    backed_overlaps,
    backed_spans,
    double_promises,
    epochs_led,
    false_answers,
    grant_windows,
    outside_backing,
    overlapping_pairs,
    own_votes,
)
from node.sim.store import StoreRecord
from node.store.db import claim_key
from node.sim.world import Clocks


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


class Recorder:
    def __init__(self, members: Sequence[int], mode: Mode, timing: Timing, clocks: Clocks,
                 store_log: list[StoreRecord], lease_end_if_paused: Callable[[int], int], seed: int = 0,
                 planted_bugs: Sequence[str] = (), mode_options: Sequence[str] = ()) -> None:
        # The run's history, as a real run records it (node.history's events), in global ticks.
        self.history: list[dict[str, Any]] = [{
            "t_ns": 0, "kind": "meta", "seed": seed, "mode": Mode(mode).value, "scenario": "simulation",
            "nodes": list(members), "timing_ticks": dict(timing.__dict__),
            "planted_bugs": sorted(planted_bugs), "mode_options": sorted(mode_options),
        }]
        self.pausing: dict[int, dict[str, Any]] = {}  # node -> its pause event, until the pause ends
        self.claimed: set[tuple[int, int]] = set()  # (writer, epoch) whose first store write was seen
        self._judged: tuple[tuple[int, int], History] | None = None
        self.members = tuple(members)
        self.mode = mode
        self.timing = timing
        self.clocks = clocks
        self.store_log = store_log
        # Now, or for a paused node when its lease ran out (it never woke up to notice).
        self.lease_end_if_paused = lease_end_if_paused
        self.views: list[ViewChange] = []
        self.last_view: dict[int, tuple[Role | None, int, int | None]] = {}
        self.events: list[NodeEvent] = []
        self.faults: list[FaultRecord] = []
        self.intervals: list[Interval] = []  # closed ones; see closed_intervals() for all
        # Every grant (a node's vote for itself included) and release, in the order they happened.
        self.promises: list[Grant | Release] = []
        self.up: dict[int, list[list[int | None]]] = {m: [[0, None]] for m in self.members}  # [start, end)
        self.open_interval: dict[int, tuple[int, int]] = {}  # node -> (epoch, start tick)
        self.lease_expired: set[Interval] = set()  # closed intervals that ended as their lease ran out
        # What each node would tell a client who asked who leads (P6): closed answers, and the open one.
        self.answers: list[Answer] = []
        self.answering: dict[int, tuple[int, int, int]] = {}  # node -> (leader, epoch, since tick)
        self.heartbeat_transit_ticks = 0  # the longest a delivered heartbeat spent on its way

    @property
    def now(self) -> int:
        return self.clocks.now

    # -- recording ---------------------------------------------------------------------------------

    def fault(self, description: str) -> None:
        self.faults.append(FaultRecord(self.now, description))

    def link_fault(self, name: str, action: str = "start") -> None:
        self.history.append({"t_ns": self.now, "kind": "fault", "action": action, "name": name, "detail": {}})

    def healed(self) -> None:
        self.history.append({"t_ns": self.now, "kind": "heal"})

    def releases(self, node: int, events: Sequence[Event]) -> None:
        # A release happened in the step, before anything the step persisted (a successor's vote for
        # itself right after its leader released it must not look like a vote inside that promise).
        for event in events:
            if isinstance(event, PromiseReleased):
                self.promises.append(Release(self.now, node, event.leader, event.epoch))
                self.history.append({"t_ns": self.now, "kind": "release", "node": node, "leader": event.leader,
                                     "epoch": event.epoch})

    def persisted(self, node: int, promise: Promise) -> None:
        if promise.leader_id == node:  # a vote for itself: a grant, as far as rule 4 goes
            self.promises.append(Grant(self.now, node, node, promise.epoch, self.now))
            self.history.append({"t_ns": self.now, "kind": "grant", "node": node, "leader": node,
                                 "epoch": promise.epoch, "promise_ms": 0})

    def sent(self, node: int, msg: Message) -> None:
        if msg.type in PROMISE_REPLY_TYPES and msg.granted:
            # The window the protocol promises (the electors hold it), counted on the follower's clock.
            window_end = self.clocks.global_tick(node, self.clocks.local(node) + self.timing.promise_hold_ticks)
            self.promises.append(Grant(self.now, node, msg.dst, msg.epoch, window_end))
            self.history.append({"t_ns": self.now, "kind": "grant", "node": node, "leader": msg.dst,
                                 "epoch": msg.epoch, "promise_ms": window_end - self.now, "until_ns": window_end})

    def stored(self, record: StoreRecord) -> None:
        """A store decision; a leader's first write of an epoch is its claim (node.store.db.claim_key)."""
        first = (record.writer, record.epoch) not in self.claimed
        self.claimed.add((record.writer, record.epoch))
        key = claim_key(record.writer, record.epoch) if first else f"duty/{record.writer}/{record.epoch}/{record.sent_tick}"
        self.history.append({"t_ns": record.tick, "kind": "store", "seq": len(self.store_log), "writer": record.writer,
                             "epoch": record.epoch, "key": key, "accepted": record.accepted, "reason": record.reason})

    def heartbeat_transit(self, ticks: int) -> None:
        self.heartbeat_transit_ticks = max(self.heartbeat_transit_ticks, ticks)

    def event(self, node: int, event: Event) -> None:
        self.events.append(NodeEvent(self.now, node, event))
        if isinstance(event, BecameLeader):
            self.close_interval(node, self.now)  # classic re-proposes while leading
            self.open_interval[node] = (event.epoch, self.now)
        elif isinstance(event, SteppedDown):
            end_tick = self.now
            # After a pause the lease ran out before the node could notice; it did nothing since.
            if event.reason == "lease_expired" and event.lease_end_tick is not None:
                end_tick = min(end_tick, self.clocks.global_tick(node, event.lease_end_tick))
            closed = self.close_interval(node, end_tick)
            if closed is not None and event.reason == "lease_expired":
                self.lease_expired.add(closed)

    def crashed(self, node: int, lease_end_tick: int, incarnation: int) -> None:
        # Counted up through the tick it crashed in: an interval lasts at least its first tick.
        self.up[node][-1][1] = self.now + 1
        self.close_interval(node, lease_end_tick)
        self.pause_ended(node, lease_end_tick)
        self.history.append({"t_ns": self.now, "kind": "process", "node": node, "action": "kill", "pid": incarnation})

    def restarted(self, node: int, incarnation: int) -> None:
        self.up[node].append([self.now, None])
        self.history.append({"t_ns": self.now, "kind": "process", "node": node, "action": "start", "pid": incarnation})

    def paused(self, node: int, incarnation: int) -> None:
        """The node stops; its pause event is complete once the pause ends (``pause_ended``)."""
        self.pausing[node] = {"t_ns": self.now, "kind": "process", "node": node, "action": "pause", "pid": incarnation}

    def pause_ended(self, node: int, lease_end_tick: int) -> None:
        """The pause of ``node`` is over: what a real harness cannot know, the simulator records on
        the pause event: when the paused leader's lease ran out, or the end of the pause if it did not
        (node.history.leadership)."""
        pause = self.pausing.pop(node, None)
        if pause is not None:
            self.history.append({**pause, "lease_end_ns": lease_end_tick})

    def resumed(self, node: int, lease_end_tick: int, incarnation: int) -> None:
        self.pause_ended(node, lease_end_tick)
        self.history.append({"t_ns": self.now, "kind": "process", "node": node, "action": "resume", "pid": incarnation})

    def close_interval(self, node: int, end_tick: int) -> Interval | None:
        opened = self.open_interval.pop(node, None)
        if opened is None:
            return None
        epoch, start = opened
        # An announced leadership lasts at least the tick it was announced in, even if the lease
        # it came with had already run out: the application was told it leads.
        interval = Interval(node, epoch, start, max(start + 1, end_tick))
        self.intervals.append(interval)
        return interval

    def view(self, node: int, view: View | None, stepdown: SteppedDown | None = None) -> None:
        """The node's view after a step (None: it crashed), recorded when it changed, with the
        stepdown of that step: its reason, and where a lease ran out, when (as the runtime does)."""
        key = (None, 0, None) if view is None else (view.role, view.epoch, view.leader_id)
        if key != self.last_view.get(node):
            self.last_view[node] = key
            self.views.append(ViewChange(self.now, node, *key))
            if view is not None:
                event = {"t_ns": self.now, "kind": "view", "node": node, "role": view.role.value, "epoch": view.epoch,
                         "leader": view.leader_id, "reason": "" if stepdown is None else str(stepdown.reason)}
                if stepdown is not None and stepdown.reason == "lease_expired" and stepdown.lease_end_tick is not None:
                    event["lease_end_ns"] = self.clocks.global_tick(node, stepdown.lease_end_tick)
                self.history.append(event)

    def answer(self, node: int, now_answer: tuple[int, int] | None) -> None:
        """After each tick: what the node would answer GetLeader now (None: nothing, or it is down).
        An answer is held from the tick it was first seen through the tick before it changed."""
        open_answer = self.answering.get(node)
        if open_answer is not None and now_answer != open_answer[:2]:
            leader, epoch, since = self.answering.pop(node)
            self.answers.append(Answer(node, leader, epoch, since, self.now - 1))
            self.history.append({"t_ns": since, "kind": "answer", "node": node, "leader": leader, "epoch": epoch,
                                 "end_ns": self.now - 1})
            open_answer = None
        if open_answer is None and now_answer is not None:
            self.answering[node] = (*now_answer, self.now)

    # -- what was recorded, completed to now --------------------------------------------------------

    def all_answers(self) -> list[Answer]:
        return self.answers + [Answer(m, l, e, since, self.now) for m, (l, e, since) in self.answering.items()]

    def closed_intervals(self) -> list[Interval]:
        """Every interval, the open ones ending now (or where a paused leader's lease ran out)."""
        still_open = [
            Interval(node, epoch, start, max(start + 1, self.lease_end_if_paused(node)))
            for node, (epoch, start) in self.open_interval.items()
        ]
        return sorted([*self.intervals, *still_open], key=lambda i: (i.start, i.node))

    @property
    def grants(self) -> list[Grant]:
        return [p for p in self.promises if isinstance(p, Grant)]

    def backed(self) -> dict[int, list[Span]]:
        """When each node had a majority behind it: its own vote (while up and not promised to
        another node) plus every other member's live grant window to it."""
        windows = grant_windows(self.promises)
        up = {m: [Span(s, self.now + 1 if e is None else e) for s, e in spans] for m, spans in self.up.items()}
        return backed_spans(self.members, windows, own_votes(up, windows))

    # -- the history, judged by node.history ---------------------------------------------------------

    def events_now(self) -> list[dict[str, Any]]:
        """The history as it stands now: what was recorded, the answers still being given, and the
        pauses still going on (their leaders' leases judged up to now)."""
        events = list(self.history)
        events += [{"t_ns": since, "kind": "answer", "node": node, "leader": leader, "epoch": epoch, "end_ns": self.now}
                   for node, (leader, epoch, since) in self.answering.items()]
        events += [{**pause, "lease_end_ns": self.lease_end_if_paused(node)} for node, pause in self.pausing.items()]
        return events

    def judged_history(self) -> History:
        """The run so far as a node.history History (ticks), built once per state of the run."""
        key = (self.now, len(self.history), len(self.answering), len(self.pausing))
        if self._judged is None or self._judged[0] != key:
            promises = mode_info(self.mode).promises
            # The longest heartbeat transit, the follower's grace of one heartbeat interval, and the tick it floors to.
            transit = self.heartbeat_transit_ticks + self.timing.heartbeat_interval_ticks + 1
            horizon = self.timing.leader_lease_ticks if promises else 2 * self.timing.election_timeout_ticks
            self._judged = key, History(self.events_now(), TICKS, promises=promises,
                                        tolerance=AnswerTolerance(transit, horizon), end=self.now)
        return self._judged[1]

    def verdicts(self) -> list[Verdict]:
        return judge(self.judged_history())

    def new_violations(self) -> list[str]:
        return violation_lines(self.verdicts(), self.judged_history())

    # -- the properties ------------------------------------------------------------------------------

    def violations(self) -> list[str]:
        """Every safety property that failed, each line starting with its id (P1, P2, P3, P3g, P6)."""
        return (self.p1_violations() + self.p2_violations() + self.p3_violations() + self.grant_violations()
                + self.answer_violations())

    def p1_violations(self) -> list[str]:
        led = epochs_led((e.node, e.event.epoch, e.tick) for e in self.events if isinstance(e.event, BecameLeader))
        return [f"P1: epoch {ep} has leaders {sorted(ns)}" for ep, ns in sorted(led.items()) if len(ns) > 1]

    def p2_violations(self) -> list[str]:
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

    def p3_violations(self) -> list[str]:
        return [
            f"P3: node {a.node} epoch {a.epoch} [{a.start},{a.end}) overlaps node {b.node} epoch {b.epoch} [{b.start},{b.end})"
            for a, b in overlapping_pairs(self.closed_intervals())
        ]

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
        own, grants = bool(self.p3_violations()), bool(self.grant_violations())
        if own == grants:
            return None
        if own:
            return "leaders' own reports overlap, followers' grants do not"
        return "followers' grants show unsafe leadership the leaders' own reports do not"

    def accepted_after_lease_end(self) -> list[tuple[StoreRecord, int]]:
        """Store writes accepted after their writer's leadership of that epoch had ended, with the lateness."""
        late = []
        intervals = self.closed_intervals()
        for r in self.store_log:
            if not r.accepted:
                continue
            ends = [i.end for i in intervals if i.node == r.writer and i.epoch == r.epoch]
            if ends and all(e <= r.tick for e in ends):
                late.append((r, r.tick - max(ends)))
        return late

    def answer_violations(self) -> list[str]:
        """P6: no answer named a leader that did not lead then (node.history.false_answers)."""
        # The longest transit, the follower's grace of one heartbeat interval, and the tick it floors to.
        transit = self.heartbeat_transit_ticks + self.timing.heartbeat_interval_ticks + 1
        horizon = self.timing.leader_lease_ticks if mode_info(self.mode).promises else 2 * self.timing.election_timeout_ticks
        false = false_answers(self.all_answers(), self.closed_intervals(), transit, horizon,
                              lease_ended=lambda i: i in self.lease_expired)
        return [
            f"P6: node {a.node} named node {a.leader} leader of epoch {a.epoch} during ticks [{a.start},{a.end}], "
            f"when it did not lead (tolerance: {transit} ticks of transit, {horizon} after a leadership ended early)"
            for a in false
        ]
