"""Everything the core sends must pass the receiver's validation: the sim skips the wire, so check here."""

from __future__ import annotations

import pytest

from node.core import REPLY_TYPE, Message, MsgType, configuration_id, mode_names
from node.runtime.wire import RPC_NAME, check_peer_message, message_from_pb, message_to_pb
from node.sim.network import Network
from node.sim.schedule import run_schedule
from node.sim.swarm import SwarmSettings, swarm_schedule

ACKS = set(REPLY_TYPE.values())


@pytest.mark.parametrize("mode", mode_names())
@pytest.mark.parametrize("seed", range(12))
def test_every_request_the_core_sends_is_valid_on_the_wire(mode, seed, monkeypatch):
    checked: list[Message] = []
    original = Network._send

    def validating_send(net: Network, msg: Message) -> None:
        if msg.type not in ACKS:
            members = tuple(net.members)
            sent = message_to_pb(msg, tick_ms=10, configuration=configuration_id(members))
            rejection = check_peer_message(RPC_NAME[msg.type], sent, msg.dst, members)
            assert rejection is None, f"seed {seed} {mode}: {msg} rejected: {rejection}"
            assert message_from_pb(RPC_NAME[msg.type], sent, tick_ms=10) == msg
            checked.append(msg)
        original(net, msg)

    monkeypatch.setattr(Network, "_send", validating_send)
    net = run_schedule(swarm_schedule(seed, SwarmSettings(nodes=5, mode=mode))).net
    for leader in net.leaders():
        net.resign(leader)  # resigning heartbeats too
    net.run(100)
    kinds = {m.type for m in checked}
    assert MsgType.HEARTBEAT in kinds and len(kinds) >= 2, kinds  # heartbeats and the election's own messages


def test_every_request_type_has_its_rpc_in_the_proto_and_back() -> None:
    """A mode's messages reach the runtime only through service Peer: both lists must match exactly."""
    from node.api import bullyproof_pb2 as pb

    # (Heartbeats, a stream, is a transport for Heartbeat: not a message type of its own.)
    methods = pb.DESCRIPTOR.services_by_name["Peer"].methods
    proto_rpcs = {m.name for m in methods if not m.client_streaming}
    assert proto_rpcs == set(RPC_NAME.values())


def test_ring_fields_only_on_ring_rpcs() -> None:
    from node.api import bullyproof_pb2 as pb

    members = (1, 2, 3)
    bad = pb.PeerMessage(sender_id=2, receiver_id=1, epoch=1, round=1, ring_ids=[2])
    assert check_peer_message("Heartbeat", bad, 1, members).code.name == "INVALID_ARGUMENT"
    token = pb.PeerMessage(
        sender_id=2, receiver_id=1, epoch=0, ring_ids=[2, 3], initiator_id=2, configuration_id=configuration_id(members)
    )
    assert check_peer_message("RingElection", token, 1, members) is None
    for ids, initiator in (([2, 2], 2), ([2, 9], 2), ([2], 9)):
        wrong = pb.PeerMessage(sender_id=2, receiver_id=1, ring_ids=ids, initiator_id=initiator)
        assert check_peer_message("RingElection", wrong, 1, members).code.name == "INVALID_ARGUMENT"
    assert check_peer_message("NoSuchRpc", token, 1, members).code.name == "UNIMPLEMENTED"


def test_an_announced_lease_only_where_a_grant_answers_and_never_shorter_across_tick_lengths() -> None:
    from node.api import bullyproof_pb2 as pb
    from node.runtime.wire import MAX_LEASE_MS

    members = (1, 2, 3)
    ours = configuration_id(members)
    for rpc in ("Coordinator", "RequestVote"):
        ok = pb.PeerMessage(sender_id=2, receiver_id=1, epoch=3, lease_ms=700, configuration_id=ours)
        assert check_peer_message(rpc, ok, 1, members) is None
    beat = pb.PeerMessage(sender_id=2, receiver_id=1, epoch=3, round=1, lease_ms=700, configuration_id=ours)
    assert check_peer_message("Heartbeat", beat, 1, members) is None
    misplaced = {
        "Election": pb.PeerMessage(sender_id=2, receiver_id=1, epoch=3, lease_ms=700),
        "PreVote": pb.PeerMessage(sender_id=2, receiver_id=1, epoch=3, lease_ms=700),
        "Heartbeat": pb.PeerMessage(sender_id=2, receiver_id=1, epoch=3, resigning=True, lease_ms=700),
    }
    for rpc, req in misplaced.items():
        rejection = check_peer_message(rpc, req, 1, members)
        assert rejection.code.name == "INVALID_ARGUMENT" and "lease_ms" in rejection.detail, (rpc, rejection)
    huge = pb.PeerMessage(sender_id=2, receiver_id=1, epoch=3, lease_ms=MAX_LEASE_MS + 1)
    rejection = check_peer_message("Coordinator", huge, 1, members)
    assert rejection.code.name == "INVALID_ARGUMENT" and str(MAX_LEASE_MS) in rejection.detail
    # A leader counting 7 ticks of 100 ms announces 700 ms; a follower with 30 ms ticks must hold at
    # least 24 of them (23 would be 690 ms): the length is rounded up, what is left of a lease down.
    sent = message_to_pb(
        Message(MsgType.HEARTBEAT, 2, 1, 3, round=1, lease_ticks=7, lease_remaining=7), tick_ms=100, configuration=ours
    )
    received = message_from_pb("Heartbeat", sent, tick_ms=30)
    assert (received.lease_ticks, received.lease_remaining) == (24, 23)


def test_a_node_on_another_member_list_is_refused_and_never_counted() -> None:
    """A request from a node that runs another member list (or sends none) is refused with
    FAILED_PRECONDITION, naming both lists; an ack from one is not taken as an answer."""
    from node.api import bullyproof_pb2 as pb
    from node.runtime.wire import ack_from_pb, ack_to_pb

    ours, stale = (1, 2, 3, 4, 5), (1, 2, 3)
    assert configuration_id(ours) != configuration_id(stale) and configuration_id((3, 1, 2)) == configuration_id(stale)
    for theirs, words in ((configuration_id(stale), "runs another member list"), (0, "sent no member list")):
        req = pb.PeerMessage(sender_id=2, receiver_id=1, epoch=3, lease_ms=700, configuration_id=theirs)
        rejection = check_peer_message("Coordinator", req, 1, ours)
        assert rejection.code.name == "FAILED_PRECONDITION", rejection
        assert words in rejection.detail and "node 1 runs members 1,2,3,4,5" in rejection.detail, rejection.detail
        assert rejection.member_list
    # Refused for another reason first (here: no epoch): not a member-list refusal, whatever its list.
    other = check_peer_message("Coordinator", pb.PeerMessage(sender_id=2, receiver_id=1, epoch=0), 1, ours)
    assert other.code.name == "INVALID_ARGUMENT" and not other.member_list
    request = Message(MsgType.COORDINATOR, 1, 2, 3, lease_ticks=70)
    reply = Message(MsgType.COORDINATOR_ACK, 2, 1, 3, granted=True, promised_epoch=3)
    assert ack_from_pb(request, ack_to_pb(reply, configuration_id(stale)), configuration_id(ours)) is None
    assert ack_from_pb(request, ack_to_pb(reply, configuration_id(ours)), configuration_id(ours)) == reply


def test_under_an_address_template_any_node_may_send_and_the_configuration_decides() -> None:
    """--peer-address-template (quorum): a node added after this one started (node 7 here) is heard
    and named as a successor; without the template it is not a peer. Its own id, and id 0, never pass."""
    from node.api import bullyproof_pb2 as pb
    from node.core import Membership
    from node.runtime.wire import membership_to_pb

    m = Membership((1, 2, 3, 7), index=2, term=4)
    req = pb.PeerMessage(
        sender_id=7,
        receiver_id=1,
        epoch=5,
        round=1,
        lease_ms=700,
        configuration_id=m.id,
        configuration=membership_to_pb(m),
    )
    closed = check_peer_message("Heartbeat", req, 1, (1, 2, 3), "quorum")
    assert closed.code.name == "PERMISSION_DENIED" and "sender 7 is not a peer of node 1" in closed.detail
    assert check_peer_message("Heartbeat", req, 1, (1, 2, 3), "quorum", open_membership=True) is None
    handover = pb.PeerMessage(
        sender_id=2,
        receiver_id=1,
        epoch=5,
        resigning=True,
        successor_id=7,
        configuration_id=m.id,
        configuration=membership_to_pb(m),
    )
    assert check_peer_message("Heartbeat", handover, 1, (1, 2, 3), "quorum").code.name == "INVALID_ARGUMENT"
    assert check_peer_message("Heartbeat", handover, 1, (1, 2, 3), "quorum", open_membership=True) is None
    for sender in (0, 1):
        forged = pb.PeerMessage(
            sender_id=sender, receiver_id=1, epoch=5, round=1, configuration_id=m.id, configuration=membership_to_pb(m)
        )
        assert (
            check_peer_message("Heartbeat", forged, 1, (1, 2, 3), "quorum", open_membership=True).code.name
            == "PERMISSION_DENIED"
        )


def test_a_configuration_is_checked_once_and_answers_as_if_checked_every_time() -> None:
    from node.core.membership import Membership
    from node.runtime import wire

    good = Membership((1, 2, 3), (4,), 2, 1, (1, 2), ())
    bad = wire.membership_to_pb(good)
    bad.voters.append(1)  # listed twice
    cases = [(wire.membership_to_pb(good), good.id), (wire.membership_to_pb(good), good.id + 1), (bad, good.id)]
    for c, fingerprint in cases:
        for _ in range(2):  # the first answer is computed, the second remembered: both the same
            problem, membership = wire.checked_configuration(c, fingerprint)
            assert problem == wire.configuration_problem(c, fingerprint)
            assert membership == (None if problem else wire.membership_from_pb(c))
    assert wire.checked_configuration(cases[0][0], good.id) == ("", good)
    assert wire.checked_configuration(cases[1][0], good.id + 1)[0].startswith("configuration_id")
    # Only sound configurations are kept, and never more than the bound.
    wire._CHECKED.clear()
    too_long = wire.membership_to_pb(good)
    too_long.notify.extend(range(10, 10 + wire.MAX_MEMBERS + 1))
    assert wire.checked_configuration(too_long, good.id)[0].startswith("a configuration lists at most")
    assert wire.checked_configuration(bad, good.id)[0] and not wire._CHECKED
    for index in range(3 * wire._CHECKED_MAX):
        m = Membership((1, 2, 3), (), index, 1, (), ())
        assert wire.checked_configuration(wire.membership_to_pb(m), m.id) == ("", m)
    assert 0 < len(wire._CHECKED) <= wire._CHECKED_MAX
