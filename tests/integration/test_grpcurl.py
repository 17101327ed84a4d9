"""The real grpcurl drives a node with no .proto file: everything it knows comes from server reflection.
Over mutual TLS, with the certificates `cluster up` makes, as README.md and docs/service.md show."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from chaos.tools import GRPCURL_VERSION, ROOT, grpcurl_path
from node.launcher.cluster import wait_for
from node.tls import MEMBER_NAME, node_name

pytestmark = pytest.mark.integration

CALL_TIMEOUT_S = 30.0  # per grpcurl process; grpcurl itself gets -max-time below


def grpcurl(
    certs: Path, *args: str, holder: str = "client", server_name: str = MEMBER_NAME
) -> subprocess.CompletedProcess:
    """grpcurl as `holder` of the cluster whose certificates are in `certs`."""
    tls = [
        "-cacert",
        str(certs / "ca.pem"),
        "-cert",
        str(certs / f"{holder}.pem"),
        "-key",
        str(certs / f"{holder}.key"),
        "-servername",
        server_name,
    ]
    cmd = [str(grpcurl_path()), *tls, "-max-time", "5", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=CALL_TIMEOUT_S)


def ok(certs: Path, *args: str) -> str:
    done = grpcurl(certs, *args)
    assert done.returncode == 0, f"grpcurl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout


@pytest.fixture
def running(make_cluster):
    cluster = make_cluster(3, secure=True)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    return cluster, leader, epoch, Path(cluster.spec.certs_dir)


def test_install_pins_agree():
    script = (ROOT / ".ci" / "install-tools").read_text()
    match = re.search(r'^GRPCURL_VERSION="([^"]+)"$', script, re.MULTILINE)
    assert match and match.group(1) == GRPCURL_VERSION
    done = subprocess.run([str(grpcurl_path()), "-version"], capture_output=True, text=True, timeout=10)
    assert done.stderr.split() == ["grpcurl", f"v{GRPCURL_VERSION}"]


def test_grpcurl_lists_describes_and_calls_by_reflection(running):
    cluster, leader, epoch, certs = running
    addr = cluster.spec.node(1).client_address

    services = ok(certs, addr, "list").split()
    assert {"bullyproof.v1.Leadership", "grpc.health.v1.Health"} <= set(services), services
    assert "bullyproof.v1.Peer" not in services, "the client port serves no peer messages"

    described = ok(certs, addr, "describe", "bullyproof.v1.Leadership")
    assert "bullyproof.v1.Leadership is a service" in described
    assert "rpc GetLeader ( .bullyproof.v1.GetLeaderRequest ) returns ( .bullyproof.v1.LeaderInfo );" in described

    # Every node answers who leads. grpcurl prints proto3 JSON with the .proto field names (leader_id,
    # not leaderId) and uint64 as a string; it accepts either spelling as input.
    for node in cluster.spec.nodes:
        info = json.loads(ok(certs, "-d", "{}", node.client_address, "bullyproof.v1.Leadership/GetLeader"))
        assert info["known"] is True, info
        assert info["leader_id"] == leader and info["epoch"] == str(epoch), info
        assert info["node_id"] == node.id, info


def test_grpcurl_health_of_the_leader_service(running):
    cluster, leader, _, certs = running
    follower = next(n.id for n in cluster.spec.nodes if n.id != leader)

    def health(node_id: int) -> str:
        out = ok(
            certs,
            "-d",
            '{"service":"leader"}',
            cluster.spec.node(node_id).client_address,
            "grpc.health.v1.Health/Check",
        )
        return json.loads(out)["status"]

    # The leader serves "leader" once its lease is valid; a follower never does.
    wait_for(lambda: health(leader) == "SERVING", 10, what=f"node {leader} to report leader SERVING")
    assert health(follower) == "NOT_SERVING"
    assert (
        json.loads(ok(certs, cluster.spec.node(follower).client_address, "grpc.health.v1.Health/Check"))["status"]
        == "SERVING"
    )


def test_grpcurl_shows_the_status_code_of_a_refused_call(running):
    """The peer port has no reflection (it serves peers only): grpcurl reads the .proto instead."""
    cluster, leader, _, certs = running
    proto = ["-import-path", str(ROOT / "proto"), "-proto", "bullyproof/v1/bullyproof.proto"]
    body = f'{{"senderId": 1, "receiverId": {leader}, "epoch": "1"}}'
    peer = cluster.spec.node(leader).peer_address
    for holder, words in [("client", "needs a certificate of kind node"), ("node-2", "certificate names node 2")]:
        done = grpcurl(
            certs,
            *proto,
            "-d",
            body,
            peer,
            "bullyproof.v1.Peer/Coordinator",
            holder=holder,
            server_name=node_name(leader),
        )
        assert done.returncode == 64 + 7, (done.returncode, done.stderr)  # grpcurl exits 64 + the status code
        assert "Code: PermissionDenied" in done.stderr and words in done.stderr, done.stderr
    # Resign needs an admin (or the node's own certificate); a client is refused, an admin is not.
    refused = grpcurl(certs, cluster.spec.node(leader).client_address, "bullyproof.v1.Leadership/Resign")
    assert refused.returncode == 64 + 7 and "PermissionDenied" in refused.stderr, refused.stderr
