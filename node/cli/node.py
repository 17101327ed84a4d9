"""Commands that run as, or speak for, one node: `node`, `leave`, `health`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from node.argtypes import id_list, positive
from node.config import (
    DEFAULT_TIMING,
    ConfigError,
    NodeSettings,
    add_tls_args,
    parse_peers,
    parse_planted_bugs,
    tls_files,
    tls_from_args,
)
from node.core import DEFAULT_MODE, Mode, mode_names
from node.tls import MEMBER_NAME, Identity

from .options import mode_option_arg, timing_args
from .registry import Command

EXIT_STORAGE_FAULT = 3  # `node` stopped because its promise could not be persisted (fail-stop)


def node_arguments(p: argparse.ArgumentParser) -> None:
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
    timing_args(p)
    p.add_argument(
        "--tick-ms",
        type=positive,
        default=DEFAULT_TIMING.tick_ms,
        help=f"core clock resolution (default {DEFAULT_TIMING.tick_ms})",
    )
    p.add_argument("--store", help="HOST:PORT of the fenced store; the leader writes to it while it leads")
    p.add_argument(
        "--write-period-ms",
        type=positive,
        default=DEFAULT_TIMING.write_period_ms,
        help=f"leader duty write period (default {DEFAULT_TIMING.write_period_ms})",
    )
    p.add_argument(
        "--preempt-hold-down-ms",
        type=int,
        default=DEFAULT_TIMING.preempt_hold_down_ms,
        help="quorum: a higher node takes over only after this long healthy "
        f"(default {DEFAULT_TIMING.preempt_hold_down_ms}; 0 = never)",
    )
    p.add_argument("--events", help="append history events (JSON lines) to this file")
    p.add_argument(
        "--metrics-listen", help="HOST:PORT to serve Prometheus metrics over HTTP (default: no metrics server)"
    )
    mode_option_arg(p)
    add_tls_args(p, "node-N")
    p.add_argument("--planted-bug", action="append", default=[], help=argparse.SUPPRESS)


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


def leave_arguments(p: argparse.ArgumentParser) -> None:
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


def health_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("address", help="HOST:PORT (a node's client port, or the store's)")
    p.add_argument(
        "--service", default="", help="health service name (default '': the whole server; 'leader': leads now)"
    )
    p.add_argument("--timeout-s", type=float, default=2.0)
    add_tls_args(p, "client", dialler=True)


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


COMMANDS = [
    Command("node", "run one node process", cmd_node, node_arguments),
    Command(
        "leave",
        help="take this node out of the configuration, with its own certificate (quorum; a StatefulSet's preStop hook)",
        description="Ask the leader to remove this node, through the protocol (a joint configuration); "
        "if this node leads, it hands leadership to another voter first. With --statefulset, "
        "only when that StatefulSet now runs fewer pods than this pod's ordinal + 1 (a "
        "scale-down, read from the Kubernetes API with the pod's service account); any other "
        "stop (a restart, a rolling update, a drain) keeps the member. Exit 0: left, or "
        "stays; 1: still a member at the deadline; 2: refused.",
        run=cmd_leave,
        add_arguments=leave_arguments,
    ),
    Command(
        "health",
        "gRPC health of a node or the store: exit 0 if SERVING (container healthchecks)",
        cmd_health,
        health_arguments,
    ),
]
