"""What a simulated run records: the history a real run records, in global ticks, judged by node.history.

The history (node.history's events, ``Recorder.history``): the meta event; each node's view
whenever it changed, with the stepdown's reason and, where a lease ran out, when (``lease_end_ns``);
process events for crash (kill), restart (start), pause and resume, the pause carrying what only
the simulator can know: when the paused leader's lease ran out; every granted acknowledgement with
the promise window the elector holds (Timing.promise_hold_ticks on the follower's clock) and every
vote for itself (grants), releases (only where the core reports one: PromiseReleased), the store's
decisions, what each node would answer a client who asked who leads (P6), and the link faults and
heals. Every time field (``t_ns``, ``until_ns``, ``lease_end_ns``, ``end_ns``) holds global ticks.

The properties are node.history's judges over a History of that record, the same functions the
chaos checkers call on a real run's recording. Beside the history the recorder keeps what the
timeline and the tests read: view changes, the electors' events and the faults, as objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.core import (
    PROMISE_REPLY_TYPES,
    Event,
    Membership,
    MembershipChanged,
    Message,
    Mode,
    Promise,
    PromiseReleased,
    Role,
    SteppedDown,
    Timing,
    View,
    mode_info,
)
from node.history import TICKS, AnswerTolerance, History
from node.sim.store import StoreRecord
from node.sim.world import Clocks
from node.store.db import claim_key


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
    def __init__(
        self,
        members: Sequence[int],
        mode: Mode,
        timings: Mapping[int, Timing],
        clocks: Clocks,
        store_log: list[StoreRecord],
        lease_end_if_paused: Callable[[int], int],
        seed: int = 0,
        planted_bugs: Sequence[str] = (),
        mode_options: Sequence[str] = (),
        voters: Sequence[int] | None = None,
    ) -> None:
        self.members = tuple(members)
        self.mode = mode
        self.timings = timings  # each node's timing, as it is now (the network changes it on a restart)
        self.ran: set[Timing] = set(timings.values())  # every timing any node ran in this run (P6's tolerance)
        self.clocks = clocks
        self.store_log = store_log
        # Now, or for a paused node when its lease ran out (it never woke up to notice).
        self.lease_end_if_paused = lease_end_if_paused
        # The run's history, as a real run records it (node.history's events), in global ticks.
        self.history: list[dict[str, Any]] = [
            {
                "t_ns": 0,
                "kind": "meta",
                "seed": seed,
                "mode": Mode(mode).value,
                "scenario": "simulation",
                "nodes": list(members),
                "timing_ticks": dict(timings[min(members)].__dict__),
                "planted_bugs": sorted(planted_bugs),
                "mode_options": sorted(mode_options),
            }
        ]
        if voters is not None:  # some nodes start outside the configuration (to join it): who votes at first
            self.history[0]["voters"] = list(voters)
        self.pausing: dict[int, dict[str, Any]] = {}  # node -> its pause event, complete when the pause ends
        self.claimed: set[tuple[int, int]] = set()  # (writer, epoch) whose claim the store decided
        # What each node would tell a client who asked who leads (P6), since when: the open answers.
        self.answering: dict[int, tuple[int, int, int]] = {}  # node -> (leader, epoch, since tick)
        self.heartbeat_transit_ticks = 0  # the longest a delivered heartbeat spent on its way
        self.views: list[ViewChange] = []
        self.last_view: dict[int, tuple[Role | None, int, int | None]] = {}
        self.events: list[NodeEvent] = []
        self.faults: list[FaultRecord] = []
        self._judged: tuple[tuple[int, ...], History] | None = None

    @property
    def now(self) -> int:
        return self.clocks.now

    # -- recording ---------------------------------------------------------------------------------

    def fault(self, description: str) -> None:
        self.faults.append(FaultRecord(self.now, description))

    def link_fault(self, name: str, action: str = "start", detail: dict[str, Any] | None = None) -> None:
        self.history.append({"t_ns": self.now, "kind": "fault", "action": action, "name": name, "detail": detail or {}})

    def note(self, kind: str, **fields: Any) -> None:
        """An event the judges do not read, for people and a scenario's instant (a transfer asked for)."""
        self.history.append({"t_ns": self.now, "kind": kind, **fields})

    def healed(self) -> None:
        self.history.append({"t_ns": self.now, "kind": "heal"})

    def releases(self, node: int, events: Sequence[Event]) -> None:
        # A release happened in the step, before anything the step persisted (a successor's vote for
        # itself right after its leader released it must not look like a vote inside that promise).
        for event in events:
            if isinstance(event, PromiseReleased):
                self.history.append(
                    {"t_ns": self.now, "kind": "release", "node": node, "leader": event.leader, "epoch": event.epoch}
                )

    def persisted(self, node: int, promise: Promise) -> None:
        if promise.leader_id == node:  # a vote for itself: a grant, as far as rule 4 goes
            self.history.append(
                {
                    "t_ns": self.now,
                    "kind": "grant",
                    "node": node,
                    "leader": node,
                    "epoch": promise.epoch,
                    "promise_ms": 0,
                }
            )

    def sent(self, node: int, msg: Message, request: Message | None = None) -> None:
        if msg.type in PROMISE_REPLY_TYPES and msg.granted:
            # The window the protocol promises (the electors hold it), counted on the follower's clock:
            # its own, or longer where the request announced a lease its own would not outlast.
            hold = self.timings[node].hold_ticks_for(request.lease_ticks if request is not None else 0)
            window_end = self.clocks.global_tick(node, self.clocks.local(node) + hold)
            self.history.append(
                {
                    "t_ns": self.now,
                    "kind": "grant",
                    "node": node,
                    "leader": msg.dst,
                    "epoch": msg.epoch,
                    "promise_ms": window_end - self.now,
                    "until_ns": window_end,
                }
            )

    def stored(self, record: StoreRecord) -> None:
        """A store decision; a leader's first write of an epoch is its claim (node.store.db.claim_key)."""
        first = (record.writer, record.epoch) not in self.claimed
        self.claimed.add((record.writer, record.epoch))
        key = (
            claim_key(record.writer, record.epoch)
            if first
            else f"duty/{record.writer}/{record.epoch}/{record.sent_tick}"
        )
        self.history.append(
            {
                "t_ns": record.tick,
                "kind": "store",
                "seq": len(self.store_log),
                "writer": record.writer,
                "epoch": record.epoch,
                "key": key,
                "accepted": record.accepted,
                "reason": record.reason,
            }
        )

    def heartbeat_transit(self, ticks: int) -> None:
        self.heartbeat_transit_ticks = max(self.heartbeat_transit_ticks, ticks)

    def event(self, node: int, event: Event) -> None:
        self.events.append(NodeEvent(self.now, node, event))
        if isinstance(event, MembershipChanged) and not event.committed:
            self.membership(node, event.membership)

    def membership(self, node: int, m: Membership) -> None:
        """The node runs configuration `m` from now on (node.history's ``membership`` event)."""
        self.history.append(
            {
                "t_ns": self.now,
                "kind": "membership",
                "node": node,
                "voters": list(m.voters),
                "learners": list(m.learners),
                "index": m.index,
                "term": m.term,
                "previous": list(m.previous),
            }
        )

    def crashed(self, node: int, lease_end_tick: int, incarnation: int) -> None:
        self.pause_ended(node, lease_end_tick)
        self.history.append({"t_ns": self.now, "kind": "process", "node": node, "action": "kill", "pid": incarnation})

    def restarted(self, node: int, incarnation: int) -> None:
        self.history.append({"t_ns": self.now, "kind": "process", "node": node, "action": "start", "pid": incarnation})

    def paused(self, node: int, incarnation: int) -> None:
        """The node stops; its pause event is complete once the pause ends (``pause_ended``)."""
        self.pausing[node] = {"t_ns": self.now, "kind": "process", "node": node, "action": "pause", "pid": incarnation}

    def pause_ended(self, node: int, lease_end_tick: int) -> None:
        """The pause of ``node`` is over: what a real harness cannot know, the simulator records on
        the pause event: when the paused leader's lease ran out, or the end of the pause if it did
        not (node.history.leadership)."""
        pause = self.pausing.pop(node, None)
        if pause is not None:
            self.history.append({**pause, "lease_end_ns": lease_end_tick})

    def resumed(self, node: int, lease_end_tick: int, incarnation: int) -> None:
        self.pause_ended(node, lease_end_tick)
        self.history.append({"t_ns": self.now, "kind": "process", "node": node, "action": "resume", "pid": incarnation})

    def view(self, node: int, view: View | None, stepdown: SteppedDown | None = None) -> None:
        """The node's view after a step (None: it crashed), recorded when it changed, with the
        stepdown of that step: its reason, and where a lease ran out, when (as the runtime does)."""
        key = (None, 0, None) if view is None else (view.role, view.epoch, view.leader_id)
        if key == self.last_view.get(node):
            return
        self.last_view[node] = key
        self.views.append(ViewChange(self.now, node, *key))
        if view is None:
            return  # the kill is the process event
        event = {
            "t_ns": self.now,
            "kind": "view",
            "node": node,
            "role": view.role.value,
            "epoch": view.epoch,
            "leader": view.leader_id,
            "reason": "" if stepdown is None else str(stepdown.reason),
        }
        if stepdown is not None and stepdown.reason == "lease_expired" and stepdown.lease_end_tick is not None:
            event["lease_end_ns"] = self.clocks.global_tick(node, stepdown.lease_end_tick)
        self.history.append(event)

    def answer(self, node: int, now_answer: tuple[int, int] | None) -> None:
        """After each tick: what the node would answer GetLeader now (None: nothing, or it is down).
        An answer is held from the tick it was first seen through the tick before it changed."""
        open_answer = self.answering.get(node)
        if open_answer is not None and now_answer != open_answer[:2]:
            leader, epoch, since = self.answering.pop(node)
            self.history.append(
                {
                    "t_ns": since,
                    "kind": "answer",
                    "node": node,
                    "leader": leader,
                    "epoch": epoch,
                    "end_ns": self.now - 1,
                }
            )
            open_answer = None
        if open_answer is None and now_answer is not None:
            self.answering[node] = (*now_answer, self.now)

    # -- the history so far, judged by node.history ------------------------------------------------

    def events_now(self) -> list[dict[str, Any]]:
        """The history as it stands now: what was recorded, the answers still being given, and the
        pauses still going on (their leaders' leases judged up to now)."""
        return [
            *self.history,
            *(
                {"t_ns": since, "kind": "answer", "node": node, "leader": leader, "epoch": epoch, "end_ns": self.now}
                for node, (leader, epoch, since) in self.answering.items()
            ),
            *({**pause, "lease_end_ns": self.lease_end_if_paused(node)} for node, pause in self.pausing.items()),
        ]

    def judged(self) -> History:
        """The run so far as a History in ticks, built once per state of the run. P6's tolerance: the
        longest heartbeat transit seen, the follower's grace of one heartbeat interval, and the tick
        it floors to; after a leadership that ended early, the lease (or, without leases, two
        election timeouts)."""
        key = (self.now, len(self.history), len(self.answering), len(self.pausing))
        if self._judged is None or self._judged[0] != key:
            promises = mode_info(self.mode).promises
            # Members may run different timings, and change them: the most lenient of all they ran
            # (an answer given under a leader's longer lease stays true when it restarts shorter).
            timings = self.ran
            transit = self.heartbeat_transit_ticks + max(t.heartbeat_interval_ticks for t in timings) + 1
            horizon = (
                max(t.leader_lease_ticks for t in timings)
                if promises
                else 2 * max(t.election_timeout_ticks for t in timings)
            )
            self._judged = (
                key,
                History(
                    self.events_now(),
                    TICKS,
                    promises=promises,
                    tolerance=AnswerTolerance(transit, horizon),
                    end=self.now,
                ),
            )
        return self._judged[1]
