"""Argument types the command lines share (argparse `type=`): the CLI and the simulator's commands;
and where their commands find a cluster by default (the CLI's and chaos/'s --dir and --compose).

Below every command line: plain standard library, so node/sim's parsers need not import node/cli/
(which imports them).
"""

from __future__ import annotations

import argparse

DEFAULT_RUN_DIR = "runs/local"  # a local cluster's run directory (`cluster up --dir`)
DEFAULT_COMPOSE_FILE = "docker-compose.yml"  # a compose cluster's file (`--compose`, `bullyproof compose`)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def id_list(text: str) -> tuple[int, ...]:
    try:
        ids = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of node ids (1,2,3)") from None
    if not ids or any(i <= 0 for i in ids) or len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError(f"{text!r}: node ids must be positive and distinct")
    return ids
