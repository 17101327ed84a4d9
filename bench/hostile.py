"""Client load against the leader's heartbeats, measured (a benchmark, not a test).

    python -m bench.hostile [--nodes 5] [--seconds 10] [--watchers 1000] [--idle-share 0.3]
                            [--flood-procs 3] [--flood-concurrency 64] [--ghz PATH] [--json FILE]

Phases, each on a fresh window of the same quorum cluster (heartbeat 100 ms, election timeout 500 ms):

* idle: nothing but the cluster itself;
* watchers on the leader, then on a follower: `--watchers` WatchLeader streams (over 10 connections), of
  which `--idle-share` read their first view and then never read again;
* GetLeader flood on the leader, then on a follower: `--flood-procs` processes, each with
  `--flood-concurrency` calls in flight on one channel, for the whole window, at CPU priority
  `--nice` (19 by default: the flood takes only the CPU the nodes leave, as clients on other
  machines would; on a two-core machine a flood at normal priority starves the other nodes, whose
  heartbeat answers then come late, which measures the machine rather than the flooded node); then
  the same on the leader at priority 0 for contrast; and with `--ghz`, the flood from ghz (a Go load
  generator, 4 connections) on the leader and a follower.

Heartbeat latency is measured where it matters, at the followers: a quorum follower records a
"grant" event (node/runtime/peers.py, t_ns on CLOCK_MONOTONIC) each time it acknowledges a
heartbeat, so the gap between consecutive grants to the leader is the heartbeat interval (100 ms)
plus however late the leader sent it and the follower handled it. A gap past the follower's promise
(0.8 election timeouts, 400 ms) would let it elect: the lease is kept while the gaps stay below it.
Each phase reports gap p50/p99/max, the leader changes in the window (any node's view event), the
loaded node's RSS from /proc (before, peak, end), and what the load itself got.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from bench.versus import PROTO
from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.config import DEFAULT_TIMING
from node.history import read_history
from node.launcher.cluster import LocalCluster, local_spec, pid_alive, read_cluster_file

# ---- measures -------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def heartbeat_gaps_ms(cluster: LocalCluster, leader: int, t0_ns: int, t1_ns: int) -> list[float]:
    """Gaps between consecutive heartbeat grants to `leader` at each follower, inside [t0, t1]."""
    gaps: list[float] = []
    for n in read_cluster_file(cluster.dir)["nodes"]:
        if n["id"] == leader:
            continue
        times = [
            e["t_ns"]
            for e in read_history(n["events"])
            if e.get("kind") == "grant" and e.get("leader") == leader and t0_ns <= e["t_ns"] <= t1_ns
        ]
        gaps += [(b - a) / 1e6 for a, b in zip(times, times[1:])]
    return gaps


def views_between(cluster: LocalCluster, t0_ns: int, t1_ns: int) -> list[dict[str, Any]]:
    """Every view change (role, epoch or leader) any node recorded inside [t0, t1]."""
    found = []
    for n in read_cluster_file(cluster.dir)["nodes"]:
        found += [e for e in read_history(n["events"]) if e.get("kind") == "view" and t0_ns <= e["t_ns"] <= t1_ns]
    return sorted(found, key=lambda e: e["t_ns"])


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def gap_summary(gaps: list[float]) -> dict[str, Any]:
    return {
        "heartbeats": len(gaps),
        "gap_p50_ms": percentile(gaps, 0.5),
        "gap_p99_ms": percentile(gaps, 0.99),
        "gap_max_ms": round(max(gaps), 1) if gaps else None,
    }


# ---- load: WatchLeader subscribers ------------------------------------------------------------------


class Watchers:
    """`count` WatchLeader streams on `address`, held open by an asyncio loop in a thread.

    Each stream reads its first view (so it is surely open); the first `idle` of them never read
    again, the rest keep reading. Over `connections` channels (one TCP connection each), as many
    separate clients would.
    """

    def __init__(self, address: str, count: int, idle_share: float = 0.3, connections: int = 10) -> None:
        self.address, self.count, self.connections = address, count, connections
        self.idle = int(count * idle_share)
        self.opened = 0  # streams whose first view arrived
        self.updates = 0  # views read after the first, by the reading streams
        self.errors: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="watchers", daemon=True)
        self._calls: list[Any] = []
        self._channels: list[grpc.aio.Channel] = []
        self._tasks: list[asyncio.Task] = []

    async def _open(self, timeout_s: float) -> None:
        self._channels = [
            grpc.aio.insecure_channel(
                self.address, options=[("grpc.use_local_subchannel_pool", 1), ("bullyproof.watchers.channel", i)]
            )
            for i in range(self.connections)
        ]

        async def watch(i: int) -> None:
            call = pb_grpc.LeadershipStub(self._channels[i % self.connections]).WatchLeader(pb.WatchLeaderRequest())
            self._calls.append(call)
            try:
                await asyncio.wait_for(call.read(), timeout_s)
                self.opened += 1
                if i < self.idle:
                    return  # never reads again; the call stays open until we cancel it
                while True:
                    info = await call.read()
                    if info is grpc.aio.EOF:
                        return
                    self.updates += 1
            except (TimeoutError, grpc.aio.AioRpcError) as exc:
                code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else "TIMEOUT"
                self.errors[code] = self.errors.get(code, 0) + 1

        self._tasks = [asyncio.ensure_future(watch(i)) for i in range(self.count)]

    async def _close(self) -> None:
        for call in self._calls:
            call.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ch in self._channels:
            await ch.close()

    def __enter__(self) -> Watchers:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(30), self._loop).result()
        deadline = time.monotonic() + 30
        while self.opened + sum(self.errors.values()) < self.count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def summary(self) -> dict[str, Any]:
        return {
            "watchers": self.count,
            "never_read_after_first": self.idle,
            "opened": self.opened,
            "updates_read": self.updates,
            "errors": dict(self.errors),
        }


# ---- load: GetLeader flood ------------------------------------------------------------------------


async def _flood(
    address: str, concurrency: int, seconds: float, go: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    """GetLeader with `concurrency` calls in flight for `seconds`, once connected and `go()` returned."""
    count, errors, lat_ms = 0, {}, []
    async with grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        stub = pb_grpc.LeadershipStub(ch)
        req = pb.GetLeaderRequest()
        await stub.GetLeader(req, timeout=5)  # connected
        await asyncio.get_running_loop().run_in_executor(None, go)
        stop_at = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal count
            while time.monotonic() < stop_at:
                t = time.perf_counter()
                try:
                    await stub.GetLeader(req, timeout=2)
                    count += 1
                    if count % 16 == 0:
                        lat_ms.append((time.perf_counter() - t) * 1000)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"count": count, "errors": errors, "p50_ms": percentile(lat_ms, 0.5), "p99_ms": percentile(lat_ms, 0.99)}


def lower_priority(nice: int) -> None:
    """Run this process at CPU priority `nice`, also where the kernel groups processes by session
    (sched_autogroup): there a nice value only counts among a session's own processes, so the process
    starts a session of its own and gives that session's group the same nice value."""
    if not nice:
        return
    os.setsid()
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text(str(nice))
    os.nice(nice)


class Flood:
    """`procs` processes (python -m bench.hostile --flood-worker), each with `concurrency`
    GetLeader calls in flight for `seconds`.

    `nice` (0..19) lowers the workers' CPU priority (lower_priority: with sched_autogroup a nice value
    alone would not count against the nodes, each of which runs in its own session). On one small
    machine the flood's own processes compete with every node for the CPUs: a follower left without
    CPU answers heartbeats late, which says nothing about how the flooded node copes. At nice 19 the
    workers take only the CPU the nodes leave, as clients on other machines would."""

    def __init__(self, address: str, procs: int, concurrency: int, seconds: float, nice: int = 0) -> None:
        self.address, self.procs, self.concurrency, self.seconds = address, procs, concurrency, seconds
        self.nice = nice
        self._procs: list[subprocess.Popen] = []
        self.results: list[dict[str, Any]] = []

    def __enter__(self) -> Flood:
        """Returns once every worker has started and connected (starting Python and importing gRPC
        takes a CPU for a moment: not part of the flood), and tells them all to go."""
        argv = [
            sys.executable,
            "-m",
            "bench.hostile",
            "--flood-worker",
            self.address,
            "--flood-concurrency",
            str(self.concurrency),
            "--seconds",
            str(self.seconds),
            "--flood-nice",
            str(self.nice),
        ]
        self._procs = [
            subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(self.procs)
        ]
        for p in self._procs:
            ready = p.stdout.readline()
            if ready.strip() != "ready":
                raise RuntimeError(f"flood worker did not start: {ready!r}")
        for p in self._procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self._procs:
            try:
                out, _ = p.communicate(timeout=self.seconds + 30)
                self.results.append(json.loads(out.strip().splitlines()[-1]))
            except Exception as e:  # noqa: BLE001 - a benchmark reports what it could not measure
                p.kill()
                p.wait()
                self.results.append({"count": 0, "errors": {"worker failed": str(e)}})

    def summary(self) -> dict[str, Any]:
        errors: dict[str, int] = {}
        for r in self.results:
            for k, v in r.get("errors", {}).items():
                errors[k] = errors.get(k, 0) + (v if isinstance(v, int) else 1)
        total = sum(r.get("count", 0) for r in self.results)
        p99 = [r["p99_ms"] for r in self.results if r.get("p99_ms") is not None]
        return {
            "processes": self.procs,
            "concurrency_each": self.concurrency,
            "nice": self.nice,
            "calls": total,
            "calls_per_s": round(total / self.seconds),
            "errors": errors,
            "call_p99_ms_worst_process": max(p99) if p99 else None,
        }


class Ghz:
    """The same flood from ghz (a Go load generator, 4 connections), if a ghz binary is given."""

    def __init__(self, ghz: Path, address: str, concurrency: int, seconds: float, nice: int = 0) -> None:
        self.argv = [
            str(ghz),
            "--insecure",
            "--proto",
            str(PROTO),
            "--import-paths",
            str(PROTO.parent),
            "--call",
            "bullyproof.v1.Leadership.GetLeader",
            "--data",
            "{}",
            "--concurrency",
            str(concurrency),
            "--connections",
            "4",
            "--duration",
            f"{seconds}s",
            "--timeout",
            "5s",
            "--format",
            "json",
            address,
        ]
        self.seconds, self.nice = seconds, nice
        self.report: dict[str, Any] = {}

    def __enter__(self) -> Ghz:
        self._proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: lower_priority(self.nice),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        out, err = self._proc.communicate(timeout=self.seconds + 60)
        self.report = json.loads(out) if out.strip() else {"error": err[-300:]}

    def summary(self) -> dict[str, Any]:
        r = self.report
        if "count" not in r:
            return {"tool": "ghz", **r}
        lat = {f"p{int(d['percentage'])}_ms": round(d["latency"] / 1e6, 2) for d in r.get("latencyDistribution") or []}
        return {
            "tool": "ghz",
            "nice": self.nice,
            "calls": r["count"],
            "calls_per_s": round(r["rps"]),
            "errors": {k: v for k, v in (r.get("statusCodeDistribution") or {}).items() if k != "OK"},
            "call_p99_ms": lat.get("p99_ms"),
        }


# ---- phases ---------------------------------------------------------------------------------------


def run_phase(
    cluster: LocalCluster, name: str, target: int | None, seconds: float, load: Callable[[], Any] | None = None
) -> dict[str, Any]:
    """Hold `load` (a context manager factory) for `seconds` and measure the window."""
    leader, epoch = cluster.wait_for_agreement(30)
    pids = {n["id"]: n["pid"] for n in read_cluster_file(cluster.dir)["nodes"]}
    node = target if target is not None else leader
    rss_before = rss_mb(pids[node])
    samples: list[float] = []
    with load() if load else contextlib.nullcontext() as held:
        t0 = time.monotonic_ns()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append(rss_mb(pids[node]))
            time.sleep(0.25)
        t1 = time.monotonic_ns()
    after = cluster.wait_for_agreement(30)
    views = views_between(cluster, t0, t1)
    out = {
        "phase": name,
        "leader": leader,
        "loaded_node": node,
        "loaded_role": "leader" if node == leader else "follower",
        **gap_summary(heartbeat_gaps_ms(cluster, leader, t0, t1)),
        "view_changes_in_window": len(views),
        "leader_after": after[0],
        "epoch_before": epoch,
        "epoch_after": after[1],
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_peak": round(max(samples), 1),
        "rss_mb_end": round(samples[-1], 1),
        "rss_mb_last_second_spread": round(max(samples[-4:]) - min(samples[-4:]), 1),
        "alive": all(pid_alive(p) for p in pids.values()),
        # the machine's load (runnable processes, 1-minute average) when the window closed: on a
        # shared machine, other work competes with the nodes for the CPUs
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    if held is not None and hasattr(held, "summary"):
        out["load"] = held.summary()
    return out


def run(
    nodes: int,
    seconds: float,
    watchers: int,
    idle_share: float,
    flood_procs: int,
    flood_concurrency: int,
    ghz: Path | None,
    nice: int = 19,
    progress: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bullyproof-hostile-") as tmp:
        cluster = LocalCluster(local_spec(nodes), Path(tmp))
        cluster.start()
        try:
            leader, _ = cluster.wait_for_agreement(30)
            follower = min(n.id for n in cluster.spec.nodes if n.id != leader)
            addr = {n.id: n.client_address for n in cluster.spec.nodes}
            time.sleep(2)  # past the first election's dust
            phases = []
            progress("idle")
            phases.append(run_phase(cluster, "idle", None, seconds))
            for role, nid in (("leader", leader), ("follower", follower)):
                progress(f"{watchers} watchers on the {role}")
                phases.append(
                    run_phase(
                        cluster,
                        f"{watchers} WatchLeader streams",
                        nid,
                        seconds,
                        lambda nid=nid: Watchers(addr[nid], watchers, idle_share),
                    )
                )
            floods = [("leader", leader, nice), ("follower", follower, nice)]
            if nice:  # the same flood competing for the CPUs with the nodes, for contrast
                floods.append(("leader", leader, 0))
            for role, nid, level in floods:
                progress(f"GetLeader flood on the {role}, nice {level}")
                phases.append(
                    run_phase(
                        cluster,
                        f"GetLeader flood, {flood_procs} procs, nice {level}",
                        nid,
                        seconds,
                        lambda nid=nid, level=level: Flood(addr[nid], flood_procs, flood_concurrency, seconds, level),
                    )
                )
            if ghz is not None:
                for role, nid in (("leader", leader), ("follower", follower)):
                    progress(f"ghz flood on the {role}, nice {nice}")
                    phases.append(
                        run_phase(
                            cluster,
                            f"GetLeader flood, ghz, nice {nice}",
                            nid,
                            seconds,
                            lambda nid=nid: Ghz(ghz, addr[nid], flood_procs * flood_concurrency, seconds, nice),
                        )
                    )
            return {
                "nodes": nodes,
                "heartbeat_interval_ms": DEFAULT_TIMING.heartbeat_interval_ms,
                "election_timeout_ms": DEFAULT_TIMING.election_timeout_ms,
                "follower_promise_ms": 400,
                "seconds_per_phase": seconds,
                "cpus": os.cpu_count(),
                "note": "ghz counts the calls still in flight when its --duration ends as Unavailable "
                "(as many as its concurrency)",
                "phases": phases,
            }
        finally:
            cluster.stop()


def table(result: dict[str, Any]) -> str:
    head = (
        f"{'phase':<38} {'on':<9} {'hb gap p50':>10} {'p99':>7} {'max':>7} {'changes':>7} "
        f"{'RSS MB before/peak/end':>23} {'loadavg':>7}  load"
    )
    lines = [head, "-" * len(head)]
    for p in result["phases"]:
        load = p.get("load", {})
        what = (
            f"{load.get('calls_per_s')} calls/s, errors {load.get('errors')}"
            if "calls_per_s" in load
            else f"{load.get('opened')}/{load.get('watchers')} open, errors {load.get('errors')}"
            if load
            else ""
        )
        if load.get("call_p99_ms") or load.get("call_p99_ms_worst_process"):
            what += f", call p99 {load.get('call_p99_ms') or load.get('call_p99_ms_worst_process')} ms"
        lines.append(
            f"{p['phase']:<38} {p['loaded_role'] if 'load' in p else '-':<9} {p['gap_p50_ms']:>10} "
            f"{p['gap_p99_ms']:>7} {p['gap_max_ms']:>7} {p['view_changes_in_window']:>7} "
            f"{p['rss_mb_before']:>7}/{p['rss_mb_peak']}/{p['rss_mb_end']:<7} {p['loadavg_1m']:>7}  {what}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--seconds", type=float, default=10.0, help="length of each phase's window")
    p.add_argument("--watchers", type=int, default=1000)
    p.add_argument(
        "--idle-share", type=float, default=0.3, help="share of watchers that never read after their first view"
    )
    p.add_argument("--flood-procs", type=int, default=3)
    p.add_argument("--flood-concurrency", type=int, default=64)
    p.add_argument("--ghz", type=Path, help="also flood with this ghz binary (e.g. .tools/bin/ghz)")
    p.add_argument(
        "--nice",
        type=int,
        default=19,
        help="CPU priority of the flood's processes (19: they take only CPU the nodes leave, as clients on "
        "other machines would; a phase at 0 follows for contrast)",
    )
    p.add_argument("--json", type=Path, help="write the result here too")
    p.add_argument("--flood-worker", metavar="ADDRESS", help=argparse.SUPPRESS)
    p.add_argument("--flood-nice", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.flood_worker:
        lower_priority(args.flood_nice)

        def go() -> None:
            print("ready", flush=True)
            sys.stdin.readline()

        print(json.dumps(asyncio.run(_flood(args.flood_worker, args.flood_concurrency, args.seconds, go))), flush=True)
        return 0
    result = run(
        args.nodes,
        args.seconds,
        args.watchers,
        args.idle_share,
        args.flood_procs,
        args.flood_concurrency,
        args.ghz,
        args.nice,
        progress=lambda s: print(f"... {s}", file=sys.stderr, flush=True),
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
