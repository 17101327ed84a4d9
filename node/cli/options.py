"""Argument groups several commands share, defined once: where the cluster is (--dir / --compose),
the timing flags, the mode's switches, the dashboard's address. Certificates: node.config.add_tls_args."""

from __future__ import annotations

import argparse

from node.argtypes import DEFAULT_COMPOSE_FILE, DEFAULT_RUN_DIR, positive
from node.config import DEFAULT_TIMING, add_tls_args
from node.core import REGISTRY

DEFAULT_DIR = DEFAULT_RUN_DIR
__all__ = ["DEFAULT_COMPOSE_FILE", "DEFAULT_DIR", "cluster_source", "dashboard_args", "mode_option_arg", "timing_args"]
DASHBOARD_PORT = 8040  # dashboard.server.DEFAULT_PORT (not imported: the parser must not load the web server)


def mode_option_arg(p: argparse.ArgumentParser) -> None:
    takes = "; ".join(f"{m}: {', '.join(info.options)}" for m, info in REGISTRY.items() if info.options)
    p.add_argument(
        "--mode-option", action="append", default=[], metavar="NAME", help=f"a switch of the mode, repeatable ({takes})"
    )


def timing_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--heartbeat-interval-ms",
        type=positive,
        default=DEFAULT_TIMING.heartbeat_interval_ms,
        help=f"leader heartbeat period (default {DEFAULT_TIMING.heartbeat_interval_ms})",
    )
    p.add_argument(
        "--election-timeout-ms",
        type=positive,
        default=DEFAULT_TIMING.election_timeout_ms,
        help=f"follower timeout before electing (default {DEFAULT_TIMING.election_timeout_ms})",
    )


def dashboard_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument(
        f"--{prefix}host", default="127.0.0.1", help="address to serve the dashboard on (default 127.0.0.1, loopback)"
    )
    p.add_argument(
        f"--{prefix}port",
        type=int,
        default=DASHBOARD_PORT,
        help=f"its port (default {DASHBOARD_PORT}; 0: any free port)",
    )


def cluster_by_address(p: argparse.ArgumentParser) -> None:
    """`cluster_source` with --nodes too: the read-only commands work on any cluster they can reach."""
    cluster_source(p, by_address=True)


def cluster_source(p: argparse.ArgumentParser, by_address: bool = False, compose: bool = True) -> None:
    """--dir (a local cluster's run directory) or --compose [FILE] (a compose cluster, from its file);
    `by_address`: or --nodes HOST:PORT,... with --certs/--insecure (node.launcher.remote, read-only)."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--dir", default=DEFAULT_DIR, help=f"local cluster's run directory (default {DEFAULT_DIR})")
    if by_address:
        from node.launcher.remote import NODES_HELP

        where.add_argument("--nodes", metavar="HOST:PORT,...", help=NODES_HELP)
        add_tls_args(p, "client", dialler=True)
    if not compose:
        return
    where.add_argument(
        "--compose",
        nargs="?",
        const=DEFAULT_COMPOSE_FILE,
        metavar="FILE",
        help=f"the compose cluster of FILE instead (default {DEFAULT_COMPOSE_FILE}); "
        "addresses are its published ports, processes its containers",
    )
