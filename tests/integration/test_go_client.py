"""A Go client generated from the .proto (proto/go) talks to real nodes: `wholeads` asks who leads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from chaos.tools import ROOT
from node.launcher.ports import free_port

pytestmark = pytest.mark.integration

GO_MODULE = ROOT / "proto" / "go"
BUILD_TIMEOUT_S = 600.0  # a cold build downloads grpc from the Go module proxy once, then compiles it
RUN_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def wholeads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    assert go, "`go` is not on PATH: the Go client test needs Go 1.26+ (CI has it; see README)"
    binary = tmp_path_factory.mktemp("go") / "wholeads"
    # go.sum is checked in and -mod=readonly is the default: the build uses the module cache and
    # only downloads (once) what the cache lacks. -buildvcs=false: no git lookups for a test build.
    done = subprocess.run(
        [go, "build", "-buildvcs=false", "-o", str(binary), "./cmd/wholeads"],
        cwd=GO_MODULE,
        env={**os.environ, "CGO_ENABLED": "0"},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert done.returncode == 0, f"go build ./cmd/wholeads in {GO_MODULE} failed:\n{done.stdout}{done.stderr}"
    return binary


def run(binary: Path, *args: str, security: tuple[str, ...] = ("-insecure",)) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *security, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_every_node_names_the_agreed_leader(wholeads, make_cluster):
    cluster = make_cluster(3)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    addrs = [n.client_address for n in cluster.spec.nodes]

    done = run(wholeads, *addrs)
    assert done.returncode == 0, done.stderr
    answers = lines(done.stdout)
    assert [a["addr"] for a in answers] == addrs
    assert [a["node"] for a in answers] == [n.id for n in cluster.spec.nodes]
    for a in answers:
        assert (a["known"], a["leader"], a["epoch"]) == (True, leader, epoch), a


def test_watch_prints_the_current_view_first(wholeads, make_cluster):
    cluster = make_cluster(3)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    done = run(wholeads, "-watch", "-count", "1", cluster.spec.node(1).client_address)
    assert done.returncode == 0, done.stderr
    [event] = lines(done.stdout)
    assert (event["node"], event["known"], event["leader"], event["epoch"]) == (1, True, leader, epoch), event


def test_exit_status_names_the_failure(wholeads, make_cluster):
    cluster = make_cluster(3)
    cluster.wait_for_agreement(timeout_s=15)
    # The store process serves FencedStore only: Leadership calls there are UNIMPLEMENTED (exit 3).
    for args in (["-watch"], []):
        done = run(wholeads, *args, cluster.spec.store_address)
        assert done.returncode == 3, (args, done.returncode, done.stderr)
        assert "Unimplemented" in done.stderr and done.stdout == "", done.stderr
    # Nobody listens on a fresh port: the live node still answers, the dead address fails (exit 1).
    live, dead = cluster.spec.node(1).client_address, f"127.0.0.1:{free_port()}"
    done = run(wholeads, live, dead)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert [a["addr"] for a in lines(done.stdout)] == [live]
    assert dead in done.stderr
    # No address at all is a usage error.
    assert run(wholeads).returncode == 2


def test_mutual_tls_with_the_clusters_certificates(wholeads, make_cluster):
    cluster = make_cluster(3, secure=True)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    certs = Path(cluster.spec.certs_dir)
    as_client = (
        "-cacert",
        str(certs / "ca.pem"),
        "-cert",
        str(certs / "client.pem"),
        "-key",
        str(certs / "client.key"),
    )
    addrs = [n.client_address for n in cluster.spec.nodes]
    done = run(wholeads, *addrs, security=as_client)
    assert done.returncode == 0, done.stderr
    assert {(a["leader"], a["epoch"]) for a in lines(done.stdout)} == {(leader, epoch)}
    # Plaintext to a TLS node fails (exit 1); no security flags at all is a usage error (exit 2).
    assert run(wholeads, addrs[0]).returncode == 1
    neither = run(wholeads, addrs[0], security=())
    assert neither.returncode == 2 and "-insecure" in neither.stderr
