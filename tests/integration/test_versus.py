"""`bullyproof bench` (bullyproof beside etcd) runs and reports every part: a smoke test, no speed asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.etcd import proto_fields
from bench.versus import IDLE_AS_CLUSTER_UP, PARTS, etcd_failover
from chaos.tools import ETCD_BINARY, etcd_installed, ghz_installed

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_bench_reports_every_part_for_bullyproof(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    argv = [
        sys.executable,
        "-m",
        "node.cli",
        "bench",
        "--quick",
        "--skip",
        "etcd",
        "--modes",
        "quorum",
        "--kills",
        "2",
        "--sizes",
        "3",
        "--size-kills",
        "1",
        "--cold-start-runs",
        "1",
        "--idle-s",
        "1",
        "--requests",
        "200",
        "--false-alarm-s",
        "3",
        "--false-alarm-links",
        "20/15/1",
        "--out",
        str(out),
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "bench.json").read_text())
    assert {"machine", "failover", "cold_start", "idle", "sizes", "query", "suite", "false_alarms"} <= set(result)
    assert result["etcd"] == {"skipped": "--skip etcd"} and result["suite"] == {"skipped": "--quick"}
    assert result["machine"]["nproc"] >= 1 and result["machine"]["python"]

    (row,) = result["failover"]
    assert (row["heartbeat_interval_ms"], row["election_timeout_ms"], row["kills"]) == (100, 500, 2)
    assert set(row["systems"]) == {"quorum"}  # bullyproof only: no etcd, so no ratio to it
    quorum = row["systems"]["quorum"]
    assert "error" not in quorum, quorum
    assert quorum["kills"] == len(quorum["samples_ms"]) == 2 and "over_etcd" not in quorum
    assert 0 < quorum["min_ms"] <= quorum["median_ms"] <= quorum["p99_ms"] <= quorum["worst_ms"]
    assert quorum["median_over_et"] == round(quorum["median_ms"] / 500, 2)
    assert (out / "failover-100-500.png").stat().st_size > 0

    for how in ("toxiproxy", "direct"):
        assert result["cold_start"][how]["samples_ms"][0] > 0, result["cold_start"][how]
        assert result["cold_start"][how]["cli_reported_ms"], "cluster up did not print its agreement line"
    nodes = {"node-1", "node-2", "node-3", "node-4", "node-5"}
    alone, as_cluster_up = result["idle"]["quorum"], result["idle"][IDLE_AS_CLUSTER_UP]
    assert set(alone["per_process"]) == nodes  # the election alone, as etcd is measured: no store, no writes
    assert set(as_cluster_up["per_process"]) == nodes | {"store"}
    for idle in (alone, as_cluster_up):
        assert idle["rss_mb_mean"] > 0 and idle["leader"] in idle["per_process"] and "vs_etcd" not in idle
    assert not result["idle"]["paired_with_etcd"] and "etcd" not in result["idle"]
    floor = result["idle"]["grpc_floor"]
    assert set(floor) == {"unary", "stream"}
    for kind, f in floor.items():
        assert "error" not in f, f
        # The sender ran its whole window (1 s settle + 1 s measured at 10 per s) and every echo came back.
        assert f["echoes"] >= 10 and f["messages_per_s"] == 10, (kind, f)
        assert {"server", "sender"} <= set(f) and f["server"]["rss_mb"] > 0, (kind, f)
    (size,) = result["sizes"]
    assert size["n"] == 3 and size["kills"] == 1 and size["samples_ms"][0] > 0, size
    if ghz_installed():
        for role in ("leader_node", "follower_node"):
            assert result["query"][role]["status_codes"] == {"OK": 200}, result["query"]
            assert result["query"][role]["throughput_per_s"] > 0
    else:
        assert "skipped" in result["query"]
    fa = result["false_alarms"]
    assert "error" not in fa, fa
    assert fa["systems"] == ["quorum"] and fa["seconds_per_setting"] == 3  # no etcd: --skip etcd
    (setting,) = fa["settings"]
    assert setting["link"] == {
        "latency_ms": 20,
        "jitter_ms": 15,
        "loss_percent": 1.0,
        "stall_ms": 240,
        "stalls_per_connection_direction_per_s": pytest.approx(0.1),
    }
    row = setting["systems"]["quorum"]
    assert row["polls"] > 0 and row["leader_changes"] >= 0 and row["unagreed_s"] >= 0
    assert "elections_started" in row["own_counters"] and len(setting["loadavg_before"]) == 3
    md = (out / "bench.md").read_text()
    assert "| 100 / 500 ms | bullyproof quorum | 2 |" in md and "Not measured in this run: " in md
    assert "| unary | **" in md and "| stream | **" in md
    assert "## False alarms" in md and "| bullyproof quorum | 20±15 ms, 1 % loss | 0.1 |" in md
    assert set(PARTS) >= {"failover", "cold-start", "idle", "sizes", "query", "suite", "false-alarms"}


def test_etcd_status_is_decoded_from_the_wire() -> None:
    # StatusResponse{header{member_id: 300}, leader: 7}: field 1 length-delimited, field 4 varint.
    header = bytes([0x10, 0xAC, 0x02])  # field 2, varint 300
    raw = bytes([0x0A, len(header)]) + header + bytes([0x20, 0x07])
    reply = proto_fields(raw)
    assert proto_fields(reply[1])[2] == 300 and reply[4] == 7


@pytest.mark.skipif(not etcd_installed(), reason=f"{ETCD_BINARY} not installed (bullyproof bench installs it)")
def test_etcd_failover_is_measured() -> None:
    r = etcd_failover(ETCD_BINARY, kills=1, heartbeat_ms=100, election_ms=500)
    assert len(r["samples_s"]) == 1 and 0 < r["samples_s"][0] < 30 and r["cold_start_ms"] > 0
