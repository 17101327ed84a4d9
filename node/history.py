"""The history contract: what a run records, and the one judge of it.

One module for every reader of a history: the simulator (node/sim, times in global ticks), the chaos
checkers and reports (chaos/, a recorded JSON-lines file, times in CLOCK_MONOTONIC nanoseconds), the
CLI and launcher (live answers from the nodes), and the dashboard. It sits below all of them and
imports nothing from node/ or chaos/, so the simulator and the checkers cannot drift apart on what
"two leaders", "agreed" or "a majority's promise" mean: both judge with the functions of part 4.

Part 1, the recorded history: every event has ``t_ns`` (CLOCK_MONOTONIC nanoseconds; all processes
share one host, so times from different processes are comparable) and ``kind``. The TypedDicts are
the contract between the writers (node processes, the store, the harness, and the simulator, which
writes the same events with every time field in global ticks) and the readers.

Part 2, the rules' pieces, in any time unit: spans, leadership intervals and their overlaps (P3),
leaders per epoch (P1), agreement, the promise windows followers granted with the majorities they
back (P3g), and which answers were false (P6).

Part 3, those rules read off a history's events: leadership intervals, the agreement over time,
promises, up spans, P6's tolerance for a recording.

Part 4, one history, judged: ``History`` (built once per run, readings derived once), a judge per
property (History -> Verdict, findings as values), and ``describe``, which tells a finding in words
in the history's unit. docs/design.md section 3 states the properties; section 7 says why P3g does
not trust the leaders, and how the two worlds share this judge.
"""

from __future__ import annotations

import json
import os
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, get_origin, get_type_hints

KINDS = frozenset(
    {
        "meta",
        "view",
        "write",
        "store",
        "process",
        "fault",
        "heal",
        "transfer",
        "grant",
        "release",
        "message",
        "answer",
        "membership",
    }
)

# The fenced store's name as a resource: "store" events and "write" events without a resource are its.
STORE = "store"

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
    election_timeout_ms: NotRequired[int]  # a recording's timing (the simulator's is timing_ticks)
    heartbeat_interval_ms: NotRequired[int]
    preempt_hold_down_ms: NotRequired[int]
    # Who votes at first, where some nodes start outside the configuration (to be added); else every node.
    voters: NotRequired[list[int]]
    timing_ticks: NotRequired[dict[str, int]]  # the simulator: its Timing, field by field
    planted_bugs: NotRequired[list[str]]
    mode_options: NotRequired[list[str]]  # the mode's switches, e.g. raft's no-pre-vote


class ViewEvent(TypedDict):
    t_ns: int
    kind: Literal["view"]
    node: int
    role: Literal["follower", "candidate", "leader"]
    epoch: int
    leader: int | None
    reason: NotRequired[str]  # why a leader stepped down (node.core.Reason), when it did
    # When a leader steps down (lease ran out, higher epoch seen): the moment its lease actually
    # ended, which may be before t_ns (e.g. the process was paused and noticed only on resume).
    lease_end_ns: NotRequired[int]


class WriteEvent(TypedDict):
    """A write attempt as its writer saw it, recorded when the reply (or the deadline) came.

    A key starting with ``claim/`` (``node.store.db.claim_key``) is a new leader's claim of its epoch: its first
    store action, made at once when it starts leading an epoch, so the store fences older epochs.

    ``resource`` names the fenced resource written: the fenced store when absent (the nodes' own duty
    writes), else a database written through a fencing adapter ("postgres", say: the chaos harness's
    apps, chaos.apps), whose log of accepted writes is in the history as "store" events of that resource.
    """

    t_ns: int
    kind: Literal["write"]
    node: int
    epoch: int
    key: str
    accepted: bool | None  # None: no reply (timeout), outcome unknown
    seq: int | None  # the write's position in its resource's log
    error: str | None
    sent_ns: NotRequired[int]  # when the request left the writer (t_ns is when its answer came)
    resource: NotRequired[str]  # absent: the fenced store (STORE)
    value: NotRequired[str]  # what was written (UTF-8, undecodable bytes escaped), where the writer says


class StoreEvent(TypedDict):
    """One decision in a fenced resource's log, at its decision time: the fenced store's log (every
    attempt, accepted or rejected), or, with ``resource``, a fencing adapter's log of the writes its
    database accepted (node.client.fencing, ``log=True``; read back after the run, so never a rejection).
    Each resource is one register: one highest epoch, one writer per epoch (P2), in its own seq order."""

    t_ns: int
    kind: Literal["store"]
    seq: int
    writer: int
    epoch: int
    key: str
    accepted: bool
    reason: str
    resource: NotRequired[str]  # absent: the fenced store (STORE)
    value: NotRequired[str]  # as WriteEvent's


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
    promise_ms: int  # its window (Timing.window_ticks_for the announced lease) * tick_ms; 0 for a vote for itself
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
    # The simulator only, on a pause: when the paused node's lease ran out, or the end of the pause if
    # it did not (it sees inside the process; a real harness cannot). See ``leadership``.
    lease_end_ns: NotRequired[int]
    # A start under new timings (a rolling change): the node's timings from then on.
    election_timeout_ms: NotRequired[int]
    heartbeat_interval_ms: NotRequired[int]


class FaultEvent(TypedDict):
    t_ns: int
    kind: Literal["fault"]
    action: Literal["start", "stop"]
    name: str
    detail: dict[str, Any]


class HealEvent(TypedDict):
    t_ns: int
    kind: Literal["heal"]


class MembershipEvent(TypedDict):
    """A node runs another configuration from now on (node.core.membership): it adopted one, or made
    one as leader. Every leader's backing is judged against the configuration it runs (``backed_spans``)."""

    t_ns: int
    kind: Literal["membership"]
    node: int
    voters: list[int]
    learners: list[int]
    index: int
    term: int
    previous: list[int]  # the voters of the configuration it changed


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
    | MembershipEvent
)


SCHEMAS: dict[str, Any] = {
    "meta": MetaEvent,
    "view": ViewEvent,
    "write": WriteEvent,
    "store": StoreEvent,
    "grant": GrantEvent,
    "release": ReleaseEvent,
    "message": MessageEvent,
    "answer": AnswerEvent,
    "process": ProcessEvent,
    "fault": FaultEvent,
    "heal": HealEvent,
    "membership": MembershipEvent,
}


def check_event(event: Any) -> list[str]:
    """What is wrong with one event by the contract above: an unknown kind, no integer ``t_ns``, a
    field its kind requires missing, a field no kind knows. Empty: a valid event. (Reading a history
    checks only the kind and ``t_ns``: readers take what they know from events of any age.)"""
    if not isinstance(event, dict):
        return ["not a JSON object"]
    kind = event.get("kind")
    if kind not in KINDS:
        return [f"unknown event kind {kind!r}"]
    problems = [] if isinstance(event.get("t_ns"), int) else ["no integer t_ns"]
    if kind in SCHEMAS:
        required, known = _fields(kind)
        problems += [f"{kind} event without {name!r}" for name in sorted(required - event.keys())]
        problems += [f"{kind} event with unknown field {name!r}" for name in sorted(event.keys() - known)]
    return problems


def _fields(kind: str) -> tuple[set[str], set[str]]:
    """(required, known) fields of a kind. Read from the evaluated hints: with postponed annotations
    the TypedDict's own __required_keys__ does not see NotRequired."""
    hints = get_type_hints(SCHEMAS[kind], include_extras=True)
    return {name for name, hint in hints.items() if get_origin(hint) is not NotRequired}, set(hints)


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
# Part 2: the rules' pieces, in any time unit. Times are integers: global ticks in the simulator, CLOCK_MONOTONIC
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


def false_answers(
    answers: Iterable[Answer],
    intervals: Iterable[Interval],
    transit: int,
    horizon: int,
    lease_ended: Callable[[Interval], bool],
) -> list[Answer]:
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
    members: Iterable[int],
    windows: Sequence[GrantWindow],
    self_votes: Mapping[int, Sequence[Span]],
    configurations: Mapping[int, Sequence[tuple[int, tuple[int, ...], tuple[int, ...]]]] | None = None,
) -> dict[int, list[Span]]:
    """For each node, when a majority of the membership stood behind it: its own vote
    (``self_votes``, see ``own_votes``) plus every other member holding a live window to it.

    ``configurations``: where membership changed, each node's configuration from a time on ((since,
    voters, voters before the change), sorted). A node is then backed by a majority of the voters it runs
    or, while that configuration is joint (the voters before differ), of the voters before: every
    configuration that could elect another leader meanwhile needs a majority of those
    (node.core.membership)."""
    members = sorted(set(members))
    backing: dict[int, dict[int, list[Span]]] = {}  # leader -> member -> spans
    for window in windows:
        backing.setdefault(window.leader, {}).setdefault(window.node, []).append(Span(window.start, window.end))
    backed = {}
    for leader in members:
        supporters = dict(backing.get(leader, {}))
        supporters[leader] = list(self_votes.get(leader, []))
        eras = (configurations or {}).get(leader)
        if not eras:
            spans_out = _majority_sweep(supporters, len(members) // 2 + 1)
        else:
            spans_out = []
            for index, (since, _voters, previous) in enumerate(eras):
                until = eras[index + 1][0] if index + 1 < len(eras) else _FOREVER
                counting = previous  # joint: the voters before; settled: the same as voters
                if not counting or since >= until:
                    continue
                counted = {m: spans for m, spans in supporters.items() if m in counting}
                spans_out += intersect(_majority_sweep(counted, len(counting) // 2 + 1), [Span(since, until)])
        if union(spans_out):
            backed[leader] = union(spans_out)
    return backed


_FOREVER = 2**62


def _majority_sweep(supporters: Mapping[int, Sequence[Span]], majority: int) -> list[Span]:
    """When at least `majority` of the supporters' spans are live at once."""
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
    return spans_out


def outside_backing(
    intervals: Iterable[Interval], backed: Mapping[int, Sequence[Span]]
) -> list[tuple[Interval, list[Span]]]:
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
# Part 3: the rules applied to a history's events, in its own time unit (ticks or nanoseconds; every
# time field, ``t_ns``, ``until_ns``, ``lease_end_ns``, ``end_ns``, holds that unit).


def leadership(
    ordered: Sequence[Mapping[str, Any]], end: int, instant: int = 0
) -> tuple[list[Interval], set[Interval]]:
    """Who believed they led which epoch, and when, from a sorted history: the intervals, sorted by
    start, and those of them that ended as their lease ran out (P6 forgives those less).

    An interval opens at a node's view with role leader and closes at the node's next view, at a kill/pause/stop of its
    process or the start of a new one, or at ``end``; ``lease_end_ns`` on the closing view moves the end earlier. A
    paused leader that is resumed without reporting a new view still believes it leads (classic Bully does exactly
    that), so its interval reopens at the resume; a quorum leader whose lease ran out during the pause reports a view
    with an earlier ``lease_end_ns``, which shrinks the reopened interval to nothing. The simulator sees inside a paused
    process: its pause event carries ``lease_end_ns`` (when the paused leader's lease ran out, or the end of the pause
    if it did not), and then the leadership runs on through the pause up to that instant instead (and, if it ran out,
    reopens at the resume as above: what the node reports next decides).

    ``instant`` is how long one instant lasts: in ticks (the simulator) an announced leadership holds
    at least through the tick it was announced in, even if the lease it came with had already run
    out (the application was told it leads), and a process killed at tick t existed through it. In
    nanoseconds it is 0: empty intervals are dropped.
    """
    intervals: list[Interval] = []
    by_lease: set[Interval] = set()
    open_at: dict[int, tuple[int, int, bool]] = {}  # node -> (epoch, start, announced by a view)
    believes_leader: dict[int, int | None] = {}  # node -> epoch it leads by its latest view
    paused_until: dict[int, int] = {}  # node -> when its paused leadership ends (the simulator knows)

    def close(node: int, at: int, lease_ran_out: bool) -> None:
        epoch, start, announced = open_at.pop(node)
        paused_until.pop(node, None)
        if announced:
            at = max(at, start + instant)
        if at > start:
            interval = Interval(node, epoch, start, at)
            intervals.append(interval)
            if lease_ran_out:
                by_lease.add(interval)

    for event in ordered:
        kind = event["kind"]
        if kind == "view":
            node, t = event["node"], event["t_ns"]
            leads = event["role"] == "leader"
            if node in open_at and not (leads and open_at[node][0] == event["epoch"]):
                lease_end = event.get("lease_end_ns")
                close(node, t if lease_end is None else min(t, lease_end), event.get("reason") == "lease_expired")
            believes_leader[node] = event["epoch"] if leads else None
            if leads and node not in open_at:
                open_at[node] = (event["epoch"], t, True)
        elif kind == "process" and isinstance(event["node"], int):
            node, action, t = event["node"], event["action"], event["t_ns"]
            if action == "pause" and "lease_end_ns" in event:
                if node in open_at:
                    paused_until[node] = event["lease_end_ns"]
            elif (action in DOWN_ACTIONS or action == "start") and node in open_at:
                # A start of the node means its earlier process is gone: a restart is recorded before
                # the old process is killed and "start" after, so that is when its leadership ended at
                # the latest (the old process reports nothing more; under load its successor may take
                # seconds to report its boot view).
                ends = paused_until.get(node, t)
                close(node, min(t, ends), ends < t)
            if action in DEAD_OR_FRESH_ACTIONS:  # nothing the old process believed survives
                believes_leader[node] = None
            elif action == "resume":
                ends = paused_until.pop(node, None)
                if ends is not None and ends < t:  # its lease ran out while it was paused
                    close(node, ends, True)
                epoch = believes_leader.get(node)
                if epoch is not None and node not in open_at:
                    open_at[node] = (epoch, t, False)
    for node in list(open_at):
        ends = paused_until.get(node, end)
        close(node, min(end, ends), ends < end)
    return sorted(intervals, key=lambda interval: (interval.start, interval.node)), by_lease


def leadership_intervals(events: Iterable[Mapping[str, Any]]) -> list[Interval]:
    """Who believed they led which epoch, and when, sorted by start (``leadership``, to the end of
    the history; times in nanoseconds: empty intervals are dropped)."""
    ordered = sort_events(events)
    return leadership(ordered, ordered[-1]["t_ns"] if ordered else 0)[0]


def history_members(ordered: Sequence[Mapping[str, Any]]) -> set[int]:
    """The membership: the meta event's node list, plus any node that reported or was acted on."""
    members = {
        event["node"] for event in ordered if event["kind"] in ("view", "process") and isinstance(event["node"], int)
    }
    meta = next((event for event in ordered if event["kind"] == "meta"), None)
    if meta is not None:
        members.update(meta.get("nodes", ()))
    return members


class ClusterState:
    """Latest view and liveness of every node of a recorded history, advanced one event at a time."""

    def __init__(self, members: Iterable[int]) -> None:
        self.members = set(members)
        self.views: dict[int, Mapping[str, Any]] = {}
        self.down: dict[int, str] = {}  # node -> the action that took it down (kill, pause, stop)
        # Nodes in no configuration (joining, or removed): they follow no one and are not asked.
        self.outside: set[int] = set()

    def apply(self, event: Mapping[str, Any]) -> None:
        if event["kind"] == "meta" and "voters" in event:
            self.outside = self.members - set(event["voters"])
        elif event["kind"] == "membership":
            if event["node"] in event["voters"] or event["node"] in event["learners"]:
                self.outside.discard(event["node"])
            else:
                self.outside.add(event["node"])
        elif event["kind"] == "view":
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
        views = {node: self.views.get(node) for node in self.live() if node not in self.outside}
        return agreement(
            {
                node: None if view is None else Seen(view["leader"], view["epoch"], view["role"] == "leader")
                for node, view in views.items()
            }
        )

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
            until = event.get("until_ns")
            if until is None:
                until = event["t_ns"] + int(event["promise_ms"] * 1_000_000)
            record.append(Grant(event["t_ns"], event["node"], event["leader"], event["epoch"], until))
        elif event["kind"] == "release":
            record.append(Release(event["t_ns"], event["node"], event["leader"], event["epoch"]))
    return record


def up_spans(
    ordered: Sequence[Mapping[str, Any]], members: Iterable[int], horizon_ns: int | None = None, instant: int = 0
) -> dict[int, list[Span]]:
    """When each node's process existed (a paused process still holds its vote): from the start of
    the history or its (re)start, to its kill or stop (and through that instant: ``leadership``), or
    to ``horizon_ns`` (default: one past the end of the history)."""
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
            spans.setdefault(node, []).append(Span(since, t_ns + instant))
            up_since[node] = None
        if action in ("start", "restart"):
            up_since[node] = t_ns if up_since.get(node) is None else up_since[node]
    for node, since in up_since.items():
        if since is not None:
            spans.setdefault(node, []).append(Span(since, horizon))
    return spans


def recorded_tolerance(ordered: Sequence[Mapping[str, Any]], promises: bool) -> AnswerTolerance:
    """P6's tolerance for one recorded run (nanoseconds; see ``false_answers``).

    Transit is how late a follower's evidence can be: the longest latency (with its jitter) injected on
    any link, plus the longest pause of any process (a paused follower counts from a heartbeat that
    waited in its socket), plus the follower's grace of one heartbeat interval, plus one election
    timeout for a busy machine's scheduling. The horizon is the lease (0.7 election timeouts) in modes
    with leases; in the others, how long a follower trusts a silent leader (about an election
    timeout; two are allowed)."""
    meta = next((e for e in ordered if e["kind"] == "meta"), {})
    # Members restarted under new timings (process starts that name them): the longest of them.
    starts = [e for e in ordered if e["kind"] == "process" and e["action"] == "start"]

    def longest_ms(field: str, default: int) -> int:
        return max([int(meta.get(field, default)), *(int(e[field]) for e in starts if field in e)])

    et_ns = longest_ms("election_timeout_ms", 500) * 1_000_000
    latency_ms = max(
        (
            int(e["detail"].get("latency", 0)) + int(e["detail"].get("jitter", 0))
            for e in ordered
            if e["kind"] == "fault" and e["action"] == "start" and e.get("detail", {}).get("type") == "latency"
        ),
        default=0,
    )
    paused_at: dict[Any, int] = {}
    longest_pause_ns = 0
    for e in ordered:
        if e["kind"] == "process" and e["action"] == "pause":
            paused_at[e["node"]] = e["t_ns"]
        elif e["kind"] == "process" and e["node"] in paused_at:
            longest_pause_ns = max(longest_pause_ns, e["t_ns"] - paused_at.pop(e["node"]))
    hb_ns = longest_ms("heartbeat_interval_ms", 100) * 1_000_000
    transit_ns = latency_ms * 1_000_000 + longest_pause_ns + hb_ns + et_ns
    horizon_ns = et_ns * 7 // 10 if promises else 2 * et_ns
    return AnswerTolerance(transit_ns, horizon_ns)


# =================================================================================================
# Part 4: one history, judged. A History is built once from a run's events (a recording's dicts in
# nanoseconds, or the simulator's same dicts in ticks), sorted once, with what the properties read
# derived once; every property is a pure function History -> Verdict whose findings are data, and
# telling them in words (``describe``) is apart, in the history's unit.


@dataclass(frozen=True)
class Unit:
    """How a history counts time: how long one instant lasts (``leadership``), and how its times
    (relative to the first event) and lengths are told."""

    name: str  # "tick" or "ns"
    instant: int

    def at(self, t: int, origin: int) -> str:
        if self.name == "tick":
            return f"tick {t - origin}"
        return f"t={(t - origin) / 1e9:+.3f}s"

    def length(self, duration: int) -> str:
        if self.name == "tick":
            return f"{duration} tick" + ("" if duration == 1 else "s")
        return f"{duration / 1e6:.1f} ms"

    def bound(self, duration: int) -> str:
        """A given bound, as it was given (``500 ms``, not ``500.0 ms``)."""
        return self.length(duration) if self.name == "tick" else f"{duration / 1e6:g} ms"


TICKS = Unit("tick", 1)  # the simulator's global ticks: time is discrete
NS = Unit("ns", 0)  # a recording's CLOCK_MONOTONIC nanoseconds, told in ms and s


@dataclass(frozen=True)
class AnswerTolerance:
    """How late an answer may trail the truth (P6, ``false_answers``), in the history's unit."""

    transit: int
    horizon: int


@dataclass(frozen=True)
class StoreEntry:
    """One decision of a fenced resource (``at``: when it decided): the fenced store's unless
    ``resource`` names another (a database behind a fencing adapter)."""

    seq: int
    at: int
    writer: int
    epoch: int
    key: str
    accepted: bool
    reason: str
    resource: str = STORE
    value: str | None = None

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> StoreEntry:
        return cls(
            event["seq"],
            event["t_ns"],
            event["writer"],
            event["epoch"],
            event["key"],
            event["accepted"],
            event.get("reason", ""),
            event.get("resource", STORE),
            event.get("value"),
        )

    def same_decision(self, other: StoreEntry) -> bool:
        return (self.resource, self.writer, self.epoch, self.key, self.accepted) == (
            other.resource,
            other.writer,
            other.epoch,
            other.key,
            other.accepted,
        ) and (self.value is None or other.value is None or self.value == other.value)


def store_log(ordered: Sequence[Mapping[str, Any]]) -> tuple[list[StoreEntry], list[StoreConflict]]:
    """The store's decisions in seq order, and each seq recorded twice with different contents.

    The store may dump its durable log more than once (e.g. around a store restart), so identical
    copies of a record are one record. (``resource_logs`` has every resource's.)
    """
    logs, conflicts = resource_logs(ordered)
    return logs.get(STORE, []), [c for c in conflicts if c.kept.resource == STORE]


def resource_logs(ordered: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list[StoreEntry]], list[StoreConflict]]:
    """Each fenced resource's decisions in its own seq order (the store's under STORE), and each
    (resource, seq) recorded twice with different contents; identical copies are one record."""
    by_seq: dict[tuple[str, int], StoreEntry] = {}
    conflicts = []
    for event in ordered:
        if event["kind"] != "store":
            continue
        entry = StoreEntry.of(event)
        kept = by_seq.setdefault((entry.resource, entry.seq), entry)
        if not kept.same_decision(entry):
            conflicts.append(StoreConflict(kept, entry))
    logs: dict[str, list[StoreEntry]] = {}
    for resource, seq in sorted(by_seq):
        logs.setdefault(resource, []).append(by_seq[(resource, seq)])
    return logs, conflicts


class History:
    """One run's history, sorted once, with everything the properties read derived once.

    ``unit``: TICKS for the simulator, NS for a recording. ``promises``: whether the mode's
    acknowledgements are promises (P3g applies; P6's horizon is the lease). ``tolerance``: P6's, in
    the history's unit (default: a recording's own figures, ``recorded_tolerance``). ``end``: when
    the run was judged (default: its last event); leaderships still open end there.
    """

    def __init__(
        self,
        events: Iterable[Mapping[str, Any]],
        unit: Unit = NS,
        *,
        promises: bool = True,
        tolerance: AnswerTolerance | None = None,
        end: int | None = None,
    ) -> None:
        self.events: list[Mapping[str, Any]] = sorted(events, key=_time)
        self.unit = unit
        self.promises = promises
        self.origin = self.events[0]["t_ns"] if self.events else 0
        self.end = end if end is not None else (self.events[-1]["t_ns"] if self.events else 0)
        self._given_tolerance = tolerance

    # Each reading is derived once, when a judge first asks for it.

    @cached_property
    def meta(self) -> Mapping[str, Any]:
        return next((e for e in self.events if e["kind"] == "meta"), {})

    @cached_property
    def members(self) -> set[int]:
        return history_members(self.events)

    @cached_property
    def _leadership(self) -> tuple[list[Interval], set[Interval]]:
        return leadership(self.events, self.end, self.unit.instant)

    @property
    def intervals(self) -> list[Interval]:
        """Every leadership interval, sorted by start (``leadership``)."""
        return self._leadership[0]

    @property
    def lease_ended(self) -> set[Interval]:
        """The intervals that ended as their lease ran out."""
        return self._leadership[1]

    @cached_property
    def leaders_by_epoch(self) -> dict[int, dict[int, int]]:
        return epochs_led(
            (e["node"], e["epoch"], e["t_ns"]) for e in self.events if e["kind"] == "view" and e["role"] == "leader"
        )

    @cached_property
    def promise_record(self) -> list[Grant | Release]:
        """Every grant (votes for oneself included) and release, in the order they happened."""
        return recorded_promises(self.events)

    @cached_property
    def grants(self) -> int:
        return sum(1 for p in self.promise_record if isinstance(p, Grant))

    @cached_property
    def windows(self) -> list[GrantWindow]:
        return grant_windows(self.promise_record)

    @cached_property
    def _logs(self) -> tuple[dict[str, list[StoreEntry]], list[StoreConflict]]:
        return resource_logs(self.events)

    @property
    def logs(self) -> dict[str, list[StoreEntry]]:
        """Every fenced resource's decisions, each in its own seq order, by resource name (the
        fenced store's under STORE; a fencing adapter's log under the name its writes carry)."""
        return self._logs[0]

    @property
    def store(self) -> list[StoreEntry]:
        """The fenced store's decisions, in seq order."""
        return self._logs[0].get(STORE, [])

    @property
    def store_conflicts(self) -> list[StoreConflict]:
        """Every resource's seqs recorded twice with different contents."""
        return self._logs[1]

    @cached_property
    def resources(self) -> list[str]:
        """The fenced resources of this history: the store first, then those written or logged, by name."""
        named = {w.get("resource", STORE) for w in self.writes} | set(self.logs)
        return sorted(named, key=lambda name: (name != STORE, name))

    @cached_property
    def writes(self) -> list[Mapping[str, Any]]:
        return [e for e in self.events if e["kind"] == "write"]

    @cached_property
    def answers(self) -> list[Answer]:
        return [
            Answer(e["node"], e["leader"], e["epoch"], e["t_ns"], e["end_ns"])
            for e in self.events
            if e["kind"] == "answer"
        ]

    @cached_property
    def up(self) -> dict[int, list[Span]]:
        """When each node's process existed; a process not known to have died still votes for itself
        while the promises made to it last."""
        horizon = max([self.end] + [w.end for w in self.windows]) + 1
        return up_spans(self.events, self.members, horizon, self.unit.instant)

    @cached_property
    def backed(self) -> dict[int, list[Span]]:
        """For each node, when a majority of the membership stood behind it by their own promises:
        its own vote (``own_votes``) plus every other member's live grant window to it."""
        return backed_spans(self.members, self.windows, own_votes(self.up, self.windows), self.configurations)

    @cached_property
    def configurations(self) -> dict[int, list[tuple[int, tuple[int, ...], tuple[int, ...]]]]:
        """Where membership changed in this history: each node's voters (and the voters before that
        change) from a time on, starting with the meta event's ``voters`` (else every node). Empty
        when nothing changed."""
        meta = next((e for e in self.events if e["kind"] == "meta"), {})
        changes = [e for e in self.events if e["kind"] == "membership"]
        if not changes and "voters" not in meta:
            return {}
        first = tuple(sorted(meta.get("voters", self.members)))
        eras = {node: [(-_FOREVER, first, first)] for node in self.members}
        for e in changes:
            voters = tuple(e["voters"])
            eras.setdefault(e["node"], [(-_FOREVER, first, first)]).append(
                (e["t_ns"], voters, tuple(e.get("previous", voters)))
            )
        return eras

    @cached_property
    def timeline(self) -> AgreementTimeline:
        return AgreementTimeline(self.events)

    @cached_property
    def tolerance(self) -> AnswerTolerance:
        """P6's, as given, or a recording's own (``recorded_tolerance``)."""
        return self._given_tolerance or recorded_tolerance(self.events, self.promises)

    def at(self, t: int) -> str:
        return self.unit.at(t, self.origin)


def _time(event: Mapping[str, Any]) -> int:
    return event["t_ns"]


# ---- verdicts and their findings ------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One property judged on one history: ``ok`` exactly when ``findings`` is empty. A property that
    does not apply to the mode (P3g without promises) is ok with ``applicable`` False."""

    id: str
    ok: bool
    findings: tuple[Any, ...] = ()
    applicable: bool = True


def _verdict(id: str, findings: Iterable[Any]) -> Verdict:
    found = tuple(findings)
    return Verdict(id, not found, found)


@dataclass(frozen=True)
class SharedEpoch:
    """P1: several nodes led ``epoch``; ``leaders`` are (node, when it first led it), in that order."""

    epoch: int
    leaders: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class StoreConflict:
    """P2: a resource's log (``kept.resource``) has seq ``kept.seq`` twice, with different contents."""

    kept: StoreEntry
    other: StoreEntry


@dataclass(frozen=True)
class StaleAccepted:
    """P2: a resource (``entry.resource``) accepted ``entry`` after it had accepted the higher epoch of ``highest``."""

    entry: StoreEntry
    highest: StoreEntry


@dataclass(frozen=True)
class TwoWriters:
    """P2: a resource (``entry.resource``) accepted one epoch from two writers: ``first``'s, then ``entry``'s."""

    entry: StoreEntry
    first: StoreEntry


@dataclass(frozen=True)
class LeaderOverlap:
    """P3: two nodes' leadership intervals share time."""

    first: Interval
    second: Interval

    @property
    def span(self) -> Span:
        return Span(self.second.start, min(self.first.end, self.second.end))


@dataclass(frozen=True)
class BackedTogether:
    """P3g: nodes ``a`` and ``b`` were both backed by a majority's live promises during ``span``."""

    a: int
    b: int
    span: Span


@dataclass(frozen=True)
class Unbacked:
    """P3g: a leadership interval with the parts of it (``gaps``) no majority's promises covered."""

    interval: Interval
    gaps: tuple[Span, ...]


@dataclass(frozen=True)
class LostWrite:
    """P5: a write acknowledged to its writer that its resource's log does not hold as written
    (``entry``: what the log has at its seq, if anything)."""

    write: Mapping[str, Any]
    entry: StoreEntry | None


@dataclass(frozen=True)
class FalseAnswer:
    """P6: an answer that named a node that did not lead that epoch then (``never_led``: nor ever)."""

    answer: Answer
    never_led: bool


@dataclass(frozen=True)
class Recovery:
    """P4: the clock starts at ``anchor`` (the last heal, else the last fault stop or process event,
    else the first event); ``active``: network faults never healed; ``agreed``: (when, what) the
    first agreement at or after the anchor; ``state``: the cluster as it stood at the bound (or at
    the end of the history) when agreement did not come in time."""

    anchor: Mapping[str, Any] | None
    bound: int
    active: tuple[str, ...] = ()
    agreed: tuple[int, Agreement] | None = None
    state: ClusterState | None = None

    @property
    def took(self) -> int | None:
        return None if self.agreed is None or self.anchor is None else self.agreed[0] - self.anchor["t_ns"]

    @property
    def ok(self) -> bool:
        return self.anchor is not None and not self.active and self.took is not None and self.took <= self.bound


@dataclass(frozen=True)
class LateWrite:
    """A write the store accepted after its writer's leadership of that epoch (and of any newer
    epoch of its own) had ended at ``lead_end``; a measure, not a property (see chaos.checkers'
    fencing_summary for why it is bounded)."""

    entry: StoreEntry
    lead_end: int

    @property
    def late(self) -> int:
        return self.entry.at - self.lead_end


# ---- the judges -------------------------------------------------------------------------------------


def unique_leaders(h: History) -> Verdict:
    """P1: at most one node ever becomes leader of a given epoch."""
    return _verdict(
        "P1",
        (
            SharedEpoch(epoch, tuple(leaders.items()))
            for epoch, leaders in sorted(h.leaders_by_epoch.items())
            if len(leaders) > 1
        ),
    )


def store_monotonic(h: History) -> Verdict:
    """P2: no fenced resource (the store, and each database whose log of accepted writes the history
    holds) accepts an epoch below one it accepted, nor one epoch from two writers; each judged alone,
    in its own seq order."""
    found: list[Any] = list(h.store_conflicts)
    for log in h.logs.values():
        highest: StoreEntry | None = None  # the accepted entry with the highest epoch so far
        owner: dict[int, StoreEntry] = {}  # epoch -> first accepted entry of that epoch
        for entry in log:
            if not entry.accepted:
                continue
            if highest is not None and entry.epoch < highest.epoch:
                found.append(StaleAccepted(entry, highest))
            if highest is None or entry.epoch > highest.epoch:
                highest = entry
            first = owner.setdefault(entry.epoch, entry)
            if first.writer != entry.writer:
                found.append(TwoWriters(entry, first))
    return _verdict("P2", found)


def no_overlap(h: History) -> Verdict:
    """P3: leadership intervals of different nodes never overlap in time."""
    return _verdict("P3", (LeaderOverlap(a, b) for a, b in overlapping_pairs(h.intervals)))


def no_overlap_by_grants(h: History) -> Verdict:
    """P3g, in modes that promise: no two nodes backed by majorities' promises at once; no leadership
    outside its node's backing (unsafe even when no second leader appeared); no member granting
    anyone, itself included, while its promise to another lives (rule 4 itself: a promise broken to
    a killed leader backs no second majority, since the dead node's vote is gone)."""
    if not h.promises:
        return Verdict("P3g", True, (), applicable=False)
    backed = h.backed
    return _verdict(
        "P3g",
        [
            *(BackedTogether(a, b, span) for a, b, span in backed_overlaps(backed)),
            *(Unbacked(interval, tuple(gaps)) for interval, gaps in outside_backing(h.intervals, backed)),
            *double_promises(h.promise_record),
        ],
    )


def agreement_after_heal(h: History, bound: int) -> Verdict:
    """P4: after the faults end, all live nodes agree on one leader within ``bound``."""
    found = recovery(h, bound)
    return _verdict("P4", () if found.ok else (found,))


def recovery(h: History, bound: int) -> Recovery:
    """How P4 went: the clock starts at the last heal; without a heal, at the last fault stop or
    process event (a kill counts too: the survivors must settle without the victim); without any,
    at the first event. Network faults still active at the end of the history fail it: nothing healed."""
    ordered = h.events
    heals = [e for e in ordered if e["kind"] == "heal"]
    anchors = heals or [
        e for e in ordered if e["kind"] == "process" or (e["kind"] == "fault" and e["action"] == "stop")
    ]
    anchor = anchors[-1] if anchors else (ordered[0] if ordered else None)
    if anchor is None:
        return Recovery(None, bound)
    active = _active_faults(ordered)
    if active:
        return Recovery(anchor, bound, active)
    agreed = h.timeline.first_from(anchor["t_ns"])
    found = Recovery(anchor, bound, (), agreed)
    if found.ok:
        return found
    seen = min(anchor["t_ns"] + bound, ordered[-1]["t_ns"])
    return Recovery(anchor, bound, (), agreed, state_at(ordered, seen))


def _active_faults(ordered: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """Network faults still in place at the end of the history (a heal removes all of them)."""
    active: dict[str, None] = {}  # ordered set
    for event in ordered:
        if event["kind"] == "heal":
            active.clear()
        elif event["kind"] == "fault" and event["action"] == "start":
            active[event["name"]] = None
        elif event["kind"] == "fault":
            active.pop(event["name"], None)
    return tuple(active)


def no_lost_writes(h: History) -> Verdict:
    """P5: every write acknowledged to its writer is in its resource's log (the store's, or the
    database's it was written to), accepted, as written: same writer, epoch, key, and value where both
    record one. Writes without a reply (accepted null) have an unknown outcome: never a loss."""
    by_seq = {(entry.resource, entry.seq): entry for log in h.logs.values() for entry in log}
    found = []
    for write in h.writes:
        if not write["accepted"]:
            continue
        resource = write.get("resource", STORE)
        entry = by_seq.get((resource, write["seq"])) if write["seq"] is not None else None
        if (
            entry is None
            or (entry.writer, entry.epoch, entry.key, entry.accepted)
            != (write["node"], write["epoch"], write["key"], True)
            or (entry.value is not None and write.get("value") is not None and entry.value != write["value"])
        ):
            found.append(LostWrite(write, entry))
    return _verdict("P5", found)


def true_answers(h: History) -> Verdict:
    """P6: every answer that named a leader named one that led that epoch then, within ``h.tolerance``."""
    tolerance = h.tolerance
    false = false_answers(h.answers, h.intervals, tolerance.transit, tolerance.horizon, h.lease_ended.__contains__)
    led = {(i.node, i.epoch) for i in h.intervals}
    return _verdict("P6", (FalseAnswer(a, (a.leader, a.epoch) not in led) for a in false))


SAFETY = (unique_leaders, store_monotonic, no_overlap, no_overlap_by_grants, true_answers)


def judge(h: History) -> list[Verdict]:
    """The safety properties P1, P2, P3, P3g and P6 (P4 and P5 need a bound and client writes)."""
    return [prop(h) for prop in SAFETY]


def late_writes(h: History) -> tuple[list[LateWrite], list[StoreEntry]]:
    """Writes the store accepted from an epoch whose leadership had already ended when it decided
    (the writer no longer led that epoch, nor a newer one of its own), and accepted writes from a
    (writer, epoch) that never led by the history."""
    late, unled = [], []
    for entry in h.store:
        if not entry.accepted:
            continue
        own = [i for i in h.intervals if i.node == entry.writer and i.epoch >= entry.epoch]
        if any(i.start <= entry.at <= i.end for i in own):
            continue  # it leads this epoch, or moved on to a newer epoch of its own (or ends right now)
        led = any(i.epoch == entry.epoch and i.start <= entry.at for i in own)
        ended = [i.end for i in own if i.end < entry.at] if led else []
        if ended:
            late.append(LateWrite(entry, max(ended)))
        else:
            unled.append(entry)
    return late, unled


# ---- findings in words --------------------------------------------------------------------------


def describe(finding: Any, h: History) -> str:
    """One finding as a line, times in the history's unit relative to its first event."""
    at, length = h.at, h.unit.length
    if isinstance(finding, SharedEpoch):
        when = ", ".join(f"node {node} at {at(t)}" for node, t in finding.leaders)
        return f"epoch {finding.epoch} led by nodes {and_list([node for node, _ in finding.leaders])} ({when})"
    if isinstance(finding, StoreConflict):
        return (
            f"{finding.kept.resource} seq {finding.kept.seq} recorded twice with different contents: "
            f"{_store_words(finding.kept)} vs {_store_words(finding.other)}"
        )
    if isinstance(finding, StaleAccepted):
        e, top = finding.entry, finding.highest
        return (
            f"{e.resource} seq {e.seq} accepted epoch {e.epoch} from node {e.writer} after "
            f"accepting epoch {top.epoch} (seq {top.seq}, node {top.writer})"
        )
    if isinstance(finding, TwoWriters):
        e, first = finding.entry, finding.first
        where = "" if e.resource == STORE else f"{e.resource}: "
        return (
            f"{where}epoch {e.epoch} accepted from nodes {first.writer} and {e.writer} "
            f"(seq {first.seq} node {first.writer}, seq {e.seq} node {e.writer})"
        )
    if isinstance(finding, LeaderOverlap):
        a, b, span = finding.first, finding.second, finding.span
        return (
            f"node {a.node} (epoch {a.epoch}) and node {b.node} (epoch {b.epoch}) both led from "
            f"{at(span.start)} for {length(span.end - span.start)}"
        )
    if isinstance(finding, BackedTogether):
        return (
            f"nodes {finding.a} and {finding.b} were both backed by a majority's live promises from "
            f"{at(finding.span.start)} for {length(finding.span.end - finding.span.start)}"
        )
    if isinstance(finding, Unbacked):
        i, first = finding.interval, finding.gaps[0]
        outside = sum(gap.end - gap.start for gap in finding.gaps)
        return (
            f"node {i.node} led epoch {i.epoch} ({at(i.start)} for {length(i.end - i.start)}) {length(outside)} "
            f"outside a majority's live promises, first from {at(first.start)} for {length(first.end - first.start)}"
        )
    if isinstance(finding, DoublePromise):
        whom = "itself" if finding.leader == finding.node else f"node {finding.leader}"
        return (
            f"node {finding.node} granted {whom} (epoch {finding.epoch}) at {at(finding.at)} while its promise "
            f"to node {finding.other} (epoch {finding.other_epoch}) lasted {length(finding.until - finding.at)} more"
        )
    if isinstance(finding, FalseAnswer):
        a = finding.answer
        return (
            f"node {a.node} named node {a.leader} leader of epoch {a.epoch} at {at(a.start)}, when it did not lead"
            + (": it never led that epoch" if finding.never_led else "")
        )
    if isinstance(finding, LostWrite):
        w, entry = finding.write, finding.entry
        what = write_words(w, h)
        resource = w.get("resource", STORE)
        if w["seq"] is None:
            return f"{what} was acknowledged without a {resource} seq"
        if entry is None:
            return f"{what} acknowledged as seq {w['seq']} is missing from the {resource} log"
        return (
            f"{what} acknowledged as seq {w['seq']}, but the {resource} log has seq {w['seq']} as {_store_words(entry)}"
        )
    if isinstance(finding, Recovery):
        return "; ".join(recovery_lines(finding, h))
    raise TypeError(f"no words for {finding!r}")


def recovery_lines(r: Recovery, h: History) -> list[str]:
    """P4's account: when agreement came after the anchor, or why it did not in time."""
    if r.anchor is None:
        return ["empty history"]
    if r.active:
        return [f"faults still active at the end of the history, never healed: {and_list([repr(n) for n in r.active])}"]
    length = h.unit.length
    anchor_t = r.anchor["t_ns"]
    since = f"{anchor_words(r.anchor)} ({h.at(anchor_t)})"
    if r.agreed is None:
        lines = [f"live nodes never agreed on a leader after {since}"]
    else:
        at, agreed = r.agreed
        message = (
            f"all live nodes agreed on leader {agreed.leader} at epoch {agreed.epoch} at {h.at(at)}, "
            f"{length(at - anchor_t)} after {since}"
        )
        if r.ok:
            return [message]
        lines = [f"{message}: later than the bound of {h.unit.bound(r.bound)}"]
    end = h.events[-1]["t_ns"]
    if end < anchor_t + r.bound:
        lines.append(
            f"the history ends {length(end - anchor_t)} after {since}, before the bound of {h.unit.bound(r.bound)}"
        )
    if r.state is not None:
        lines.append(f"at {h.at(min(anchor_t + r.bound, end))}: {r.state.describe()}")
    return lines


def anchor_words(event: Mapping[str, Any]) -> str:
    if event["kind"] == "heal":
        return "the last heal"
    if event["kind"] == "fault":
        return f"fault {event['name']!r} stopped"
    if event["kind"] == "process":
        node = event["node"]
        return f"{event['action']} of {f'node {node}' if isinstance(node, int) else node}"
    return "the start of the history"


def write_words(write: Mapping[str, Any], h: History) -> str:
    resource = write.get("resource", STORE)
    if resource == STORE:
        return f"write by node {write['node']} (epoch {write['epoch']}, key {write['key']!r}) at {h.at(write['t_ns'])}"
    value = "" if write.get("value") is None else f", value {write['value']!r}"
    return (
        f"write to {resource} by node {write['node']} (epoch {write['epoch']}, key {write['key']!r}{value}) "
        f"at {h.at(write['t_ns'])}"
    )


def _store_words(entry: StoreEntry) -> str:
    verdict = "accepted" if entry.accepted else f"rejected ({entry.reason})"
    value = "" if entry.resource == STORE or entry.value is None else f" value {entry.value!r}"
    return f"node {entry.writer} epoch {entry.epoch} key {entry.key!r}{value} {verdict}"


def and_list(items: Sequence[object]) -> str:
    words = [str(item) for item in items]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def violation_lines(verdicts: Iterable[Verdict], h: History) -> list[str]:
    """Every finding of the failed verdicts as a line that starts with its property's id ("P3g: ...")."""
    return [f"{v.id}: {describe(f, h)}" for v in verdicts for f in v.findings]
