"""Listening ports for local clusters, from a range that outgoing connections never take.

Asking the kernel for port 0 and closing the socket hands out an *ephemeral* port: any outgoing
connection may take it before our process binds it, and a cluster binds dozens (nodes, store,
one proxy per link). So ports come from below the ephemeral range, from a slice of it per pytest-xdist
worker, handed out in turn by a cursor (no reuse until the slice wraps), each checked by binding it.
"""

from __future__ import annotations

import os
import socket
import threading

BASE_PORT = 12000
SLICE_PORTS = 800  # 21 slices fit below 32768, where Linux starts its ephemeral range
RANGE_ENV = "BULLYPROOF_PORT_RANGE"  # "LO-HI" overrides the slice

_lock = threading.Lock()
_cursor: int | None = None


def port_range() -> tuple[int, int]:
    text = os.environ.get(RANGE_ENV)
    if text:
        lo, _, hi = text.partition("-")
        return int(lo), int(hi)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    slot = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    lo = BASE_PORT + (slot % 21) * SLICE_PORTS
    return lo, lo + SLICE_PORTS


def free_port(host: str = "127.0.0.1") -> int:
    global _cursor
    lo, hi = port_range()
    span = hi - lo
    with _lock:
        if _cursor is None:
            _cursor = (os.getpid() * 37) % span  # two CLIs in one slice start far apart
        for step in range(span):
            port = lo + (_cursor + step) % span
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            _cursor = (_cursor + step + 1) % span
            return port
    raise RuntimeError(f"no free port in {lo}..{hi - 1} on {host}")
