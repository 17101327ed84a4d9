"""Commands on a local cluster's processes: `cluster up|down`, `kill`, `pause`, `resume`, `restart`,
and `dashboard` beside it."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from node.argtypes import positive
from node.config import INSECURE_WARNING, ConfigError, check_timings
from node.core import DEFAULT_MODE, mode_names

from .ask import cluster_record
from .options import DEFAULT_DIR, cluster_source, dashboard_args, mode_option_arg, timing_args
from .registry import Command


def cluster_arguments(p: argparse.ArgumentParser) -> None:
    csub = p.add_subparsers(dest="cluster_command", required=True)
    up = csub.add_parser(
        "up",
        help="start N nodes and the store; print leadership changes until Ctrl-C",
        description="Start N nodes, the store and Toxiproxy, wait for an agreed leader, then print leadership changes. "
        "SIGINT (Ctrl-C) or SIGTERM, at any instant, stops everything it started and exits: 0 once the "
        "cluster was up (a leader agreed), 130 (SIGINT) or 143 (SIGTERM) if it was still starting, "
        "2 if it could not start. After a launcher killed outright, `cluster down` stops what it left.",
    )
    up.add_argument("--nodes", type=positive, default=5)
    up.add_argument(
        "--spares",
        type=int,
        default=0,
        metavar="K",
        help="quorum: K more nodes (ids after --nodes), started outside the configuration, to add with "
        "`bullyproof member add` (default 0)",
    )
    up.add_argument("--mode", choices=mode_names(), default=DEFAULT_MODE)
    up.add_argument("--dir", default=DEFAULT_DIR, help=f"run directory (default {DEFAULT_DIR})")
    timing_args(up)
    up.add_argument(
        "--direct", action="store_true", help="no Toxiproxy: nodes dial each other directly (no network faults)"
    )
    up.add_argument(
        "--detach", action="store_true", help="start, wait for a leader, and return (stop with cluster down)"
    )
    mode_option_arg(up)
    up.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext, no certificates (default: mutual TLS with certificates made in DIR/certs)",
    )
    up.add_argument("--dashboard", action="store_true", help="also serve the live dashboard (prints its URL)")
    dashboard_args(up, prefix="dashboard-")
    down = csub.add_parser("down", help="stop everything a cluster up started (also after its launcher was killed)")
    down.add_argument("--dir", default=DEFAULT_DIR)


def cmd_cluster(args: argparse.Namespace) -> int:
    return cmd_cluster_up(args) if args.cluster_command == "up" else cmd_cluster_down(args)


def _stamp() -> str:
    t = time.time()
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


class _Follower:
    """Tails every node's events file and prints one line per leadership change."""

    def __init__(self, data: dict) -> None:
        from node.launcher.tail import JsonLinesTail

        self.tails = [JsonLinesTail(n["events"]) for n in data["nodes"]]

    def poll(self) -> None:
        for tail in self.tails:
            for ev in tail.poll():
                if ev.get("kind") != "view":
                    continue
                if ev["role"] == "leader":
                    print(f"{_stamp()}  node {ev['node']} leads  epoch {ev['epoch']}", flush=True)
                elif ev.get("reason") in ("lease_expired", "higher_leader", "resigned", "preempted"):
                    print(
                        f"{_stamp()}  node {ev['node']} stepped down  epoch {ev['epoch']} ({ev['reason']})", flush=True
                    )


def cmd_cluster_up(args: argparse.Namespace) -> int:
    from node.launcher.stopping import StopSignal, begin_stop, stop_on_signals

    stop_on_signals()  # first: from here on SIGINT or SIGTERM stops what was started so far (below)
    from chaos.harness import ChaosCluster  # composition root, see main()
    from node.launcher.cluster import read_cluster_file

    check_timings(args.heartbeat_interval_ms, args.election_timeout_ms)
    if args.dashboard and args.detach:
        raise ConfigError(
            "--dashboard serves the page from this process: drop --detach, or run "
            "`bullyproof dashboard --dir DIR` beside a detached cluster"
        )
    page = None
    if args.spares < 0:
        raise ConfigError(f"--spares must be >= 0, got {args.spares}")
    cc = ChaosCluster(
        Path(args.dir),
        args.nodes,
        args.mode,
        args.heartbeat_interval_ms,
        args.election_timeout_ms,
        direct=args.direct,
        mode_options=tuple(args.mode_option),
        insecure=args.insecure,
        spares=args.spares,
    )
    agreed = False

    def stop_all() -> None:
        begin_stop()  # a second Ctrl-C, or a SIGTERM after a failed start, must not cut this short
        if page is not None:
            page.stop()
        cc.stop()  # every process of the run directory, recorded in cluster.json yet or not

    try:
        if args.dashboard:
            from dashboard.server import Background  # composition root, as for chaos

            page = Background(args.dashboard_host, args.dashboard_port)  # a taken port fails before anything starts
        t0 = time.monotonic()
        cc.start(launcher_pid=None if args.detach else os.getpid())
        data = read_cluster_file(cc.directory)
        wiring = "direct links" if args.direct else f"every link through Toxiproxy at {data['toxiproxy_api']}"
        print(
            f"cluster up: {args.nodes} nodes ({args.mode}), store at {data['store']['address']}, {wiring}, "
            f"dir {cc.directory}",
            flush=True,
        )
        if args.insecure:
            print(f"warning: {INSECURE_WARNING}", flush=True)
        else:
            print(
                f"mutual TLS: certificates in {data['certs']} "
                "(admin.pem/.key may resign and transfer; client.pem/.key may read)",
                flush=True,
            )
        print(f"stop with Ctrl-C or: bullyproof cluster down --dir {args.dir}", flush=True)
        if page is not None:
            page.start(cc.directory)
            for line in (page.warning, f"dashboard: {page.url}"):
                if line:
                    print(line, flush=True)
        try:
            leader, epoch = cc.wait_for_leader(timeout_s=15.0)
        except TimeoutError as exc:
            raise ConfigError(f"{exc}; see the logs in {cc.directory}/node-*/node.log") from None
        print(
            f"{_stamp()}  agreed: node {leader} leads epoch {epoch} "
            f"({(time.monotonic() - t0) * 1000:.0f} ms after launch)",
            flush=True,
        )
        agreed = True
        if args.detach:
            return 0
        follower = _Follower(data)
        while True:
            follower.poll()
            time.sleep(0.1)
    except StopSignal as stop:
        try:
            if agreed:  # the cluster was up: stopping it is this command's normal end
                print("stopping...", flush=True)
        finally:  # a closed stdout must not skip it
            stop_all()
        if agreed:
            print("stopped", flush=True)
            return 0
        print(
            f"bullyproof: {stop} before the cluster was up: stopped everything it had started in {cc.directory}",
            file=sys.stderr,
            flush=True,
        )
        return stop.exit_status
    except BaseException:  # a failed start or no agreement: nothing this launcher started may outlive it
        stop_all()
        raise


def cmd_dashboard(args: argparse.Namespace) -> int:
    from dashboard.server import serve  # composition root: the only node module that reaches into dashboard/

    if args.nodes:
        from node.launcher.remote import remote_record

        return serve(None, args.host, args.port, remote=remote_record(args, require_answer=False))
    from node.launcher.remote import refuse_stray_tls_flags

    refuse_stray_tls_flags(args)
    return serve(Path(args.dir), args.host, args.port)


def cmd_cluster_down(args: argparse.Namespace) -> int:
    from node.launcher.cluster import (
        pid_alive,
        read_cluster_file,
        run_pids,
        signal_pid,
        start_ticks,
        stop_run,
        wait_for,
    )

    directory = Path(args.dir).resolve()
    try:
        data = read_cluster_file(directory)
    except ConfigError:
        if not run_pids(directory):
            raise
        data = {}  # its launcher was killed before it recorded the cluster; its processes are tagged
    launcher = data.get("launcher_pid")
    # The launcher stops its processes itself (and its page, and then exits); the start time makes
    # sure the pid is still that launcher, not a process that got the number since.
    if launcher and data.get("launcher_start_ticks") and start_ticks(launcher) == data["launcher_start_ticks"]:
        signal_pid(launcher, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):  # a stuck launcher: its processes are stopped below all the same
            wait_for(lambda: not pid_alive(launcher), 20.0, what=f"launcher pid {launcher} to exit")
    stopped = stop_run(directory)  # whatever is left: a launcher killed outright, or none (--detach)
    left = f" ({len(stopped)} processes left by a launcher that never recorded it)" if not data else ""
    print(f"stopped cluster in {args.dir}{left}")
    return 0


def process_arguments(restart: bool):
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("target", help="node id, or 'store'")
        cluster_source(p)
        if restart:
            # One step of a rolling change: the node comes back with these (and keeps them).
            p.add_argument("--election-timeout-ms", type=positive, help="restart the node with this election timeout")
            p.add_argument(
                "--heartbeat-interval-ms", type=positive, help="restart the node with this heartbeat interval"
            )

    return add


def cmd_process(args: argparse.Namespace) -> int:
    timing_ms = {
        f"--{name.replace('_', '-')}": value
        for name in ("election_timeout_ms", "heartbeat_interval_ms")
        if (value := getattr(args, name, None)) is not None
    }
    if timing_ms and args.compose:
        raise ConfigError("new timings on restart are for a local cluster; under compose, change the compose file")
    if args.compose:
        from node.launcher.containers import container_fault

        print(json.dumps(container_fault(cluster_record(args), args.target, args.command)))
        return 0
    from chaos.harness import (
        process_action,
    )  # composition root: recorded in the cluster's history, as the dashboard does

    rec = process_action(Path(args.dir), args.target, args.command, timing_ms=timing_ms or None)
    print(json.dumps({"action": args.command, "target": args.target, "pid": rec["pid"]}))
    return 0


def dashboard_arguments(p: argparse.ArgumentParser) -> None:
    cluster_source(p, by_address=True, compose=False)
    dashboard_args(p)


COMMANDS = [
    Command("cluster", "start or stop a local cluster", cmd_cluster, cluster_arguments),
    *(
        Command(
            action,
            f"{text} a node (or 'store'); under --compose, its container",
            cmd_process,
            process_arguments(action == "restart"),
        )
        for action, text in [
            ("kill", "SIGKILL"),
            ("pause", "SIGSTOP"),
            ("resume", "SIGCONT"),
            ("restart", "SIGKILL and start again"),
        ]
    ),
    Command(
        "dashboard",
        "a live page beside a running cluster: watch it elect, break it from the page",
        cmd_dashboard,
        dashboard_arguments,
    ),
]
