"""The node's two outputs besides the network: history events (for the checkers) and JSON log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

# Every kind of history event a node records (WatchEvents filters by these).
EVENT_KINDS = ("view", "grant", "release", "message", "membership", "write", "process")
KEEP_EVENTS = 10_000  # the recent events a node holds for WatchEvents readers that resume (after_seq)
SUBSCRIBER_EVENTS = 1024  # how far one reader may fall behind before it loses the oldest it has not read
MAX_SUBSCRIBERS = 256  # WatchEvents streams at once (each holds at most KEEP_EVENTS references)
KEEP_EVENTS_ENV = "BULLYPROOF_KEEP_EVENTS"  # tests: a smaller buffer, to see a too-old after_seq


def keep_events() -> int:
    """How many recent events a node keeps: KEEP_EVENTS, or the test knob's number."""
    try:
        return max(1, int(os.environ.get(KEEP_EVENTS_ENV, KEEP_EVENTS)))
    except ValueError:
        return KEEP_EVENTS


class Event(NamedTuple):
    seq: int
    kind: str
    unix_ns: int
    monotonic_ns: int
    json: str


class Subscription:
    """One reader's queue of events, bounded: past `limit` the oldest unread are dropped and counted,
    and the next one read carries that count (its `missed`)."""

    def __init__(self, kinds: frozenset[str], limit: int = SUBSCRIBER_EVENTS) -> None:
        self.kinds = kinds
        self.limit = limit
        self.queue: deque[tuple[Event, int]] = deque()
        self.dropped = 0
        self.ready = asyncio.Event()

    def offer(self, event: Event, missed: int = 0) -> None:
        if self.kinds and event.kind not in self.kinds:
            return
        if len(self.queue) >= self.limit:
            old, old_missed = self.queue.popleft()
            self.dropped += 1 + old_missed
        self.queue.append((event, missed))
        self.ready.set()

    def take(self) -> list[tuple[Event, int]]:
        """Everything queued, the first one carrying the events dropped before it."""
        out = list(self.queue)
        self.queue.clear()
        self.ready.clear()
        if out and self.dropped:
            out[0] = (out[0][0], out[0][1] + self.dropped)
            self.dropped = 0
        return out


class SubscribeRefused(Exception):
    pass


class EventLog:
    """History lines for the chaos checkers (JSON, one per event) and log lines on stdout.

    Every stdout line is one JSON object with ts, level, node, epoch and msg, whichever thread
    writes it (the metrics server logs from its own), so lines never interleave.

    The history events are also numbered (seq, from 1 in each incarnation), the last KEEP_EVENTS kept
    in memory, and handed to each subscriber (WatchEvents); with none, that is a loop over an empty set.
    Recorded on the event loop's thread only (the subscribers' wake-ups are asyncio events).
    """

    def __init__(self, node_id: int, path: Path | None, keep: int = KEEP_EVENTS) -> None:
        self.node_id = node_id
        self.file = open(path, "a", buffering=1) if path else None  # line-buffered: survives SIGKILL
        self._stdout_lock = threading.Lock()
        self.incarnation = time.time_ns()
        self.seq = 0
        self.recent: deque[Event] = deque(maxlen=keep)
        self.subscribers: set[Subscription] = set()

    def record(self, kind: str, **fields: Any) -> None:
        t_ns = time.monotonic_ns()
        text = json.dumps({"t_ns": t_ns, "kind": kind, "node": self.node_id, **fields})
        if self.file:
            self.file.write(text + "\n")
        self.seq += 1
        event = Event(self.seq, kind, time.time_ns(), t_ns, text)
        self.recent.append(event)
        for sub in self.subscribers:
            sub.offer(event)

    def subscribe(self, after_seq: int, kinds: Iterable[str], incarnation: int = 0) -> Subscription:
        """A subscription holding the kept events after `after_seq` (all of them if `incarnation` is
        another one), then every new one until unsubscribe. ValueError for an after_seq past the
        last event; SubscribeRefused when MAX_SUBSCRIBERS already read."""
        if len(self.subscribers) >= MAX_SUBSCRIBERS:
            raise SubscribeRefused(f"node {self.node_id} already serves {MAX_SUBSCRIBERS} event streams")
        if incarnation and incarnation != self.incarnation:
            after_seq = 0
        elif after_seq > self.seq:
            raise ValueError(
                f"after_seq {after_seq} is past node {self.node_id}'s last event {self.seq} (incarnation "
                f"{self.incarnation}); a restarted node counts from 1 again: give the incarnation you read "
                "from, or after_seq 0"
            )
        sub = Subscription(frozenset(kinds), limit=max(SUBSCRIBER_EVENTS, len(self.recent)))
        oldest = self.recent[0].seq if self.recent else self.seq + 1
        lost = max(0, oldest - 1 - after_seq)
        for event in self.recent:
            if event.seq > after_seq:
                sub.offer(event, lost)
                lost = 0 if sub.queue else lost
        sub.dropped += lost  # nothing of the asked kinds kept: the first new event says so
        sub.limit = SUBSCRIBER_EVENTS
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)

    def log(self, msg: str, epoch: int, level: str = "info", **fields: Any) -> None:
        line = {"ts": round(time.time(), 3), "level": level, "node": self.node_id, "epoch": epoch, "msg": msg, **fields}
        text = json.dumps(line, default=str) + "\n"
        with self._stdout_lock:
            sys.stdout.write(text)
            sys.stdout.flush()

    def error(self, msg: str, epoch: int, exc: BaseException | None = None, **fields: Any) -> None:
        if exc is not None:
            fields["error"] = repr(exc)
            fields["traceback"] = "".join(traceback.format_exception(exc))
        self.log(msg, epoch, level="error", **fields)

    def close(self) -> None:
        if self.file:
            self.file.close()


class MessageLog:
    """History "message" events (election traffic, see node.runtime.peers), at most `per_s` a second.

    Election traffic is bounded by the protocol (a few messages per node per election timeout), but a
    node that re-proposes every heartbeat (classic Bully cut off one way) must not flood the history:
    past the cap, events are counted and the next one recorded carries the count as ``skipped``.
    """

    def __init__(self, events: EventLog, per_s: int = 100, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.events = events
        self.per_s = per_s
        self.clock_ns = clock_ns
        self.window_start_ns = clock_ns()
        self.in_window = 0
        self.skipped = 0

    def record(self, **fields: Any) -> bool:
        """Record one message event unless this second's budget is spent; True if recorded."""
        now_ns = self.clock_ns()
        if now_ns - self.window_start_ns >= 1_000_000_000:
            self.window_start_ns, self.in_window = now_ns, 0
        if self.in_window >= self.per_s:
            self.skipped += 1
            return False
        self.in_window += 1
        if self.skipped:
            fields["skipped"], self.skipped = self.skipped, 0
        self.events.record("message", **fields)
        return True


class JsonLogHandler(logging.Handler):
    """Python `logging` (asyncio, grpc, warnings) as EventLog lines: node and epoch on every one."""

    def __init__(self, events: EventLog, epoch: Callable[[], int]) -> None:
        super().__init__()
        self.events = events
        self.epoch = epoch

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info and record.exc_info[1] is not None:
                fields["error"] = repr(record.exc_info[1])
                fields["traceback"] = "".join(traceback.format_exception(*record.exc_info))
            self.events.log(record.getMessage(), self.epoch(), level=record.levelname.lower(), **fields)
        except Exception:
            self.handleError(record)


def route_logging(events: EventLog, epoch: Callable[[], int]) -> None:
    """Send the process's Python logging through `events` instead of bare text on stderr."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(JsonLogHandler(events, epoch))
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
