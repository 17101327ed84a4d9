"""Peer messages the fuzzer found crashing a handler (gRPC's UNKNOWN), each now refused precisely.

* A peer RPC of another mode: a quorum node handed RingElection (or a raft node Election) raised
  KeyError in its elector after the elector had already noted the message's epoch (a quorum node's
  next election then skipped to it). Now UNIMPLEMENTED, changing nothing. node.runtime.wire.MODE_RPCS
  lists what each mode handles; the first test checks that list against the electors themselves.
* A ring RPC without ring_ids: the ring elector takes max() of the list (ValueError). Now
  INVALID_ARGUMENT.
"""

from __future__ import annotations

import random

import grpc
import pytest

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.core import Config, Promise, configuration_id, make_elector, mode_info, mode_names
from node.core.membership import initial
from node.runtime.wire import MODE_RPCS, RPC_TYPE, check_peer_message, membership_to_pb, message_from_pb

MEMBERS = (1, 2, 3)


def _request(rpc: str, mode: str) -> pb.PeerMessage:
    """A well-formed request from node 3, with the configuration a node of `mode` sends (modes that change
    membership carry the whole configuration)."""
    ring = rpc.startswith("Ring")
    extra = {"configuration": membership_to_pb(initial(MEMBERS))} if mode_info(mode).membership_changes else {}
    return pb.PeerMessage(
        sender_id=3,
        receiver_id=1,
        epoch=7,
        round=1 if rpc in ("Heartbeat", "PreVote") or ring else 0,
        ring_ids=[3] if ring else [],
        initiator_id=3 if ring else 0,
        configuration_id=configuration_id(MEMBERS),
        **extra,
    )


@pytest.mark.parametrize("mode", mode_names())
def test_the_table_matches_what_each_elector_handles(mode):
    for rpc in RPC_TYPE:
        elector = make_elector(mode, Config(1, MEMBERS), Promise(), random.Random(0), 0)
        msg = message_from_pb(rpc, _request(rpc, mode), tick_ms=10)
        if rpc in MODE_RPCS[mode]:
            elector.step(1, msg)  # handled: no exception
            assert check_peer_message(rpc, _request(rpc, mode), 1, MEMBERS, mode) is None, (mode, rpc)
        else:
            try:
                out = elector.step(1, msg)
            except KeyError:
                pass  # no handler: what the node used to turn into UNKNOWN
            else:
                assert not out.messages and out.persist is None, f"{mode} acts on {rpc}: add it to MODE_RPCS"
            rejection = check_peer_message(rpc, _request(rpc, mode), 1, MEMBERS, mode)
            assert rejection is not None and rejection.code == grpc.StatusCode.UNIMPLEMENTED, (mode, rpc, rejection)
            assert f"runs mode {mode}" in rejection.detail


@pytest.mark.integration
def test_a_quorum_node_refuses_ring_and_raft_rpcs_and_keeps_its_epoch(quiet_cluster):
    node = quiet_cluster.spec.node(1)
    with grpc.insecure_channel(node.client_address) as ch:
        before = pb_grpc.LeadershipStub(ch).GetStatus(pb.GetStatusRequest(), timeout=5)
    high = before.epoch + 1000
    with grpc.insecure_channel(node.peer_address) as ch:
        stub = pb_grpc.PeerStub(ch)
        for rpc in sorted(set(RPC_TYPE) - MODE_RPCS["quorum"]):
            req = _request(rpc, "quorum")
            req.epoch = high
            with pytest.raises(grpc.RpcError) as info:
                getattr(stub, rpc)(req, timeout=5)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, (rpc, info.value.details())
    with grpc.insecure_channel(node.client_address) as ch:
        after = pb_grpc.LeadershipStub(ch).GetStatus(pb.GetStatusRequest(), timeout=5)
    assert (after.epoch, after.promised_epoch, after.leader_id) == (
        before.epoch,
        before.promised_epoch,
        before.leader_id,
    )
    assert dict(after.messages_received).keys() == dict(before.messages_received).keys()


def test_a_ring_message_needs_ring_ids():
    empty = pb.PeerMessage(sender_id=2, receiver_id=3, epoch=2, initiator_id=1)
    for rpc in ("RingElection", "RingCoordinator"):
        rejection = check_peer_message(rpc, empty, 3, MEMBERS, "ring")
        assert rejection is not None and rejection.code == grpc.StatusCode.INVALID_ARGUMENT, rejection
        assert "needs ring_ids" in rejection.detail
    # what it used to reach: the ring elector has no coordinator to pick
    elector = make_elector("ring", Config(3, MEMBERS), Promise(), random.Random(0), 0)
    with pytest.raises(ValueError):
        elector.step(1, message_from_pb("RingCoordinator", empty, tick_ms=10))


@pytest.mark.integration
def test_a_ring_node_refuses_an_empty_ring_coordinator(clusters):
    node = clusters.get("quiet", "ring").spec.node(3)
    with grpc.insecure_channel(node.peer_address) as ch:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.PeerStub(ch).RingCoordinator(
                pb.PeerMessage(sender_id=2, receiver_id=3, epoch=2, initiator_id=1), timeout=5
            )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
