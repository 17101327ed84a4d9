"""The node's durable promise: one small JSON file, replaced atomically and fsynced.

Written before any message that reveals it leaves the node (docs/design.md: persist before you send).
A promise that cannot be written, or read back, is never guessed at: saving raises PersistError
(the node fail-stops) and loading raises StateError (the node refuses to start).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from node.core import Membership, Promise, Timing

PROMISE_FILE = "promise.json"
# The write-ahead copy, renamed over PROMISE_FILE once fsynced. One left behind is only an aborted
# write (the rename is atomic): load ignores it and the next save overwrites it.
PROMISE_TMP = "promise.tmp"
# Written by `bullyproof leave` (node.client.leave) while the node on this directory leaves the
# configuration: it asks to be added no more (--self-join, node.runtime.joining) until it starts again.
LEAVING_FILE = "leaving"


class StateError(Exception):
    """The state directory holds something we cannot trust; refuse to start rather than guess."""


class PersistError(StateError):
    """A promise could not be made durable. The node must stop without revealing it."""

    def __init__(self, target: Path, path: Path, error: OSError) -> None:
        reason = f"[Errno {error.errno}] {error.strerror}" if error.strerror else str(error)
        where = "" if path == target else f"{path}: "
        super().__init__(f"cannot persist the promise to {target}: {where}{reason}")
        self.target = target  # the promise file
        self.path = path  # what failed: the temp file, the promise file (rename) or the directory (fsync)
        self.error = error


class PromiseStore:
    """With the node's `timing` and `tick_ms`, the file also keeps how long the promise is held
    (``window_ms``: a leader with a longer lease may have asked for more than the node's own window),
    in milliseconds, so that a node restarted with other timings still honours it from boot."""

    def __init__(self, state_dir: Path, timing: Timing | None = None, tick_ms: int = 1) -> None:
        self.timing = timing
        self.tick_ms = tick_ms
        self.state_dir = state_dir
        self.path = state_dir / PROMISE_FILE
        self.tmp_path = state_dir / PROMISE_TMP
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot use {state_dir} as the state directory: {exc.strerror or exc}") from exc

    def load(self) -> Promise:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Promise()
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        if not raw.strip():
            # A 0-byte file is a promise we lost, not "no promise": starting from scratch could vote twice.
            raise StateError(f"{self.path} is empty (truncated); move it away only if you know this node's history")
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise TypeError(f"expected an object, got {type(data).__name__}")
            epoch, leader_id = data["epoch"], data["leader_id"]
            window_ms = data.get("window_ms", 0)  # absent in files written before windows were kept
            if not all(type(v) is int for v in (epoch, leader_id, window_ms)):
                raise TypeError(
                    f"epoch, leader_id and window_ms must be integers, got {epoch!r}, {leader_id!r} and {window_ms!r}"
                )
        except (ValueError, KeyError, TypeError) as exc:
            detail = " ".join(str(exc).split())  # one line, whatever the parser said
            raise StateError(
                f"{self.path} is corrupt ({type(exc).__name__}: {detail}); "
                "move it away only if you know this node's history"
            ) from exc
        if epoch < 0 or leader_id < 0 or window_ms < 0:
            raise StateError(
                f"{self.path} holds negative values: epoch {epoch}, leader_id {leader_id}, window_ms {window_ms}"
            )
        promise = Promise(epoch=epoch, leader_id=leader_id, membership=self._membership(data.get("configuration")))
        if self.timing is None:
            return promise
        return promise.restored(-(-window_ms // self.tick_ms), self.timing)  # rounded up: never shorter

    def _membership(self, raw: object) -> Membership | None:
        """The configuration in the file (absent in files written before membership changes: None,
        the node's start-up list)."""
        if raw is None:
            return None
        try:
            if not isinstance(raw, dict):
                raise TypeError(f"expected an object, got {type(raw).__name__}")
            lists = {k: raw[k] for k in ("voters", "learners", "previous")}
            lists["notify"] = raw.get("notify", [])
            numbers = {k: raw[k] for k in ("index", "term")}
            if not all(isinstance(v, list) and all(type(i) is int for i in v) for v in lists.values()):
                raise TypeError("voters, learners, previous and notify must be lists of integers")
            if not all(type(v) is int for v in numbers.values()):
                raise TypeError("index and term must be integers")
            return Membership(
                tuple(lists["voters"]),
                tuple(lists["learners"]),
                numbers["index"],
                numbers["term"],
                tuple(lists["previous"]),
                tuple(lists["notify"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            detail = " ".join(str(exc).split())
            raise StateError(
                f"{self.path} holds a corrupt configuration ({type(exc).__name__}: {detail}); "
                "move it away only if you know this node's history"
            ) from exc

    def _record(self, promise: Promise) -> dict[str, object]:
        data: dict[str, object] = {"epoch": promise.epoch, "leader_id": promise.leader_id}
        if self.timing is not None:
            data["window_ms"] = promise.window_ticks(self.timing) * self.tick_ms
        m = promise.membership
        if m is not None:
            data["configuration"] = {
                "voters": list(m.voters),
                "learners": list(m.learners),
                "index": m.index,
                "term": m.term,
                "previous": list(m.previous),
                "notify": list(m.notify),
            }
        return data

    def save(self, promise: Promise) -> None:
        """Write, fsync, rename over the old file, fsync the directory; PersistError if any step fails."""
        data = json.dumps(self._record(promise)).encode()
        path = self.tmp_path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            path = self.path
            os.replace(self.tmp_path, self.path)
            # The rename itself must be durable too, or a crash could bring back the old file.
            path = self.state_dir
            dir_fd = os.open(self.state_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise PersistError(self.path, path, exc) from exc
