"""Benchmarks (not tests): numbers from a real local cluster, printed as JSON (`python -m bench` runs this).

    python -m bench [--nodes 5] [--kills 20] [--mode quorum]         # cold start + failover
    python -m bench --idle-s 30 [--kills 5] [--tls]                  # ... and failover after 30 s of calm
    python -m bench --what query [--queries 5000]                    # GetLeader latency, throughput
    python -m bench --what watch [--kills 10]                        # leader change -> WatchLeader event
    python -m bench --what figure16 [--trials 100] [--out results/real]

Cold start: launch N node processes (and the store) -> every node agrees on one leader.
Failover: SIGKILL the leader -> every survivor agrees on a new leader (then the old one restarts).
With --idle-s S, the same kills again, each after S seconds without an election: the links between
followers carry no calls for that long (only keepalive pings), so the next election finds them as
an idle cluster would, open or closed (failover_after_idle beside failover on warm links).
Agreement is polled over gRPC on each node's client port every 10 ms, so figures include up to one
poll interval of observation delay.

Messages: the simulator's messages-per-election measure (node.sim.figures) on real processes: every
mode, each size; the messages the survivors sent (their GetStatus counters, heartbeats and their acks
left out) from a settled cluster to the survivors' agreement after the leader's SIGKILL.
Figure16: the Raft paper's experiment (node.sim.figures.figure16) on 5 real raft processes: the leader
SIGKILLed at a random point of its heartbeat interval, time until the survivors agree on a new leader.
Both plot beside the simulator's lines (the plot functions of node.sim.figures).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import queue
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import client_channel, observer_channel
from node.config import DEFAULT_TIMING
from node.core import DEFAULT_MODE, mode_names
from node.launcher.cluster import LocalCluster, local_spec, process_fault
from node.observer import get_status
from node.sim.figures import HEARTBEATS, Line, figure16, figure16_line, plot_figure16, plot_messages


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the samples at or below it."""
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "n": len(ms),
        "min_ms": round(ms[0], 1),
        "median_ms": round(statistics.median(ms), 1),
        "p90_ms": round(percentile(ms, 0.9), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "worst_ms": round(ms[-1], 1),
    }


def kill_loop(
    agree: Callable[..., Any],
    leader_of: Callable[[Any], int],
    kill: Callable[[int], object],
    restart: Callable[[int], object],
    kills: int,
    election_timeout_ms: int,
    progress: str | None = None,
    into: list[float] | None = None,
    idle_s: float = 0,
) -> list[float]:
    """SIGKILL the agreed leader `kills` times: seconds from each kill to the survivors' agreement on
    a new leader. The killed member restarts and rejoins before the next kill. Any cluster: `agree`
    (optionally `exclude=`, `differs_from=`) waits for and returns an agreement, `leader_of` names its
    leader. Samples are appended to `into` if given, so a caller keeps them when a later kill times out.
    `idle_s`: wait that long (no faults, no elections) before each kill."""
    current = agree()
    failovers: list[float] = [] if into is None else into
    for k in range(kills):
        if idle_s:
            time.sleep(idle_s)
            current = agree()
        old = current
        leader = leader_of(old)
        t_kill = time.monotonic()
        kill(leader)
        current = agree(exclude=frozenset({leader}), differs_from=old)
        failovers.append(time.monotonic() - t_kill)
        restart(leader)
        # Let the restarted member rejoin (a quorum node's boot promise period passes) before the next kill.
        current = agree()
        time.sleep(election_timeout_ms / 1000)
        current = agree()
        if progress and (k + 1) % 10 == 0:
            print(f"{progress}: {k + 1}/{kills} kills", file=sys.stderr, flush=True)
    return failovers


def failover_samples(
    cluster: LocalCluster,
    kills: int,
    election_timeout_ms: int,
    limit_s: float = 30,
    progress: str | None = None,
    into: list[float] | None = None,
    idle_s: float = 0,
) -> list[float]:
    """kill_loop on our nodes, polled every 10 ms."""
    return kill_loop(
        agree=lambda **where: cluster.wait_for_agreement(limit_s, interval_s=0.01, rpc_timeout_s=0.2, **where),
        leader_of=lambda agreed: agreed[0],
        kill=lambda node: process_fault(cluster.dir, str(node), "kill"),
        restart=lambda node: process_fault(cluster.dir, str(node), "restart"),
        kills=kills,
        election_timeout_ms=election_timeout_ms,
        progress=progress,
        into=into,
        idle_s=idle_s,
    )


def run(
    nodes: int,
    kills: int,
    mode: str,
    election_timeout_ms: int,
    heartbeat_interval_ms: int,
    idle_s: float = 0,
    tls: bool = False,
) -> dict:
    with tempfile.TemporaryDirectory(prefix="bullyproof-bench-") as tmp:
        certs_dir = str(Path(tmp) / "certs") if tls else None
        cluster = LocalCluster(
            local_spec(nodes, mode, heartbeat_interval_ms, election_timeout_ms, certs_dir=certs_dir), Path(tmp)
        )
        t0 = time.monotonic()
        cluster.start()
        try:
            cluster.wait_for_agreement(30, interval_s=0.01, rpc_timeout_s=0.2)
            cold_start_s = time.monotonic() - t0
            failovers = failover_samples(cluster, kills, election_timeout_ms)
            after_idle = failover_samples(cluster, kills, election_timeout_ms, idle_s=idle_s) if idle_s else []
        finally:
            cluster.stop()
    idle = {"idle_before_kill_s": idle_s, "failover_after_idle": summary_ms(after_idle)} if after_idle else {}
    return {
        "mode": mode,
        "nodes": nodes,
        "heartbeat_interval_ms": heartbeat_interval_ms,
        "election_timeout_ms": election_timeout_ms,
        "tls": tls,
        "cold_start_ms": round(cold_start_s * 1000, 1),
        "failover": summary_ms(failovers),
        **idle,
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
            return {
                "leader_node": asyncio.run(measure(cluster.spec.node(leader).client_address)),
                "follower_node": asyncio.run(measure(cluster.spec.node(follower).client_address)),
            }
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
            events = [
                json.loads(line) for line in (cluster.dir / f"node-{watched}" / "events.jsonl").read_text().splitlines()
            ]
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


# ---- messages per election, on real processes ------------------------------------------------

MESSAGE_SIZES = (3, 5, 9, 15, 25)
HEARTBEAT_TYPES = frozenset(t.value for t in HEARTBEATS)


def election_sent(cluster: LocalCluster, ids: list[int]) -> dict[int, dict[str, int]] | None:
    """Each node's messages_sent by type, heartbeats and their acks left out; None if one did not answer."""
    out = {}
    for nid in ids:
        st = get_status(cluster.spec.node(nid).client_address, timeout_s=2.0)
        if isinstance(st, str):
            return None
        out[nid] = {t: c for t, c in st.messages_sent.items() if t not in HEARTBEAT_TYPES}
    return out


def settled(
    cluster: LocalCluster, quiet_s: float, timeout_s: float
) -> tuple[tuple[int, int], dict[int, dict[str, int]]]:
    """Agreement, and no node sent anything but heartbeats for quiet_s: (leader, epoch) and the counters."""
    ids = sorted(cluster.client_addresses())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        agreed = cluster.wait_for_agreement(max(0.1, deadline - time.monotonic()), interval_s=0.01)
        before = election_sent(cluster, ids)
        time.sleep(quiet_s)
        if before is not None and election_sent(cluster, ids) == before:
            if cluster.wait_for_agreement(1.0, interval_s=0.01) == agreed:
                return agreed, before
    raise TimeoutError(f"no quiet agreement of {len(ids)} nodes within {timeout_s:.0f}s")


def bench_messages_point(mode: str, n: int, trials: int, heartbeat_interval_ms: int, election_timeout_ms: int) -> dict:
    """Messages the survivors send from a settled cluster to their agreement after the leader's SIGKILL.

    One cluster, `trials` kills (the killed node restarts and the cluster settles again in between).
    Preemption is off (the simulator's default too), so a restarted higher node does not take over later.
    """
    et_s = election_timeout_ms / 1000
    limit_s = 20 * et_s
    spec = dataclasses.replace(local_spec(n, mode, heartbeat_interval_ms, election_timeout_ms), preempt_hold_down_ms=0)
    samples: list[dict] = []
    error = None
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bullyproof-bench-") as tmp:
        cluster = LocalCluster(spec, Path(tmp))
        cluster.start()
        try:
            cluster.wait_for_agreement(30 + 2 * n, interval_s=0.05, rpc_timeout_s=1.0)
            for trial in range(trials):
                old, before = settled(cluster, quiet_s=2 * et_s, timeout_s=limit_s)
                survivors = [i for i in before if i != old[0]]
                t_kill = time.monotonic()
                process_fault(cluster.dir, str(old[0]), "kill")
                new = cluster.wait_for_agreement(limit_s, exclude={old[0]}, differs_from=old, interval_s=0.01)
                failover_s = time.monotonic() - t_kill
                after = election_sent(cluster, survivors)
                if after is None:
                    raise TimeoutError("a survivor did not answer GetStatus after the election")
                by_type: dict[str, int] = {}
                for nid in survivors:
                    for t, c in after[nid].items():
                        by_type[t] = by_type.get(t, 0) + c - before[nid].get(t, 0)
                by_type = {t: c for t, c in sorted(by_type.items()) if c}
                samples.append(
                    {
                        "messages": sum(by_type.values()),
                        "by_type": by_type,
                        "old_leader": old[0],
                        "new_leader": new[0],
                        "failover_ms": round(failover_s * 1000, 1),
                    }
                )
                if trial < trials - 1:
                    process_fault(cluster.dir, str(old[0]), "restart")
        except TimeoutError as exc:
            error = str(exc)
        finally:
            cluster.stop()
    counts = [s["messages"] for s in samples]
    return {
        "mode": mode,
        "n": n,
        "heartbeat_interval_ms": heartbeat_interval_ms,
        "election_timeout_ms": election_timeout_ms,
        "median": statistics.median(counts) if counts else None,
        "trials": samples,
        "error": error,
        "seconds": round(time.monotonic() - t0, 1),
    }


def bench_messages(
    sizes: tuple[int, ...] = MESSAGE_SIZES,
    trials: int = 3,
    modes: tuple[str, ...] | None = None,
    sim_rows: list[dict] | None = None,
    heartbeat_interval_ms: int = DEFAULT_TIMING.heartbeat_interval_ms,
    election_timeout_ms: int = DEFAULT_TIMING.election_timeout_ms,
    progress: bool = True,
) -> list[dict]:
    """Every mode at every size; each row with the simulator's typical count beside it (if given)."""
    sim = {(r["mode"], r["n"]): r["median"] for r in sim_rows or []}
    rows = []
    for mode in modes or mode_names():
        for n in sizes:
            row = bench_messages_point(mode, n, trials, heartbeat_interval_ms, election_timeout_ms)
            row["simulator_median"] = sim.get((mode, n))
            rows.append(row)
            if progress:
                print(
                    f"{mode:8} n={n:2d}: real {row['median']}, "
                    f"simulator {row['simulator_median']}, per trial {[t['messages'] for t in row['trials']]}"
                    + (f"; FAILED: {row['error']}" if row["error"] else "")
                    + f"  [{row['seconds']} s]",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


# ---- Raft figure 16, on real processes ----------------------------------------------------------


def bench_figure16(trials: int, election_timeout_ms: int = 150, seed: int = 0, progress: bool = True) -> dict:
    """5 raft processes; per trial: agreement, a uniform random fraction of a heartbeat, SIGKILL the
    leader, then the time until (a) the new leader's own history says it leads (monotonic clock,
    shared by every process) and (b) every survivor names it (polled every 5 ms).

    The heartbeat is a third of the election timeout, the shortest the node's settings accept (the
    paper used half). Raft mode draws its timeouts from [ET, 2 ET) in 10 ms ticks: the 150-300 ms line.
    """
    heartbeat_ms = election_timeout_ms // 3
    rng = random.Random(seed)
    elected_ms: list[float] = []
    agreed_ms: list[float] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bullyproof-bench-") as tmp:
        cluster = LocalCluster(local_spec(5, "raft", heartbeat_ms, election_timeout_ms), Path(tmp))
        cluster.start()
        try:
            cluster.wait_for_agreement(30, interval_s=0.01)
            for trial in range(trials):
                old = cluster.wait_for_agreement(30, interval_s=0.01)
                time.sleep(election_timeout_ms / 1000)  # the restarted node settles as a follower
                old = cluster.wait_for_agreement(30, interval_s=0.005)
                time.sleep(rng.uniform(0, heartbeat_ms / 1000))
                t_kill_ns = time.monotonic_ns()
                process_fault(cluster.dir, str(old[0]), "kill")
                try:
                    new = cluster.wait_for_agreement(
                        10, exclude={old[0]}, differs_from=old, interval_s=0.005, rpc_timeout_s=0.2
                    )
                except TimeoutError as exc:
                    failed.append(str(exc))
                    new = None
                t_agreed_ns = time.monotonic_ns()
                if new is not None:
                    agreed_ms.append((t_agreed_ns - t_kill_ns) / 1e6)
                    led_ns = became_leader_ns(cluster, *new)
                    if led_ns is not None:
                        elected_ms.append((led_ns - t_kill_ns) / 1e6)
                process_fault(cluster.dir, str(old[0]), "restart")
                if progress and (trial + 1) % 10 == 0:
                    print(f"figure16: {trial + 1}/{trials} trials", file=sys.stderr, flush=True)
        finally:
            cluster.stop()
    label = f"{election_timeout_ms}-{2 * election_timeout_ms}"
    lines = {
        "elected": Line(
            election_timeout_ms,
            2 * election_timeout_ms,
            tuple(round(x, 1) for x in elected_ms),
            trials - len(elected_ms),
        ),
        "agreed": Line(
            election_timeout_ms, 2 * election_timeout_ms, tuple(round(x, 1) for x in agreed_ms), len(failed)
        ),
    }
    return {
        "range_ms": label,
        "heartbeat_interval_ms": heartbeat_ms,
        "election_timeout_ms": election_timeout_ms,
        "nodes": 5,
        "mode": "raft",
        "seed": seed,
        "failures": failed,
        "lines": {what: {**line.to_dict(), "samples_ms": sorted(line.samples_ms)} for what, line in lines.items()},
        "_lines": lines,
    }


def became_leader_ns(cluster: LocalCluster, node_id: int, epoch: int) -> int | None:
    """When the node's history says it began leading `epoch` (CLOCK_MONOTONIC, like time.monotonic_ns)."""
    path = cluster.dir / f"node-{node_id}" / "events.jsonl"
    for line in path.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("kind") == "view" and ev.get("role") == "leader" and ev.get("epoch") == epoch:
            return ev["t_ns"]
    return None


def write_messages(rows: list[dict], out: Path, sim_rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "messages.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot_messages(sim_rows, out / "messages.png", real=rows)


# Loopback carries a peer RPC in about a millisecond: the simulator's nearest delay is 1-2 ticks of 1 ms.
LOOPBACK_ONE_WAY_DELAY_MS = (1, 2)


def write_figure16(result: dict, sim_trials: int, out: Path) -> None:
    """The JSON (with the simulator's line at the real run's settings beside it) and the CDF plot."""
    out.mkdir(parents=True, exist_ok=True)
    lines = result.pop("_lines")
    et = result["election_timeout_ms"]
    matched = figure16_line(
        et, 2 * et, sim_trials, heartbeat_ms=result["heartbeat_interval_ms"], one_way_delay_ms=LOOPBACK_ONE_WAY_DELAY_MS
    )
    result["simulator_at_these_settings"] = {
        **matched.to_dict(),
        "heartbeat_interval_ms": result["heartbeat_interval_ms"],
        "one_way_delay_ms": list(LOOPBACK_ONE_WAY_DELAY_MS),
        "tick_ms": 1,
    }
    (out / "figure16.json").write_text(json.dumps(result, indent=2) + "\n")
    label = result["range_ms"]
    real = {
        f"{label} ms, real: leader elected": lines["elected"],
        f"{label} ms, real: all survivors agree": lines["agreed"],
    }
    plot_figure16(figure16(sim_trials), out / "figure16.png", real=real)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--mode", choices=mode_names(), default=DEFAULT_MODE)
    parser.add_argument("--election-timeout-ms", type=int, default=DEFAULT_TIMING.election_timeout_ms)
    parser.add_argument("--heartbeat-interval-ms", type=int, default=DEFAULT_TIMING.heartbeat_interval_ms)
    parser.add_argument("--what", choices=["failover", "query", "watch", "messages", "figure16"], default="failover")
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--sizes", default=",".join(map(str, MESSAGE_SIZES)), help="messages: membership sizes")
    parser.add_argument("--modes", default=",".join(mode_names()), help="messages: modes")
    parser.add_argument(
        "--trials", type=int, help="messages: kills per point (default 3); figure16: trials (default 100)"
    )
    parser.add_argument(
        "--sim",
        type=Path,
        default=Path("results/sim/messages.json"),
        help="messages: the simulator's table to compare with (bullyproof sim messages --out)",
    )
    parser.add_argument("--sim-trials", type=int, default=1000, help="figure16: trials per simulator line in the plot")
    parser.add_argument("--out", type=Path, help="messages, figure16: write the JSON and the plot into this folder")
    parser.add_argument(
        "--idle-s",
        type=float,
        default=0,
        help="failover: also kill the leader after this many seconds without an election, --kills times",
    )
    parser.add_argument(
        "--tls", action="store_true", help="failover: mutual TLS between the nodes (default: plaintext)"
    )
    args = parser.parse_args(argv)
    if args.what == "query":
        result = bench_query(args.queries)
    elif args.what == "watch":
        result = bench_watch(args.kills)
    elif args.what == "messages":
        sim_rows = json.loads(args.sim.read_text()) if args.sim.exists() else []
        print(
            f"messages per election on real processes: heartbeat {args.heartbeat_interval_ms} ms, "
            f"election timeout {args.election_timeout_ms} ms, every size",
            file=sys.stderr,
            flush=True,
        )
        result = bench_messages(
            tuple(int(n) for n in args.sizes.split(",")),
            args.trials or 3,
            tuple(args.modes.split(",")),
            sim_rows,
            args.heartbeat_interval_ms,
            args.election_timeout_ms,
        )
        if args.out:
            write_messages(result, args.out, sim_rows)
    elif args.what == "figure16":
        result = bench_figure16(args.trials or 100)
        if args.out:
            write_figure16(result, args.sim_trials, args.out)
        result.pop("_lines", None)
        for line in result["lines"].values():
            line.pop("samples_ms")
    else:
        result = run(
            args.nodes,
            args.kills,
            args.mode,
            args.election_timeout_ms,
            args.heartbeat_interval_ms,
            args.idle_s,
            args.tls,
        )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
