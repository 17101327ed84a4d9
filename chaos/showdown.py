"""Every mode through the same faults, side by side: one table of verdicts, split brain, fencing,
availability and failover. A report, not a test: failing properties in classic and ring mode are
the demonstration.

    bullyproof showdown [--modes classic,quorum,ring,raft] [--nodes 5] [--seed 1]
                        [--scenarios partition,one-way,...] [--kills 10] [--out results/showdown] [--json]

Per mode and scenario (chaos.runner.run_scenario, each run in its own directory, the scenario's own
timing): the verdict of every property (P1-P6, P3g), how long two nodes led at once (the sum of P3's
overlaps), stale writes the store fenced off, writes from a second leader it could not fence, and
availability (chaos.checkers.availability: the share of the history, first event to last, during
which all live nodes agreed on one leader). Per mode: failover after SIGKILL of the leader, median
and p90 over --kills kills (bench.real.run at the default timing, heartbeat 100 ms, election
timeout 500 ms; no Toxiproxy). Writes showdown.md, showdown.json and showdown.png to --out; prints
the markdown table (or the JSON). Exit status 0 whatever the verdicts; 1 if a run crashed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from node.config import DEFAULT_TIMING, ConfigError
from node.core import mode_names

from .checkers import availability, check_no_overlap
from .runner import run_scenario
from .scenarios import SCENARIOS

# The showdown's scenarios, by their short names in the table.
SHORT_NAMES = {
    "partition-leader-minority": "partition",
    "one-way": "one-way",
    "leader-pause": "leader-pause",
    "kill-restart-loop": "kill-restart",
    "flapping-link": "flapping-link",
    "bridge": "bridge",
}
DEFAULT_SCENARIOS = tuple(SHORT_NAMES)
PROPERTIES = ("P1", "P2", "P3", "P3g", "P4", "P5", "P6")
SAFETY = ("P1", "P2", "P3", "P3g", "P5", "P6")
BENCH_HEARTBEAT_INTERVAL_MS = DEFAULT_TIMING.heartbeat_interval_ms  # the failover benchmark runs at the defaults
BENCH_ELECTION_TIMEOUT_MS = DEFAULT_TIMING.election_timeout_ms
DEFAULT_OUT = "results/showdown"


def scenario_name(text: str) -> str:
    """A scenario by its full name or its short name in the table."""
    if text in SCENARIOS:
        return text
    by_short = {short: name for name, short in SHORT_NAMES.items()}
    if text in by_short:
        return by_short[text]
    raise ConfigError(f"unknown scenario {text!r}; known: {', '.join(SCENARIOS)} (short: {', '.join(by_short)})")


def short(name: str) -> str:
    return SHORT_NAMES.get(name, name)


def summarize(result) -> dict[str, Any]:
    """One row: the verdicts and the figures of one scenario run."""
    report = result.report
    verdicts = {}
    for check in report.results:
        verdicts[check.id] = "n/a" if check.data.get("applicable") is False else ("ok" if check.ok else "FAIL")
    overlap = check_no_overlap(result.events).data
    evidence = {check.id: check.evidence[:3] for check in report.results if not check.ok}
    return {
        "mode": result.mode,
        "scenario": result.scenario,
        "seed": result.seed,
        "verdicts": verdicts,
        "violations": report.violations,
        "two_leaders_ms": round(overlap.get("total_overlap_ms", 0.0), 1),
        "two_leaders_times": overlap.get("count", 0),
        "stale_rejected": report.fencing.get("stale_rejected", 0),
        "unfenced": report.fencing.get("unfenced", 0),
        "availability": round(availability(result.events), 4),
        "recovery_ms": None if report.recovery_ms is None else round(report.recovery_ms, 1),
        "evidence": evidence,
        "replay": result.replay(),
        "history": str(result.directory / "history.jsonl"),
    }


def failover_bench(mode: str, nodes: int, kills: int) -> dict[str, Any]:
    from bench.real import run

    out = run(nodes, kills, mode, BENCH_ELECTION_TIMEOUT_MS, BENCH_HEARTBEAT_INTERVAL_MS)
    return {"kills": kills, "cold_start_ms": out["cold_start_ms"], **out["failover"]}


def run_showdown(
    modes: list[str],
    scenarios: list[str],
    nodes: int = 5,
    seed: int = 1,
    kills: int = 10,
    work_dir: Path | None = None,
    log=print,
) -> dict[str, Any]:
    """Run everything; every run's directory is kept under ``work_dir`` (its history, report, timeline)."""
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="bullyproof-showdown-"))
    t0 = time.monotonic()
    rows: list[dict[str, Any]] = []
    failover: dict[str, Any] = {}
    crashes: list[dict[str, str]] = []
    for mode in modes:
        for name in scenarios:
            started = time.monotonic()
            try:
                result = run_scenario(name, mode, seed, work_dir / f"{mode}-{name}", nodes=nodes)
            except Exception as exc:  # a crash is reported, and the rest still runs
                crashes.append(
                    {"mode": mode, "scenario": name, "error": repr(exc), "traceback": traceback.format_exc()}
                )
                log(f"showdown: {mode} {name} CRASHED: {exc!r}")
                continue
            rows.append(summarize(result))
            row = rows[-1]
            log(
                f"showdown: {mode:8s} {name:26s} violations={','.join(row['violations']) or '-':10s} "
                f"two-leaders={row['two_leaders_ms']:.0f}ms availability={row['availability']:.1%} "
                f"({time.monotonic() - started:.0f} s; replay: {row['replay']})"
            )
        if kills > 0:
            started = time.monotonic()
            try:
                failover[mode] = failover_bench(mode, nodes, kills)
            except Exception as exc:
                crashes.append(
                    {
                        "mode": mode,
                        "scenario": "failover-bench",
                        "error": repr(exc),
                        "traceback": traceback.format_exc(),
                    }
                )
                log(f"showdown: {mode} failover bench CRASHED: {exc!r}")
                continue
            f = failover[mode]
            log(
                f"showdown: {mode:8s} failover over {kills} kills: median {f['median_ms']} ms, p90 {f['p90_ms']} ms "
                f"({time.monotonic() - started:.0f} s)"
            )
    return {
        "modes": modes,
        "scenarios": scenarios,
        "nodes": nodes,
        "seed": seed,
        "kills": kills,
        "bench_timing": {
            "heartbeat_interval_ms": BENCH_HEARTBEAT_INTERVAL_MS,
            "election_timeout_ms": BENCH_ELECTION_TIMEOUT_MS,
        },
        "rows": rows,
        "failover": failover,
        "crashes": crashes,
        "work_dir": str(work_dir),
        "elapsed_s": round(time.monotonic() - t0, 1),
    }


# ---------------------------------------------------------------------------------------------------
# Output


def _cell_failover(data: dict[str, Any], mode: str) -> str:
    f = data["failover"].get(mode)
    return "" if f is None else f"{f['median_ms']:.0f} / {f['p90_ms']:.0f}"


def markdown_table(data: dict[str, Any]) -> str:
    header = [
        "mode",
        "scenario",
        *PROPERTIES,
        "two leaders (ms)",
        "stale fenced",
        "unfenced",
        "availability",
        f"failover median / p90 (ms, {data['kills']} kills)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for mode in data["modes"]:
        rows = [r for r in data["rows"] if r["mode"] == mode]
        first = True
        for r in rows:
            cells = [
                f"`{mode}`" if first else "",
                short(r["scenario"]),
                *(r["verdicts"].get(p, "?") for p in PROPERTIES),
                f"{r['two_leaders_ms']:.0f}",
                str(r["stale_rejected"]),
                str(r["unfenced"]),
                f"{r['availability']:.0%}",
                _cell_failover(data, mode) if first else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
            first = False
        if not rows and mode in data["failover"]:
            lines.append(
                "| " + " | ".join([f"`{mode}`", "", *([""] * (len(header) - 3)), _cell_failover(data, mode)]) + " |"
            )
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    out = [
        "# Showdown: every mode through the same faults",
        "",
        f"{data['nodes']} nodes, seed {data['seed']}, each scenario at its own timing on real processes behind "
        f"Toxiproxy (`bullyproof showdown`, {data['elapsed_s']:.0f} s). Verdicts from the recorded histories "
        f"(ok, FAIL, n/a where P3g does not apply: the mode's followers promise nothing). *two leaders*: "
        f"the sum of the times two nodes led at once (P3). *stale fenced*: writes the store rejected for a stale "
        f"or taken epoch; *unfenced*: writes it accepted from a second leader while a newer one led. "
        f"*availability*: the share of the run, first event to last (cold start included), during which all live "
        f"nodes agreed on one leader. *failover*: SIGKILL of the leader until the survivors agree, "
        f"{data['kills']} kills, heartbeat {data['bench_timing']['heartbeat_interval_ms']} ms, election timeout "
        f"{data['bench_timing']['election_timeout_ms']} ms, without Toxiproxy.",
        "",
        markdown_table(data),
        "",
    ]
    failing = [r for r in data["rows"] if r["violations"]]
    if failing:
        out += ["Failed properties, first evidence (replay with the command):", ""]
        for r in failing:
            out.append(f"* `{r['mode']}` {short(r['scenario'])}: `{r['replay']}`")
            for pid in r["violations"]:
                first = r["evidence"].get(pid, [])
                out.append(f"  * {pid}: {first[0] if first else '(no evidence)'}")
        out.append("")
    for crash in data["crashes"]:
        out.append(f"* CRASHED: `{crash['mode']}` {crash['scenario']}: {crash['error']}")
    return "\n".join(out).rstrip() + "\n"


def _verdict_colour(row: dict[str, Any]) -> tuple[str, str]:
    violations = set(row["violations"])
    if violations & set(SAFETY):
        return "#e8847c", "safety"
    if violations:
        return "#f2c46d", "liveness"
    return "#8cc98c", "ok"


def showdown_png(data: dict[str, Any], path: Path) -> Path:
    """Left: modes x scenarios coloured by verdict (safety failed, only P4 failed, all ok), with the
    failed properties, two-leader ms and availability. Right: failover median (bar) and p90 (tick)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    modes, scenarios = data["modes"], data["scenarios"]
    by_key = {(r["mode"], r["scenario"]): r for r in data["rows"]}
    fig, (grid, bars) = plt.subplots(
        1, 2, figsize=(12, 0.9 + 0.75 * len(modes) + 0.6), gridspec_kw={"width_ratios": [3.2, 1]}
    )
    for y, mode in enumerate(modes):
        for x, name in enumerate(scenarios):
            row = by_key.get((mode, name))
            if row is None:
                colour, text = (
                    "0.85",
                    "crashed" if any(c["mode"] == mode and c["scenario"] == name for c in data["crashes"]) else "-",
                )
            else:
                colour, _ = _verdict_colour(row)
                failed = ",".join(row["violations"]) or "all ok"
                text = f"{failed}\n2 leaders {row['two_leaders_ms']:.0f} ms\navail. {row['availability']:.0%}"
            grid.add_patch(plt.Rectangle((x, y), 1, 1, facecolor=colour, edgecolor="white", linewidth=2))
            grid.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize=7.5)
    grid.set_xlim(0, len(scenarios))
    grid.set_ylim(len(modes), 0)
    grid.set_xticks([x + 0.5 for x in range(len(scenarios))], [short(s) for s in scenarios], fontsize=8)
    grid.set_yticks([y + 0.5 for y in range(len(modes))], modes, fontsize=9)
    grid.tick_params(length=0)
    for side in grid.spines.values():
        side.set_visible(False)
    grid.set_title(f"verdicts, {data['nodes']} nodes, seed {data['seed']}", fontsize=10)
    grid.legend(
        handles=[
            Patch(color="#8cc98c", label="every property holds"),
            Patch(color="#f2c46d", label="only P4 (liveness) failed"),
            Patch(color="#e8847c", label="a safety property failed"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.08),
        ncol=3,
        fontsize=8,
        frameon=False,
    )

    benched = [m for m in modes if m in data["failover"]]
    medians = [data["failover"][m]["median_ms"] for m in benched]
    p90s = [data["failover"][m]["p90_ms"] for m in benched]
    bars.bar(range(len(benched)), medians, color="#6f9fd8", label="median")
    bars.scatter(range(len(benched)), p90s, marker="_", s=300, color="black", label="p90", zorder=3)
    for i, value in enumerate(medians):
        bars.text(i, value / 2, f"{value:.0f}", ha="center", va="center", fontsize=8)
    bars.set_xticks(range(len(benched)), benched, fontsize=9)
    bars.set_ylabel("ms", fontsize=9)
    bars.set_title(f"failover after SIGKILL ({data['kills']} kills)", fontsize=10)
    if benched:
        bars.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_outputs(data: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "showdown.md", "json": out / "showdown.json", "png": out / "showdown.png"}
    paths["md"].write_text(markdown(data))
    paths["json"].write_text(json.dumps(data, indent=2) + "\n")
    showdown_png(data, paths["png"])
    return paths


# ---------------------------------------------------------------------------------------------------
# CLI


def _names(text: str, known: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(f"unknown {what} {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bullyproof showdown",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--modes", default=",".join(mode_names()), help="comma-separated (default: every mode)")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1, help="the same seed for every run (default 1)")
    parser.add_argument(
        "--scenarios",
        default=",".join(SHORT_NAMES[n] for n in DEFAULT_SCENARIOS),
        help="comma-separated, full or short names (default: %(default)s)",
    )
    parser.add_argument("--kills", type=int, default=10, help="failover benchmark kills per mode (0: no benchmark)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="where showdown.md, .json, .png go (default %(default)s)")
    parser.add_argument("--work-dir", help="where each run's directory is kept (default: a new temp dir)")
    parser.add_argument("--json", action="store_true", help="print the JSON instead of the markdown")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    modes = _names(args.modes, mode_names(), "mode")
    scenarios = [scenario_name(n) for n in _names(args.scenarios, (*SCENARIOS, *SHORT_NAMES.values()), "scenario")]
    if args.nodes < 3:
        raise ConfigError(f"--nodes must be at least 3 (a minority to partition off), got {args.nodes}")
    if args.kills < 0:
        raise ConfigError(f"--kills must be >= 0, got {args.kills}")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    log(
        f"showdown: modes {','.join(modes)}; scenarios {','.join(short(s) for s in scenarios)}; "
        f"{args.nodes} nodes, seed {args.seed}, {args.kills} kills"
    )
    data = run_showdown(
        modes, scenarios, args.nodes, args.seed, args.kills, Path(args.work_dir) if args.work_dir else None, log
    )
    paths = write_outputs(data, Path(args.out))
    log(
        f"showdown: runs kept in {data['work_dir']}; wrote {', '.join(str(p) for p in paths.values())} "
        f"in {data['elapsed_s']:.0f} s"
    )
    print(json.dumps(data) if args.json else markdown(data), end="\n" if args.json else "")
    return 1 if data["crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
