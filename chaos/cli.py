"""`bullyproof chaos ...`: break a running cluster by hand, or run a whole scenario and check it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from node.argtypes import DEFAULT_COMPOSE_FILE
from node.config import ConfigError
from node.core import DEFAULT_MODE, PlantedBug, mode_names
from node.faults import FAULTS, PARAM_TYPES, REAL, SIM, Param, cli_commands

from .faults import DEFAULT_COMPOSE_DIR, DEFAULT_DIR, PARSERS, network_fault

WORLDS = {REAL: "real processes", SIM: "the simulator"}


def add_param(parser: argparse.ArgumentParser, param: Param) -> None:
    """A fault kind's parameter (node.faults) as an argument: positional if required, else an option
    (a duration's option drops the unit from its name: its value carries one, `--jitter 50ms`)."""
    kind = PARAM_TYPES[param.type]
    help_ = f"{param.help} ({kind})"
    if param.required:
        nargs = "+" if param.type == "groups" else None
        convert = PARSERS[param.type]
        parser.add_argument(
            param.name,
            nargs=nargs,
            type=None if nargs else convert,
            metavar=param.name.upper(),
            help=help_,
        )
        return
    flag = param.name.removesuffix("_ms") if param.type == "ms" else param.name
    parser.add_argument(
        "--" + flag.replace("_", "-"),
        dest=param.name,
        type=PARSERS[param.type],
        default=param.default,
        help=f"{help_}; default {param.default if param.default != () else 'all'}",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bullyproof chaos", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("list", help="print scenario names, one per line")
    p.add_argument("--describe", action="store_true", help="add what each scenario does")

    p = sub.add_parser("run", help="run a scenario start to finish and print its report")
    p.add_argument("scenario")
    p.add_argument("--mode", choices=mode_names(), default=DEFAULT_MODE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--dir", help="where to keep the run (default: a new temp dir)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--heartbeat-interval-ms", type=int, help="default: the scenario's own (chaos list --describe)")
    p.add_argument("--election-timeout-ms", type=int, help="default: the scenario's own")
    p.add_argument("--preempt-hold-down-ms", type=int, help="default: the scenario's own (0 = never preempt)")
    p.add_argument("--planted-bug", action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument(
        "--fence",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="also run an app beside each node that writes through a fencing adapter to this database "
        "(postgresql://, redis://, sqlite://) while its node leads, and judge its log with P2 and P5 "
        "(repeatable; docs/fencing-chaos.md)",
    )
    p.add_argument("--planted-fence-bug", action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument("--pause-at-check-ms", type=int, default=0, help=argparse.SUPPRESS)

    def on_cluster(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument(
            "--dir",
            help=f"local cluster's run directory (default {DEFAULT_DIR}); under --compose, "
            f"where the faults are recorded (default {DEFAULT_COMPOSE_DIR})",
        )
        sp.add_argument(
            "--compose",
            nargs="?",
            const=DEFAULT_COMPOSE_FILE,
            metavar="FILE",
            help=f"the compose cluster of FILE (default {DEFAULT_COMPOSE_FILE}), through its published Toxiproxy API",
        )
        return sp

    for kind in cli_commands():
        sp = on_cluster(kind.name, kind.help())
        for param in kind.params:
            add_param(sp, param)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from .scenarios import DESCRIPTIONS, FAULTS_USED, INSTANTS, SCENARIO_DEFAULT_TIMING, SCENARIOS, TIMINGS, WORLDS_OF

    if args.action == "list":
        for name in SCENARIOS:
            own = f" ({TIMINGS[name].describe()})" if TIMINGS[name] != SCENARIO_DEFAULT_TIMING else ""
            print(f"{name:28s}{DESCRIPTIONS[name]}{own}" if args.describe else name)
            if args.describe and name in INSTANTS:
                print(f"{'':28s}instant: {INSTANTS[name].description}")
            if args.describe:
                worlds = " and ".join(WORLDS[w] for w in sorted(WORLDS_OF[name], reverse=True))
                print(f"{'':28s}faults: {', '.join(FAULTS_USED[name])}; runs on {worlds}")
        return 0
    if args.action == "run":
        return cmd_run(args)

    kind = FAULTS[args.action]
    params = {p.name: getattr(args, p.name) for p in kind.params}
    if "groups" in params:  # the words of `1,2 / 3,4,5`, however the shell split them
        params["groups"] = PARSERS["groups"](" ".join(params["groups"]))
    detail = network_fault(Path(args.dir) if args.dir else None, args.action, compose=args.compose, **params)
    print(json.dumps({"fault": args.action, **detail}))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import signal

    from node.client.fencing import FenceBug
    from node.config import parse_planted_bugs

    from .apps import parse_fences

    # Ctrl-C, or the dashboard's cancel (SIGINT), stops the run and its cluster (`with cc:`), also when
    # SIGINT was inherited ignored (a background job of a script): as cluster up, node/launcher/stopping.py.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    from .runner import run_scenario, scenario_timing
    from .scenarios import SCENARIOS

    if args.scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {args.scenario!r}; see: bullyproof chaos list")
    bugs: frozenset[PlantedBug] = parse_planted_bugs(args.planted_bug)
    fences = parse_fences(args.fence)
    try:
        fence_bugs = frozenset(FenceBug(bug) for bug in args.planted_fence_bug)
    except ValueError as exc:
        raise ConfigError(f"{exc}; known: {', '.join(b.value for b in FenceBug)}") from None
    if (fence_bugs or args.pause_at_check_ms) and not fences:
        raise ConfigError("--planted-fence-bug and --pause-at-check-ms need --fence")
    timing = scenario_timing(
        args.scenario, args.heartbeat_interval_ms, args.election_timeout_ms, args.preempt_hold_down_ms
    )
    print(
        f"running {args.scenario} ({args.mode}) with seed {args.seed}; {timing.describe()}", file=sys.stderr, flush=True
    )
    result = run_scenario(
        args.scenario,
        args.mode,
        args.seed,
        Path(args.dir) if args.dir else None,
        nodes=args.nodes,
        heartbeat_interval_ms=timing.heartbeat_interval_ms,
        election_timeout_ms=timing.election_timeout_ms,
        preempt_hold_down_ms=timing.preempt_hold_down_ms,
        planted_bugs=bugs,
        fences=fences,
        fence_bugs=fence_bugs,
        pause_at_check_ms=args.pause_at_check_ms,
    )
    if args.json:
        print(json.dumps(result.to_json_dict()))
    else:
        print(result.text)
        print(f"history: {result.directory / 'history.jsonl'}\ntimeline: {result.directory / 'timeline.png'}")
    return 0


# ---- `bullyproof fence check`: a fencing adapter's conformance check (chaos/fence_conformance.py) ----

FENCE_CHECK_DESCRIPTION = """\
Check a fencing adapter against the fenced register's rule: concurrent writer processes (rising,
stale and shared epochs) and a reader, faults drawn from --seed (latency with jitter, cuts, a writer
paused across a newer writer's writes, a writer killed mid-write), the history judged for
linearizability by Porcupine.

Network adapters are reached through a Toxiproxy proxy in front of the URL's host:port (the writers
get the URL rewritten to the proxy; the reader reads directly). SQLite and URLs without a host and
port get pauses and kills only."""

FENCE_CHECK_EPILOG = """\
exit status: 0 linearizable, 1 not linearizable, 2 usage error, 3 inconclusive (no write was
acknowledged, the checker ran out of time, or the check could not run).

examples:
  bullyproof fence check postgresql://app@127.0.0.1:5432/app_test
  bullyproof fence check redis://127.0.0.1:6379/15 --seed 7
  bullyproof fence check sqlite:///tmp/fence-check.db
  bullyproof fence check bullyproof-store://127.0.0.1:7100
  bullyproof fence check mysql://app@127.0.0.1:3306/app_test --factory my_fences:make_fence

Your own adapter: --factory MODULE:CALLABLE names a callable taking the URL and returning an object
with async write(resource, writer_id, epoch, value), read(resource) and close(), raising
node.client.fencing.StaleEpoch and EpochTaken (docs/fence-check.md)."""


def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def build_fence_parser() -> argparse.ArgumentParser:
    from .fence_conformance import DEFAULT_OP_TIMEOUT_S, DEFAULT_ROUNDS, DEFAULT_WRITERS

    parser = argparse.ArgumentParser(prog="bullyproof fence", description="Fencing adapters: check one.")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser(
        "check",
        help="check a fencing adapter under concurrent writers and faults (linearizability)",
        description=FENCE_CHECK_DESCRIPTION,
        epilog=FENCE_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "adapter",
        metavar="ADAPTER-URL",
        help="postgresql://..., redis://..., sqlite:///PATH, bullyproof-store://HOST:PORT, or any URL "
        "your --factory takes; use a database for tests: the check writes its own resources there",
    )
    p.add_argument(
        "--factory",
        metavar="MODULE:CALLABLE",
        help="your adapter: CALLABLE(url) returns the fence (MODULE importable from here)",
    )
    p.add_argument("--seed", type=int, help="replay this plan (epochs, writers, faults); default: a new seed, printed")
    p.add_argument(
        "--rounds",
        type=_at_least(1),
        default=DEFAULT_ROUNDS,
        help=f"rounds of leadership, one fault each (default {DEFAULT_ROUNDS})",
    )
    p.add_argument(
        "--writers", type=_at_least(3), default=DEFAULT_WRITERS, help=f"writer processes (default {DEFAULT_WRITERS})"
    )
    p.add_argument(
        "--resources",
        type=_at_least(1),
        help="resources written (default 2; 1 for the fenced store, whose highest epoch covers every key)",
    )
    p.add_argument(
        "--op-timeout",
        type=_seconds,
        default=DEFAULT_OP_TIMEOUT_S,
        help=f"seconds before a writer gives up on an operation: its outcome is then unknown "
        f"(default {DEFAULT_OP_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--epoch-floor",
        type=_at_least(0),
        default=0,
        metavar="N",
        help="write epochs above N: for an adapter whose one highest epoch covers all its resources "
        "and has gone up already (the fenced store's is read from it)",
    )
    p.add_argument(
        "--no-network-faults",
        action="store_true",
        help="writers connect directly (pauses and kills only), e.g. when TLS checks the host name",
    )
    p.add_argument(
        "--dir", help="keep the run here: history.json, each process's record and log (default: a new temp dir)"
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--planted-bug", action="append", default=[], help=argparse.SUPPRESS)
    return parser


def fence_main(argv: list[str]) -> int:
    import asyncio
    import random
    import signal

    from node.client.fencing.base import FenceBug

    from .fence_conformance import Adapter, UsageError, report_lines, run_check

    parser = build_fence_parser()
    args = parser.parse_args(argv)
    try:
        planted = tuple(FenceBug(bug).value for bug in args.planted_bug)
    except ValueError as exc:
        parser.error(str(exc))
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops the run and its processes

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    log(f"bullyproof fence check {args.adapter} --seed {seed}")
    try:
        result = asyncio.run(
            run_check(
                Adapter(args.adapter, args.factory),
                seed=seed,
                rounds=args.rounds,
                writers=args.writers,
                resources=args.resources,
                directory=Path(args.dir) if args.dir else None,
                op_timeout_s=args.op_timeout,
                network=not args.no_network_faults,
                epoch_floor=args.epoch_floor,
                planted=planted,
                log=log,
            )
        )
    except UsageError as exc:
        print(f"bullyproof fence check: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # its processes and proxy are stopped by then
        print("bullyproof fence check: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the check could not run (a tool, a process that did not start)
        print(f"bullyproof fence check: could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print("\n".join(report_lines(result)))
    return result.exit_code
