"""`bullyproof`: run a node or the store, start a local cluster, break it, ask who leads."""

from __future__ import annotations

import argparse
import sys

from node.config import ConfigError
from node.tls import TlsError

from . import ask, cluster, delegated, files
from . import node as node_commands
from .ask import handover_refused
from .node import _without_self, id_from_hostname, node_settings
from .options import DEFAULT_COMPOSE_FILE, DEFAULT_DIR
from .registry import Command, Delegated, assemble

__all__ = [
    "COMMANDS",
    "DEFAULT_COMPOSE_FILE",
    "DEFAULT_DIR",
    "_without_self",
    "build_parser",
    "handover_refused",
    "id_from_hostname",
    "main",
    "node_settings",
]


def _in_order(*names: str) -> list[Command | Delegated]:
    by_name = {
        c.name: c
        for c in (
            *node_commands.COMMANDS,
            delegated.STORE,
            *cluster.COMMANDS,
            *ask.COMMANDS,
            *files.COMMANDS,
            *delegated.COMMANDS,
        )
    }
    if set(names) != set(by_name):
        raise ValueError(
            f"commands registered but not ordered, or ordered but not registered: {set(names) ^ set(by_name)}"
        )
    return [by_name[n] for n in names]


# Every `bullyproof` command, in the order `bullyproof -h` lists them.
COMMANDS = _in_order(
    "node",
    "store",
    "cluster",
    "kill",
    "pause",
    "resume",
    "restart",
    "certs",
    "dashboard",
    "leader",
    "status",
    "resign",
    "transfer",
    "member",
    "leave",
    "health",
    "compose",
    "k8s",
    "chaos",
    "fence",
    "showdown",
    "bench",
    "sim",
)
DELEGATED = {c.name: c for c in COMMANDS if isinstance(c, Delegated)}


def build_parser() -> argparse.ArgumentParser:
    return assemble("bullyproof", __doc__, COMMANDS)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        # These own their arguments entirely (argparse's REMAINDER would choke on leading options).
        if argv[:1] and argv[0] in DELEGATED:
            return DELEGATED[argv[0]].main(argv[1:])
        args = parser.parse_args(argv)
        return args.run(args)
    except (ConfigError, TlsError) as exc:
        print(f"bullyproof: error: {exc}", file=sys.stderr)
        return 2
