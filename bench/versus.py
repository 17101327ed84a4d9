"""`bullyproof bench`: bullyproof beside etcd, one command, one run.

    bullyproof bench [--kills 30] [--settings 100/500,100/1000,50/500] [--modes classic,quorum,ring,raft]
                     [--sizes 3,5,9,15,25] [--out results/bench] [--quick] [--skip-suite] [--skip PARTS]

Parts (each can be skipped with --skip):
* failover: 5 members on loopback at each heartbeat/election-timeout setting; SIGKILL the leader,
  time until every survivor reports the same new leader (polled every 10 ms), restart the killed
  member and let it rejoin, `--kills` times: etcd (Debian's etcd-server, same heartbeat and election
  timeout) and every bullyproof mode (bench.real's failover loop).
* cold-start: launch to an agreed leader, 5 nodes: `bullyproof cluster up --detach` through
  Toxiproxy and `--direct` (the CLI started as a process, its exit after it saw agreement), and
  5 etcd members started together.
* idle: CPU (utime + stime from /proc) and RSS of each process over 30 s of a settled cluster at
  100 ms heartbeats: every mode's nodes doing the election alone, and quorum as `cluster up` runs it
  (TLS, store writes; the store apart), each in the same window as etcd's members, which run
  throughout; and the floor, a bare Python gRPC echo.
* sizes: quorum failover as n grows, at the first setting, a third of the kills per point.
* query: GetLeader on a leader and a follower under ghz (a Go load generator, its own process).
* suite: the chaos suite's wall time, `pytest tests/chaos -n 0` against `-n 2` (long).
* false-alarms: nothing killed; etcd and bullyproof at once, every link slowed and stalled through one
  Toxiproxy: leader changes and time without an agreed leader (bench.false_alarms).

The tools come from the set-up step (the CLI hands in chaos.tools, which installs etcd-server with
apt-get and ghz with `go install` at a pinned version); --quick skips those not installed.
Output: DIR/bench.json, DIR/bench.md, DIR/failover-HB-ET.png (CDFs, etcd against each mode).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from bench import false_alarms, grpc_floor
from bench.etcd import EtcdCluster
from bench.real import failover_samples, kill_loop, summary_ms
from node.config import DEFAULT_TIMING
from node.core import mode_names
from node.launcher.cluster import (
    LocalCluster,
    local_spec,
    read_cluster_file,
    stop_pids,
)
from node.launcher.stopping import stop_on_signals

ROOT = Path(__file__).resolve().parents[1]
PROTO = ROOT / "proto" / "bullyproof" / "v1" / "bullyproof.proto"
PARTS = ("failover", "cold-start", "idle", "sizes", "query", "suite", false_alarms.PART)
DEFAULT_SETTINGS = ((100, 500), (100, 1000), (50, 500))
DEFAULT_SIZES = (3, 5, 9, 15, 25)
NODES = 5


def log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {text}", file=sys.stderr, flush=True)


# ---- etcd ---------------------------------------------------------------------------------------


FAILED_RUNS = ROOT / "runs" / "bench-failures"  # a failed part's cluster directory (logs, events) is kept here


def keep_failed(directory: Path, name: str) -> str:
    dest = FAILED_RUNS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    shutil.copytree(directory, dest, ignore=shutil.ignore_patterns("*.sock"), dirs_exist_ok=True)
    return str(dest)


def etcd_failover(etcd: Path, kills: int, heartbeat_ms: int, election_ms: int) -> dict:
    """Like ours_failover; a timeout ends the kills but keeps the samples so far (and the logs)."""
    with tempfile.TemporaryDirectory(prefix="bullyproof-bench-etcd-") as tmp:
        cluster = EtcdCluster(etcd, Path(tmp), NODES, heartbeat_ms, election_ms)
        t0 = time.monotonic()
        cluster.start()
        samples: list[float] = []
        out: dict[str, Any] = {"samples_s": samples}
        try:
            cluster.wait_for_agreement(30)
            out["cold_start_ms"] = round((time.monotonic() - t0) * 1000, 1)
            kill_loop(
                agree=lambda **where: cluster.wait_for_agreement(30, **where),
                leader_of=lambda index: index,
                kill=cluster.kill,
                restart=cluster.restart,
                kills=kills,
                election_timeout_ms=election_ms,
                progress=f"etcd {heartbeat_ms}/{election_ms}",
                into=samples,
            )
        except TimeoutError as exc:
            out["error"] = f"TimeoutError after {len(samples)} kills: {exc}"
            cluster.stop()
            out["kept"] = keep_failed(Path(tmp), f"etcd-{heartbeat_ms}-{election_ms}")
        finally:
            cluster.stop()
    return out


def ours_failover(mode: str, kills: int, heartbeat_ms: int, election_ms: int, nodes: int = NODES) -> dict:
    """Cold start, then `kills` failovers (bench.real's loop); a timeout ends the kills but
    keeps the samples so far, and the cluster's directory under runs/bench-failures."""
    with tempfile.TemporaryDirectory(prefix="bullyproof-bench-") as tmp:
        cluster = LocalCluster(local_spec(nodes, mode, heartbeat_ms, election_ms), Path(tmp))
        t0 = time.monotonic()
        cluster.start()
        samples: list[float] = []
        out: dict[str, Any] = {"samples_s": samples}
        try:
            cluster.wait_for_agreement(30 + 2 * nodes, interval_s=0.01, rpc_timeout_s=0.2)
            out["cold_start_ms"] = round((time.monotonic() - t0) * 1000, 1)
            failover_samples(
                cluster, kills, election_ms, progress=f"{mode} n={nodes} {heartbeat_ms}/{election_ms}", into=samples
            )
        except TimeoutError as exc:
            out["error"] = f"TimeoutError after {len(samples)} kills: {exc}"
            cluster.stop()
            out["kept"] = keep_failed(Path(tmp), f"{mode}-n{nodes}-{heartbeat_ms}-{election_ms}")
        finally:
            cluster.stop()
    return out


def describe(samples_s: list[float], election_ms: int) -> dict:
    if not samples_s:
        return {"kills": 0}
    s = summary_ms(samples_s)
    s["kills"] = s.pop("n")
    return {
        **s,
        "median_over_et": round(s["median_ms"] / election_ms, 2),
        "p99_over_et": round(s["p99_ms"] / election_ms, 2),
        "samples_ms": [round(x * 1000, 1) for x in samples_s],
    }


def failover_row(r: dict, election_ms: int) -> dict:
    """The summary of a failover run; its error (and where its logs are) beside whatever it measured."""
    if "samples_s" not in r:
        return r  # the part failed before it measured anything
    row = {**describe(r["samples_s"], election_ms), **{k: r[k] for k in ("cold_start_ms", "error", "kept") if k in r}}
    return row


def guarded(what: str, f: Callable[[], dict]) -> dict:
    """A part's result, or {"error": ...} if it failed: one broken part must not lose the others."""
    try:
        return f()
    except (TimeoutError, OSError, RuntimeError, subprocess.SubprocessError, ValueError) as exc:
        log(f"{what}: FAILED: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}


def bench_failover(settings: list[tuple[int, int]], modes: list[str], kills: int, etcd: Path | None) -> list[dict]:
    rows = []
    for hb, et in settings:
        systems: dict[str, dict] = {}
        if etcd is not None:
            log(f"failover {hb}/{et} ms: etcd, {kills} kills")
            r = guarded(f"etcd {hb}/{et}", lambda: etcd_failover(etcd, kills, hb, et))
            systems["etcd"] = failover_row(r, et)
        for mode in modes:
            log(f"failover {hb}/{et} ms: bullyproof {mode}, {kills} kills")
            r = guarded(f"{mode} {hb}/{et}", lambda: ours_failover(mode, kills, hb, et))
            systems[mode] = failover_row(r, et)
        ref = systems.get("etcd", {})
        for name, row in systems.items():
            if name != "etcd" and "median_ms" in row and "median_ms" in ref:
                row["over_etcd"] = {
                    "median": round(row["median_ms"] / ref["median_ms"], 2),
                    "p99": round(row["p99_ms"] / ref["p99_ms"], 2),
                }
        rows.append(
            {"heartbeat_interval_ms": hb, "election_timeout_ms": et, "nodes": NODES, "kills": kills, "systems": systems}
        )
        for name, row in systems.items():
            log(
                f"  {name:8} "
                + (
                    f"median {row['median_ms']} p99 {row['p99_ms']} max {row['worst_ms']} ms"
                    if "median_ms" in row
                    else ""
                )
                + (f" FAILED: {row['error']}" if "error" in row else "")
            )
    return rows


# ---- cold start ---------------------------------------------------------------------------------


AGREED_LINE = re.compile(r"agreed: node (\d+) leads epoch (\d+) \((\d+) ms after launch\)")


def cli_cold_start(direct: bool, runs: int, mode: str = "quorum") -> dict:
    """`bullyproof cluster up --detach` as a process: from its launch to its exit (it exits once it saw
    every node agree, polling every 20 ms), then `cluster down`. Its own "ms after launch" beside."""
    wall_s: list[float] = []
    reported_ms: list[int] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bullyproof-bench-up-") as tmp:
            argv = LocalCluster.python_argv(
                ["cluster", "up", "--detach", "--nodes", str(NODES), "--mode", mode, "--dir", tmp]
                + (["--direct"] if direct else [])
            )
            t0 = time.monotonic()
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
                elapsed = time.monotonic() - t0
            finally:
                subprocess.run(
                    LocalCluster.python_argv(["cluster", "down", "--dir", tmp]), capture_output=True, timeout=60
                )
            if done.returncode != 0:
                raise RuntimeError(f"{shlex.join(argv[2:])} exited {done.returncode}: {done.stderr.strip()[-500:]}")
            wall_s.append(elapsed)
            m = AGREED_LINE.search(done.stdout)
            if m:
                reported_ms.append(int(m.group(3)))
    return {
        "command": f"bullyproof cluster up --detach --nodes {NODES} --mode {mode}" + (" --direct" if direct else ""),
        "runs": runs,
        **summary_ms(wall_s),
        "samples_ms": [round(x * 1000) for x in wall_s],
        "cli_reported_ms": reported_ms,
    }


def etcd_cold_start(etcd: Path, runs: int) -> dict:
    samples = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bullyproof-bench-etcd-") as tmp:
            cluster = EtcdCluster(etcd, Path(tmp))
            t0 = time.monotonic()
            cluster.start()
            try:
                cluster.wait_for_agreement(30)
                samples.append(time.monotonic() - t0)
            finally:
                cluster.stop()
    return {
        "command": f"{NODES} etcd processes started together (no CLI)",
        "runs": runs,
        **summary_ms(samples),
        "samples_ms": [round(x * 1000) for x in samples],
    }


def bench_cold_start(runs: int, etcd: Path | None) -> dict:
    out = {}
    for name, direct in (("toxiproxy", False), ("direct", True)):
        log(f"cold start: cluster up{' --direct' if direct else ''}, {runs} runs")
        out[name] = guarded(f"cold start {name}", lambda: cli_cold_start(direct, runs))
    if etcd is not None:
        log(f"cold start: etcd, {runs} runs")
        out["etcd"] = guarded("cold start etcd", lambda: etcd_cold_start(etcd, runs))
    return out


# ---- idle cost ----------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def memory_kb(pid: int) -> dict[str, int]:
    """RSS (VmRSS) and PSS (shared pages split among their users: the Python nodes share a lot)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            out["rss_kb"] = int(line.split()[1])
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss_kb"] = int(line.split()[1])
    return out


def idle_cost(pids: dict[str, int], seconds: float) -> dict[str, dict]:
    before = {name: cpu_ticks(pid) for name, pid in pids.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    out = {}
    for name, pid in pids.items():
        cpu = (cpu_ticks(pid) - before[name]) / CLK_TCK / elapsed * 100
        mem = memory_kb(pid)
        out[name] = {
            "cpu_percent": round(cpu, 2),
            "rss_mb": round(mem["rss_kb"] / 1024, 1),
            **({"pss_mb": round(mem["pss_kb"] / 1024, 1)} if "pss_kb" in mem else {}),
        }
    return out


def per_member(per_process: dict[str, dict], leader: str | None) -> dict:
    members = {k: v for k, v in per_process.items() if k != "store"}
    cpu = [v["cpu_percent"] for v in members.values()]
    rss = [v["rss_mb"] for v in members.values()]
    row: dict[str, Any] = {
        "cpu_percent_mean": round(statistics.mean(cpu), 2),
        "cpu_percent_max": max(cpu),
        "rss_mb_mean": round(statistics.mean(rss), 1),
        "rss_mb_max": max(rss),
        "leader": leader,
        "per_process": per_process,
    }
    if leader in members:
        row["leader_cpu_percent"] = members[leader]["cpu_percent"]
        row["followers_cpu_percent_mean"] = round(
            statistics.mean(v["cpu_percent"] for k, v in members.items() if k != leader), 2
        )
    if all("pss_mb" in v for v in members.values()):
        row["pss_mb_mean"] = round(statistics.mean(v["pss_mb"] for v in members.values()), 1)
    return row


IDLE_AS_CLUSTER_UP = "quorum as cluster up runs it"


def idle_rows(modes: list[str]) -> list[tuple[str, str, bool]]:
    """(row name, mode, as `cluster up` runs it): every mode as etcd runs here (plaintext, the election
    alone: no client writes), and quorum as `cluster up` runs it (mutual TLS, the leader writing the
    fenced store every write period)."""
    rows = [(mode, mode, False) for mode in modes]
    return rows + ([(IDLE_AS_CLUSTER_UP, "quorum", True)] if "quorum" in modes else [])


def bench_idle(
    modes: list[str],
    seconds: float,
    settle_s: float,
    etcd: Path | None,
    heartbeat_ms: int = DEFAULT_TIMING.heartbeat_interval_ms,
    election_ms: int = DEFAULT_TIMING.election_timeout_ms,
) -> dict:
    """Each bullyproof row measured in the same window as a settled etcd cluster that runs throughout:
    both see the same machine, so a row's ratio to etcd does not depend on what else ran before or
    after it (idle CPU at 1 % moves by a third between windows on a shared machine). The etcd row is
    the mean over those windows."""
    out: dict[str, Any] = {
        "heartbeat_interval_ms": heartbeat_ms,
        "election_timeout_ms": election_ms,
        "seconds": seconds,
        "nodes": NODES,
        "paired_with_etcd": False,  # set once etcd runs beside the rows
    }
    with contextlib.ExitStack() as stack:
        etcd_cluster: EtcdCluster | None = None
        if etcd is not None:
            log("idle: starting etcd, measured beside every row")

            def start_etcd() -> dict:
                nonlocal etcd_cluster
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bullyproof-bench-etcd-"))
                cluster = EtcdCluster(etcd, Path(tmp), NODES, heartbeat_ms, election_ms)
                cluster.start()
                stack.callback(cluster.stop)
                cluster.wait_for_agreement(30)
                etcd_cluster = cluster
                return {}

            started = guarded("idle etcd", start_etcd)
            if "error" in started:
                out["etcd"] = started
            out["paired_with_etcd"] = etcd_cluster is not None
        etcd_windows: list[dict] = []
        for name, mode, as_cluster_up in idle_rows(modes):
            log(f"idle: bullyproof {name}{' beside etcd' if etcd_cluster else ''}, {seconds:.0f} s")

            def measure(mode: str = mode, as_cluster_up: bool = as_cluster_up) -> dict:
                with tempfile.TemporaryDirectory(prefix="bullyproof-bench-") as tmp:
                    certs = str(Path(tmp) / "certs") if as_cluster_up else None
                    spec = replace(
                        local_spec(NODES, mode, heartbeat_ms, election_ms, certs_dir=certs), leader_writes=as_cluster_up
                    )
                    cluster = LocalCluster(spec, Path(tmp))
                    cluster.start()
                    try:
                        leader, _ = cluster.wait_for_agreement(30, interval_s=0.05)
                        time.sleep(settle_s)
                        data = read_cluster_file(cluster.dir)
                        ours = {f"node-{n['id']}": n["pid"] for n in data["nodes"]}
                        ours |= {"store": data["store"]["pid"]} if as_cluster_up else {}
                        theirs = etcd_cluster.pids() if etcd_cluster else {}
                        # etcd's leader as this window begins (it may have changed since the last one).
                        etcd_leader = etcd_cluster.members[etcd_cluster.wait_for_agreement(30)].name if theirs else ""
                        cost = idle_cost(ours | {f"etcd:{k}": v for k, v in theirs.items()}, seconds)
                        row = per_member({k: cost[k] for k in ours}, f"node-{leader}")
                        if etcd_cluster:
                            beside = per_member({k: cost[f"etcd:{k}"] for k in theirs}, etcd_leader)
                            etcd_windows.append(beside)
                            row["etcd_cpu_percent_mean"] = beside["cpu_percent_mean"]
                            row["vs_etcd"] = round(row["cpu_percent_mean"] / max(beside["cpu_percent_mean"], 0.01), 2)
                        return row
                    finally:
                        cluster.stop()

            out[name] = guarded(f"idle {name}", measure)
        if etcd_windows:
            out["etcd"] = {**etcd_windows[0], **_mean_of_windows(etcd_windows)}
        elif etcd_cluster is not None:
            out["etcd"] = {"error": "no bullyproof row ran, so etcd was measured in no window"}
    # What Python's gRPC alone costs at this heartbeat: the floor under every row above.
    out["grpc_floor"] = bench_grpc_floor(seconds, settle_s, heartbeat_ms)
    return out


def _mean_of_windows(windows: list[dict]) -> dict:
    """The numbers per_member gives, averaged over several windows of the same cluster."""
    keys = ("cpu_percent_mean", "leader_cpu_percent", "followers_cpu_percent_mean", "rss_mb_mean", "pss_mb_mean")
    out: dict[str, Any] = {"windows": len(windows)}
    for key in keys:
        values = [w[key] for w in windows if key in w]
        if values:
            out[key] = round(statistics.mean(values), 2)
    for key in ("cpu_percent_max", "rss_mb_max"):
        out[key] = max(w[key] for w in windows)
    out["cpu_percent_windows"] = [w["cpu_percent_mean"] for w in windows]
    return out


def bench_grpc_floor(seconds: float, settle_s: float, heartbeat_ms: int = DEFAULT_TIMING.heartbeat_interval_ms) -> dict:
    """bench.grpc_floor, unary and stream: a bare Python gRPC echo at one message per heartbeat."""
    out: dict[str, Any] = {}
    for kind in grpc_floor.KINDS:
        log(f"idle: the Python gRPC floor ({kind}), {seconds:.0f} s")

        def measure(kind: str = kind) -> dict:
            argv = [sys.executable, "-m", "bench.grpc_floor"]
            procs: list[subprocess.Popen] = []
            try:
                server = subprocess.Popen(
                    argv + ["serve"], stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True
                )
                procs.append(server)
                port = int(server.stdout.readline().split()[1])  # type: ignore[union-attr]
                sender = subprocess.Popen(
                    argv + ["send", f"127.0.0.1:{port}", kind, str(heartbeat_ms)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                    start_new_session=True,
                )
                procs.append(sender)
                if sender.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                    raise RuntimeError(f"the {kind} sender did not connect")
                time.sleep(settle_s)
                cost = idle_cost({"server": server.pid, "sender": sender.pid}, seconds)
                sender.stdin.close()  # type: ignore[union-attr]
                echoes = int(sender.stdout.readline().split()[1])  # type: ignore[union-attr]
            finally:
                stop_pids([p.pid for p in procs])
            per_second = 1000 / heartbeat_ms
            return {
                **cost,
                "echoes": echoes,
                "messages_per_s": per_second,
                **{
                    f"{who}_cpu_us_per_message": round(cost[who]["cpu_percent"] / 100 * 1e6 / per_second)
                    for who in ("server", "sender")
                },
            }

        out[kind] = guarded(f"gRPC floor {kind}", measure)
    return out


# ---- failover as n grows --------------------------------------------------------------------------


def bench_sizes(sizes: list[int], kills: int, hb: int, et: int, mode: str = "quorum") -> list[dict]:
    rows = []
    for n in sizes:
        log(f"sizes: {mode} n={n}, {kills} kills at {hb}/{et} ms")
        r = guarded(f"sizes n={n}", lambda: ours_failover(mode, kills, hb, et, nodes=n))
        row = {"mode": mode, "n": n, "heartbeat_interval_ms": hb, "election_timeout_ms": et}
        rows.append({**row, **failover_row(r, et)})
    return rows


# ---- GetLeader under ghz ----------------------------------------------------------------------------


def ghz_run(ghz: Path, address: str, requests: int, concurrency: int) -> dict:
    argv = [
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
        "--total",
        str(requests),
        "--timeout",
        "5s",
        "--format",
        "json",
        address,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"ghz exited {done.returncode}: {done.stderr.strip()[-500:]}")
    report = json.loads(done.stdout)
    lat = {f"p{int(d['percentage'])}_ms": round(d["latency"] / 1e6, 3) for d in report.get("latencyDistribution") or []}
    return {
        "requests": report["count"],
        "concurrency": concurrency,
        "throughput_per_s": round(report["rps"]),
        "average_ms": round(report["average"] / 1e6, 3),
        "slowest_ms": round(report["slowest"] / 1e6, 3),
        **{k: lat[k] for k in ("p50_ms", "p90_ms", "p99_ms") if k in lat},
        "status_codes": report.get("statusCodeDistribution", {}),
    }


def bench_query(ghz: Path, requests: int, concurrency: int, mode: str = "quorum") -> dict:
    with tempfile.TemporaryDirectory(prefix="bullyproof-bench-") as tmp:
        cluster = LocalCluster(local_spec(NODES, mode), Path(tmp))
        cluster.start()
        try:
            leader, _ = cluster.wait_for_agreement(30)
            follower = min(n for n in cluster.client_addresses() if n != leader)
            out: dict[str, Any] = {"tool": "ghz", "nodes": NODES, "mode": mode}
            for role, nid in (("leader_node", leader), ("follower_node", follower)):
                log(f"query: ghz GetLeader on the {role.split('_')[0]}, {requests} requests, concurrency {concurrency}")
                out[role] = ghz_run(ghz, cluster.spec.node(nid).client_address, requests, concurrency)
            out["leader_after"] = cluster.wait_for_agreement(30)[0]
            out["leader_kept"] = out["leader_after"] == leader
            return out
        finally:
            cluster.stop()


# ---- the chaos suite's wall time ----------------------------------------------------------------------


def bench_suite(workers: tuple[str, ...] = ("0", "2")) -> dict:
    out = {}
    for n in workers:
        argv = [sys.executable, "-m", "pytest", "tests/chaos", "-q", "-n", n, "-p", "no:cacheprovider"]
        log(f"suite: {shlex.join(argv[2:])}")
        t0 = time.monotonic()
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=3 * 3600)
        elapsed = time.monotonic() - t0
        lines = [ln for ln in done.stdout.strip().splitlines() if ln.strip()]
        out[f"n{n}"] = {
            "command": f"pytest tests/chaos -n {n}",
            "seconds": round(elapsed, 1),
            "exit_code": done.returncode,
            "summary": lines[-1].strip("= ") if lines else "",
        }
        log(f"  {out[f'n{n}']['summary']} in {elapsed:.0f} s")
    return out


# ---- the machine, the report -------------------------------------------------------------------------


def machine(etcd_version: str | None, ghz_version: str | None) -> dict:
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "etcd": etcd_version,
        "ghz": ghz_version,
        "bullyproof_commit": commit or None,
        "loadavg_at_start": os.getloadavg()[0],
    }


def _fmt(x: Any, unit: str = "") -> str:
    return "–" if x is None else f"{x}{unit}"


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# bullyproof beside etcd",
        "",
        f"`{result['command']}` on {m['date']}: {m['nproc']} cores ({m['cpu_model']}), Linux {m['kernel']}, "
        f"Python {m['python']}, etcd {_fmt(m['etcd'])}, ghz {_fmt(m['ghz'])}, bullyproof {m['bullyproof_commit']}; "
        f"load average {m['loadavg_at_start']:.2f} at the start, {result.get('loadavg_at_end', 0):.2f} at the end "
        f"(a shared machine: other work ran beside it). {result['seconds']:.0f} s in all.",
        "",
    ]
    if isinstance(result["failover"], list) and result["failover"]:
        lines += [
            "## Failover: SIGKILL the leader → every survivor names the same new leader",
            "",
            f"{NODES} members on loopback, each asked every 10 ms on a fresh gRPC channel (GetLeader; etcd's "
            "Maintenance.Status); the killed member restarts and rejoins before the next kill. etcd runs with "
            "`--heartbeat-interval` and `--election-timeout` set to ours, every other flag at its default (in 3.4: "
            "no pre-vote). bullyproof nodes run with their fenced store, as `cluster up` starts them. "
            "ET = election timeout; with 30 kills p99 is the worst kill (nearest rank). "
            '"vs etcd": ours over etcd\'s, from the same run.',
            "",
            "| heartbeat / ET | system | kills | min | median | p90 | p99 | max | median / ET | p99 / ET | "
            "median vs etcd | p99 vs etcd |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        notes = []
        for row in result["failover"]:
            for name, s in row["systems"].items():
                setting = f"{row['heartbeat_interval_ms']} / {row['election_timeout_ms']} ms"
                who = "etcd" if name == "etcd" else f"bullyproof {name}"
                if "error" in s:
                    notes.append(
                        f"{who} at {setting}: {s['error']}" + (f" (logs: `{s['kept']}`)" if "kept" in s else "")
                    )
                    who += f" [{len(notes)}]"
                if "median_ms" not in s:
                    lines.append(f"| {setting} | {who} | {s.get('kills', 0)} | failed | | | | | | | | |")
                    continue
                ratio = s.get("over_etcd", {})
                lines.append(
                    f"| {setting} | {who} | {s['kills']} | {s['min_ms']:.0f} | **{s['median_ms']:.0f}** | "
                    f"{s['p90_ms']:.0f} | "
                    f"{s['p99_ms']:.0f} | {s['worst_ms']:.0f} | {s['median_over_et']:.2f} | {s['p99_over_et']:.2f} | "
                    f"{_fmt(ratio.get('median'), ' ×')} | {_fmt(ratio.get('p99'), ' ×')} |"
                )
        lines.append("")
        lines += [f"[{i}] {note}" + "  " * (i < len(notes)) for i, note in enumerate(notes, 1)] + (
            [""] if notes else []
        )
    cs = result["cold_start"]
    if isinstance(cs, dict) and "skipped" not in cs:
        lines += [
            "## Cold start: launch → every member names the same leader (5 members)",
            "",
            "| how | runs | min | median | max |",
            "|---|---|---|---|---|",
        ]
        for name, s in cs.items():
            if "error" in s:
                lines.append(f"| {name} | failed: {s['error'][:80]} | | | |")
            else:
                lines.append(
                    f"| `{s['command']}` | {s['runs']} | {s['min_ms']:.0f} ms | **{s['median_ms']:.0f} ms** | "
                    f"{s['worst_ms']:.0f} ms |"
                )
        lines.append("")
    idle = result["idle"]
    if isinstance(idle, dict) and "skipped" not in idle:
        lines += [
            f"## Idle cost per member: {idle['seconds']:.0f} s of a settled cluster at "
            f"{idle['heartbeat_interval_ms']} / {idle['election_timeout_ms']} ms",
            "",
            "CPU is utime + stime from /proc over the window, in % of one core. RSS counts shared pages in every "
            "process; PSS splits them. "
            + (
                "etcd runs throughout and is measured in the same window as each bullyproof row (its own row is the "
                "mean over those windows; `etcd beside` is the window's), so `vs etcd` compares one window. "
                if idle.get("paired_with_etcd")
                else ""
            )
            + "etcd and the mode rows run plaintext and do the election alone (no client writes); "
            f"`{IDLE_AS_CLUSTER_UP}` runs mutual TLS and its leader writes the fenced store every write period "
            "(the store process is listed apart).",
            "",
            "| system | CPU mean | etcd beside | vs etcd | CPU leader | CPU followers | RSS mean | RSS max | "
            "PSS mean | store CPU | store RSS |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, s in idle.items():
            if not isinstance(s, dict) or name == "grpc_floor":
                continue
            who = "etcd" if name == "etcd" else f"bullyproof {name}"
            if "error" in s:
                lines.append(f"| {who} | failed: {s['error'][:80]} | | | | | | | | | |")
                continue
            store = s["per_process"].get("store", {})
            lines.append(
                f"| {who} | **{s['cpu_percent_mean']} %** | {_fmt(s.get('etcd_cpu_percent_mean'), ' %')} | "
                f"{_fmt(s.get('vs_etcd'), ' ×')} | {_fmt(s.get('leader_cpu_percent'), ' %')} | "
                f"{_fmt(s.get('followers_cpu_percent_mean'), ' %')} | **{s['rss_mb_mean']} MB** | "
                f"{s['rss_mb_max']} MB | "
                f"{_fmt(s.get('pss_mb_mean'), ' MB')} | {_fmt(store.get('cpu_percent'), ' %')} | "
                f"{_fmt(store.get('rss_mb'), ' MB')} |"
            )
        lines.append("")
        floor = idle.get("grpc_floor", {})
        if floor:
            lines += [
                "The floor under those rows: a bare Python gRPC echo server (no bullyproof code) and one sender at one "
                f"40-byte message per {idle['heartbeat_interval_ms']} ms, as unary calls and on one open stream "
                "(bench/grpc_floor.py). An idle follower receives and answers one heartbeat per interval, so it "
                "cannot cost less than the server column.",
                "",
                "| Python gRPC alone | server CPU (a follower's floor) | per message | "
                "sender CPU (a leader's, per follower) | per message | echoes |",
                "|---|---|---|---|---|---|",
            ]
            for kind, f in floor.items():
                if "error" in f:
                    lines.append(f"| {kind} | failed: {f['error'][:80]} | | | | |")
                    continue
                lines.append(
                    f"| {kind} | **{f['server']['cpu_percent']} %** | {f['server_cpu_us_per_message']} µs | "
                    f"{f['sender']['cpu_percent']} % | {f['sender_cpu_us_per_message']} µs | {f['echoes']} |"
                )
            lines.append("")
    sizes = result["sizes"]
    if isinstance(sizes, list) and sizes:
        r0 = sizes[0]
        lines += [
            f"## Failover as n grows: {r0['mode']}, {r0['heartbeat_interval_ms']} / {r0['election_timeout_ms']} ms",
            "",
            "| n | kills | min | median | p90 | max | median / ET | cold start |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in sizes:
            if "median_ms" not in s:
                lines.append(f"| {s['n']} | failed: {s.get('error', '')[:100]} | | | | | | |")
            else:
                lines.append(
                    f"| {s['n']} | {s['kills']}{' (then timed out)' if 'error' in s else ''} | {s['min_ms']:.0f} | "
                    f"**{s['median_ms']:.0f}** | "
                    f"{s['p90_ms']:.0f} | {s['worst_ms']:.0f} | {s['median_over_et']:.2f} | "
                    f"{s['cold_start_ms']:.0f} ms |"
                )
        lines.append("")
    q = result["query"]
    if isinstance(q, dict) and "skipped" not in q:
        lines += ["## GetLeader under ghz (one node of 5, loopback)", ""]
        if "error" in q:
            lines.append(f"failed: {q['error']}")
        else:
            lines += [
                "| node | requests | concurrency | throughput | p50 | p90 | p99 | slowest | status codes |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for role in ("leader_node", "follower_node"):
                s = q[role]
                lines.append(
                    f"| {role.split('_')[0]} | {s['requests']} | {s['concurrency']} | **{s['throughput_per_s']}/s** | "
                    f"{_fmt(s.get('p50_ms'), ' ms')} | {_fmt(s.get('p90_ms'), ' ms')} | "
                    f"{_fmt(s.get('p99_ms'), ' ms')} | "
                    f"{s['slowest_ms']} ms | {', '.join(f'{k} {v}' for k, v in s['status_codes'].items())} |"
                )
        lines.append("")
    suite = result["suite"]
    if isinstance(suite, dict) and "skipped" not in suite:
        lines += ["## The chaos suite's wall time", "", "| command | wall time | result |", "|---|---|---|"]
        for s in suite.values():
            if "error" in s:
                lines.append(f"| – | failed: {s['error'][:80]} | |")
            else:
                lines.append(
                    f"| `{s['command']}` | **{s['seconds']:.0f} s** | {s['summary']} (exit {s['exit_code']}) |"
                )
        lines.append("")
    lines += false_alarms.markdown(result)
    skipped = [f"{k} ({v['skipped']})" for k, v in result.items() if isinstance(v, dict) and "skipped" in v]
    if skipped:
        lines += ["Not measured in this run: " + "; ".join(skipped) + ".", ""]
    return "\n".join(lines)


def plot_failover(row: dict, path: Path) -> None:
    """CDF of failover times at one setting: etcd (black) against each bullyproof mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    et = row["election_timeout_ms"]
    for i, (name, s) in enumerate(row["systems"].items()):
        samples = sorted(s.get("samples_ms") or [])
        if not samples:
            continue
        etcd = name == "etcd"
        ax.step(
            [samples[0], *samples],
            [0, *((k + 1) / len(samples) for k in range(len(samples)))],
            where="post",
            label="etcd" if etcd else f"bullyproof {name}",
            color="black" if etcd else f"C{i}",
            linewidth=2.2 if etcd else 1.5,
            linestyle="-" if etcd else "--",
        )
    ax.axvline(et, color="grey", linestyle=":", linewidth=1)
    ax.text(et, 0.02, " election timeout", color="grey", fontsize=8)
    ax.set_xlabel("SIGKILL of the leader → every survivor names the new leader (ms)")
    ax.set_ylabel("cumulative fraction of kills")
    ax.set_title(
        f"Failover, {row['nodes']} members, heartbeat {row['heartbeat_interval_ms']} ms, "
        f"election timeout {et} ms, {row['kills']} kills each",
        fontsize=10,
    )
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "bench.md").write_text(markdown(result))
    for row in result["failover"] if isinstance(result["failover"], list) else []:
        plot_failover(row, out / f"failover-{row['heartbeat_interval_ms']}-{row['election_timeout_ms']}.png")


# ---- the command ---------------------------------------------------------------------------------------


def parse_settings(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        hb, sep, et = item.strip().partition("/")
        if not sep or not hb.isdigit() or not et.isdigit():
            raise argparse.ArgumentTypeError(f"a setting is HEARTBEAT_MS/ELECTION_TIMEOUT_MS, got {item!r}")
        if int(et) < 5 * int(hb):  # etcd refuses less; our nodes need 3 x
            raise argparse.ArgumentTypeError(f"{item}: etcd needs an election timeout of at least 5 heartbeats")
        out.append((int(hb), int(et)))
    return out


def parse_list(text: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if allowed is not None and x not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)} (choose from {', '.join(allowed or ())})")
    return items


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bullyproof bench",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[5:]),
    )
    p.add_argument("--kills", type=int, help="failover: kills per system and setting (default 30; --quick 3)")
    p.add_argument(
        "--settings", type=parse_settings, help="HB/ET,... in ms (default 100/500,100/1000,50/500; --quick 100/500)"
    )
    p.add_argument(
        "--modes",
        type=lambda t: parse_list(t, mode_names()),
        help=f"bullyproof modes (default {','.join(mode_names())})",
    )
    p.add_argument(
        "--sizes",
        type=lambda t: [int(x) for x in parse_list(t)],
        help="n for failover as n grows (default 3,5,9,15,25; --quick 3,5)",
    )
    p.add_argument("--size-kills", type=int, help="kills per size (default a third of --kills, at least 5; --quick 2)")
    p.add_argument("--cold-start-runs", type=int, help="runs per way of starting (default 5; --quick 1)")
    p.add_argument("--idle-s", type=float, help="idle measuring window (default 30 s; --quick 2 s)")
    p.add_argument("--requests", type=int, help="ghz requests per node (default 10000; --quick 500)")
    p.add_argument("--concurrency", type=int, default=50, help="ghz concurrent workers (default 50)")
    p.add_argument("--out", type=Path, default=Path("results/bench"), help="results folder (default results/bench)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: few kills, one setting, no suite; etcd and ghz only if already installed",
    )
    p.add_argument(
        "--skip",
        type=lambda t: parse_list(t, PARTS + ("etcd",)),
        default=[],
        help=f"parts to leave out: {', '.join(PARTS)}, or etcd (bullyproof only)",
    )
    p.add_argument("--skip-suite", action="store_true", help="same as --skip suite (the chaos suite takes long)")
    false_alarms.add_arguments(p)
    return p


def setup(tools: ModuleType, want_etcd: bool, want_ghz: bool, want_toxiproxy: bool, quick: bool) -> dict[str, Any]:
    """The external tools, installed when missing (in --quick mode only used if already there)."""
    found: dict[str, Any] = {"etcd": None, "etcd_version": None, "ghz": None, "skipped": {}}
    if want_etcd:
        if quick and not tools.etcd_installed():
            found["skipped"]["etcd"] = "not installed (--quick does not install it)"
        else:
            found["etcd"] = tools.etcd_path()
            found["etcd_version"] = tools.etcd_version()
    if want_ghz:
        if quick and not tools.ghz_installed():
            found["skipped"]["query"] = "ghz not installed (--quick does not install it)"
        else:
            found["ghz"] = tools.ghz_path()
    if want_toxiproxy:
        tools.toxiproxy_server_path()
    return found


def main(argv: list[str], tools: ModuleType, toxiproxy: ModuleType | None = None) -> int:
    """`tools`, `toxiproxy`: chaos.tools and chaos.toxiproxy, handed in by the CLI (node/ never imports chaos/)."""
    args = build_parser().parse_args(argv)
    stop_on_signals()  # SIGTERM too unwinds through each part's clean-up: no cluster, etcd or Toxiproxy left behind
    q = args.quick
    kills = args.kills or (3 if q else 30)
    settings = args.settings or (list(DEFAULT_SETTINGS[:1]) if q else list(DEFAULT_SETTINGS))
    modes = args.modes or mode_names()
    sizes = args.sizes or ([3, 5] if q else list(DEFAULT_SIZES))
    size_kills = args.size_kills or (2 if q else max(5, kills // 3))
    runs = args.cold_start_runs or (1 if q else 5)
    idle_s = args.idle_s or (2.0 if q else 30.0)
    requests = args.requests or (500 if q else 10000)
    skip = set(args.skip) | ({"suite"} if args.skip_suite or q else set())
    t0 = time.monotonic()
    try:
        found = setup(
            tools,
            want_etcd="etcd" not in skip and bool({"failover", "cold-start", "idle", false_alarms.PART} - skip),
            want_ghz="query" not in skip,
            want_toxiproxy=bool({"cold-start", false_alarms.PART} - skip),
            quick=q,
        )
    except tools.ToolInstallError as exc:
        print(f"bullyproof bench: error: could not set up the tools: {exc}", file=sys.stderr)
        return 2
    etcd = found["etcd"]
    result: dict[str, Any] = {
        "command": "bullyproof bench " + shlex.join(argv) if argv else "bullyproof bench",
        "machine": machine(found["etcd_version"], tools.GHZ_VERSION if found["ghz"] else None),
        "settings": [f"{hb}/{et}" for hb, et in settings],
        "modes": modes,
    }
    reasons = {p: "--skip" for p in skip if p in PARTS} | found["skipped"]
    if "etcd" in skip:
        result["etcd"] = {"skipped": "--skip etcd"}
    elif "etcd" in found["skipped"]:
        result["etcd"] = {"skipped": found["skipped"].pop("etcd")}
        reasons.pop("etcd", None)
    result["failover"] = (
        {"skipped": reasons["failover"]} if "failover" in reasons else bench_failover(settings, modes, kills, etcd)
    )
    result["cold_start"] = (
        {"skipped": reasons["cold-start"]} if "cold-start" in reasons else bench_cold_start(runs, etcd)
    )
    result["idle"] = (
        {"skipped": reasons["idle"]} if "idle" in reasons else bench_idle(modes, idle_s, 1.0 if q else 3.0, etcd)
    )
    hb, et = settings[0]
    result["sizes"] = {"skipped": reasons["sizes"]} if "sizes" in reasons else bench_sizes(sizes, size_kills, hb, et)
    result["query"] = (
        {"skipped": reasons["query"]}
        if "query" in reasons
        else guarded("query", lambda: bench_query(found["ghz"], requests, args.concurrency))
    )
    result["false_alarms"] = (
        {"skipped": reasons.get(false_alarms.PART, "no Toxiproxy client handed in")}
        if false_alarms.PART in reasons or toxiproxy is None
        else guarded(false_alarms.PART, lambda: false_alarms.bench(args, q, etcd, toxiproxy))
    )
    if q and "suite" not in args.skip and not args.skip_suite:
        reasons["suite"] = "--quick"
    result["suite"] = {"skipped": reasons["suite"]} if "suite" in reasons else guarded("suite", bench_suite)
    result["loadavg_at_end"] = os.getloadavg()[0]
    result["seconds"] = round(time.monotonic() - t0, 1)
    write(result, args.out)
    print((args.out / "bench.md").read_text())
    log(f"wrote {args.out}/bench.json, bench.md and the failover CDF plots in {result['seconds']:.0f} s")
    return 0
