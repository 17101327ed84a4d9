"""Commands that own their arguments entirely: each part keeps its own parser (`bullyproof chaos -h`
is chaos/'s), and is imported only when its command runs. The CLI is the composition root: the only
node module allowed to reach into chaos/, bench/ and dashboard/."""

from __future__ import annotations

import argparse

from .registry import Delegated


def store_main(argv: list[str]) -> int:
    from node.store.server import main

    return main(argv)


def store_parser() -> argparse.ArgumentParser:
    from node.store.server import build_parser

    return build_parser()


def chaos_main(argv: list[str]) -> int:
    from chaos.cli import main

    return main(argv)


def chaos_parser() -> argparse.ArgumentParser:
    from chaos.cli import build_parser

    return build_parser()


def fence_main(argv: list[str]) -> int:
    from chaos.cli import fence_main

    return fence_main(argv)


def fence_parser() -> argparse.ArgumentParser:
    from chaos.cli import build_fence_parser

    return build_fence_parser()


def showdown_main(argv: list[str]) -> int:
    from chaos.showdown import main

    return main(argv)


def showdown_parser() -> argparse.ArgumentParser:
    from chaos.showdown import build_parser

    return build_parser()


def bench_main(argv: list[str]) -> int:
    from bench.versus import main
    from chaos import tools, toxiproxy  # the set-up installs etcd and ghz; the false-alarm run a Toxiproxy

    return main(argv, tools, toxiproxy)


def bench_parser() -> argparse.ArgumentParser:
    from bench.versus import build_parser

    return build_parser()


def sim_main(argv: list[str]) -> int:
    from node.sim.cli import main

    return main(argv)


def sim_parser() -> argparse.ArgumentParser:
    from node.sim.cli import build_parser

    return build_parser()


STORE = Delegated("store", "run the fenced store process", store_main, store_parser)
COMMANDS = [
    Delegated(
        "chaos",
        "faults on a running cluster, or a whole checked scenario (bullyproof chaos -h)",
        chaos_main,
        chaos_parser,
    ),
    Delegated(
        "fence",
        "check a fencing adapter: writers, faults, a linearizability verdict (bullyproof fence check -h)",
        fence_main,
        fence_parser,
    ),
    Delegated(
        "showdown",
        "every mode through the same chaos scenarios, one table (bullyproof showdown -h)",
        showdown_main,
        showdown_parser,
    ),
    Delegated(
        "bench",
        "bullyproof beside etcd: failover, cold start, idle cost, load (bullyproof bench -h)",
        bench_main,
        bench_parser,
    ),
    Delegated("sim", "replay a deterministic simulation by seed", sim_main, sim_parser),
]
