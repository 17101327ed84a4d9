"""The "message" history events: which traffic is recorded, why a refusal happened, and the rate cap."""

from __future__ import annotations

import json

import pytest

from node.core import Message, MsgType, Promise, Role
from node.runtime.events import EventLog, MessageLog
from node.runtime.peers import Before, is_election_traffic, refusal_reason


def before(role: Role = Role.FOLLOWER, epoch: int = 3, promise: Promise = Promise(3, 5), promised_to: int = 5,
           left_ms: int = 0, node: int = 4) -> Before:
    return Before(node, role, epoch, promise, promised_to, left_ms)


def test_plain_heartbeats_are_not_election_traffic_but_a_handover_is():
    assert not is_election_traffic(Message(MsgType.HEARTBEAT, 5, 1, 3, round=7))
    assert is_election_traffic(Message(MsgType.HEARTBEAT, 5, 1, 3, resigning=True, successor=4))
    for t in (MsgType.ELECTION, MsgType.ALIVE, MsgType.COORDINATOR, MsgType.REQUEST_VOTE, MsgType.PRE_VOTE,
              MsgType.RING_ELECTION, MsgType.RING_COORDINATOR):
        assert is_election_traffic(Message(t, 2, 1, 1))


@pytest.mark.parametrize("msg, state, why", [
    (Message(MsgType.COORDINATOR, 2, 4, 2), before(), "stale epoch 2: promised epoch 3 to node 5"),
    (Message(MsgType.COORDINATOR, 2, 4, 3), before(), "epoch 3 already promised to node 5"),
    (Message(MsgType.REQUEST_VOTE, 2, 4, 4), before(role=Role.LEADER, epoch=3, promise=Promise(3, 4)),
     "leads epoch 3 itself"),
    (Message(MsgType.COORDINATOR, 2, 4, 4), before(left_ms=230), "promise to node 5 still live (230 ms left)"),
    (Message(MsgType.COORDINATOR, 2, 4, 4), before(), "node 2 is lower: node 4 takes over (Bully)"),
    (Message(MsgType.PRE_VOTE, 5, 4, 4), before(), "refused"),
])
def test_a_refusal_says_why_from_the_receivers_state_before_the_step(msg, state, why):
    assert refusal_reason(msg, state) == why


def test_message_log_caps_each_second_and_reports_what_it_skipped(tmp_path):
    now = [0]
    log = EventLog(9, tmp_path / "events.jsonl")
    messages = MessageLog(log, per_s=2, clock_ns=lambda: now[0])
    assert [messages.record(type="election", src=1, dst=9, epoch=1) for _ in range(5)] == [True, True, False, False, False]
    now[0] = 1_000_000_000  # the next second
    assert messages.record(type="coordinator", src=9, dst=1, epoch=2)
    log.close()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["message"] * 3
    assert events[-1]["skipped"] == 3 and "skipped" not in events[0]
    assert all(e["node"] == 9 for e in events)
