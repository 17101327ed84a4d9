"""The descriptor-built strategies cover every field type bullyproof's .proto uses, and more.

Requests today carry only unsigned integers, bools, strings, bytes and a repeated field; replies also
have enums, nested and repeated messages, maps and signed integers. Every message type is generated
here, through Hypothesis and through the fast derived path, and must serialize and parse back; over
the draws, enums must take unknown numbers, integers their range's edges and negative values,
repeated fields several elements, nested messages must be set, strings non-ASCII and empty.
"""

from __future__ import annotations

import random
from collections import defaultdict

import protofuzz as pf
import pytest
from google.protobuf.descriptor import FieldDescriptor as F
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.api import bullyproof_pb2 as pb

MESSAGES = [*pb.DESCRIPTOR.message_types_by_name.values(), *health_pb2.DESCRIPTOR.message_types_by_name.values()]


@pytest.mark.parametrize("descriptor", MESSAGES, ids=lambda d: d.full_name)
def test_every_message_type_is_generated_and_round_trips(descriptor):
    cls = pf.message_class(descriptor)

    @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(pf.batches(descriptor, size=20, drawn=4))
    def run(bodies):
        for body in bodies:
            assert cls.FromString(body).SerializeToString() is not None

    run()


def _walk(msg, seen: dict) -> None:
    for field, value in msg.ListFields():
        repeated = pf._is_repeated(field)
        values = value if (repeated and not pf._is_map(field)) else [value]
        if pf._is_map(field):
            seen["map", field.full_name].append(len(value))
            continue
        if repeated:
            seen["repeated", field.full_name].append(len(value))
        for v in values:
            if field.type == F.TYPE_MESSAGE:
                seen["nested", field.full_name].append(1)
                _walk(v, seen)
            else:
                seen[field.type, field.full_name].append(v)


def test_the_values_reach_the_edges():
    seen: dict = defaultdict(list)
    rng = random.Random(7)
    for descriptor in MESSAGES:
        for _ in range(800):
            _walk(pf.random_message(descriptor, rng), seen)
        drawn = []

        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(pf.messages(descriptor))
        def collect(msg):
            drawn.append(msg)

        collect()
        for msg in drawn:
            _walk(msg, seen)
    role = seen[F.TYPE_ENUM, "bullyproof.v1.NodeStatus.role"]
    assert set(role) - {v.number for v in pb.Role.DESCRIPTOR.values}, "no unknown enum number drawn"
    epochs = seen[F.TYPE_UINT64, "bullyproof.v1.PeerMessage.epoch"]
    assert {1, 2**62, 2**63, 2**64 - 1} <= set(epochs)  # (0 is "unset": ListFields skips it)
    assert min(seen[F.TYPE_INT64, "bullyproof.v1.PeerView.last_heard_ms"]) < 0
    assert max(seen["repeated", "bullyproof.v1.PeerMessage.ring_ids"]) > 100
    assert seen["nested", "bullyproof.v1.NodeStatus.peers"] and seen["nested", "bullyproof.v1.PeerReply.ack"]
    assert max(seen["map", "bullyproof.v1.NodeStatus.messages_sent"]) > 1
    keys = seen[F.TYPE_STRING, "bullyproof.v1.WriteRequest.key"]
    assert any(k and not k.isascii() for k in keys) and any(len(k) > 1000 for k in keys)
    assert any(len(v) > 1000 for v in seen[F.TYPE_BYTES, "bullyproof.v1.WriteRequest.value"])


@given(st.data())
@settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_malformed_bodies_mostly_do_not_parse(data):
    descriptor = data.draw(st.sampled_from(MESSAGES))
    body = data.draw(pf.malformed(descriptor))
    assert isinstance(body, bytes)
    pf.parses(descriptor, body)  # either way, no exception escapes


def test_coverage_goals_are_met_only_by_requests_that_meet_them():
    """The fuzzers' coverage check can fail: empty requests meet only "unset" goals."""
    descriptor = pb.WriteRequest.DESCRIPTOR
    hints = (("writer_id", (1, 2, 3)),)
    goals = pf.coverage_goals(descriptor, hints)
    assert {"writer_id = 1", "writer_id: another value", "key: set", "key: unset", "unknown fields"} <= goals
    empty = pf.covered(descriptor, b"", hints)
    assert "key: unset" in empty and "key: set" not in empty and "unknown fields" not in empty
    assert "writer_id: another value" in empty  # 0, unset, is not one of the hinted values
    full = pf.covered(
        descriptor, pb.WriteRequest(writer_id=2, key="k").SerializeToString() + pf.tag(99, 0) + b"\x01", hints
    )
    assert {"writer_id = 2", "key: set", "unknown fields"} <= full
