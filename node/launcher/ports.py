"""Listening ports for local clusters, from a range that outgoing connections never take.

Asking the kernel for port 0 and closing the socket hands out an *ephemeral* port: any outgoing
connection may take it before our process binds it, and a cluster binds dozens (nodes, store,
one proxy per link). So ports come from below the ephemeral range, from a slice per pytest-xdist
worker, handed out in turn by a cursor (no reuse until the slice wraps), each checked by binding it.
The check cannot stop another process from taking a port between check and use; separate slices
keep that to processes outside this test run.
"""

from __future__ import annotations

import os
import socket
import threading
import zlib

BASE_PORT = 12000
SLICE_PORTS = 800
SLOTS = (32768 - BASE_PORT) // SLICE_PORTS  # 25 slices below 32768, where Linux's ephemeral range starts
RANGE_ENV = "BULLYPROOF_PORT_RANGE"  # "LO-HI" overrides the slice

_lock = threading.Lock()
_cursor: int | None = None


def port_range() -> tuple[int, int]:
    text = os.environ.get(RANGE_ENV)
    if text:
        lo, _, hi = text.partition("-")
        return int(lo), int(hi)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not (worker.startswith("gw") and worker[2:].isdigit()):
        return BASE_PORT, BASE_PORT + SLICE_PORTS  # slot 0: the CLI, benchmarks, pytest without xdist
    # Workers of one run get neighbouring slots; a second concurrent run (another checkout) most
    # likely gets other ones, chosen by its run id.
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    groups = max(1, (SLOTS - 1) // count)
    group = zlib.crc32(os.environ.get("PYTEST_XDIST_TESTRUNUID", "").encode()) % groups
    slot = 1 + (group * count + int(worker[2:])) % (SLOTS - 1)
    lo = BASE_PORT + slot * SLICE_PORTS
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
