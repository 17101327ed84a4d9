"""The node's durable promise: one small JSON file, replaced atomically and fsynced.

Written before any message that reveals it leaves the node (DESIGN.md: persist before you send).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .core import Promise

PROMISE_FILE = "promise.json"


class StateError(Exception):
    """The state directory holds something we cannot trust; refuse to start rather than guess."""


class PromiseStore:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / PROMISE_FILE
        state_dir.mkdir(parents=True, exist_ok=True)

    def load(self) -> Promise:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return Promise()
        try:
            data = json.loads(raw)
            promise = Promise(epoch=int(data["epoch"]), leader_id=int(data["leader_id"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{self.path} is corrupt ({exc}); move it away only if you know this node's history") from exc
        if promise.epoch < 0 or promise.leader_id < 0:
            raise StateError(f"{self.path} holds negative values: {raw.strip()}")
        return promise

    def save(self, promise: Promise) -> None:
        tmp = self.path.with_suffix(".tmp")
        data = json.dumps({"epoch": promise.epoch, "leader_id": promise.leader_id}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        # The rename itself must be durable too, or a crash could bring back the old file.
        dir_fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
