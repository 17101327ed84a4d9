"""`bullyproof`: run a node or the store, start a local cluster, break it, ask who leads."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from node.argtypes import id_list, positive
from node.config import (
    DEFAULT_ELECTION_TIMEOUT_MS,
    DEFAULT_HEARTBEAT_INTERVAL_MS,
    DEFAULT_PREEMPT_HOLD_DOWN_MS,
    DEFAULT_TICK_MS,
    INSECURE_WARNING,
    ConfigError,
    NodeSettings,
    add_tls_args,
    check_timings,
    parse_peers,
    parse_planted_bugs,
    tls_files,
    tls_from_args,
)
from node.core import DEFAULT_MODE, REGISTRY, Mode, mode_info, mode_names
from node.tls import MEMBER_NAME, Identity, TlsError

if TYPE_CHECKING:
    from node.observer import HandoverFailed  # grpc stays out of the CLI's own imports

DEFAULT_DIR = "runs/local"
DEFAULT_COMPOSE_FILE = "docker-compose.yml"
EXIT_STORAGE_FAULT = 3  # `node` stopped because its promise could not be persisted (fail-stop)


def _mode_option_arg(p: argparse.ArgumentParser) -> None:
    takes = "; ".join(f"{m}: {', '.join(info.options)}" for m, info in REGISTRY.items() if info.options)
    p.add_argument(
        "--mode-option", action="append", default=[], metavar="NAME", help=f"a switch of the mode, repeatable ({takes})"
    )


def _timing_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--heartbeat-interval-ms",
        type=positive,
        default=DEFAULT_HEARTBEAT_INTERVAL_MS,
        help=f"leader heartbeat period (default {DEFAULT_HEARTBEAT_INTERVAL_MS})",
    )
    p.add_argument(
        "--election-timeout-ms",
        type=positive,
        default=DEFAULT_ELECTION_TIMEOUT_MS,
        help=f"follower timeout before electing (default {DEFAULT_ELECTION_TIMEOUT_MS})",
    )


DASHBOARD_PORT = 8040  # dashboard.server.DEFAULT_PORT (not imported: the parser must not load the web server)


def _dashboard_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument(
        f"--{prefix}host", default="127.0.0.1", help="address to serve the dashboard on (default 127.0.0.1, loopback)"
    )
    p.add_argument(
        f"--{prefix}port",
        type=int,
        default=DASHBOARD_PORT,
        help=f"its port (default {DASHBOARD_PORT}; 0: any free port)",
    )


def _cluster_source(p: argparse.ArgumentParser, by_address: bool = False, compose: bool = True) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bullyproof", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("node", help="run one node process")
    ident = p.add_mutually_exclusive_group(required=True)
    ident.add_argument("--id", type=positive, help="this node's id (Bully order: highest wins)")
    ident.add_argument(
        "--id-from-hostname",
        action="store_true",
        help="a StatefulSet's pod NAME-N is node N+1; its own entry in --peers is skipped",
    )
    p.add_argument("--listen", required=True, help="HOST:PORT for the Peer service")
    p.add_argument("--client-listen", required=True, help="HOST:PORT for Leadership, health and reflection")
    p.add_argument(
        "--peers",
        default="",
        help="ID=HOST:PORT,... (every other node it may talk to; may be left out with --peer-address-template)",
    )
    p.add_argument("--mode", choices=mode_names(), default=DEFAULT_MODE)
    p.add_argument(
        "--peer-address-template",
        metavar="TEMPLATE",
        help="quorum, raft: where to dial any member not in --peers, from its id: {id} is replaced by the "
        "id, {ordinal} by the id - 1 (a StatefulSet: bullyproof-{ordinal}.bullyproof:7000); with "
        "it, members added later need no restart of the others",
    )
    p.add_argument(
        "--client-address-template",
        metavar="TEMPLATE",
        help="quorum, raft: where members serve Leadership (their --client-listen), from their ids, as "
        "--peer-address-template; --self-join asks the leader there",
    )
    p.add_argument(
        "--self-join",
        action="store_true",
        help="quorum, raft: members manage their own membership (a StatefulSet scaled up or down): while "
        "in no configuration, this node asks the leader to add it, with its own certificate, and "
        "it grants other nodes' requests to add or remove themselves (each itself only). A node "
        "not in --voters starts outside, as with --join",
    )
    p.add_argument(
        "--voters",
        type=id_list,
        default=(),
        metavar="ID,...",
        help="quorum: the configuration to start with (default: this node and every node of --peers); "
        "once the node has promised anything, the configuration it made durable wins",
    )
    p.add_argument(
        "--join",
        action="store_true",
        help="quorum, raft: start outside the configuration, to be added by `bullyproof member add`",
    )
    p.add_argument("--state-dir", required=True, help="where the durable promise lives")
    _timing_args(p)
    p.add_argument(
        "--tick-ms", type=positive, default=DEFAULT_TICK_MS, help=f"core clock resolution (default {DEFAULT_TICK_MS})"
    )
    p.add_argument("--store", help="HOST:PORT of the fenced store; the leader writes to it while it leads")
    p.add_argument("--write-period-ms", type=positive, default=100, help="leader duty write period (default 100)")
    p.add_argument(
        "--preempt-hold-down-ms",
        type=int,
        default=DEFAULT_PREEMPT_HOLD_DOWN_MS,
        help=f"quorum: a higher node takes over only after this long healthy (default {DEFAULT_PREEMPT_HOLD_DOWN_MS}; "
        "0 = never)",
    )
    p.add_argument("--events", help="append history events (JSON lines) to this file")
    p.add_argument(
        "--metrics-listen", help="HOST:PORT to serve Prometheus metrics over HTTP (default: no metrics server)"
    )
    _mode_option_arg(p)
    add_tls_args(p, "node-N")
    p.add_argument("--planted-bug", action="append", default=[], help=argparse.SUPPRESS)

    p = sub.add_parser("store", help="run the fenced store process", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)

    p = sub.add_parser("cluster", help="start or stop a local cluster")
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
    _timing_args(up)
    up.add_argument(
        "--direct", action="store_true", help="no Toxiproxy: nodes dial each other directly (no network faults)"
    )
    up.add_argument(
        "--detach", action="store_true", help="start, wait for a leader, and return (stop with cluster down)"
    )
    _mode_option_arg(up)
    up.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext, no certificates (default: mutual TLS with certificates made in DIR/certs)",
    )
    up.add_argument("--dashboard", action="store_true", help="also serve the live dashboard (prints its URL)")
    _dashboard_args(up, prefix="dashboard-")
    down = csub.add_parser("down", help="stop everything a cluster up started (also after its launcher was killed)")
    down.add_argument("--dir", default=DEFAULT_DIR)

    for action, text in [
        ("kill", "SIGKILL"),
        ("pause", "SIGSTOP"),
        ("resume", "SIGCONT"),
        ("restart", "SIGKILL and start again"),
    ]:
        p = sub.add_parser(action, help=f"{text} a node (or 'store'); under --compose, its container")
        p.add_argument("target", help="node id, or 'store'")
        _cluster_source(p)
        if action == "restart":
            # One step of a rolling change: the node comes back with these (and keeps them).
            p.add_argument("--election-timeout-ms", type=positive, help="restart the node with this election timeout")
            p.add_argument(
                "--heartbeat-interval-ms", type=positive, help="restart the node with this heartbeat interval"
            )

    p = sub.add_parser("certs", help="make the cluster CA and certificates for mutual TLS (bullyproof certs init)")
    ccmd = p.add_subparsers(dest="certs_command", required=True)
    init = ccmd.add_parser(
        "init", help="a cluster CA, a certificate per node and the store, admin and client certificates"
    )
    init.add_argument("--nodes", type=positive, required=True, help="nodes 1..N get node-N.pem and node-N.key")
    init.add_argument("--dir", required=True, help="where to write them (an existing CA there is reused)")
    init.add_argument(
        "--admin",
        action="append",
        default=[],
        metavar="NAME",
        help="an admin certificate NAME.pem (may resign, transfer; default: one named admin)",
    )
    init.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="NAME",
        help="a client certificate NAME.pem (may read; default: one named client)",
    )
    init.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME_OR_IP",
        help="another name nodes and the store answer to (a host name, a compose service, an IP)",
    )
    inst = ccmd.add_parser(
        "install",
        help="copy the CA certificate and holders' certificates and keys (never ca.key) "
        "where processes read them: the compose file's certs service runs it",
    )
    inst.add_argument("--from", dest="source", required=True, metavar="DIR", help="the directory `certs init` wrote")
    inst.add_argument(
        "--to", dest="dest", required=True, metavar="DIR", help="where the processes read them (--certs DIR)"
    )
    inst.add_argument(
        "--owner", type=_owner, metavar="UID:GID", help="owner of the copies (the processes' user; needs root)"
    )
    inst.add_argument(
        "--holder",
        action="append",
        default=[],
        metavar="NAME",
        help="only these holders (shell patterns, repeatable: node-*, store; default every one)",
    )
    inst.add_argument(
        "--split",
        action="store_true",
        help="each holder in its own DIR/NAME (ca.pem, NAME.pem, NAME.key), for one volume per container",
    )

    p = sub.add_parser("dashboard", help="a live page beside a running cluster: watch it elect, break it from the page")
    _cluster_source(p, by_address=True, compose=False)
    _dashboard_args(p)

    p = sub.add_parser("leader", help="print the current leader and epoch as JSON")
    _cluster_source(p, by_address=True)

    p = sub.add_parser("status", help="print every node's status as JSON")
    _cluster_source(p, by_address=True)

    p = sub.add_parser(
        "resign",
        help="ask the leader to step down; the others elect in the mode's order (admin certificate)",
        description="Ask the node that leads (with a valid lease) to resign. It names no successor: the "
        "followers elect at once, highest id first under Bully, and a transfer's hold ends.",
    )
    _cluster_source(p)

    p = sub.add_parser(
        "transfer",
        help="hand leadership to node N, and keep it there (admin certificate)",
        description="Ask the node that leads to hand leadership to node N; prints N and its new epoch "
        "once N leads. Under quorum, N keeps leading (no preemption by a higher node) until "
        "it fails, steps down or an operator resigns it.",
    )
    p.add_argument("target", type=positive, metavar="N", help="the node to lead")
    p.add_argument(
        "--timeout-ms", type=positive, help="how long the leader waits for N to lead (default: four election timeouts)"
    )
    _cluster_source(p)

    p = sub.add_parser(
        "member",
        help="list or change the configuration: who votes (quorum, raft; changes need the admin certificate)",
        description="Membership changes, one member at a time: `add N` makes node N (started with "
        "--join, or a --spares node) a learner, then a voter once it has caught up; `remove N` "
        "takes it out (the leader hands over first if N leads); `replace OLD NEW` adds NEW, "
        "then removes OLD. Each change is agreed by a majority of the voters before and after "
        "it before the next may start.",
    )
    msub = p.add_subparsers(dest="member_command", required=True)
    m = msub.add_parser("list", help="print the configuration each node runs, and the leader's, as JSON")
    _cluster_source(m)
    for name, what in [("add", "the node to add"), ("remove", "the node to remove")]:
        m = msub.add_parser(name, help=f"{name} one node (admin certificate)")
        m.add_argument("target", type=positive, metavar="N", help=what)
        m.add_argument(
            "--timeout-ms",
            type=positive,
            help="how long the leader waits for the change to be agreed (default: four election timeouts)",
        )
        _cluster_source(m)
    m = msub.add_parser("replace", help="add NEW, then remove OLD (admin certificate)")
    m.add_argument("old", type=positive, metavar="OLD")
    m.add_argument("new", type=positive, metavar="NEW")
    m.add_argument("--timeout-ms", type=positive, help="per change (default: four election timeouts)")
    _cluster_source(m)

    p = sub.add_parser(
        "leave",
        help="take this node out of the configuration, with its own certificate (quorum; a StatefulSet's preStop hook)",
        description="Ask the leader to remove this node, through the protocol (a joint configuration); "
        "if this node leads, it hands leadership to another voter first. With --statefulset, "
        "only when that StatefulSet now runs fewer pods than this pod's ordinal + 1 (a "
        "scale-down, read from the Kubernetes API with the pod's service account); any other "
        "stop (a restart, a rolling update, a drain) keeps the member. Exit 0: left, or "
        "stays; 1: still a member at the deadline; 2: refused.",
    )
    ident = p.add_mutually_exclusive_group(required=True)
    ident.add_argument("--id", type=positive, help="this node's id")
    ident.add_argument("--id-from-hostname", action="store_true", help="a StatefulSet's pod NAME-N is node N+1")
    p.add_argument(
        "--client-address-template",
        required=True,
        metavar="TEMPLATE",
        help="where members serve Leadership, from their ids ({id}, {ordinal}), as for `bullyproof node`",
    )
    p.add_argument(
        "--members",
        type=id_list,
        default=(),
        metavar="ID,...",
        help="members to ask who leads, besides those the node itself names (its --voters)",
    )
    p.add_argument(
        "--state-dir", help="the node's --state-dir: it stops asking to be added (--self-join) while it leaves"
    )
    p.add_argument(
        "--statefulset",
        metavar="NAME",
        help="leave only on a scale-down of the StatefulSet NAME (this pod's ordinal >= its replicas)",
    )
    p.add_argument("--timeout-s", type=float, default=40.0, help="give up after this long (default 40)")
    add_tls_args(p, "node-N")

    p = sub.add_parser("health", help="gRPC health of a node or the store: exit 0 if SERVING (container healthchecks)")
    p.add_argument("address", help="HOST:PORT (a node's client port, or the store's)")
    p.add_argument(
        "--service", default="", help="health service name (default '': the whole server; 'leader': leads now)"
    )
    p.add_argument("--timeout-s", type=float, default=2.0)
    add_tls_args(p, "client", dialler=True)

    p = sub.add_parser(
        "compose", help="write docker-compose.yml (and toxiproxy.json beside it) from the cluster description"
    )
    p.add_argument("--nodes", type=positive, default=5)
    p.add_argument(
        "--spares",
        type=int,
        default=0,
        metavar="K",
        help="quorum: K more node services (ids after --nodes) that start outside the configuration, to "
        "add with `bullyproof member add N --compose` (default 0)",
    )
    p.add_argument("--mode", choices=mode_names(), default=DEFAULT_MODE)
    p.add_argument("--output", default=DEFAULT_COMPOSE_FILE)
    p.add_argument("--check", action="store_true", help="fail if the files differ from what would be written")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="a plaintext cluster, no certificates (default: mutual TLS with certificates made in certs/ "
        "beside the file)",
    )

    p = sub.add_parser("k8s", help="write Kubernetes manifests (StatefulSet, Services) from the cluster description")
    p.add_argument("--nodes", type=positive, default=5)
    p.add_argument("--mode", choices=mode_names(), default=DEFAULT_MODE)
    p.add_argument(
        "--image", default="bullyproof:local", help="the image built from Dockerfile, pushed where the cluster pulls"
    )
    _timing_args(p)
    p.add_argument(
        "--max-nodes",
        type=positive,
        metavar="M",
        help="quorum: how far `kubectl scale` may grow the StatefulSet: the node pods see the certificates "
        "of nodes 1..M (make them with `certs init --nodes M`; default the larger of 7 and --nodes)",
    )
    p.add_argument("--output", default="-", help="file to write (default -: stdout)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext, no certificates (default: mutual TLS from the Secret bullyproof-certs, docs/hosts.md)",
    )

    p = sub.add_parser(
        "chaos", help="faults on a running cluster, or a whole checked scenario (bullyproof chaos -h)", add_help=False
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)

    p = sub.add_parser(
        "fence",
        help="check a fencing adapter: writers, faults, a linearizability verdict (bullyproof fence check -h)",
        add_help=False,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)

    p = sub.add_parser(
        "showdown",
        help="every mode through the same chaos scenarios, one table (bullyproof showdown -h)",
        add_help=False,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)

    p = sub.add_parser(
        "bench",
        help="bullyproof beside etcd: failover, cold start, idle cost, load (bullyproof bench -h)",
        add_help=False,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)

    p = sub.add_parser("sim", help="replay a deterministic simulation by seed", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def id_from_hostname(hostname: str) -> int:
    """A StatefulSet names its pods NAME-0, NAME-1, ...: pod NAME-N runs node N+1 (ids start at 1)."""
    _, dash, ordinal = hostname.split(".")[0].rpartition("-")
    if not dash or not ordinal.isdigit():
        raise ConfigError(f"--id-from-hostname: hostname {hostname!r} does not end in -N (a StatefulSet pod's ordinal)")
    return int(ordinal) + 1


def _without_self(peers: str, node_id: int) -> str:
    return ",".join(item for item in peers.split(",") if item.strip().partition("=")[0].strip() != str(node_id))


def node_settings(args: argparse.Namespace) -> NodeSettings:
    """`bullyproof node`'s flags as checked settings (ConfigError says what is wrong)."""
    if args.id_from_hostname:
        import socket

        args.id = id_from_hostname(socket.gethostname())
        args.peers = _without_self(args.peers, args.id)  # every pod gets the whole membership (when listed)
    return NodeSettings(
        node_id=args.id,
        peer_listen=args.listen,
        client_listen=args.client_listen,
        peers=parse_peers(args.peers, args.id),
        mode=Mode(args.mode),
        state_dir=Path(args.state_dir),
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        election_timeout_ms=args.election_timeout_ms,
        tick_ms=args.tick_ms,
        store=args.store,
        write_period_ms=args.write_period_ms,
        preempt_hold_down_ms=args.preempt_hold_down_ms,
        events_path=Path(args.events) if args.events else None,
        metrics_listen=args.metrics_listen,
        planted_bugs=parse_planted_bugs(args.planted_bug),
        mode_options=frozenset(args.mode_option),
        tls=tls_from_args(args, f"node-{args.id}", Identity("node", str(args.id))),
        voters=args.voters,
        join=args.join,
        peer_address_template=args.peer_address_template,
        client_address_template=args.client_address_template,
        self_join=args.self_join,
    )


def cmd_node(args: argparse.Namespace) -> int:
    from node.runtime.node import run_node

    settings = node_settings(args)
    from node.runtime.state import PersistError, PromiseStore, StateError

    try:
        PromiseStore(settings.state_dir, settings.timing, settings.tick_ms).load()
    except StateError as exc:
        raise ConfigError(str(exc)) from None  # refuse to start: never from scratch over a bad promise
    try:
        return run_node(settings)
    except PersistError as exc:
        # Fail-stop: the node's log has the same line as JSON; it sent nothing that revealed the promise.
        print(f"bullyproof: error: node {settings.node_id} stopped: {exc}", file=sys.stderr)
        return EXIT_STORAGE_FAULT


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
            f"cluster up: {args.nodes} nodes ({args.mode}), store at {data['store']['address']}, {wiring}, dir {cc.directory}",
            flush=True,
        )
        if args.insecure:
            print(f"warning: {INSECURE_WARNING}", flush=True)
        else:
            print(
                f"mutual TLS: certificates in {data['certs']} (admin.pem/.key may resign and transfer; client.pem/.key may read)",
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
            f"{_stamp()}  agreed: node {leader} leads epoch {epoch} ({(time.monotonic() - t0) * 1000:.0f} ms after launch)",
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


def cluster_record(args: argparse.Namespace) -> dict:
    """The cluster a command acts on: cluster.json of --dir, the compose file's x-bullyproof block, or
    the nodes at --nodes."""
    if getattr(args, "nodes", None):
        from node.launcher.remote import remote_record

        return remote_record(args)
    from node.launcher.remote import refuse_stray_tls_flags

    refuse_stray_tls_flags(args)
    if args.compose:
        from node.launcher.compose import read_compose_file

        return read_compose_file(Path(args.compose))
    from node.launcher.cluster import read_cluster_file

    return read_cluster_file(Path(args.dir))


def nobody_answered(data: dict, args: argparse.Namespace) -> None:
    """No node answered: a ConfigError if that is our certificates (or plaintext) being refused at the
    handshake, or a compose cluster that is not up; otherwise (a local cluster that is down) nothing."""
    from node.observer import refused_handshake

    refused = refused_handshake(data["nodes"][0]["client_address"])
    if refused is not None:
        certs = (
            f"; this cluster's record names the certificates {data['certs']}"
            if data.get("certs")
            else "; this cluster's record names no certificates (plaintext)"
        )
        raise ConfigError(f"handshake refused: {refused}{certs}")
    if args.compose:
        raise not_up(data)


def not_up(data: dict, args: argparse.Namespace | None = None) -> ConfigError:
    """No node answers: for a compose cluster that means it is not up; a local one (`args.dir`) may
    also just be down, which `leader` and `status` show as nodes without answers instead."""
    addresses = ", ".join(n["client_address"] for n in data["nodes"])
    if args is not None and not args.compose:
        return ConfigError(
            f"the cluster in {args.dir} is not up: no node answers at {addresses} "
            f"(start it with: bullyproof cluster up --dir {args.dir})"
        )
    return ConfigError(
        f"the compose cluster of {data['compose_file']} is not up: no node answers at {addresses} "
        f"(start it with: docker compose -f {data['compose_file']} up -d)"
    )


def _same_cluster(args: argparse.Namespace) -> str:
    """The option that names this command's cluster, to repeat in a suggested command."""
    return f"--compose {args.compose}" if args.compose else f"--dir {args.dir}"


def current_leader(data: dict, args: argparse.Namespace) -> tuple[int, int]:
    """(node, epoch) of the node that leads the cluster of `data` now, or a precise error."""
    from node.observer import leading_node, views_of

    views = views_of({n["id"]: n["client_address"] for n in data["nodes"]})
    if all(v is None for v in views.values()):
        nobody_answered(data, args)
        raise not_up(data, args)
    found = leading_node(views)
    if found is None:
        raise ConfigError(
            "no leader known: no node says it leads with a valid lease (an election may be under way, "
            f"or too few nodes are up); see: bullyproof status {_same_cluster(args)}"
        )
    return found


def handover_refused(failed: HandoverFailed, leader: int, what: str, data: dict) -> ConfigError:
    """A Resign or TransferLeadership that did not happen, with the node's detail, in one line."""
    line = f"node {leader} did not {what}: {failed}"
    if failed.code == "PERMISSION_DENIED" and data.get("certs"):
        line += f" (the CLI acts as the cluster's admin, {Path(data['certs']) / 'admin.pem'})"
    return ConfigError(line)


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


def cmd_leader(args: argparse.Namespace) -> int:
    from node.launcher.cluster import ROLE_NAME
    from node.observer import agreed_leader, views_of

    data = cluster_record(args)
    views = views_of({n["id"]: n["client_address"] for n in data["nodes"]})
    if all(v is None for v in views.values()):
        nobody_answered(data, args)
    agreed = agreed_leader(views)
    out = {
        "leader": agreed[0] if agreed else None,
        "epoch": agreed[1] if agreed else None,
        "agreed": agreed is not None,
        "nodes": {
            str(nid): None
            if v is None
            else {
                "leader": v.leader_id if v.known else None,
                "epoch": v.epoch,
                "role": ROLE_NAME.get(v.role, "?"),
                "lease_valid": v.lease_valid,
                "outside": v.outside,
            }
            for nid, v in views.items()
        },
    }
    print(json.dumps(out))
    return 0 if agreed else 1


def cmd_status(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from node.observer import get_status

    data = cluster_record(args)
    out = {}
    for n in data["nodes"]:
        st = get_status(n["client_address"])
        out[str(n["id"])] = (
            {"error": st} if isinstance(st, str) else MessageToDict(st, preserving_proto_field_name=True)
        )
    if all("error" in v for v in out.values()):
        nobody_answered(data, args)
    print(json.dumps(out, indent=2))
    return 0


def cmd_resign(args: argparse.Namespace) -> int:
    from node.launcher.cluster import node_record
    from node.observer import HandoverFailed, resign

    data = cluster_record(args)
    leader, _ = current_leader(data, args)
    try:
        epoch = resign(node_record(data, leader)["client_address"])
    except HandoverFailed as exc:
        raise handover_refused(exc, leader, "resign", data) from None
    print(json.dumps({"resigned": leader, "epoch": epoch}))
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from node.launcher.cluster import node_record
    from node.observer import HandoverFailed, transfer_leadership

    data = cluster_record(args)
    node_record(data, args.target)  # "no node N in this cluster (nodes: ...)" before asking anyone
    if not mode_info(data["mode"]).transfers:
        raise ConfigError(
            f"mode {data['mode']} does not hand leadership to a chosen node (it elects by its own rule); "
            "bullyproof resign starts a new election"
        )
    leader, epoch = current_leader(data, args)
    if leader == args.target:
        raise ConfigError(f"node {args.target} already leads (epoch {epoch}): nothing to transfer")
    waits_ms = args.timeout_ms or 4 * data["election_timeout_ms"]  # sending 0 leaves it to the node: this long
    try:
        new_leader, new_epoch = transfer_leadership(
            node_record(data, leader)["client_address"],
            args.target,
            timeout_ms=args.timeout_ms or 0,
            timeout_s=waits_ms / 1000 + 5,
        )
    except HandoverFailed as exc:
        raise handover_refused(exc, leader, f"hand leadership to node {args.target}", data) from None
    print(json.dumps({"leader": new_leader, "epoch": new_epoch}))
    return 0


def _configuration_json(c) -> dict:
    return {"voters": list(c.voters), "learners": list(c.learners), "index": c.index, "term": c.term}


def cmd_member(args: argparse.Namespace) -> int:
    from node.api import bullyproof_pb2 as pb
    from node.launcher.cluster import node_record
    from node.observer import HandoverFailed, get_status, member_change

    data = cluster_record(args)
    if not mode_info(data["mode"]).membership_changes:
        raise ConfigError(f"mode {data['mode']} keeps its start-up list; membership changes need quorum or raft mode")
    statuses = {n["id"]: get_status(n["client_address"]) for n in data["nodes"]}
    if all(isinstance(st, str) for st in statuses.values()):
        nobody_answered(data, args)
    if args.member_command == "list":
        leading = [
            (st.epoch, nid)
            for nid, st in statuses.items()
            if not isinstance(st, str) and st.role == pb.ROLE_LEADER and st.lease_valid
        ]
        leader = max(leading)[1] if leading else None
        out = {
            "leader": leader,
            "configuration": _configuration_json(statuses[leader].configuration) if leader else None,
            "agreed": statuses[leader].configuration_agreed if leader else None,
            "nodes": {
                str(nid): {"error": st} if isinstance(st, str) else _configuration_json(st.configuration)
                for nid, st in statuses.items()
            },
        }
        print(json.dumps(out))
        return 0 if leader else 1
    waits_ms = args.timeout_ms or 4 * data["election_timeout_ms"]

    nodes = {n["id"]: n["client_address"] for n in data["nodes"]}

    def change(action: str, target: int) -> dict:
        try:
            leader, c = member_change(
                nodes, action, target, timeout_ms=args.timeout_ms or 0, timeout_s=waits_ms / 1000 + 5
            )
        except HandoverFailed as exc:
            if exc.code == "NO_LEADER":
                current_leader(data, args)  # says why, in the words `resign` and `transfer` use
            raise ConfigError(f"could not {action} node {target}: {exc}") from None
        return {"leader": leader, "configuration": _configuration_json(c)}

    if args.member_command == "replace":
        if args.old == args.new:
            raise ConfigError("replace OLD NEW needs two different nodes")
        node_record(data, args.new)
        change("add", args.new)
        print(json.dumps(change("remove", args.old)))
        return 0
    node_record(data, args.target)  # "no node N in this cluster (nodes: ...)" before asking anyone
    print(json.dumps(change(args.member_command, args.target)))
    return 0


def cmd_leave(args: argparse.Namespace) -> int:
    from node.client.leave import leave, mark_leaving
    from node.config import check_address_template, expand_address_template
    from node.launcher.k8s_pod import StatefulSetUnreadable, leaves_on_stop, read_statefulset
    from node.observer import HandoverFailed

    if args.id_from_hostname:
        import socket

        args.id = id_from_hostname(socket.gethostname())
    check_address_template(args.client_address_template, "--client-address-template")
    tls = tls_from_args(args, f"node-{args.id}", Identity("node", str(args.id)))
    keep = lambda node: True  # noqa: E731  (whom leadership may go to: any voter)
    if args.statefulset:
        try:
            state = read_statefulset(args.statefulset)
        except StatefulSetUnreadable as exc:
            print(f"bullyproof: warning: {exc}", file=sys.stderr)
            state = None
        leaves, why = leaves_on_stop(args.id - 1, state)
        print(json.dumps({"node": args.id, "leaves": leaves, "why": why}), flush=True)
        if not leaves:
            return 0
        assert state is not None and state.replicas is not None
        keep = lambda node: node - 1 < state.replicas  # noqa: E731  (pods that stay: not leaving too)
    if args.state_dir:
        mark_leaving(Path(args.state_dir))
    try:
        leave(
            args.id,
            lambda node: expand_address_template(args.client_address_template, node),
            tls,
            args.timeout_s,
            members=args.members,
            keep=keep,
        )
    except HandoverFailed as exc:
        if exc.code == "DEADLINE_EXCEEDED":
            print(f"bullyproof: error: {exc.detail}", file=sys.stderr)
            return 1
        raise ConfigError(f"node {args.id} could not leave: {exc}") from None
    return 0


def cmd_certs_init(args: argparse.Namespace) -> int:
    from node.tls import make_cluster_certs

    admins, clients = args.admin or ["admin"], args.client or ["client"]
    clash = set(admins) & set(clients) | {n for n in admins + clients if n in ("ca", "store") or n.startswith("node-")}
    if clash:
        raise ConfigError(
            f"certificate names {sorted(clash)} are taken (ca, store, node-N, or both --admin and --client)"
        )
    bad = [n for n in admins + clients if Identity.parse(f"bullyproof://client/{n}") is None]
    if bad:
        raise ConfigError(f"certificate names {bad}: use 1 to 64 letters, digits, '.', '_' or '-'")
    made = make_cluster_certs(Path(args.dir), args.nodes, admins=admins, clients=clients, hosts=args.host)
    print(
        json.dumps(
            {
                "dir": str(Path(args.dir).resolve()),
                "ca": "ca.pem",
                "certificates": {name: tls.cert.name for name, tls in made.items()},
            },
            indent=2,
        )
    )
    return 0


def _owner(text: str) -> tuple[int, int]:
    uid, sep, gid = text.partition(":")
    if not (sep and uid.isdigit() and gid.isdigit()):
        raise argparse.ArgumentTypeError(f"expected UID:GID (numbers, as the Dockerfile's USER), got {text!r}")
    return int(uid), int(gid)


def cmd_certs_install(args: argparse.Namespace) -> int:
    from node.tls import install_certs

    made = install_certs(Path(args.source), Path(args.dest), owner=args.owner, holders=args.holder, split=args.split)
    print(json.dumps({"from": args.source, "to": args.dest, "holders": {h: str(d) for h, d in made.items()}}))
    return 0


def _client_tls(args: argparse.Namespace) -> None:
    """Dial args.address as these flags say (node.channels.dial_as); secure by default."""
    from node.channels import dial_as

    tls = tls_files(args, args.holder)
    if tls is None:
        print("bullyproof: warning: --insecure: plaintext, the server is not authenticated", file=sys.stderr)
        return
    tls.read()  # one line if a file is missing, not a handshake error later
    dial_as(args.address, tls, args.server_name or MEMBER_NAME)


def cmd_health(args: argparse.Namespace) -> int:
    from node.observer import health_status, refused_handshake

    _client_tls(args)
    status = health_status(args.address, args.service, args.timeout_s)
    print(status)
    if status == "UNAVAILABLE" and (refused := refused_handshake(args.address, args.timeout_s)) is not None:
        print(f"bullyproof: handshake refused: {refused}", file=sys.stderr)
    return 0 if status == "SERVING" else 1


def cmd_compose(args: argparse.Namespace) -> int:
    from chaos.tools import TOXIPROXY_VERSION  # composition root: the pin the local set-up builds
    from node.launcher.compose import compose_cluster, ensure_certs, stale_files, write_files

    if args.spares < 0:
        raise ConfigError(f"--spares must be >= 0, got {args.spares}")
    cc = compose_cluster(
        args.nodes, args.mode, toxiproxy_version=TOXIPROXY_VERSION, insecure=args.insecure, spares=args.spares
    )
    path = Path(args.output)
    if args.check:  # the rendered files only: certificates are per machine, and secret
        stale = stale_files(cc, path)
        again = f"bullyproof compose --output {path}" + (" --insecure" if args.insecure else "")
        for p in stale:
            print(f"{p} is out of date; run: {again}", file=sys.stderr)
        if stale:
            return 1
        print(f"{path} and the Toxiproxy config beside it match the cluster description")
        return 0
    for p in write_files(cc, path):
        print(f"wrote {p}")
    if cc.certs is None:
        print(f"warning: the compose cluster runs {INSECURE_WARNING}", file=sys.stderr)
        return 0
    certs = path.parent / cc.certs
    made = ensure_certs(cc, path)
    print(
        f"{'made' if made else 'kept'} certificates in {certs} (mutual TLS; not checked in: it holds the CA's key). "
        f"The CLI (--compose) acts as {certs / 'admin.pem'}; read-only clients use {certs / 'client.pem'}"
    )
    return 0


def cmd_k8s(args: argparse.Namespace) -> int:
    from node.launcher.k8s import k8s_spec, render_k8s

    check_timings(args.heartbeat_interval_ms, args.election_timeout_ms)  # what every pod would refuse, refused here
    spec = k8s_spec(
        args.nodes,
        args.mode,
        insecure=args.insecure,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        election_timeout_ms=args.election_timeout_ms,
    )
    text = render_k8s(spec, image=args.image, max_nodes=args.max_nodes)
    if args.insecure:
        print(f"warning: the manifests run {INSECURE_WARNING}", file=sys.stderr)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    Path(args.output).write_text(text)
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        # These own their arguments entirely (argparse's REMAINDER would choke on leading options).
        if argv[:1] == ["store"]:
            from node.store.server import main as store_main

            return store_main(argv[1:])
        if argv[:1] == ["chaos"]:
            # The CLI is the composition root: the only node module allowed to reach into chaos/.
            from chaos.cli import main as chaos_main

            return chaos_main(argv[1:])
        if argv[:1] == ["fence"]:
            from chaos.cli import fence_main  # composition root, as for chaos

            return fence_main(argv[1:])
        if argv[:1] == ["showdown"]:
            from chaos.showdown import main as showdown_main  # composition root, as for chaos

            return showdown_main(argv[1:])
        if argv[:1] == ["bench"]:
            from bench.versus import main as bench_main
            from chaos import tools, toxiproxy  # composition root: the set-up installs etcd and ghz

            return bench_main(argv[1:], tools, toxiproxy)
        if argv[:1] == ["sim"]:
            from node.sim.cli import main as sim_main

            return sim_main(argv[1:])
        args = parser.parse_args(argv)
        if args.command == "node":
            return cmd_node(args)
        if args.command == "cluster":
            return cmd_cluster_up(args) if args.cluster_command == "up" else cmd_cluster_down(args)
        if args.command in ("kill", "pause", "resume", "restart"):
            return cmd_process(args)
        if args.command == "certs":
            return cmd_certs_init(args) if args.certs_command == "init" else cmd_certs_install(args)
        if args.command == "dashboard":
            return cmd_dashboard(args)
        if args.command == "leader":
            return cmd_leader(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "resign":
            return cmd_resign(args)
        if args.command == "transfer":
            return cmd_transfer(args)
        if args.command == "member":
            return cmd_member(args)
        if args.command == "health":
            return cmd_health(args)
        if args.command == "leave":
            return cmd_leave(args)
        if args.command == "compose":
            return cmd_compose(args)
        if args.command == "k8s":
            return cmd_k8s(args)
    except (ConfigError, TlsError) as exc:
        print(f"bullyproof: error: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
