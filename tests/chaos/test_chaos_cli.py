"""The chaos CLI as a user drives it: list, run --json, and faults on a running `cluster up`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from node.launcher.cluster import read_cluster_file, wait_for

pytestmark = pytest.mark.chaos


def cli(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], capture_output=True, text=True, timeout=timeout_s)


def leader(directory) -> dict:
    return json.loads(cli("leader", "--dir", str(directory)).stdout)


def test_list_names_every_scenario_one_per_line():
    out = cli("chaos", "list").stdout.splitlines()
    assert "partition-leader-minority" in out and "random-mix" in out and len(out) == len(set(out)) >= 11


def test_a_scenario_with_its_own_timing_says_so_and_checks_overrides():
    described = cli("chaos", "list", "--describe").stdout
    assert "quick-restart-in-lease" in described and "heartbeat 1000 ms, election timeout 3000 ms" in described
    assert "instant: the leader was on the minority side when the partition began" in described
    bad = cli("chaos", "run", "quick-restart-in-lease", "--election-timeout-ms", "500")
    assert bad.returncode == 2 and "at least 3x" in bad.stderr, bad.stderr


def test_run_json_reports_properties_and_seed(tmp_path):
    result = cli(
        "chaos", "run", "leader-blackholed", "--mode", "classic", "--seed", "11", "--json", "--dir", str(tmp_path / "r")
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["seed"] == 11 and report["mode"] == "classic"
    assert isinstance(report["violations"], list) and isinstance(report["split_brain"], bool)
    assert isinstance(report["stale_writes_rejected"], int)
    # Whether the run got to its moment (the blackholed node led when the cut began), and why.
    assert isinstance(report["instant"]["reached"], bool) and "blackhole began" in report["instant"]["evidence"]
    assert (tmp_path / "r" / "timeline.png").stat().st_size > 0
    assert (tmp_path / "r" / "history.jsonl").exists()


def test_faults_on_a_running_cluster_from_another_terminal(tmp_path):
    directory = tmp_path / "cluster"
    up = cli("cluster", "up", "--detach", "--nodes", "5", "--dir", str(directory))
    try:
        assert up.returncode == 0, up.stderr
        data = read_cluster_file(directory)
        assert data["toxiproxy_api"] and all(n["client_address"] and n["peer_address"] for n in data["nodes"])
        first = wait_for(lambda: leader(directory)["leader"], 15, what="a leader")
        others = [n["id"] for n in data["nodes"] if n["id"] != first]
        minority = [first, others[0]]
        majority = others[1:]
        out = cli(
            "chaos",
            "partition",
            ",".join(map(str, minority)),
            "/",
            ",".join(map(str, majority)),
            "--dir",
            str(directory),
        )
        assert out.returncode == 0, out.stderr

        # The majority elects its own leader; the old one (in the minority) steps down.
        def majority_leader():
            views = leader(directory)["nodes"]
            leaders = {views[str(n)]["leader"] for n in majority if views[str(n)]}
            return leaders.pop() if len(leaders) == 1 and None not in leaders and leaders != {first} else None

        new = wait_for(majority_leader, 15, what="the majority's own leader")
        assert new in majority
        assert (
            cli(
                "chaos", "latency", f"{majority[0]}->{new}", "150ms", "--jitter", "20ms", "--dir", str(directory)
            ).returncode
            == 0
        )
        assert cli("chaos", "heal", "--dir", str(directory)).returncode == 0
        healed = wait_for(lambda: leader(directory)["agreed"] and leader(directory), 15, what="agreement after heal")
        assert healed["epoch"] > 1
        bad = cli("chaos", "blackhole", "42", "--dir", str(directory))
        assert bad.returncode == 2 and "no node 42" in bad.stderr
    finally:
        down = cli("cluster", "down", "--dir", str(directory))
        assert down.returncode == 0, down.stderr
