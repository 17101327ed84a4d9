"""Following a JSON-lines file as it grows (a node's events, the harness history): `cluster up` and the dashboard."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class JsonLinesTail:
    """The JSON objects appended to one file since the last poll.

    Only whole lines are consumed: a half-written last line is read on a later poll. A line that is not
    JSON (cut short by a SIGKILL, then continued by the restarted writer) is skipped. A file that
    shrank (replaced) is read again from its start. `from_end_bytes` starts a new tail that far from the
    end (at the next line) instead of at the beginning, for files that may be long.
    """

    def __init__(self, path: str | os.PathLike[str], from_end_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.offset: int | None = None if from_end_bytes is not None else 0
        self.from_end_bytes = from_end_bytes or 0

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if self.offset is None:  # first poll of a tail that starts near the end
                    self.offset = max(0, size - self.from_end_bytes)
                    if self.offset:
                        f.seek(self.offset - 1)
                        self.offset += len(f.readline()) - 1  # to the start of the next whole line
                if size < self.offset:
                    self.offset = 0
                f.seek(self.offset)
                chunk = f.read(size - self.offset)
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        out = []
        for line in chunk[:end].splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out
