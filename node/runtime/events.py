"""The node's two outputs besides the network: history events (for the checkers) and JSON log lines."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


class EventLog:
    """History lines for the chaos checkers (JSON, one per event) and log lines on stdout.

    Every stdout line is one JSON object with ts, level, node, epoch and msg, whichever thread
    writes it (the metrics server logs from its own), so lines never interleave.
    """

    def __init__(self, node_id: int, path: Path | None) -> None:
        self.node_id = node_id
        self.file = open(path, "a", buffering=1) if path else None  # line-buffered: survives SIGKILL
        self._stdout_lock = threading.Lock()

    def record(self, kind: str, **fields: Any) -> None:
        if self.file:
            self.file.write(
                json.dumps({"t_ns": time.monotonic_ns(), "kind": kind, "node": self.node_id, **fields}) + "\n"
            )

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
