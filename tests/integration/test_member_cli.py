"""`bullyproof member list|add|remove|replace` on real mutual-TLS processes: three voters grow to five
and shrink back (the leader removed too, after it handed over), the configuration survives SIGKILL
and a stale --peers list, and every refusal is a precise status or one CLI line."""

from __future__ import annotations

import json

import grpc
import pytest
from test_handover_cli import TIMING, cli, error_line, ok_json

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import observer_channel
from node.launcher.cluster import process_fault, wait_for
from node.observer import get_status

pytestmark = pytest.mark.integration


def configuration_of(cluster, node: int) -> pb.Configuration:
    st = get_status(cluster.spec.node(node).client_address)
    assert not isinstance(st, str), st
    return st.configuration


@pytest.mark.parametrize("mode", ["quorum", "raft"])
def test_three_voters_grow_to_five_and_shrink_back_to_three(make_cluster, mode):
    cluster = make_cluster(3, mode, secure=True, spares=2, **TIMING)
    leader, _ = cluster.wait_for_agreement(timeout_s=15)
    where = ("--dir", str(cluster.dir))
    listed = ok_json("member", "list", *where)
    assert listed["configuration"]["voters"] == [1, 2, 3] and listed["agreed"]
    assert listed["nodes"]["4"]["term"] == -1  # a spare: in no configuration yet
    assert ok_json("member", "add", "4", *where)["configuration"]["voters"] == [1, 2, 3, 4]
    assert ok_json("member", "add", "5", *where)["configuration"]["voters"] == [1, 2, 3, 4, 5]
    for node in range(1, 6):
        assert list(configuration_of(cluster, node).voters) == [1, 2, 3, 4, 5]
    # Removing the leader: the CLI hands leadership over first, then the new leader removes it.
    first = cluster.wait_for_agreement(timeout_s=10)[0]
    shrunk = ok_json("member", "remove", str(first), *where)
    assert first not in shrunk["configuration"]["voters"] and shrunk["leader"] != first
    other = next(v for v in shrunk["configuration"]["voters"] if v != shrunk["leader"] and v <= 3)
    final = ok_json("member", "remove", str(other), *where)["configuration"]["voters"]
    assert len(final) == 3 and first not in final and other not in final
    # The removed nodes follow no one and the others agree without them (LeaderInfo.outside).
    agreed = ok_json("leader", *where)
    assert agreed["agreed"] and agreed["leader"] in final
    # Durable: a node killed and restarted keeps the configuration it was last told.
    survivor = next(v for v in final if v != agreed["leader"])
    process_fault(cluster.dir, survivor, "restart")
    wait_for(
        lambda: not isinstance(get_status(cluster.spec.node(survivor).client_address), str),
        15,
        what=f"node {survivor} to answer after its restart",
    )
    assert list(configuration_of(cluster, survivor).voters) == final
    assert cluster.wait_for_agreement(timeout_s=15)[0] in final


def test_changes_that_cannot_be_made_get_a_precise_refusal_and_change_nothing(make_cluster):
    cluster = make_cluster(3, secure=True, spares=1, **TIMING)
    leader, _ = cluster.wait_for_agreement(timeout_s=15)
    where = ("--dir", str(cluster.dir))
    assert "no node 9 in this cluster" in error_line("member", "add", "9", *where)
    assert "needs two different nodes" in error_line("member", "replace", "2", "2", *where)
    follower = next(n for n in (1, 2, 3) if n != leader)
    with observer_channel(cluster.spec.node(follower).client_address) as ch:
        stub = pb_grpc.LeadershipStub(ch)
        with pytest.raises(grpc.RpcError) as not_leader:
            stub.ChangeMembership(pb.MembershipRequest(action=pb.MembershipRequest.ACTION_ADD, node_id=4), timeout=5)
        assert not_leader.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"node {follower} is not the leader" in not_leader.value.details()
    with observer_channel(cluster.spec.node(leader).client_address) as ch:
        stub = pb_grpc.LeadershipStub(ch)
        for request, code, words in [
            (pb.MembershipRequest(node_id=4), grpc.StatusCode.INVALID_ARGUMENT, "ACTION_ADD or ACTION_REMOVE"),
            (
                pb.MembershipRequest(action=pb.MembershipRequest.ACTION_ADD),
                grpc.StatusCode.INVALID_ARGUMENT,
                "positive",
            ),
            (
                pb.MembershipRequest(action=pb.MembershipRequest.ACTION_ADD, node_id=7),
                grpc.StatusCode.FAILED_PRECONDITION,
                "no address",
            ),
            (
                pb.MembershipRequest(action=pb.MembershipRequest.ACTION_REMOVE, node_id=leader),
                grpc.StatusCode.FAILED_PRECONDITION,
                "transfer leadership first",
            ),
        ]:
            with pytest.raises(grpc.RpcError) as refused:
                stub.ChangeMembership(request, timeout=5)
            assert refused.value.code() == code and words in refused.value.details(), refused.value.details()
    for node in (1, 2, 3):
        assert list(configuration_of(cluster, node).voters) == [1, 2, 3]
    assert json.loads(cli("member", "list", *where).stdout)["configuration"]["voters"] == [1, 2, 3]
