"""Benchmarks (not tests): numbers from a real local cluster, printed as JSON.

    python -m node.client.bench [--nodes 5] [--kills 20] [--mode quorum]     # cold start + failover
    python -m node.client.bench --what query [--queries 5000]                 # GetLeader latency, throughput
    python -m node.client.bench --what watch [--kills 10]                     # leader change -> WatchLeader event

Cold start: launch N node processes (and the store) -> every node agrees on one leader.
Failover: SIGKILL the leader -> every survivor agrees on a new leader (then the old one restarts).
Agreement is polled over gRPC on each node's client port every 10 ms, so figures include up to one
poll interval of observation delay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import statistics
import tempfile
import threading
import time
from pathlib import Path

import grpc

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import client_channel, observer_channel

from node.launcher.cluster import LocalCluster, local_spec, process_fault
from node.core import DEFAULT_MODE, mode_names


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
            current = cluster.wait_for_agreement(30, interval_s=0.01, rpc_timeout_s=0.2)
            cold_start_s = time.monotonic() - t0
            failovers: list[float] = []
            for _ in range(kills):
                old = current
                t_kill = time.monotonic()
                process_fault(cluster.dir, str(old[0]), "kill")
                current = cluster.wait_for_agreement(30, exclude={old[0]}, differs_from=old, interval_s=0.01, rpc_timeout_s=0.2)
                failovers.append(time.monotonic() - t_kill)
                process_fault(cluster.dir, str(old[0]), "restart")
                # Let the restarted node rejoin (its boot promise period passes) before the next kill.
                current = cluster.wait_for_agreement(30, interval_s=0.01, rpc_timeout_s=0.2)
                time.sleep(election_timeout_ms / 1000)
                current = cluster.wait_for_agreement(30, interval_s=0.01, rpc_timeout_s=0.2)
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


def bench_query(queries: int, concurrency: int = 32) -> dict:
    """GetLeader on one node over loopback: sequential latency, then concurrent throughput."""
    async def measure(address: str) -> dict:
        async with client_channel(address) as ch:
            stub = pb_grpc.LeadershipStub(ch)
            req = pb.GetLeaderRequest()
            for _ in range(200):  # warm up the channel
                await stub.GetLeader(req, timeout=1)
            lat_s = []
            for _ in range(queries):
                t = time.perf_counter()
                await stub.GetLeader(req, timeout=1)
                lat_s.append(time.perf_counter() - t)
            per_worker = queries // concurrency

            async def worker() -> None:
                for _ in range(per_worker):
                    await stub.GetLeader(req, timeout=1)

            t = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed_s = time.perf_counter() - t
        lat_ms = sorted(x * 1000 for x in lat_s)
        return {
            "queries": queries,
            "p50_ms": round(lat_ms[len(lat_ms) // 2], 3),
            "p99_ms": round(lat_ms[int(len(lat_ms) * 0.99)], 3),
            "throughput_per_s": round(per_worker * concurrency / elapsed_s),
            "concurrency": concurrency,
        }

    with tempfile.TemporaryDirectory(prefix="bullyproof-bench-") as tmp:
        cluster = LocalCluster(local_spec(3), Path(tmp))
        cluster.start()
        try:
            leader, _ = cluster.wait_for_agreement(30)
            follower = min(n for n in cluster.client_addresses() if n != leader)
            return {"leader_node": asyncio.run(measure(cluster.spec.node(leader).client_address)),
                    "follower_node": asyncio.run(measure(cluster.spec.node(follower).client_address))}
        finally:
            cluster.stop()


def bench_watch(kills: int) -> dict:
    """Delay from a node's own view change (its history timestamp) to a WatchLeader subscriber."""
    delays_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bullyproof-bench-") as tmp:
        cluster = LocalCluster(local_spec(5), Path(tmp))
        cluster.start()
        try:
            current = cluster.wait_for_agreement(30)
            watched = 1  # node 1 is never the one killed below
            received: queue.Queue = queue.Queue()
            channel = observer_channel(cluster.spec.node(watched).client_address)
            stream = pb_grpc.LeadershipStub(channel).WatchLeader(pb.WatchLeaderRequest())

            def pump() -> None:
                try:
                    for info in stream:
                        received.put((time.monotonic_ns(), info))
                except grpc.RpcError:
                    pass

            threading.Thread(target=pump, daemon=True).start()
            for _ in range(kills):
                old = current
                process_fault(cluster.dir, str(old[0]), "kill")
                current = cluster.wait_for_agreement(30, exclude={old[0]}, differs_from=old)
                process_fault(cluster.dir, str(old[0]), "restart")
                current = cluster.wait_for_agreement(30)
                time.sleep(0.5)
            stream.cancel()
            channel.close()
            events = [json.loads(line) for line in (cluster.dir / f"node-{watched}" / "events.jsonl").read_text().splitlines()]
            views = [e for e in events if e["kind"] == "view"]
            got = []
            while not received.empty():
                got.append(received.get())
            # Match each streamed view to the node's own view-change record (same leader and epoch).
            for t_recv, info in got[1:]:
                leader = info.leader_id if info.known else None
                epoch = info.epoch if info.known else None
                for v in reversed(views):
                    if v["t_ns"] <= t_recv and v["leader"] == leader and (epoch is None or v["epoch"] == epoch):
                        delays_ms.append((t_recv - v["t_ns"]) / 1e6)
                        break
        finally:
            cluster.stop()
    return {"changes_observed": len(delays_ms), **summary_ms([d / 1000 for d in delays_ms])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--mode", choices=mode_names(), default=DEFAULT_MODE)
    parser.add_argument("--election-timeout-ms", type=int, default=500)
    parser.add_argument("--heartbeat-interval-ms", type=int, default=100)
    parser.add_argument("--what", choices=["failover", "query", "watch"], default="failover")
    parser.add_argument("--queries", type=int, default=5000)
    args = parser.parse_args(argv)
    if args.what == "query":
        result = bench_query(args.queries)
    elif args.what == "watch":
        result = bench_watch(args.kills)
    else:
        result = run(args.nodes, args.kills, args.mode, args.election_timeout_ms, args.heartbeat_interval_ms)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
