"""The command line of one node started alone, for tests of how a node starts (bad state, metrics):
plaintext, ports the kernel picks, one peer nobody listens on, its state in `state_dir`."""

from __future__ import annotations

import sys
from pathlib import Path


def lone_node_argv(state_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "node.cli",
        "node",
        "--insecure",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--client-listen",
        "127.0.0.1:0",
        "--peers",
        "2=127.0.0.1:1",
        "--state-dir",
        str(state_dir),
        *extra,
    ]
