"""Everything the core sends must pass the receiver's validation: the sim skips the wire, so check here."""

from __future__ import annotations

import pytest

from node.core import REPLY_TYPE, Message, MsgType
from node.explore import SwarmSettings, run_schedule, swarm_schedule
from node.sim import Network
from node.wire import RPC_NAME, check_peer_message, message_from_pb, message_to_pb

ACKS = set(REPLY_TYPE.values())


@pytest.mark.parametrize("mode", ["classic", "quorum"])
@pytest.mark.parametrize("seed", range(12))
def test_every_request_the_core_sends_is_valid_on_the_wire(mode, seed, monkeypatch):
    checked: list[Message] = []
    original = Network._send

    def validating_send(net: Network, msg: Message) -> None:
        if msg.type not in ACKS:
            members = tuple(net.members)
            rejection = check_peer_message(RPC_NAME[msg.type], message_to_pb(msg), msg.dst, members)
            assert rejection is None, f"seed {seed} {mode}: {msg} rejected: {rejection}"
            assert message_from_pb(RPC_NAME[msg.type], message_to_pb(msg)) == msg
            checked.append(msg)
        original(net, msg)

    monkeypatch.setattr(Network, "_send", validating_send)
    net = run_schedule(swarm_schedule(seed, SwarmSettings(nodes=5, mode=mode))).net
    for leader in net.leaders():
        net.resign(leader)  # resigning heartbeats too
    net.run(100)
    kinds = {m.type for m in checked}
    assert {MsgType.HEARTBEAT, MsgType.ELECTION, MsgType.COORDINATOR} <= kinds
