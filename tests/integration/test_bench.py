"""The real-process benchmarks measure something (no assertion on speed: benchmarks are not tests)."""

from __future__ import annotations

import pytest

from bench.real import HEARTBEAT_TYPES, bench_messages_point

pytestmark = pytest.mark.integration


def test_messages_bench_counts_an_election_on_real_processes():
    row = bench_messages_point("quorum", 3, trials=1, heartbeat_interval_ms=100, election_timeout_ms=500)
    assert row["error"] is None, row["error"]
    (trial,) = row["trials"]
    assert trial["new_leader"] != trial["old_leader"]
    # The survivors proposed and acknowledged a coordinator; heartbeats are not election messages.
    assert trial["by_type"].get("coordinator", 0) >= 1 and trial["by_type"].get("coordinator_ack", 0) >= 1, trial
    assert not set(trial["by_type"]) & HEARTBEAT_TYPES
    assert trial["messages"] == sum(trial["by_type"].values()) == row["median"]
