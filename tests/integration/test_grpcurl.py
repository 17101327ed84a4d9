"""The real grpcurl drives a node with no .proto file: everything it knows comes from server reflection."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from chaos.tools import GRPCURL_VERSION, ROOT, grpcurl_path
from node.launcher.cluster import wait_for

pytestmark = pytest.mark.integration

CALL_TIMEOUT_S = 30.0  # per grpcurl process; grpcurl itself gets -max-time below


def grpcurl(*args: str) -> subprocess.CompletedProcess:
    cmd = [str(grpcurl_path()), "-plaintext", "-max-time", "5", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=CALL_TIMEOUT_S)


def ok(*args: str) -> str:
    done = grpcurl(*args)
    assert done.returncode == 0, f"grpcurl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout


@pytest.fixture
def running(make_cluster):
    cluster = make_cluster(3)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    return cluster, leader, epoch


def test_install_pins_agree():
    script = (ROOT / ".ci" / "install-tools").read_text()
    match = re.search(r'^GRPCURL_VERSION="([^"]+)"$', script, re.MULTILINE)
    assert match and match.group(1) == GRPCURL_VERSION
    done = subprocess.run([str(grpcurl_path()), "-version"], capture_output=True, text=True, timeout=10)
    assert done.stderr.split() == ["grpcurl", f"v{GRPCURL_VERSION}"]


def test_grpcurl_lists_describes_and_calls_by_reflection(running):
    cluster, leader, epoch = running
    addr = cluster.spec.node(1).client_address

    services = ok(addr, "list").split()
    assert {"bullyproof.v1.Leadership", "bullyproof.v1.Peer", "grpc.health.v1.Health"} <= set(services), services

    described = ok(addr, "describe", "bullyproof.v1.Leadership")
    assert "bullyproof.v1.Leadership is a service" in described
    assert "rpc GetLeader ( .bullyproof.v1.GetLeaderRequest ) returns ( .bullyproof.v1.LeaderInfo );" in described

    # Every node answers who leads. grpcurl prints proto3 JSON with the .proto field names (leader_id,
    # not leaderId) and uint64 as a string; it accepts either spelling as input.
    for node in cluster.spec.nodes:
        info = json.loads(ok("-d", "{}", node.client_address, "bullyproof.v1.Leadership/GetLeader"))
        assert info["known"] is True, info
        assert info["leader_id"] == leader and info["epoch"] == str(epoch), info
        assert info["node_id"] == node.id, info


def test_grpcurl_health_of_the_leader_service(running):
    cluster, leader, _ = running
    follower = next(n.id for n in cluster.spec.nodes if n.id != leader)

    def health(node_id: int) -> str:
        out = ok("-d", '{"service":"leader"}', cluster.spec.node(node_id).client_address, "grpc.health.v1.Health/Check")
        return json.loads(out)["status"]

    # The leader serves "leader" once its lease is valid; a follower never does.
    wait_for(lambda: health(leader) == "SERVING", 10, what=f"node {leader} to report leader SERVING")
    assert health(follower) == "NOT_SERVING"
    assert json.loads(ok(cluster.spec.node(follower).client_address, "grpc.health.v1.Health/Check"))["status"] == "SERVING"


def test_grpcurl_shows_the_status_code_of_a_bad_call(running):
    cluster, leader, _ = running
    done = grpcurl("-d", '{"senderId": 99, "receiverId": %d, "epoch": "1"}' % leader,
                   cluster.spec.node(leader).peer_address, "bullyproof.v1.Peer/Coordinator")
    assert done.returncode == 64 + 7, (done.returncode, done.stderr)  # grpcurl exits 64 + the status code
    assert "Code: PermissionDenied" in done.stderr, done.stderr
    assert "not a peer" in done.stderr, done.stderr
