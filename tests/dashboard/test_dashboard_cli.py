"""Starting the dashboard wrong: one line that names what is wrong, and nothing left running."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_directory_without_a_cluster_is_named(tmp_path):
    out = cli("dashboard", "--dir", str(tmp_path / "nothing"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"bullyproof: error: no cluster at {tmp_path / 'nothing'}: "
        f"{tmp_path / 'nothing' / 'cluster.json'} does not exist "
        f"(start one with: bullyproof cluster up --dir {tmp_path / 'nothing'})"
    ]


def test_a_taken_port_is_named(tmp_path, taken_port):
    (tmp_path / "cluster.json").write_text(json.dumps({"nodes": [], "store": {"address": "127.0.0.1:1"}}))
    out = cli("dashboard", "--dir", str(tmp_path), "--port", str(taken_port))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"bullyproof: error: port {taken_port} on 127.0.0.1 is taken by another program; choose another with --port"
    ]


def test_cluster_up_checks_the_dashboard_port_before_it_starts_anything(tmp_path, taken_port):
    out = cli("cluster", "up", "--dashboard", "--dashboard-port", str(taken_port), "--dir", str(tmp_path / "c"))
    assert out.returncode == 2 and f"port {taken_port} on 127.0.0.1 is taken" in out.stderr
    assert "--dashboard-port" in out.stderr
    assert not (tmp_path / "c").exists()
    detached = cli("cluster", "up", "--dashboard", "--detach", "--dir", str(tmp_path / "d"))
    assert detached.returncode == 2 and "drop --detach" in detached.stderr and not (tmp_path / "d").exists()
