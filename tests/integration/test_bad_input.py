"""Bad input gets a precise status or a one-line error, and changes nothing."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from lone_node import lone_node_argv

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.core import Membership, configuration_id
from node.runtime.wire import MAX_EPOCH, MAX_LEASE_MS

pytestmark = pytest.mark.integration

BAD_PEER_CALLS = [
    # (rpc, fields, expected code, words in the detail)
    ("Heartbeat", dict(sender_id=99, epoch=1, round=1), grpc.StatusCode.PERMISSION_DENIED, "not a peer"),
    ("Coordinator", dict(sender_id=0, epoch=1), grpc.StatusCode.PERMISSION_DENIED, "not a peer"),
    ("Coordinator", dict(sender_id="self", epoch=1), grpc.StatusCode.PERMISSION_DENIED, "not a peer"),
    (
        "Coordinator",
        dict(sender_id=1, receiver_id=2, epoch=1),
        grpc.StatusCode.FAILED_PRECONDITION,
        "addressed to node 2",
    ),
    ("Coordinator", dict(sender_id=1, epoch=0), grpc.StatusCode.INVALID_ARGUMENT, "epoch >= 1"),
    ("Coordinator", dict(sender_id=1, epoch=MAX_EPOCH + 1), grpc.StatusCode.INVALID_ARGUMENT, "impossible"),
    ("Heartbeat", dict(sender_id=1, epoch=5, round=0), grpc.StatusCode.INVALID_ARGUMENT, "round >= 1"),
    ("Election", dict(sender_id=1, epoch=1, round=3), grpc.StatusCode.INVALID_ARGUMENT, "only meaningful on Heartbeat"),
    (
        "Alive",
        dict(sender_id=1, epoch=1, resigning=True),
        grpc.StatusCode.INVALID_ARGUMENT,
        "only meaningful on Heartbeat",
    ),
    (
        "Alive",
        dict(sender_id=1, epoch=1, lease_ms=700),
        grpc.StatusCode.INVALID_ARGUMENT,
        "lease_ms is only meaningful",
    ),
    (
        "Coordinator",
        dict(sender_id=1, epoch=9, lease_ms=MAX_LEASE_MS + 1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "longer than any lease",
    ),
    # Quorum mode: every message carries its sender's configuration, well formed.
    (
        "Coordinator",
        dict(sender_id=1, epoch=9, configuration_id=configuration_id((1, 2, 3, 4, 5))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "sent no configuration",
    ),
    (
        "Heartbeat",
        dict(sender_id=1, epoch=9, round=1, configuration=pb.Configuration(voters=[1, 1, 2])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "lists a node twice",
    ),
    (
        "Heartbeat",
        dict(sender_id=1, epoch=9, round=1, configuration=pb.Configuration(voters=[1, 2, 3])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "does not match the configuration",
    ),
    (
        "Heartbeat",
        dict(
            sender_id=1,
            epoch=9,
            round=1,
            configuration=pb.Configuration(voters=[1, 2], term=-2),
            configuration_id=Membership((1, 2)).id,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "impossible",
    ),
    ("Heartbeat", dict(sender_id=1, epoch=9, round=1), grpc.StatusCode.FAILED_PRECONDITION, "sent no configuration"),
]


@pytest.fixture
def running(make_cluster):
    cluster = make_cluster(3)
    cluster.wait_for_agreement(timeout_s=15)
    return cluster


def test_bad_peer_messages_get_precise_status_and_change_nothing(running):
    target = 3  # the leader: the node with most to lose
    node = running.spec.node(target)
    with grpc.insecure_channel(node.client_address) as ch:
        before = pb_grpc.LeadershipStub(ch).GetStatus(pb.GetStatusRequest(), timeout=2)
    with grpc.insecure_channel(node.peer_address) as ch:
        stub = pb_grpc.PeerStub(ch)
        for rpc, fields, code, words in BAD_PEER_CALLS:
            fields = dict(fields)
            if fields["sender_id"] == "self":
                fields["sender_id"] = target
            fields.setdefault("receiver_id", target)
            with pytest.raises(grpc.RpcError) as info:
                getattr(stub, rpc)(pb.PeerMessage(**fields), timeout=2)
            assert info.value.code() == code, (rpc, fields, info.value.details())
            assert words in info.value.details(), (rpc, fields, info.value.details())
    with grpc.insecure_channel(node.client_address) as ch:
        after = pb_grpc.LeadershipStub(ch).GetStatus(pb.GetStatusRequest(), timeout=2)
        leader = pb_grpc.LeadershipStub(ch).GetLeader(pb.GetLeaderRequest(), timeout=2)
    assert (after.promised_epoch, after.promised_to) == (before.promised_epoch, before.promised_to)
    assert after.epoch == before.epoch and leader.known and leader.leader_id == target
    # The member-list refusals are shown: the node's own list, and the last refusal per peer.
    assert after.configuration_id == configuration_id((1, 2, 3))
    refusal = next(p.configuration_refusal for p in after.peers if p.id == 1)
    assert "node 1 sent no configuration" in refusal, refusal
    assert running.wait_for_agreement(timeout_s=5) == (target, before.epoch)


def test_stale_coordinator_from_a_member_is_refused_not_an_error(running):
    node = running.spec.node(1)
    with grpc.insecure_channel(node.peer_address) as ch:
        members = [n.id for n in running.spec.nodes]
        stale = pb.PeerMessage(
            sender_id=2,
            receiver_id=1,
            epoch=1,
            configuration_id=configuration_id(members),
            configuration=pb.Configuration(voters=members, previous=members),
        )
        reply = pb_grpc.PeerStub(ch).Coordinator(stale, timeout=2)
        # Epoch 1 is either already promised to node 3, or below the promise: refused either way.
        assert reply.ack.granted is False or reply.ack.promised_epoch == 1
        # A configuration of the same order with other voters: refused in the ack, with the reason and
        # the receiver's own configuration, never counted.
        other = Membership((1, 2))
        conflicting = pb.PeerMessage(
            sender_id=2,
            receiver_id=1,
            epoch=50,
            configuration_id=other.id,
            configuration=pb.Configuration(voters=[1, 2], previous=[1, 2]),
            lease_ms=350,
        )
        ack = pb_grpc.PeerStub(ch).Coordinator(conflicting, timeout=2).ack
    assert not ack.granted and ack.refusal == "configuration-conflict" and list(ack.configuration.voters) == members


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], capture_output=True, text=True, timeout=60)


# A node's command line that is good but for the flag a case changes.
NODE = "node --insecure --id 1 --listen 127.0.0.1:0 --client-listen 127.0.0.1:0 --peers 2=h:1 --state-dir /tmp/x"


def node_with(flag: str, value: str) -> list[str]:
    args = NODE.split()
    args[args.index(flag) + 1] = value
    return args


@pytest.mark.parametrize(
    "args, words",
    [
        (node_with("--id", "0"), "positive"),
        (node_with("--peers", "2=nohost"), "HOST:PORT"),
        (node_with("--peers", "1=h:1"), "own id"),
        (node_with("--listen", "127.0.0.1:99999"), "outside 0..65535"),
        (NODE.split() + ["--heartbeat-interval-ms", "300", "--election-timeout-ms", "500"], "at least 3x"),
        (NODE.split() + ["--planted-bug", "double-ack"], "test-only"),
        (
            ["store", "--insecure", "--listen", "127.0.0.1:0", "--data-dir", "/tmp/x", "--planted-bug", "stale-store"],
            "test-only",
        ),
        (["cluster", "up", "--nodes", "0"], "must be positive"),
        (["cluster", "up", "--nodes", "30", "--dir", "/tmp/never"], "between 2 and 25"),
        (["cluster", "up", "--nodes", "1", "--dir", "/tmp/never"], "between 2 and 25"),
        (["compose", "--nodes", "1", "--output", "/tmp/never/compose.yml"], "between 2 and 25"),
        (["cluster", "up", "--dir", "/etc/hostname"], "cannot use /etc/hostname as the run directory"),
        (["status", "--dir", "/etc/hostname"], "not a directory"),
        (["leader", "--dir", "/nonexistent/cluster"], "no cluster at"),
        (["kill", "7", "--dir", "/nonexistent/cluster"], "no cluster at"),
        (["cluster", "up", "--mode", "paxos"], "invalid choice"),
    ],
)
def test_bad_cli_arguments_give_a_one_line_error(args, words):
    result = cli(*args)
    assert result.returncode == 2, result
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.startswith(("bullyproof", "usage"))]
    assert lines and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_node_id_on_a_running_cluster(running):
    result = cli("kill", "9", "--dir", str(running.dir))
    assert result.returncode == 2 and "no node 9" in result.stderr
    assert running.wait_for_agreement(timeout_s=5)


def test_corrupt_promise_file_refuses_to_start(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "promise.json").write_text("{not json")
    result = subprocess.run(lone_node_argv(state), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "corrupt" in result.stderr
    assert (state / "promise.json").read_text() == "{not json", "the evidence is left as it was"
