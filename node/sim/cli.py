"""The simulator's command line: `bullyproof sim explore|check|run|replay|bugs|instants|figure16|messages`.

bullyproof sim explore [--budget-s 60] [--schedules N] [--workers W] [--nodes N] [--mode M] [--seed S]
                       [--bug B] [--no-guided] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from node.core import CLOCK_DRIFT_BOUND, DEFAULT_MODE, Mode, PlantedBug, check_mode_options, mode_info, mode_names
from node.sim.explore import ENDED_BY, ExploreReport, Finding, explore
from node.sim.network import timeline
from node.sim.schedule import Outcome, Schedule, run_schedule
from node.sim.swarm import SwarmSettings, swarm_schedule


def _settings(args: argparse.Namespace) -> SwarmSettings:
    return SwarmSettings(
        nodes=args.nodes,
        mode=Mode(args.mode),
        drift=args.drift,
        planted_bugs=frozenset(PlantedBug(b) for b in args.bug),
        hold_down_ticks=args.hold_down_ticks,
        # No --mode-option: each schedule draws the mode's options; --mode-option none: all off.
        mode_options=None if not args.mode_option else frozenset(o for o in args.mode_option if o != "none"),
    )


def _budgets(args: argparse.Namespace) -> tuple[float | None, int | None]:
    """--budget-s and --schedules as given; a minute if neither was."""
    if args.budget_s is None and args.schedules is None:
        return 60.0, None
    return args.budget_s, args.schedules


def _ended_by(report: ExploreReport) -> str:
    if report.ended_by == "schedules":
        return f"the schedule budget ({report.max_schedules}) was spent"
    if report.ended_by == "time":
        return f"the time budget ({report.budget_s:g} s) was spent"
    return ENDED_BY[report.ended_by]


def _print_finding(f: Finding, out=sys.stdout) -> None:
    origin = (
        "a guided schedule, a mutation of earlier ones"
        if f.guided
        else f"schedule seed {f.seed}: `bullyproof sim run --seed {f.seed}` with the same options replays it unshrunk"
    )
    print(
        f"\nVIOLATION in schedule {f.index} after {f.after_s:.1f} s ({origin}; shrunk from {f.original_commands} "
        f"to {len(f.schedule.commands)} commands):",
        file=out,
    )
    for v in f.violations[:5]:
        print(f"  {v}", file=out)
    print("  minimal schedule (save it and run `bullyproof sim replay FILE`):", file=out)
    for line in f.schedule.to_script().splitlines():
        print(f"    {line}", file=out)


def cmd_explore(args: argparse.Namespace) -> int:
    settings = _settings(args)
    progress = None if args.json else _print_finding
    budget_s, max_schedules = _budgets(args)
    report = explore(
        budget_s,
        settings,
        args.seed,
        stop_at_first=args.first,
        progress=progress,
        max_schedules=max_schedules,
        workers=args.workers,
        guided=not args.no_guided,
    )
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for f in report.findings:
            (args.save / f"violation-{f.seed}.sched").write_text(f.schedule.to_script())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        d = report.to_dict()
        print(
            f"\nexplored {report.schedules} schedules ({report.ticks} ticks) in {report.elapsed_s:.1f} s: "
            f"{report.schedules_per_s:.0f} schedules/s with {report.workers} worker(s); mode {settings.mode.value}, "
            f"drift {settings.drift}" + (f", planted {', '.join(d['bugs'])}" if d["bugs"] else "")
        )
        print(f"ended because {_ended_by(report)}")
        if report.guided:
            print(
                f"guided: {report.guided_schedules} of the schedules were mutations of the {report.corpus} "
                f"that reached something new"
            )
        _print_coverage(report)
        print("fault kinds covered: " + ", ".join(f"{k} {v}" for k, v in d["kinds_covered"].items()))
        if d["kinds_missing"]:
            print("fault kinds never exercised: " + ", ".join(d["kinds_missing"]))
        print("membership sizes: " + ", ".join(f"{k}: {v}" for k, v in d["sizes"].items()))
        print(f"{len(report.findings)} violation(s) found" if report.findings else "no property failed")
    return 1 if report.findings else 0


def _print_coverage(report: ExploreReport) -> None:
    """Protocol instants: in how many schedules each was reached, and those never reached."""
    instants = mode_info(report.settings.mode).instants
    print(
        f"protocol instants reached (schedules), {len(instants) - len(report.unreached())} of {len(instants)}; "
        f"{report.combos} combinations of phases:"
    )
    for name in sorted(instants, key=lambda i: (-report.instants[i], i)):
        if report.instants[name]:
            print(f"  {name:24} {report.instants[name]:6d}  {instants[name]}")
    if report.unreached():
        print("NEVER REACHED (no fault was tried at these instants): " + ", ".join(report.unreached()))


def cmd_instants(args: argparse.Namespace) -> int:
    for name, meaning in sorted(mode_info(args.mode).instants.items()):
        print(f"{name:24} {meaning}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    try:
        schedule = Schedule.from_script(Path(args.file).read_text())
    except (OSError, ValueError) as exc:
        print(f"bullyproof sim replay: {args.file}: {exc}", file=sys.stderr)
        return 2
    return _show(run_schedule(schedule), args.views)


def cmd_run(args: argparse.Namespace) -> int:
    schedule = swarm_schedule(args.seed, _settings(args))
    return _show(run_schedule(schedule), args.views, print_script=True)


def _show(outcome: Outcome, views: bool, print_script: bool = False) -> int:
    if print_script:
        print(outcome.schedule.to_script())
    for line in timeline(outcome.net, views):
        print(line)
    net = outcome.net
    late = net.accepted_after_lease_end()
    print(
        f"messages sent: {sum(net.sent.values())}; dropped {net.dropped}, refused {net.refused}; "
        f"store: {sum(r.accepted for r in net.store_log)} accepted, "
        f"{sum(not r.accepted for r in net.store_log)} rejected, {len(late)} accepted after their lease ended"
    )
    disagreement = net.disagreement()
    if disagreement:
        print(f"P3 checks disagree: {disagreement}")
    for v in outcome.violations:
        print(f"VIOLATION {v}")
    if outcome.agreed_after_ticks is not None:
        leader, epoch = net.agreed_leader() or (None, None)
        print(f"agreed on leader {leader} epoch {epoch} {outcome.agreed_after_ticks} ticks after the final heal")
    return 1 if outcome.violations else 0


def cmd_bugs(args: argparse.Namespace) -> int:
    """Harness power: how fast the explorer finds each planted bug."""
    rows = []
    # By default the bugs the mode's elector honours (and the store's).
    core_bugs = (
        sorted(mode_info(args.mode).planted_bugs, key=list(PlantedBug).index)
        if not args.bug
        else [PlantedBug(b) for b in args.bug]
    )
    budget_s, max_schedules = _budgets(args)
    for bug in core_bugs:
        settings = replace(_settings(args), planted_bugs=frozenset({bug}))
        report = explore(
            budget_s,
            settings,
            args.seed,
            stop_at_first=True,
            max_schedules=max_schedules,
            workers=args.workers,
            guided=not args.no_guided,
        )
        f = report.findings[0] if report.findings else None
        rows.append(
            {
                "bug": bug.value,
                "found": f is not None,
                "after_s": None if f is None else round(f.after_s, 2),
                "schedules": report.schedules,
                "index": None if f is None else f.index,
                "ended_by": report.ended_by,
                "minimal_commands": None if f is None else len(f.schedule.commands),
                "property": None if f is None else f.violations[0].split(":", 1)[0],
                "script": None if f is None else f.schedule.to_script(),
            }
        )
        if not args.json:
            when = f"{f.after_s:6.1f} s" if f else "  not found"
            print(
                f"{bug.value:22} {when}  {report.schedules:6d} schedules  "
                + (
                    f"minimal {len(f.schedule.commands):2d} commands  {rows[-1]['property']}"
                    if f
                    else f"({_ended_by(report)})"
                ),
                flush=True,
            )
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0 if all(r["found"] for r in rows) else 1


def _write_out(args: argparse.Namespace, name: str, rows: list[dict], plot: Callable[[Path], None]) -> bool:
    """NAME.png and NAME.json into --out if given; the rows as JSON with --json (True: printed)."""
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        plot(args.out / f"{name}.png")
        (args.out / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    if args.json:
        print(json.dumps(rows, indent=2))
    return args.json


def cmd_figure16(args: argparse.Namespace) -> int:
    from node.sim.figures import figure16, plot_figure16

    lines = figure16(args.trials, args.seed)
    rows = [line.to_dict() for line in lines]
    if not _write_out(args, "figure16", rows, lambda path: plot_figure16(lines, path)):
        print("election timeout  trials  median  p90    worst  (ms without a leader; 5 raft nodes, leader crashed)")
        for r in rows:
            print(
                f"{r['range_ms']:>16}  {r['trials']:6d}  {r['median_ms']!s:>6}  "
                f"{r['p90_ms']!s:>5}  {r['worst_ms']!s:>6}"
                + (f"  ({r['failed']} without a leader)" if r["failed"] else "")
            )
    return 0


def cmd_messages(args: argparse.Namespace) -> int:
    from node.sim.figures import messages_table, plot_messages

    rows = messages_table(tuple(int(n) for n in args.sizes.split(",")))
    if not _write_out(args, "messages", rows, lambda path: plot_messages(rows, path)):
        print("mode      n  typical  all-at-once  textbook")
        for r in rows:
            print(f"{r['mode']:8} {r['n']:2d}  {r['median']!s:>7}  {r['all_at_once']!s:>11}  {r['textbook']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from node.argtypes import positive as _positive

    parser = argparse.ArgumentParser(prog="bullyproof sim", description="The deterministic simulator and its explorer.")
    sub = parser.add_subparsers(dest="command", required=True)

    def swarm_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--nodes", type=int, choices=range(1, 8), metavar="N", help="membership size (default: random 1..7)"
        )
        p.add_argument("--mode", choices=mode_names(), default=DEFAULT_MODE)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--drift",
            choices=["within", "beyond", "none"],
            default="within",
            help=f"clock-rate skew: within the ±{CLOCK_DRIFT_BOUND * 100:.0f}%% bound (default), beyond it, or none",
        )
        p.add_argument("--hold-down-ticks", type=int, default=None, help="preemption hold-down (default: random)")
        p.add_argument(
            "--bug",
            action="append",
            default=[],
            choices=[b.value for b in PlantedBug],
            help="plant a deliberate defect (to measure the explorer)",
        )
        p.add_argument(
            "--mode-option",
            action="append",
            default=[],
            metavar="NAME",
            help="a switch of the mode (raft: no-pre-vote); `none` for all off (default: each schedule draws them)",
        )

    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    def budget_options(p: argparse.ArgumentParser, per: str) -> None:
        p.add_argument(
            "--budget-s",
            type=seconds,
            default=None,
            metavar="S",
            help=f"seconds{per} (default: 60 unless --schedules is given)",
        )
        p.add_argument(
            "--schedules",
            type=_positive,
            default=None,
            metavar="N",
            help=f"run schedules 0..N-1 of the seed{per}, the same ones on any machine and under any "
            "load; with --budget-s too, whichever is spent first ends the run",
        )
        p.add_argument(
            "--workers",
            type=_positive,
            default=os.cpu_count() or 1,
            metavar="W",
            help="processes running schedules (default: every core; 1: in this process)",
        )
        p.add_argument(
            "--no-guided",
            action="store_true",
            help="swarm schedules only (default: also mutations of those that reached something new)",
        )

    p = sub.add_parser("explore", help="search fault schedules for a budget; exit 1 if a property failed")
    swarm_options(p)
    budget_options(p, "")
    p.add_argument("--first", action="store_true", help="stop at the first violation")
    p.add_argument("--save", type=Path, help="write each minimal failing schedule into this folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explore)

    from node.sim.check import add_check_parser  # `sim check`: the exhaustive small-scope checker

    add_check_parser(sub)

    p = sub.add_parser("instants", help="the protocol instants of a mode that faults can wait for")
    p.add_argument("--mode", choices=mode_names(), default=DEFAULT_MODE)
    p.set_defaults(func=cmd_instants)

    p = sub.add_parser("run", help="run the swarm schedule of one seed and print what happened")
    swarm_options(p)
    p.add_argument("--views", action="store_true", help="also print every view change")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("replay", help="run a schedule script (as printed by explore)")
    p.add_argument("file")
    p.add_argument("--views", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("bugs", help="time the explorer against every planted bug (harness power)")
    swarm_options(p)
    budget_options(p, " per bug")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bugs)

    p = sub.add_parser("figure16", help="Raft paper figure 16: time without a leader per election-timeout range")
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write figure16.png and figure16.json here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_figure16)

    p = sub.add_parser(
        "messages", help="messages per election after a leader failure, every mode, against the textbook"
    )
    p.add_argument("--sizes", default="3,5,9,15,25")
    p.add_argument("--out", type=Path, help="write messages.png and messages.json here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_messages)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "mode_option", None):
        try:
            check_mode_options(args.mode, frozenset(o for o in args.mode_option if o != "none"))
        except ValueError as exc:
            parser.error(f"--mode-option: {exc}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
