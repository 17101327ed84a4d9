"""How long each peer request waits for its answer (node.runtime.peers.ack_deadline_s)."""

from __future__ import annotations

import pytest

from node.core import Message, MsgType
from node.runtime.peers import LEASE_ROUNDS, ack_deadline_s

INTERVAL_S, LEASE_S = 0.1, 0.35


def request(type_: MsgType, resigning: bool = False) -> Message:
    return Message(type=type_, src=1, dst=2, epoch=3, resigning=resigning)


@pytest.mark.parametrize("type_", sorted(LEASE_ROUNDS, key=lambda t: t.value))
def test_a_request_whose_ack_builds_a_lease_waits_as_long_as_the_lease(type_):
    assert ack_deadline_s(request(type_), INTERVAL_S, LEASE_S) == LEASE_S


@pytest.mark.parametrize(
    "type_", [t for t in MsgType if t not in LEASE_ROUNDS and not t.value.endswith("_ack")], ids=lambda t: t.value
)
def test_every_other_request_waits_one_heartbeat_interval(type_):
    assert ack_deadline_s(request(type_), INTERVAL_S, LEASE_S) == INTERVAL_S


def test_a_resigning_heartbeat_gets_no_ack_and_keeps_the_short_deadline():
    assert ack_deadline_s(request(MsgType.HEARTBEAT, resigning=True), INTERVAL_S, LEASE_S) == INTERVAL_S


def test_never_shorter_than_an_interval_even_with_a_lease_that_is():
    assert ack_deadline_s(request(MsgType.HEARTBEAT), INTERVAL_S, 0.05) == INTERVAL_S
