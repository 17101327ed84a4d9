"""The "message" history events: which traffic is recorded, why a refusal happened, and the rate cap."""

from __future__ import annotations

import json

import pytest

from node.core import Message, MsgType, Promise, Role
from node.core.kit import (
    EPOCH_PROMISED,
    EPOCH_STALE,
    LEADING,
    LOWER_ID,
    NOT_A_VOTER,
    OTHER_LEADER,
    PROMISE_LIVE,
    REFUSALS,
)
from node.core.membership import STALE
from node.runtime.events import EventLog, MessageLog
from node.runtime.peers import Before, is_election_traffic, refusal_words


def before(
    role: Role = Role.FOLLOWER,
    epoch: int = 3,
    promise: Promise = Promise(3, 5),
    promised_to: int = 5,
    left_ms: int = 0,
    node: int = 4,
) -> Before:
    return Before(node, role, epoch, promise, promised_to, left_ms)


def test_plain_heartbeats_are_not_election_traffic_but_a_handover_is():
    assert not is_election_traffic(Message(MsgType.HEARTBEAT, 5, 1, 3, round=7))
    assert is_election_traffic(Message(MsgType.HEARTBEAT, 5, 1, 3, resigning=True, successor=4))
    for t in (
        MsgType.ELECTION,
        MsgType.ALIVE,
        MsgType.COORDINATOR,
        MsgType.REQUEST_VOTE,
        MsgType.PRE_VOTE,
        MsgType.RING_ELECTION,
        MsgType.RING_COORDINATOR,
    ):
        assert is_election_traffic(Message(t, 2, 1, 1))


@pytest.mark.parametrize(
    "msg, refusal, state, why",
    [
        (Message(MsgType.COORDINATOR, 2, 4, 2), EPOCH_STALE, before(), "stale epoch 2: promised epoch 3 to node 5"),
        (Message(MsgType.COORDINATOR, 2, 4, 3), EPOCH_PROMISED, before(), "epoch 3 already promised to node 5"),
        (
            Message(MsgType.REQUEST_VOTE, 2, 4, 4),
            LEADING,
            before(role=Role.LEADER, epoch=3, promise=Promise(3, 4)),
            "leads epoch 3 itself",
        ),
        (
            Message(MsgType.COORDINATOR, 2, 4, 4),
            PROMISE_LIVE,
            before(left_ms=230),
            "promise to node 5 still live (230 ms left)",
        ),
        (Message(MsgType.COORDINATOR, 2, 4, 4), LOWER_ID, before(), "node 2 is lower: node 4 takes over (Bully)"),
        (Message(MsgType.COORDINATOR, 2, 4, 4), NOT_A_VOTER, before(), "node 4 is a learner: it does not vote"),
        (Message(MsgType.HEARTBEAT, 2, 4, 1), OTHER_LEADER, before(), "follows a later leader (epoch 3)"),
        (Message(MsgType.COORDINATOR, 2, 4, 4), STALE, before(), REFUSALS[STALE]),
    ],
)
def test_a_refusal_is_worded_from_the_cores_reason_and_the_receivers_state_before_the_step(msg, refusal, state, why):
    assert refusal_words(refusal, msg, state) == why


def test_every_reason_a_core_gives_has_words() -> None:
    for refusal in REFUSALS:
        assert refusal_words(refusal, Message(MsgType.COORDINATOR, 2, 4, 4), before()) not in ("", "refused")


def test_message_log_caps_each_second_and_reports_what_it_skipped(tmp_path):
    now = [0]
    log = EventLog(9, tmp_path / "events.jsonl")
    messages = MessageLog(log, per_s=2, clock_ns=lambda: now[0])
    assert [messages.record(type="election", src=1, dst=9, epoch=1) for _ in range(5)] == [
        True,
        True,
        False,
        False,
        False,
    ]
    now[0] = 1_000_000_000  # the next second
    assert messages.record(type="coordinator", src=9, dst=1, epoch=2)
    log.close()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["message"] * 3
    assert events[-1]["skipped"] == 3 and "skipped" not in events[0]
    assert all(e["node"] == 9 for e in events)
