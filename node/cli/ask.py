"""Commands that ask a running cluster's nodes, or ask them to hand over: `leader`, `status`,
`resign`, `transfer`, `member`; and how a command finds its cluster (`cluster_record`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from node.argtypes import positive
from node.config import ConfigError
from node.core import mode_info

from .options import cluster_by_address, cluster_source
from .registry import Command

if TYPE_CHECKING:
    from node.observer import HandoverFailed  # grpc stays out of the CLI's own imports


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


def transfer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", type=positive, metavar="N", help="the node to lead")
    p.add_argument(
        "--timeout-ms", type=positive, help="how long the leader waits for N to lead (default: four election timeouts)"
    )
    cluster_source(p)


def member_arguments(p: argparse.ArgumentParser) -> None:
    msub = p.add_subparsers(dest="member_command", required=True)
    m = msub.add_parser("list", help="print the configuration each node runs, and the leader's, as JSON")
    cluster_source(m)
    for name, what in [("add", "the node to add"), ("remove", "the node to remove")]:
        m = msub.add_parser(name, help=f"{name} one node (admin certificate)")
        m.add_argument("target", type=positive, metavar="N", help=what)
        m.add_argument(
            "--timeout-ms",
            type=positive,
            help="how long the leader waits for the change to be agreed (default: four election timeouts)",
        )
        cluster_source(m)
    m = msub.add_parser("replace", help="add NEW, then remove OLD (admin certificate)")
    m.add_argument("old", type=positive, metavar="OLD")
    m.add_argument("new", type=positive, metavar="NEW")
    m.add_argument("--timeout-ms", type=positive, help="per change (default: four election timeouts)")
    cluster_source(m)


COMMANDS = [
    Command("leader", "print the current leader and epoch as JSON", cmd_leader, cluster_by_address),
    Command("status", "print every node's status as JSON", cmd_status, cluster_by_address),
    Command(
        "resign",
        help="ask the leader to step down; the others elect in the mode's order (admin certificate)",
        description="Ask the node that leads (with a valid lease) to resign. It names no successor: the "
        "followers elect at once, highest id first under Bully, and a transfer's hold ends.",
        run=cmd_resign,
        add_arguments=cluster_source,
    ),
    Command(
        "transfer",
        help="hand leadership to node N, and keep it there (admin certificate)",
        description="Ask the node that leads to hand leadership to node N; prints N and its new epoch "
        "once N leads. Under quorum, N keeps leading (no preemption by a higher node) until "
        "it fails, steps down or an operator resigns it.",
        run=cmd_transfer,
        add_arguments=transfer_arguments,
    ),
    Command(
        "member",
        help="list or change the configuration: who votes (quorum, raft; changes need the admin certificate)",
        description="Membership changes, one member at a time: `add N` makes node N (started with "
        "--join, or a --spares node) a learner, then a voter once it has caught up; `remove N` "
        "takes it out (the leader hands over first if N leads); `replace OLD NEW` adds NEW, "
        "then removes OLD. Each change is agreed by a majority of the voters before and after "
        "it before the next may start.",
        run=cmd_member,
        add_arguments=member_arguments,
    ),
]
