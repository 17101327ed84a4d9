"""Benchmarks (not tests): cold start and failover of a real local cluster, printed as numbers.

    python -m node.bench [--nodes 5] [--kills 20] [--mode quorum]

Cold start: launch N node processes (and the store) -> every node agrees on one leader.
Failover: SIGKILL the leader -> every survivor agrees on a new leader (then the old one restarts).
Agreement is polled over gRPC on each node's client port every 10 ms, so figures include up to one
poll interval of observation delay.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from .cluster import LocalCluster, agreed_leader, local_spec, process_fault, views_of, wait_for


def _agreement(cluster: LocalCluster, exclude: set[int], differs_from: tuple[int, int] | None) -> tuple[int, int] | None:
    addrs = {k: v for k, v in cluster.client_addresses().items() if k not in exclude}
    views = views_of(addrs, 0.2)
    if any(v is None for v in views.values()):
        return None
    agreed = agreed_leader(views)
    return agreed if agreed and agreed != differs_from else None


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 1),
        "p90_ms": round(ms[min(len(ms) - 1, int(0.9 * len(ms)))], 1),
        "worst_ms": round(ms[-1], 1),
    }


def run(nodes: int, kills: int, mode: str, election_timeout_ms: int, heartbeat_interval_ms: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bullyproof-bench-") as tmp:
        cluster = LocalCluster(local_spec(nodes, mode, heartbeat_interval_ms, election_timeout_ms), Path(tmp))
        t0 = time.monotonic()
        cluster.start()
        try:
            current = wait_for(lambda: _agreement(cluster, set(), None), 30, interval_s=0.01, what="first leader")
            cold_start_s = time.monotonic() - t0
            failovers: list[float] = []
            for _ in range(kills):
                old = current
                t_kill = time.monotonic()
                process_fault(cluster.dir, str(old[0]), "kill")
                current = wait_for(lambda: _agreement(cluster, {old[0]}, old), 30, interval_s=0.01, what="failover")
                failovers.append(time.monotonic() - t_kill)
                process_fault(cluster.dir, str(old[0]), "restart")
                # Let the restarted node rejoin (its boot promise period passes) before the next kill.
                current = wait_for(lambda: _agreement(cluster, set(), None), 30, interval_s=0.01, what="rejoin")
                time.sleep(election_timeout_ms / 1000)
                current = wait_for(lambda: _agreement(cluster, set(), None), 30, interval_s=0.01, what="steady")
        finally:
            cluster.stop()
    return {
        "mode": mode,
        "nodes": nodes,
        "heartbeat_interval_ms": heartbeat_interval_ms,
        "election_timeout_ms": election_timeout_ms,
        "cold_start_ms": round(cold_start_s * 1000, 1),
        "failover": summary_ms(failovers),
        "failover_over_election_timeout": {
            "median": round(statistics.median(failovers) * 1000 / election_timeout_ms, 2),
            "worst": round(max(failovers) * 1000 / election_timeout_ms, 2),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--mode", choices=["classic", "quorum"], default="quorum")
    parser.add_argument("--election-timeout-ms", type=int, default=500)
    parser.add_argument("--heartbeat-interval-ms", type=int, default=100)
    args = parser.parse_args(argv)
    result = run(args.nodes, args.kills, args.mode, args.election_timeout_ms, args.heartbeat_interval_ms)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
