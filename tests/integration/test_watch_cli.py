"""`bullyproof leader` and `status` on a cluster named by its client addresses (--nodes), as for a
cluster on other hosts: nothing read from its run directory but the certificates handed over."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from node.launcher.cluster import process_fault

pytestmark = pytest.mark.integration


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def addresses(cluster, ids=None) -> str:
    return ",".join(n.client_address for n in cluster.spec.nodes if ids is None or n.id in ids)


def test_leader_and_status_by_addresses_with_the_clusters_certificates(make_cluster, tmp_path):
    cluster = make_cluster(3, secure=True)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    certs = str(cluster.dir / "certs")
    out = cli("leader", "--nodes", addresses(cluster), "--certs", certs)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["leader"], got["epoch"], got["agreed"]) == (leader, epoch, True)
    assert sorted(got["nodes"]) == ["1", "2", "3"]

    out = cli("status", "--nodes", addresses(cluster), "--certs", certs, "--as", "admin")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert {k: v["node_id"] for k, v in status.items()} == {"1": 1, "2": 2, "3": 3}

    # A node that is down: named by its id it is listed without an answer; the others still agree.
    follower = next(n.id for n in cluster.spec.nodes if n.id != leader)
    process_fault(cluster.dir, str(follower), "kill")
    named = ",".join(f"{n.id}={n.client_address}" if n.id == follower else n.client_address for n in cluster.spec.nodes)
    got = json.loads(cli("leader", "--nodes", named, "--certs", certs).stdout)
    assert got["nodes"][str(follower)] is None and got["leader"] == leader

    # Plaintext to a TLS cluster, and a CA that is not the cluster's: one line naming the handshake.
    out = cli("leader", "--nodes", addresses(cluster), "--insecure")
    assert out.returncode == 2 and "handshake refused" in out.stderr and "--certs" in out.stderr
    out = cli("status", "--nodes", addresses(cluster, {leader}))
    assert out.returncode == 2 and "give exactly one of --certs DIR" in out.stderr


def test_by_addresses_refuses_bad_lists_and_stray_flags(make_cluster):
    cluster = make_cluster(3)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    got = json.loads(cli("leader", "--nodes", addresses(cluster), "--insecure").stdout)
    assert (got["leader"], got["epoch"]) == (leader, epoch)
    for bad, says in [
        ("localhost", "'localhost' is not HOST:PORT"),
        ("0=127.0.0.1:1", "positive node id"),
        (f"{cluster.spec.node(1).client_address},{cluster.spec.node(1).client_address}", "given twice"),
    ]:
        out = cli("leader", "--nodes", bad, "--insecure")
        assert out.returncode == 2 and says in out.stderr, out.stderr
    out = cli("leader", "--nodes", "127.0.0.1:1", "--insecure")
    assert out.returncode == 2 and "no node answers at 127.0.0.1:1" in out.stderr
    out = cli("status", "--dir", str(cluster.dir), "--insecure")
    assert out.returncode == 2 and "--insecure go with --nodes" in out.stderr
