"""The history contract: what a run records, and the rules every reader judges it by.

One module for every reader of a history: the simulator (node/sim, times in global ticks), the chaos
checkers and reports (chaos/, a recorded JSON-lines file, times in CLOCK_MONOTONIC nanoseconds), the
CLI and launcher (live answers from the nodes), and the dashboard. It sits below all of them and
imports nothing from node/ or chaos/, so the simulator and the checkers cannot drift apart on what
"two leaders", "agreed" or "a majority's promise" mean.

Part 1, the recorded history: every event has ``t_ns`` (CLOCK_MONOTONIC nanoseconds; all processes
share one host, so times from different processes are comparable) and ``kind``. The TypedDicts are
the contract between the writers (node processes, the store, the harness) and the readers.

Part 2, judging, in any time unit (the simulator's ticks or a recording's nanoseconds): leadership
intervals and their overlaps (P3), leaders per epoch (P1), agreement, and the promise windows
followers granted with the majorities they back (P3g). docs/design.md section 3 states the
properties; section 7 says why P3g does not trust the leaders.
"""

from __future__ import annotations

import json
import os
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

KINDS = frozenset(
    {"meta", "view", "write", "store", "process", "fault", "heal", "transfer", "grant", "release", "message", "answer"}
)

# Process actions after which a node process is not running (or not scheduled) any more.
DOWN_ACTIONS = frozenset({"kill", "pause", "stop"})
# Actions that end a process or start a fresh one: whatever the old process reported no longer
# describes the node. (A paused and resumed process keeps its state.)
DEAD_OR_FRESH_ACTIONS = frozenset({"kill", "stop", "start", "restart"})


class MetaEvent(TypedDict):
    t_ns: int
    kind: Literal["meta"]
    seed: int
    mode: str  # a name from node.core.REGISTRY
    scenario: str
    nodes: list[int]
    election_timeout_ms: int
    heartbeat_interval_ms: int
    planted_bugs: NotRequired[list[str]]
    mode_options: NotRequired[list[str]]  # the mode's switches, e.g. raft's no-pre-vote


class ViewEvent(TypedDict):
    t_ns: int
    kind: Literal["view"]
    node: int
    role: Literal["follower", "candidate", "leader"]
    epoch: int
    leader: int | None
    reason: str
    # When a leader steps down (lease ran out, higher epoch seen): the moment its lease actually
    # ended, which may be before t_ns (e.g. the process was paused and noticed only on resume).
    lease_end_ns: NotRequired[int]


class WriteEvent(TypedDict):
    """A write attempt as its writer saw it, recorded when the reply (or the deadline) came.

    A key starting with ``claim/`` (``node.store.db.claim_key``) is a new leader's claim of its epoch: its first
    store action, made at once when it starts leading an epoch, so the store fences older epochs.
    """

    t_ns: int
    kind: Literal["write"]
    node: int
    epoch: int
    key: str
    accepted: bool | None  # None: no reply (timeout), outcome unknown
    seq: int | None
    error: str | None
    sent_ns: NotRequired[int]  # when the request left the writer (t_ns is when its answer came)


class StoreEvent(TypedDict):
    t_ns: int
    kind: Literal["store"]
    seq: int
    writer: int
    epoch: int
    key: str
    accepted: bool
    reason: str


class GrantEvent(TypedDict):
    """Modes with promises: follower ``node`` sent a granted ack (Coordinator, Heartbeat, Vote) to ``leader``.

    From then on it refuses every other leader until its promise ends: ``until_ns`` (exact, from its
    tick clock) when present, else ``t_ns + promise_ms`` — unless a ``release`` cuts it short.
    ``t_ns`` is taken when the ack is sent, after the promise was made durable.

    A node's vote for itself (it proposes, campaigns or reasserts) is a grant with ``leader == node``
    and ``promise_ms`` 0, recorded once its promise is durable: it opens no window (``Grant``).
    """

    t_ns: int
    kind: Literal["grant"]
    node: int
    leader: int
    epoch: int
    promise_ms: int  # follower_promise_ticks * tick_ms; 0 for a vote for itself
    until_ns: NotRequired[int]


class ReleaseEvent(TypedDict):
    """Modes with promises: follower ``node`` honoured ``leader``'s resigning heartbeat for ``epoch``
    (the core said so: ``PromiseReleased``): its promise to that leader ended at ``t_ns`` (before its
    window would have). A resigning heartbeat the follower ignored records nothing."""

    t_ns: int
    kind: Literal["release"]
    node: int
    leader: int
    epoch: int


class MessageEvent(TypedDict):
    """Election traffic for people (the dashboard's "inspect an election"), not read by the checkers.

    Recorded by the receiver as it answers (``reply``, ``granted``, and for a refusal ``why``: the
    runtime's best-effort reading of the receiver's state just before, not the core's own words), or
    by the sender when the request was not delivered (``error``: the gRPC status code). Plain
    heartbeats are left out; at most 100 a second per node, the rest counted in ``skipped``.
    """

    t_ns: int
    kind: Literal["message"]
    node: int  # the node that recorded it
    type: str  # a MsgType value
    src: int
    dst: int
    epoch: int
    reply: NotRequired[str]
    granted: NotRequired[bool]
    why: NotRequired[str]
    error: NotRequired[str]
    resigning: NotRequired[bool]
    successor: NotRequired[int | None]
    ids: NotRequired[list[int]]
    skipped: NotRequired[int]


class AnswerEvent(TypedDict):
    """What a node told a client that asked who leads (GetLeader), when it named a leader: the call
    began at t_ns and its reply came at end_ns; the answer held at some instant between (P6)."""

    t_ns: int
    kind: Literal["answer"]
    node: int  # the node asked
    leader: int
    epoch: int
    end_ns: int


class ProcessEvent(TypedDict):
    t_ns: int
    kind: Literal["process"]
    node: int | Literal["store"]
    action: Literal["start", "kill", "pause", "resume", "restart", "stop"]
    pid: int


class FaultEvent(TypedDict):
    t_ns: int
    kind: Literal["fault"]
    action: Literal["start", "stop"]
    name: str
    detail: dict[str, Any]


class HealEvent(TypedDict):
    t_ns: int
    kind: Literal["heal"]


Event = (
    MetaEvent
    | ViewEvent
    | WriteEvent
    | StoreEvent
    | GrantEvent
    | ReleaseEvent
    | MessageEvent
    | AnswerEvent
    | ProcessEvent
    | FaultEvent
    | HealEvent
)


def read_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines history, sorted by t_ns (stable: equal times keep file order).

    A torn last line (a writer killed mid-write: no trailing newline, not valid JSON) is ignored;
    any other malformed line is an error.
    """
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    events: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # split() leaves "" last when the file ends with "\n"
                break
            raise ValueError(f"{path}:{number}: not JSON: {exc}") from exc
        _validate(event, f"{path}:{number}")
        events.append(event)
    return sort_events(events)


def sort_events(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Events as plain dicts, sorted by t_ns; stable, so equal times keep their given order."""
    return sorted((dict(event) for event in events), key=lambda event: event["t_ns"])


def _validate(event: Any, where: str) -> None:
    if not isinstance(event, dict):
        raise ValueError(f"{where}: event is not a JSON object")
    if event.get("kind") not in KINDS:
        raise ValueError(f"{where}: unknown event kind {event.get('kind')!r}")
    if not isinstance(event.get("t_ns"), int):
        raise ValueError(f"{where}: event has no integer t_ns")


class HistoryWriter:
    """Appends events to a JSON-lines file, one line per event, thread-safe.

    Each line goes out in a single write(2) on an O_APPEND descriptor, so it is in the kernel as soon
    as ``write`` returns (a SIGKILL afterwards loses nothing) and several processes may share one file
    without interleaving inside a line.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Append one event; stamps ``t_ns`` with the monotonic clock if absent. Returns the event."""
        record = dict(event)
        record.setdefault("t_ns", time.monotonic_ns())
        _validate(record, str(self.path))
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                raise ValueError(f"history writer for {self.path} is closed")
            written = os.write(self._fd, data)
            if written != len(data):  # only on a full disk or similar; never leave a torn line silently
                raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
        return record

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# =================================================================================================
# Part 2: judging, in any time unit. Times are integers: global ticks in the simulator, CLOCK_MONOTONIC
# nanoseconds in a recording. Spans and intervals are half-open, [start, end).


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int


@dataclass(frozen=True)
class Interval:
    """A node believed it led ``epoch`` during [start, end)."""

    node: int
    epoch: int
    start: int
    end: int


@dataclass(frozen=True)
class Answer:
    """A node told a client, at some instant of [start, end], that ``leader`` leads ``epoch``."""

    node: int
    leader: int
    epoch: int
    start: int
    end: int


def false_answers(answers: Iterable[Answer], intervals: Iterable[Interval], transit: int, horizon: int,
                  lease_ended: Callable[[Interval], bool]) -> list[Answer]:
    """P6: every answer that named a leader named one that led that epoch at that moment, within a
    stated tolerance. An answer trails the truth for two reasons, and only these are forgiven:

    * ``transit``: the evidence was late. A follower names a leader from its heartbeat, which spent
      some time on its way (network delay, a paused receiver) before the follower counted from it,
      for the lease it announced plus one heartbeat interval of grace (node.core.known).
    * ``horizon``: a leadership that ended other than by its lease running out (a crash, a pause, a
      resignation whose release was lost, a move to a fresh epoch) may be named until the lease its
      last heartbeat announced would have ended: the follower cannot know sooner. Modes with leases
      pass the lease; modes without pass how long a follower trusts a silent leader.

    An answer naming a node that never led that epoch is false whatever the tolerance."""
    led: dict[tuple[int, int], list[Interval]] = {}
    for interval in intervals:
        led.setdefault((interval.node, interval.epoch), []).append(interval)

    def held(answer: Answer) -> bool:
        for i in led.get((answer.leader, answer.epoch), ()):
            slack = transit + (0 if lease_ended(i) else horizon)
            if i.start - transit <= answer.end and answer.start < i.end + slack:
                return True
        return False

    return [answer for answer in answers if not held(answer)]


def union(spans: Iterable[Span]) -> list[Span]:
    """The spans merged where they overlap or touch, sorted; empty spans dropped."""
    merged: list[list[int]] = []
    for span in sorted(spans):
        if span.end <= span.start:
            continue
        if merged and span.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], span.end)
        else:
            merged.append([span.start, span.end])
    return [Span(start, end) for start, end in merged]


def subtract(span: Span, covers: Sequence[Span]) -> list[Span]:
    """The parts of ``span`` outside every span in ``covers`` (sorted and disjoint, as union gives)."""
    gaps = []
    cursor = span.start
    for cover in covers:
        if cover.end <= cursor:
            continue
        if cover.start >= span.end:
            break
        if cover.start > cursor:
            gaps.append(Span(cursor, cover.start))
        cursor = max(cursor, cover.end)
    if cursor < span.end:
        gaps.append(Span(cursor, span.end))
    return gaps


def intersect(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    out = [Span(max(x.start, y.start), min(x.end, y.end)) for x in a for y in b]
    return sorted(span for span in out if span.start < span.end)


# ---- P1 and P3: what the leaders said about themselves --------------------------------------------


def epochs_led(wins: Iterable[tuple[int, int, int]]) -> dict[int, dict[int, int]]:
    """epoch -> {node: the first time it led that epoch}, from (node, epoch, time) of every "I lead".

    P1 fails for every epoch with more than one node.
    """
    led: dict[int, dict[int, int]] = {}
    for node, epoch, at in wins:
        led.setdefault(epoch, {}).setdefault(node, at)
    return led


def overlapping_pairs(intervals: Iterable[Interval]) -> list[tuple[Interval, Interval]]:
    """P3: every pair of intervals of different nodes that share time, the earlier-starting first."""
    ordered = sorted(intervals, key=lambda i: (i.start, i.end, i.node))
    found = []
    for index, first in enumerate(ordered):
        for second in ordered[index + 1 :]:
            if second.start >= first.end:
                break  # later intervals start even later
            if second.node != first.node:
                found.append((first, second))
    return sorted(found, key=lambda pair: (pair[1].start, pair[0].node))


# ---- agreement ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """All live nodes follow ``leader`` at ``epoch``, and ``leader`` itself leads that epoch."""

    leader: int
    epoch: int


@dataclass(frozen=True)
class Seen:
    """One live node's latest view: whom it follows (None: no leader known), at which epoch, and
    whether it leads that epoch itself. (The simulator also requires a valid lease for ``leads``;
    recorded views and live answers carry the node's role only.)"""

    leader: int | None
    epoch: int
    leads: bool


def agreement(views: Mapping[int, Seen | None]) -> Agreement | None:
    """The one rule for "the cluster agrees", over the live nodes only.

    Every live node has a view (None: it has reported none, so nothing is agreed), all name the same
    leader and epoch, the leader is live, and its own view says it leads that epoch.
    """
    if not views or any(view is None for view in views.values()):
        return None
    named = {(view.leader, view.epoch) for view in views.values() if view is not None}
    if len(named) != 1:
        return None
    leader, epoch = named.pop()
    own = views.get(leader) if leader is not None else None
    if own is None or not own.leads or own.epoch != epoch:
        return None
    return Agreement(leader, epoch)


# ---- P3g: what the followers promised -----------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """``node`` acknowledged ``leader`` for ``epoch`` at ``at`` and promised to back no one else
    until ``until``: the protocol's window on the node's own clock, not what its code believes.
    A node's vote for itself is a grant to itself (``until == at``): it is checked against the
    node's live promises to others, and its own backing is counted separately (``own_votes``)."""

    at: int
    node: int
    leader: int
    epoch: int
    until: int


@dataclass(frozen=True)
class Release:
    """``node`` honoured ``leader``'s resignation at ``epoch``: its promises to that leader at
    epochs up to this one end at ``at``."""

    at: int
    node: int
    leader: int
    epoch: int


@dataclass(frozen=True)
class GrantWindow:
    """``node`` promised ``leader`` (at ``epoch``) to refuse everyone else during [start, end)."""

    node: int
    leader: int
    epoch: int
    start: int
    end: int


@dataclass(frozen=True)
class DoublePromise:
    """Rule 4 broken: ``node`` granted ``leader`` while its promise to ``other`` lasted until ``until``."""

    at: int
    node: int
    leader: int
    epoch: int
    other: int
    other_epoch: int
    until: int


def grant_windows(record: Iterable[Grant | Release]) -> list[GrantWindow]:
    """Every promise to another node, cut short by releases; ``record`` in the order things happened.

    Granting another leader does *not* end a window: the promise was made, and breaking it is what
    the checks look for.
    """
    windows: list[list[int]] = []  # [node, leader, epoch, start, end]; end shrinks on a release
    for item in record:
        if isinstance(item, Grant):
            if item.node != item.leader and item.until > item.at:
                windows.append([item.node, item.leader, item.epoch, item.at, item.until])
            continue
        for window in windows:
            node, leader, epoch, start, end = window
            if (node, leader) == (item.node, item.leader) and epoch <= item.epoch and start <= item.at < end:
                window[4] = item.at
    found = [GrantWindow(*window) for window in windows if window[4] > window[3]]
    return sorted(found, key=lambda w: (w.start, w.node))


def double_promises(record: Iterable[Grant | Release]) -> list[DoublePromise]:
    """Rule 4 itself: no node grants anyone (itself included) while its grant to another lives."""
    found = []
    live: dict[int, dict[int, tuple[int, int]]] = {}  # node -> leader -> (until, epoch)
    for item in record:
        mine = live.setdefault(item.node, {})
        if isinstance(item, Release):
            if item.leader in mine and mine[item.leader][1] <= item.epoch:
                del mine[item.leader]
            continue
        for other, (until, epoch) in mine.items():
            if other != item.leader and until > item.at:
                found.append(DoublePromise(item.at, item.node, item.leader, item.epoch, other, epoch, until))
        if item.node != item.leader:
            until, epoch = mine.get(item.leader, (0, 0))
            mine[item.leader] = (max(until, item.until), max(epoch, item.epoch))
    return found


def own_votes(up: Mapping[int, Sequence[Span]], windows: Iterable[GrantWindow]) -> dict[int, list[Span]]:
    """When each node's vote for itself counts: assumed whenever it is up, except while it holds a
    live promise to another node (a node that promised someone else must not vote for itself: that
    was the quick-restart split brain). Recorded votes for oneself are not consulted here; a vote
    for oneself inside a promise to another is caught by ``double_promises``."""
    promised: dict[int, list[Span]] = {}
    for window in windows:
        promised.setdefault(window.node, []).append(Span(window.start, window.end))
    votes = {}
    for node, spans in up.items():
        away = union(promised.get(node, []))
        votes[node] = [gap for span in union(spans) for gap in subtract(span, away)]
    return votes


def backed_spans(
    members: Iterable[int], windows: Sequence[GrantWindow], self_votes: Mapping[int, Sequence[Span]]
) -> dict[int, list[Span]]:
    """For each node, when a majority of the membership stood behind it: its own vote
    (``self_votes``, see ``own_votes``) plus every other member holding a live window to it."""
    members = sorted(set(members))
    majority = len(members) // 2 + 1
    backing: dict[int, dict[int, list[Span]]] = {}  # leader -> member -> spans
    for window in windows:
        backing.setdefault(window.leader, {}).setdefault(window.node, []).append(Span(window.start, window.end))
    backed = {}
    for leader in members:
        supporters = dict(backing.get(leader, {}))
        supporters[leader] = list(self_votes.get(leader, []))
        # Sweep: +1 where a member starts backing, -1 where it stops; ends sort before starts.
        edges = sorted(
            (t, delta)
            for spans in supporters.values()
            for span in union(spans)
            for t, delta in ((span.start, 1), (span.end, -1))
        )
        count, opened, spans_out = 0, None, []
        for t, delta in edges:
            count += delta
            if count >= majority and opened is None:
                opened = t
            elif count < majority and opened is not None:
                spans_out.append(Span(opened, t))
                opened = None
        if union(spans_out):
            backed[leader] = union(spans_out)
    return backed


def outside_backing(intervals: Iterable[Interval], backed: Mapping[int, Sequence[Span]]) -> list[tuple[Interval, list[Span]]]:
    """Each leadership interval with the parts of it no majority's promises covered (unsafe even
    when no second leader appeared), for the intervals that have any."""
    found = []
    for interval in intervals:
        gaps = subtract(Span(interval.start, interval.end), backed.get(interval.node, []))
        if gaps:
            found.append((interval, gaps))
    return found


def backed_overlaps(backed: Mapping[int, Sequence[Span]]) -> list[tuple[int, int, Span]]:
    """(a, b, span): two different nodes both backed by a majority's promises during span."""
    nodes = sorted(backed)
    found = [
        (a, b, span)
        for index, a in enumerate(nodes)
        for b in nodes[index + 1 :]
        for span in intersect(backed[a], backed[b])
    ]
    return sorted(found, key=lambda item: item[2].start)

# =================================================================================================
# Part 3: the judging rules applied to a recorded history (times in nanoseconds).


def leadership_intervals(events: Iterable[Mapping[str, Any]]) -> list[Interval]:
    """Who believed they led which epoch, and when, sorted by start.

    An interval opens at a node's view with role leader and closes at the node's next view, at a
    kill/pause/stop of its process, or at the end of the history; ``lease_end_ns`` on the closing view
    moves the end earlier. A paused leader that is resumed without reporting a new view still believes
    it leads (classic Bully does exactly that), so its interval reopens at the resume; a quorum leader
    whose lease ran out during the pause reports a view with an earlier ``lease_end_ns``, which shrinks
    the reopened interval to nothing. Zero-length intervals are dropped.
    """
    ordered = sort_events(events)
    if not ordered:
        return []
    end_of_history_ns = ordered[-1]["t_ns"]
    intervals: list[Interval] = []
    open_at: dict[int, tuple[int, int]] = {}  # node -> (epoch, start_ns)
    believes_leader: dict[int, int | None] = {}  # node -> epoch it leads by its latest view

    def close(node: int, end_ns: int) -> None:
        epoch, start_ns = open_at.pop(node)
        if end_ns > start_ns:
            intervals.append(Interval(node, epoch, start_ns, end_ns))

    for event in ordered:
        kind, t_ns = event["kind"], event["t_ns"]
        if kind == "view":
            node = event["node"]
            leads = event["role"] == "leader"
            if node in open_at and not (leads and open_at[node][0] == event["epoch"]):
                lease_end_ns = event.get("lease_end_ns")
                close(node, t_ns if lease_end_ns is None else min(t_ns, lease_end_ns))
            believes_leader[node] = event["epoch"] if leads else None
            if leads and node not in open_at:
                open_at[node] = (event["epoch"], t_ns)
        elif kind == "process" and isinstance(event["node"], int):
            node, action = event["node"], event["action"]
            if action in DOWN_ACTIONS and node in open_at:
                close(node, t_ns)
            epoch = believes_leader.get(node)
            if action in DEAD_OR_FRESH_ACTIONS:  # nothing the old process believed survives
                believes_leader[node] = None
            elif action == "resume" and epoch is not None and node not in open_at:
                open_at[node] = (epoch, t_ns)
    for node in list(open_at):
        close(node, end_of_history_ns)
    return sorted(intervals, key=lambda interval: (interval.start, interval.node))


def history_members(ordered: Sequence[Mapping[str, Any]]) -> set[int]:
    """The membership: the meta event's node list, plus any node that reported or was acted on."""
    members = {
        event["node"]
        for event in ordered
        if event["kind"] in ("view", "process") and isinstance(event["node"], int)
    }
    meta = next((event for event in ordered if event["kind"] == "meta"), None)
    if meta is not None:
        members.update(meta["nodes"])
    return members


class ClusterState:
    """Latest view and liveness of every node of a recorded history, advanced one event at a time."""

    def __init__(self, members: Iterable[int]) -> None:
        self.members = set(members)
        self.views: dict[int, Mapping[str, Any]] = {}
        self.down: dict[int, str] = {}  # node -> the action that took it down (kill, pause, stop)

    def apply(self, event: Mapping[str, Any]) -> None:
        if event["kind"] == "view":
            self.members.add(event["node"])
            self.views[event["node"]] = event
        elif event["kind"] == "process" and isinstance(event["node"], int):
            node, action = event["node"], event["action"]
            self.members.add(node)
            if action in DOWN_ACTIONS:
                self.down[node] = action
            else:
                self.down.pop(node, None)
            if action in DEAD_OR_FRESH_ACTIONS:
                self.views.pop(node, None)

    def live(self) -> list[int]:
        return sorted(self.members - self.down.keys())

    def agreement(self) -> Agreement | None:
        views = {node: self.views.get(node) for node in self.live()}
        return agreement({
            node: None if view is None else Seen(view["leader"], view["epoch"], view["role"] == "leader")
            for node, view in views.items()
        })

    def describe(self) -> str:
        parts = []
        for node in sorted(self.members):
            view = self.views.get(node)
            if node in self.down:
                parts.append(f"node {node} {'paused' if self.down[node] == 'pause' else 'down'}")
            elif view is None:
                parts.append(f"node {node} has reported no view since it started")
            elif view["role"] == "leader":
                parts.append(f"node {node} leads epoch {view['epoch']}")
            elif view["leader"] is None:
                parts.append(f"node {node} {view['role']} at epoch {view['epoch']} with no leader")
            else:
                parts.append(f"node {node} {view['role']} of {view['leader']} at epoch {view['epoch']}")
        return "; ".join(parts)


def state_at(ordered: Sequence[Mapping[str, Any]], t_ns: int) -> ClusterState:
    """The cluster once every event of the (sorted) history at or before ``t_ns`` happened."""
    state = ClusterState(history_members(ordered))
    for event in ordered:
        if event["t_ns"] > t_ns:
            break
        state.apply(event)
    return state


def agreement_at(events: Iterable[Mapping[str, Any]], t_ns: int) -> Agreement | None:
    """The agreement among live nodes once every event at or before ``t_ns`` happened, if any.

    Live: not killed or stopped without a later start/restart, not paused. The rule is
    ``agreement``'s, over the live nodes' latest views since their process started.
    """
    return state_at(sort_events(events), t_ns).agreement()


class AgreementTimeline:
    """The agreement over a whole recorded run: its value after each time it changed."""

    def __init__(self, ordered: Sequence[Mapping[str, Any]]) -> None:
        state = ClusterState(history_members(ordered))
        self.times_ns: list[int] = []
        self.values: list[Agreement | None] = []
        current: Agreement | None = None
        for index, event in enumerate(ordered):
            state.apply(event)
            if index + 1 < len(ordered) and ordered[index + 1]["t_ns"] == event["t_ns"]:
                continue  # judge only once every event at this instant happened
            value = state.agreement()
            if value != current:
                self.times_ns.append(event["t_ns"])
                self.values.append(value)
                current = value

    def at(self, t_ns: int) -> Agreement | None:
        index = bisect_right(self.times_ns, t_ns) - 1
        return self.values[index] if index >= 0 else None

    def first_from(self, t_ns: int, unlike: Agreement | None = None) -> tuple[int, Agreement] | None:
        """The first moment at or after ``t_ns`` with an agreement other than ``unlike``."""
        current = self.at(t_ns)
        if current is not None and current != unlike:
            return t_ns, current
        for index in range(bisect_right(self.times_ns, t_ns), len(self.times_ns)):
            value = self.values[index]
            if value is not None and value != unlike:
                return self.times_ns[index], value
        return None


def recorded_promises(ordered: Sequence[Mapping[str, Any]]) -> list[Grant | Release]:
    """The "grant" and "release" events of a (sorted) history as Grant and Release, in order.

    A grant lasts until its ``until_ns`` (the follower's exact promise end) or, without one,
    ``t_ns + promise_ms``.
    """
    record: list[Grant | Release] = []
    for event in ordered:
        if event["kind"] == "grant":
            until = event.get("until_ns", event["t_ns"] + int(event["promise_ms"] * 1_000_000))
            record.append(Grant(event["t_ns"], event["node"], event["leader"], event["epoch"], until))
        elif event["kind"] == "release":
            record.append(Release(event["t_ns"], event["node"], event["leader"], event["epoch"]))
    return record


def up_spans(
    ordered: Sequence[Mapping[str, Any]], members: Iterable[int], horizon_ns: int | None = None
) -> dict[int, list[Span]]:
    """When each node's process existed (a paused process still holds its vote): from the start of
    the history or its (re)start, to its kill or stop, or to ``horizon_ns`` (default: one past the
    end of the history)."""
    if not ordered:
        return {node: [] for node in members}
    origin = ordered[0]["t_ns"]
    horizon = ordered[-1]["t_ns"] + 1 if horizon_ns is None else horizon_ns
    up_since: dict[int, int | None] = {node: origin for node in members}
    spans: dict[int, list[Span]] = {node: [] for node in members}
    for event in ordered:
        if event["kind"] != "process" or not isinstance(event["node"], int):
            continue
        node, action, t_ns = event["node"], event["action"], event["t_ns"]
        since = up_since.get(node)
        if action in ("kill", "stop", "restart") and since is not None:
            spans.setdefault(node, []).append(Span(since, t_ns))
            up_since[node] = None
        if action in ("start", "restart"):
            up_since[node] = t_ns if up_since.get(node) is None else up_since[node]
    for node, since in up_since.items():
        if since is not None:
            spans.setdefault(node, []).append(Span(since, horizon))
    return spans
