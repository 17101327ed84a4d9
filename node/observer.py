"""Blocking questions to nodes for the launcher, the CLI, the chaos harness, the dashboard and benchmarks.

Below all of them (the launcher waits with it for a cluster to agree), above node.channels; not part
of the SDK (node.client), which a service uses instead.

A fresh channel per question, with its own subchannel: gRPC otherwise shares subchannels across
channels, and one that failed while a node was starting sits in backoff (up to 120 s).
"""

from __future__ import annotations

import grpc

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import dialled_as, handshake_refused, observer_channel
from node.history import Seen, agreement


def get_leader(address: str, timeout_s: float = 0.5) -> pb.LeaderInfo | None:
    try:
        with observer_channel(address) as ch:
            return pb_grpc.LeadershipStub(ch).GetLeader(pb.GetLeaderRequest(), timeout=timeout_s)
    except grpc.RpcError:
        return None


def get_status(address: str, timeout_s: float = 0.5) -> pb.NodeStatus | str:
    """The node's status, or the gRPC status code's name if it did not answer."""
    try:
        with observer_channel(address) as ch:
            return pb_grpc.LeadershipStub(ch).GetStatus(pb.GetStatusRequest(), timeout=timeout_s)
    except grpc.RpcError as exc:
        return exc.code().name


def health_status(address: str, service: str = "", timeout_s: float = 2.0) -> str:
    """grpc.health.v1 Check: the status's name (SERVING, NOT_SERVING, ...), or the RPC's error code's name."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with observer_channel(address) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
    except grpc.RpcError as exc:
        return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def refused_handshake(address: str, timeout_s: float = 2.0) -> str | None:
    """Why `address` and we could not agree at the TLS handshake, and what to check; None if we could
    (or it failed for another reason: down, slow). Ask when a node answered nothing at all."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with observer_channel(address) as ch:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
    except grpc.RpcError as exc:
        return handshake_refused(exc, address, dialled_as(address))
    return None


class HandoverFailed(Exception):
    """A Resign or TransferLeadership that did not happen: the gRPC status code's name and the
    answering node's detail (or gRPC's, when the node did not answer)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def resign(address: str, timeout_s: float = 2.0) -> int:
    """Ask the node at `address` to resign; the epoch it gave up. Raises HandoverFailed."""
    try:
        with observer_channel(address) as ch:
            return pb_grpc.LeadershipStub(ch).Resign(pb.ResignRequest(), timeout=timeout_s).epoch
    except grpc.RpcError as exc:
        raise HandoverFailed(exc.code().name, exc.details() or "") from None


def transfer_leadership(address: str, target: int, timeout_ms: int, timeout_s: float) -> tuple[int, int]:
    """Ask the node at `address` to hand leadership to `target` (the node waits up to `timeout_ms`
    for it, 0: its default); (leader, epoch) once the target leads. Raises HandoverFailed."""
    try:
        with observer_channel(address) as ch:
            reply = pb_grpc.LeadershipStub(ch).TransferLeadership(
                pb.TransferRequest(target_id=target, timeout_ms=timeout_ms), timeout=timeout_s
            )
    except grpc.RpcError as exc:
        raise HandoverFailed(exc.code().name, exc.details() or "") from None
    return reply.leader_id, reply.epoch


def change_membership(address: str, action: str, node_id: int, timeout_ms: int, timeout_s: float) -> pb.Configuration:
    """Ask the node at `address` (the leader) to `add` or `remove` node_id; the configuration once the
    change is agreed. Raises HandoverFailed with the node's status and detail."""
    which = {"add": pb.MembershipRequest.ACTION_ADD, "remove": pb.MembershipRequest.ACTION_REMOVE}[action]
    try:
        with observer_channel(address) as ch:
            reply = pb_grpc.LeadershipStub(ch).ChangeMembership(
                pb.MembershipRequest(action=which, node_id=node_id, timeout_ms=timeout_ms), timeout=timeout_s
            )
    except grpc.RpcError as exc:
        raise HandoverFailed(exc.code().name, exc.details() or "") from None
    return reply.configuration


def member_change(
    nodes: dict[int, str], action: str, target: int, timeout_ms: int, timeout_s: float
) -> tuple[int, pb.Configuration]:
    """`add` or `remove` node `target` at whichever of `nodes` (id -> client address) leads; removing
    the leader hands leadership to the highest other voter first. (leader, configuration) once agreed.
    Raises HandoverFailed (with the code NO_LEADER when no node leads now)."""
    found = leading_node(views_of(nodes))
    if found is None:
        raise HandoverFailed("NO_LEADER", "no node says it leads with a valid lease (an election may be under way)")
    leader = found[0]
    if action == "remove" and target == leader:
        st = get_status(nodes[leader])
        others = [] if isinstance(st, str) else [v for v in st.configuration.voters if v != leader]
        if not others:
            raise HandoverFailed(
                "FAILED_PRECONDITION", f"node {leader} is the only voter: add another before removing it"
            )
        leader, _ = transfer_leadership(nodes[leader], max(others), timeout_ms=0, timeout_s=timeout_s)
    return leader, change_membership(nodes[leader], action, target, timeout_ms, timeout_s)


def views_of(nodes: dict[int, str], timeout_s: float = 0.5) -> dict[int, pb.LeaderInfo | None]:
    return {nid: get_leader(addr, timeout_s) for nid, addr in nodes.items()}


def agreed_leader(views: dict[int, pb.LeaderInfo | None]) -> tuple[int, int] | None:
    """(leader, epoch) by node.history.agreement over the nodes that answered, but those in no
    configuration (joining, or removed: they follow no one)."""
    agreed = agreement(
        {
            node: Seen(view.leader_id if view.known else None, view.epoch, view.role == pb.ROLE_LEADER)
            for node, view in views.items()
            if view is not None and not view.outside
        }
    )
    return None if agreed is None else (agreed.leader, agreed.epoch)


def leading_node(views: dict[int, pb.LeaderInfo | None]) -> tuple[int, int] | None:
    """(node, epoch) of the node that says it leads with a valid lease: the one to ask for a handover
    (of the highest epoch if several say so, as classic's split brain allows). None if none does."""
    claims = [
        (view.epoch, node)
        for node, view in views.items()
        if view is not None and view.role == pb.ROLE_LEADER and view.lease_valid
    ]
    if not claims:
        return None
    epoch, node = max(claims)
    return node, epoch
