"""The recorded history of a chaos run: one JSON object per line, one event per object.

Every event has ``t_ns`` (CLOCK_MONOTONIC nanoseconds; all processes share one host, so times from
different processes are comparable) and ``kind``. The TypedDicts below are the contract between the
writers (node processes, the store, the harness) and the checkers, which read only the history.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from node.store.db import CLAIM_KEY_PREFIX, claim_key  # noqa: F401  (re-exported: the key contract)

KINDS = frozenset(
    {"meta", "view", "write", "store", "process", "fault", "heal", "transfer", "grant", "release", "message"}
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

    A key starting with ``claim/`` (``claim_key``) is a new leader's claim of its epoch: its first
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
    """Quorum mode: follower ``node`` sent a granted ack (Coordinator or Heartbeat) to ``leader``.

    From then on it refuses every other leader until its promise ends: ``until_ns`` (exact, from its
    tick clock) when present, else ``t_ns + promise_ms`` — unless a ``release`` cuts it short.
    ``t_ns`` is taken when the ack is sent, after the promise was made durable.
    """

    t_ns: int
    kind: Literal["grant"]
    node: int
    leader: int
    epoch: int
    promise_ms: int  # follower_promise_ticks * tick_ms
    until_ns: NotRequired[int]


class ReleaseEvent(TypedDict):
    """Quorum mode: follower ``node`` honoured ``leader``'s resigning heartbeat for ``epoch``: its
    promise to that leader ended at ``t_ns`` (before its window would have)."""

    t_ns: int
    kind: Literal["release"]
    node: int
    leader: int
    epoch: int


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
    | ProcessEvent
    | FaultEvent
    | HealEvent
)


@dataclass(frozen=True)
class Interval:
    """A node believed it led ``epoch`` during [start_ns, end_ns)."""

    node: int
    epoch: int
    start_ns: int
    end_ns: int

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


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
    return sorted(intervals, key=lambda interval: (interval.start_ns, interval.node))
