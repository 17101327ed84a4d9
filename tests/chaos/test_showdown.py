"""`bullyproof showdown`, tiny: classic and quorum through one partition on 3 real nodes behind
Toxiproxy, 2 failover kills each. The verdicts in its table are the checkers' on the recorded
histories; the seed is printed, each run replays with `bullyproof chaos run ... --seed SEED`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chaos.checkers import availability, check_all
from chaos.runner import RECOVERY_BOUND_ELECTION_TIMEOUTS
from node.history import read_history

pytestmark = pytest.mark.chaos

SEED = 3


def test_a_tiny_showdown_writes_its_table_and_shows_classic_split_and_quorum_hold(tmp_path):
    out, work = tmp_path / "out", tmp_path / "runs"
    print(
        f"\nseed {SEED}: replay with `bullyproof showdown --modes classic,quorum --scenarios partition "
        f"--nodes 3 --kills 2 --seed {SEED}`"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "node.cli",
            "showdown",
            "--modes",
            "classic,quorum",
            "--scenarios",
            "partition",
            "--nodes",
            "3",
            "--kills",
            "2",
            "--seed",
            str(SEED),
            "--out",
            str(out),
            "--work-dir",
            str(work),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(done.stderr)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["crashes"] == [] and data["seed"] == SEED
    rows = {row["mode"]: row for row in data["rows"]}
    assert set(rows) == {"classic", "quorum"}
    for row in rows.values():
        assert row["scenario"] == "partition-leader-minority" and set(row["verdicts"]) == {
            "P1",
            "P2",
            "P3",
            "P3g",
            "P4",
            "P5",
            "P6",
        }
        # The row is what the checkers say about the recorded history.
        events = read_history(work / f"{row['mode']}-partition-leader-minority" / "history.jsonl")
        report = check_all(events, row["mode"], RECOVERY_BOUND_ELECTION_TIMEOUTS * 500)
        assert row["violations"] == report.violations
        assert row["availability"] == pytest.approx(availability(events), abs=1e-4)
        assert 0 < row["availability"] < 1  # cold start and the partition itself are never agreed

    quorum, classic = rows["quorum"], rows["classic"]
    assert quorum["violations"] == [] and quorum["two_leaders_ms"] == 0 and quorum["unfenced"] == 0, quorum
    # Textbook Bully: the old leader, cut off alone, keeps leading while the other two elect.
    assert "P3" in classic["violations"] and classic["two_leaders_ms"] > 0, classic
    assert not {"P2", "P4", "P5"} & set(classic["violations"]), classic
    assert classic["verdicts"]["P3g"] == "n/a" and quorum["verdicts"]["P3g"] == "ok"
    for mode in ("classic", "quorum"):
        assert data["failover"][mode]["n"] == 2 and data["failover"][mode]["median_ms"] > 0

    table = (out / "showdown.md").read_text()
    classic_line = next(line for line in table.splitlines() if line.startswith("| `classic` | partition |"))
    assert "FAIL" in classic_line, table
    assert "| `quorum` | partition | ok | ok | ok | ok | ok | ok | ok | 0 |" in table, table
    assert json.loads((out / "showdown.json").read_text())["rows"] == data["rows"]
    png = (out / "showdown.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) < 200_000
