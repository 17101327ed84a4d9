"""Run every scenario (and optionally every planted bug) and print one table: a report, not a test.

    python -m chaos.suite [--modes quorum,classic] [--seed 1] [--bugs] [--fence NAME=URL ...]

Per scenario and mode: the violated properties, how often and for how long two leaders coexisted,
what fencing did (and how many writes it accepted after their lease ended, and how soon new leaders
claimed their epochs), failover and recovery times. With --bugs: which planted bug each scenario catches.
With --fence, every run also writes through the fencing adapters to those databases (chaos.apps), P2
and P5 judge each database's log too, and each row says what each database accepted and refused.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from node.config import PLANTED_BUGS_ENV
from node.core import PlantedBug, mode_info

from .apps import parse_fences
from .checkers import check_no_overlap
from .runner import run_scenario
from .scenarios import scenarios_for


def summarize(result) -> dict:
    report = result.report
    overlap = check_no_overlap(result.events).data
    failovers = [f["failover_ms"] for f in report.failover if f.get("failover_ms") is not None]
    return {
        "scenario": result.scenario,
        "mode": result.mode,
        "seed": result.seed,
        "violations": report.violations,
        "two_leaders_times": overlap.get("count", 0),
        "two_leaders_max_ms": round(overlap.get("max_overlap_ms", 0.0)),
        "two_leaders_total_ms": round(overlap.get("total_overlap_ms", 0.0)),
        "stale_rejected": report.fencing.get("stale_rejected", 0),
        "unfenced": report.fencing.get("unfenced", 0),
        "late_accepted": report.fencing.get("after_lease_end", 0),
        "late_max_ms": round(report.fencing.get("after_lease_end_max_ms", 0.0), 1),
        "claim_delay_max_ms": _round(report.fencing.get("claim_delay_max_ms")),
        "failover_ms": [round(f) for f in failovers],
        "recovery_ms": None if report.recovery_ms is None else round(report.recovery_ms),
        "adapters": {
            name: {"acknowledged": r["acknowledged"], "refused": r["refused"], "unknown": r["unknown"]}
            for name, r in report.fencing.get("resources", {}).items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="quorum,classic")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--bugs", action="store_true", help="also run every scenario with every planted bug (in the mode it lives in)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--fence",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="also write through a fencing adapter to this database in every run (docs/fencing-chaos.md)",
    )
    args = parser.parse_args(argv)
    fences = parse_fences(args.fence) or None
    rows = []
    with tempfile.TemporaryDirectory(prefix="bullyproof-suite-") as tmp:
        for mode in args.modes.split(","):
            for name in scenarios_for(mode):
                rows.append(summarize(run_scenario(name, mode, args.seed, Path(tmp) / f"{name}-{mode}", fences=fences)))
                print(json.dumps(rows[-1]) if args.json else _row(rows[-1]), flush=True)
        if args.bugs:
            os.environ[PLANTED_BUGS_ENV] = "1"  # this is a test harness
            for bug in PlantedBug:
                mode = (
                    "classic"
                    if bug == PlantedBug.STALE_STORE
                    else "raft"
                    if bug in mode_info("raft").planted_bugs
                    else "quorum"
                )
                caught = []
                for name in scenarios_for(mode):
                    r = run_scenario(
                        name, mode, args.seed, Path(tmp) / f"{name}-{bug.value}", planted_bugs=frozenset({bug})
                    )
                    if r.report.violations:
                        caught.append(f"{name} ({','.join(r.report.violations)})")
                print(f"{bug.value:15s} [{mode}] caught by: {'; '.join(caught) or 'NOTHING'}", flush=True)
    return 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _row(r: dict) -> str:
    return (
        f"{r['scenario']:26s} {r['mode']:8s} violations={','.join(r['violations']) or '-':12s} "
        f"two-leaders={r['two_leaders_times']}x max {r['two_leaders_max_ms']}ms "
        f"stale-rejected={r['stale_rejected']} unfenced={r['unfenced']} "
        f"late-accepted={r['late_accepted']} (max {r['late_max_ms']}ms) claim<={r['claim_delay_max_ms']}ms "
        f"failover={r['failover_ms']} recovery={r['recovery_ms']}ms"
        + "".join(
            f" {name}={a['acknowledged']}ok/{a['refused']}refused/{a['unknown']}unknown"
            for name, a in r.get("adapters", {}).items()
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
