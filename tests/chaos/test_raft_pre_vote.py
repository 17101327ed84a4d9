"""Raft's PreVote on real processes, switched on (the default) and off (`--mode-option no-pre-vote`).

A follower cut off from everyone times out again and again. With PreVote it only asks whether it
could win, so its term stays put and on healing the leader and term are unchanged; without it, each
timeout raises its term, and on healing that term deposes a healthy leader. Either way the recorded
history must keep every safety property.
"""

from __future__ import annotations

import time

import pytest

from chaos.checkers import check_all
from chaos.harness import ChaosCluster, collect_history

pytestmark = pytest.mark.chaos

HEARTBEAT_MS, ELECTION_TIMEOUT_MS = 100, 500


@pytest.mark.parametrize("options", [(), ("no-pre-vote",)], ids=["pre-vote", "no-pre-vote"])
def test_a_rejoining_follower_deposes_the_leader_only_without_pre_vote(tmp_path, options):
    cc = ChaosCluster(
        tmp_path / "cluster",
        5,
        "raft",
        HEARTBEAT_MS,
        ELECTION_TIMEOUT_MS,
        mode_options=options,
        scenario="rejoin-after-isolation",
    )
    cc.start()
    try:
        leader, term = cc.wait_for_leader()
        follower = min(n for n in cc.ids if n != leader)
        cc.partition([[follower], [n for n in cc.ids if n != follower]], fault="isolate-follower")
        time.sleep(8 * ELECTION_TIMEOUT_MS / 1000)  # several election timeouts alone
        cc.heal()
        time.sleep(4 * ELECTION_TIMEOUT_MS / 1000)
        after = cc.wait_for_leader()
        history = collect_history(cc.directory)
    finally:
        cc.stop()
    report = check_all(history, "raft", bound_ms=10 * ELECTION_TIMEOUT_MS)
    assert report.violations == [], report.to_json()
    if options:
        assert after[1] > term + 2, f"without PreVote the rejoined node's inflated term wins: {term} -> {after}"
    else:
        assert after == (leader, term), f"with PreVote nothing changes: {(leader, term)} -> {after}"
