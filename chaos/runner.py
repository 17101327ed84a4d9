"""Run one scenario from start to finish: start, break, heal, record, check, report.

bullyproof chaos run partition-leader-minority --mode classic --seed 7 [--json]
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from node.client.fencing import FenceBug
from node.config import ConfigError, check_timings
from node.core import PlantedBug

from .apps import Apps
from .checkers import Report, check_all
from .harness import AnswerRecorder, ChaosCluster, collect_history
from .report import text_report, timeline_png
from .scenarios import SCENARIOS, SPARES, TIMINGS, Context, InstantResult, ScenarioTiming, judge_instant

# P4: after the last heal, all live nodes must agree within this many election timeouts.
RECOVERY_BOUND_ELECTION_TIMEOUTS = 10


@dataclass(frozen=True)
class RunResult:
    scenario: str
    mode: str
    seed: int
    report: Report
    directory: Path
    events: list[dict[str, Any]]
    text: str
    timing: ScenarioTiming = ScenarioTiming()
    instant: InstantResult | None = None  # None: the scenario names no instant
    load_per_core: float = 0.0  # the machine's 1-minute load average per core when the run ended
    fences: Mapping[str, str] | None = None  # databases the apps wrote through fencing adapters (chaos.apps)
    fence_bugs: frozenset[FenceBug] = frozenset()  # planted in those adapters (tests)
    pause_at_check_ms: int = 0  # the apps' pause between each adapter's check and write (tests)

    @property
    def reached(self) -> bool:
        """Whether the run reached its scenario's instant (a scenario without one always does)."""
        return self.instant is None or self.instant.reached

    def replay(self) -> str:
        flags = "".join(
            f" --{k.replace('_', '-')} {v}"
            for k, v in asdict(self.timing).items()
            if v != getattr(TIMINGS.get(self.scenario, self.timing), k)
        )
        fences = "".join(f" --fence {name}={url}" for name, url in (self.fences or {}).items())
        fences += "".join(f" --planted-fence-bug {bug.value}" for bug in sorted(self.fence_bugs, key=lambda b: b.value))
        fences += f" --pause-at-check-ms {self.pause_at_check_ms}" if self.pause_at_check_ms else ""
        return f"bullyproof chaos run {self.scenario} --mode {self.mode} --seed {self.seed}{flags}{fences}"

    def to_json_dict(self) -> dict[str, Any]:
        out = json.loads(self.report.to_json())
        out.update(
            scenario=self.scenario,
            mode=self.mode,
            seed=self.seed,
            directory=str(self.directory),
            history=str(self.directory / "history.jsonl"),
            timeline=str(self.directory / "timeline.png"),
            **asdict(self.timing),
            replay=self.replay(),
            instant=None if self.instant is None else self.instant.to_dict(),
            load_per_core=self.load_per_core,
            fences=dict(self.fences or {}),
            fence_bugs=sorted(bug.value for bug in self.fence_bugs),
            pause_at_check_ms=self.pause_at_check_ms,
        )
        return out


def scenario_timing(
    name: str,
    heartbeat_interval_ms: int | None = None,
    election_timeout_ms: int | None = None,
    preempt_hold_down_ms: int | None = None,
) -> ScenarioTiming:
    """The scenario's own timing (TIMINGS), with whatever the caller set explicitly on top; checked."""
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    overrides = {
        "heartbeat_interval_ms": heartbeat_interval_ms,
        "election_timeout_ms": election_timeout_ms,
        "preempt_hold_down_ms": preempt_hold_down_ms,
    }
    timing = replace(TIMINGS[name], **{k: v for k, v in overrides.items() if v is not None})
    check_timings(timing.heartbeat_interval_ms, timing.election_timeout_ms)
    if timing.preempt_hold_down_ms < 0:
        raise ConfigError(f"--preempt-hold-down-ms must be >= 0 (0 = never preempt), got {timing.preempt_hold_down_ms}")
    return timing


def run_scenario(
    name: str,
    mode: str = "quorum",
    seed: int = 0,
    directory: Path | None = None,
    nodes: int = 5,
    heartbeat_interval_ms: int | None = None,
    election_timeout_ms: int | None = None,
    preempt_hold_down_ms: int | None = None,
    planted_bugs: frozenset[PlantedBug] = frozenset(),
    fences: Mapping[str, str] | None = None,
    fence_bugs: frozenset[FenceBug] = frozenset(),
    pause_at_check_ms: int = 0,
) -> RunResult:
    """Timings left as None are the scenario's own (chaos.scenarios.TIMINGS), else the cluster defaults.

    ``fences`` (name -> postgresql://, redis:// or sqlite:// URL): an app beside each node also writes
    through a fencing adapter to each of these databases while its node leads (chaos.apps), and P2 and
    P5 judge each database's log as they judge the store's. ``fence_bugs`` and ``pause_at_check_ms``
    are for tests: bugs planted in those adapters, and a pause between each adapter's check and write.
    """
    timing = scenario_timing(name, heartbeat_interval_ms, election_timeout_ms, preempt_hold_down_ms)
    directory = Path(directory or tempfile.mkdtemp(prefix=f"bullyproof-{name}-{mode}-{seed}-"))
    bound_ms = RECOVERY_BOUND_ELECTION_TIMEOUTS * timing.election_timeout_ms
    spares = SPARES.get(name, 0)  # of the `nodes`, how many start outside the configuration
    cc = ChaosCluster(
        directory,
        nodes - spares,
        mode,
        timing.heartbeat_interval_ms,
        timing.election_timeout_ms,
        planted_bugs,
        seed,
        name,
        preempt_hold_down_ms=timing.preempt_hold_down_ms,
        spares=spares,
    )
    apps = None
    if fences:
        apps = Apps(directory, fences, planted=fence_bugs, pause_at_check_ms=pause_at_check_ms)
    with cc:
        try:
            if apps is not None:
                assert cc.cluster is not None
                apps.write_period_ms = cc.cluster.spec.write_period_ms
                apps.start(cc.api)
            with AnswerRecorder(cc):  # a client asking every node who leads, throughout (P6)
                cc.wait_for_leader(timeout_s=20)
                ctx = Context(cc, random.Random(seed))
                ctx.wait(1)  # a few duty writes under the first leader
                SCENARIOS[name](ctx)
                try:
                    cc.wait_for_leader(timeout_s=bound_ms / 1000)
                except TimeoutError:
                    pass  # the checker says so (P4), from the history
                ctx.wait(1)  # writes under the healed leader
        finally:
            if apps is not None:
                apps.stop()
        events = collect_history(directory, extra=apps.log_events() if apps is not None else ())
    load_per_core = machine_load_per_core()
    report = check_all(events, mode, bound_ms)
    instant = judge_instant(name, mode, events)
    text = text_report(report, events, name, seed, instant, load_per_core)
    (directory / "report.txt").write_text(text)
    result = RunResult(
        name,
        mode,
        seed,
        report,
        directory,
        events,
        text,
        timing,
        instant,
        load_per_core,
        dict(fences or {}) or None,
        fence_bugs,
        pause_at_check_ms,
    )
    (directory / "report.json").write_text(json.dumps(result.to_json_dict(), indent=2) + "\n")
    timeline_png(events, directory / "timeline.png", f"{name} ({mode}, seed {seed})")
    return result


def machine_load_per_core() -> float:
    """The 1-minute load average per core: above 1, runnable tasks were waiting for a CPU."""
    return os.getloadavg()[0] / (os.cpu_count() or 1)


def run_until_reached(name: str, mode: str, seed: int, directory: Path, tries: int, **options: Any) -> list[RunResult]:
    """Run the scenario with ``seed``, then ``seed + 1``, ... until a run reaches the scenario's
    instant, at most ``tries`` runs; every run, in order (the last one reached it, if any did).

    A real-process schedule aims at its moment from outside the nodes, so a busy machine can make it
    miss; the history says whether it did (chaos.scenarios.Instant), and the next seed tries again.
    Each run prints its seed, whether it reached the instant and the machine's load.
    """
    results: list[RunResult] = []
    for attempt in range(tries):
        result = run_scenario(name, mode, seed + attempt, directory / f"seed-{seed + attempt}", **options)
        results.append(result)
        verdict = "no instant" if result.instant is None else ("reached" if result.reached else "NOT reached")
        print(
            f"{name} ({mode}) seed {result.seed}: instant {verdict}, violations {result.report.violations}, "
            f"load {result.load_per_core:.2f} per core"
            + ("" if result.instant is None else f": {result.instant.evidence}"),
            flush=True,
        )
        if result.reached:
            break
    return results
