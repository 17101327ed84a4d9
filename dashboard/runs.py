"""Running a chaos scenario from the page: `bullyproof chaos run NAME --mode M --seed S --json --dir D`,
as a child process, so it is the CLI's own code path (its own cluster, history, checkers and report).

While it runs, the page watches the scenario's cluster (its DIR/cluster.json); when it ends, the page
shows the report's verdicts (P1-P6, P3g) and the timeline picture the run drew.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from chaos.scenarios import DESCRIPTIONS, SCENARIOS, TIMINGS
from node.config import ConfigError
from node.core import DEFAULT_MODE, mode_names

CANCEL_GRACE_S = 30.0  # SIGINT lets the run stop its cluster; after this long it is killed


def catalogue() -> dict[str, Any]:
    return {
        "scenarios": [{"name": n, "description": DESCRIPTIONS[n], "timing": TIMINGS[n].describe()} for n in SCENARIOS],
        "modes": list(mode_names()),
        "default_mode": DEFAULT_MODE,
    }


_EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception)\w*:")  # "grpc._channel._InactiveRpcError: <..."


def failure_line(stderr: str) -> str:
    """What a failed run died of, in one line: the traceback's last exception and what follows it
    (a gRPC error's status and details span several lines; its last line is only `">`)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if _EXCEPTION_LINE.match(line)]
    tail = lines[starts[-1] :] if starts else lines[-1:]
    return " ".join(tail)[:600]


class ScenarioRun:
    """One `chaos run` child process and what came of it."""

    def __init__(self, name: str, mode: str, seed: int, directory: Path) -> None:
        if name not in SCENARIOS:
            raise ConfigError(f"unknown scenario {name!r}")
        if mode not in mode_names():
            raise ConfigError(f"unknown mode {mode!r}; one of {', '.join(mode_names())}")
        self.name, self.mode, self.seed = name, mode, seed
        self.directory = directory
        self.state = "starting"  # starting | running | done | failed | cancelled
        self.report: dict[str, Any] | None = None
        self.error = ""
        self.started_s = time.time()
        self.finished_s: float | None = None
        self.proc: asyncio.subprocess.Process | None = None

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "node.cli",
            "chaos",
            "run",
            self.name,
            "--mode",
            self.mode,
            "--seed",
            str(self.seed),
            "--json",
            "--dir",
            str(self.directory),
        ]

    async def run(self) -> None:
        """Start the run and wait for it; fills in state, report and error."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.state = "running"
        out, err = await self.proc.communicate()
        self.finished_s = time.time()
        if self.state == "cancelled":
            return
        if self.proc.returncode != 0:
            self.state = "failed"
            self.error = failure_line(err.decode(errors="replace")) or f"exit status {self.proc.returncode}"
            return
        try:
            self.report = json.loads(out.decode().strip().splitlines()[-1])
            self.state = "done"
        except (ValueError, IndexError):
            self.state, self.error = "failed", "the run printed no JSON report"

    async def cancel(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.state = "cancelled"
        self.proc.send_signal(signal.SIGINT)  # KeyboardInterrupt: the run's `with cluster:` stops what it started
        try:
            await asyncio.wait_for(self.proc.wait(), CANCEL_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def timeline_png(self) -> Path | None:
        path = self.directory / "timeline.png"
        return path if self.state == "done" and path.exists() else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "mode": self.mode,
            "seed": self.seed,
            "state": self.state,
            "error": self.error,
            "directory": str(self.directory),
            "command": " ".join(["bullyproof", *self.argv()[3:]]),
            "elapsed_s": round((self.finished_s or time.time()) - self.started_s, 1),
        }
        if self.report is not None:
            r = self.report
            out["verdicts"] = [
                {
                    "id": c["id"],
                    "name": c["name"],
                    "verdict": "N/A" if c["data"].get("applicable") is False else ("PASS" if c["ok"] else "FAIL"),
                    "evidence": c["evidence"][:3],
                }
                for c in r["results"]
            ]
            out.update(
                split_brain=r["split_brain"],
                violations=r["violations"],
                recovery_ms=r.get("recovery_ms"),
                stale_writes_rejected=r.get("stale_writes_rejected"),
                replay=r.get("replay"),
                has_timeline=self.timeline_png() is not None,
            )
            with contextlib.suppress(OSError):
                out["text"] = (self.directory / "report.txt").read_text()
        return out
