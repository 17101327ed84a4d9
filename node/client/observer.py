"""Blocking questions to nodes for the launcher, the CLI, the chaos harness and benchmarks.

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
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
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


def views_of(nodes: dict[int, str], timeout_s: float = 0.5) -> dict[int, pb.LeaderInfo | None]:
    return {nid: get_leader(addr, timeout_s) for nid, addr in nodes.items()}


def agreed_leader(views: dict[int, pb.LeaderInfo | None]) -> tuple[int, int] | None:
    """(leader, epoch) by node.history.agreement over the nodes that answered."""
    agreed = agreement({
        node: Seen(view.leader_id if view.known else None, view.epoch, view.role == pb.ROLE_LEADER)
        for node, view in views.items()
        if view is not None
    })
    return None if agreed is None else (agreed.leader, agreed.epoch)
