"""Each deliberately broken variant must make at least one scenario fail its checks.

Planted bugs are a test-only switch: the node and store refuse them unless the harness sets
BULLYPROOF_TEST_ONLY_PLANTED_BUGS=1 (tests/integration/test_bad_input.py shows the refusal).

A bug can only be caught where its scenario reached the moment it exists for (the scenario's
Instant, judged from the history): each case starts at a fixed seed and moves to the next seed
while a run misses that moment (tests/chaos/conftest.py: how many, and when a miss skips or fails).
Every seed is printed with whether it reached the instant; replay with the command shown.
"""

from __future__ import annotations

import pytest

from chaos.scenarios import INSTANTS
from node.core import PlantedBug

pytestmark = pytest.mark.chaos

CASES = [
    # bug, scenario, mode, seed, properties of which at least one must fail
    (PlantedBug.IGNORE_LEASE, "partition-leader-minority", "quorum", 3, {"P3"}),
    # The bridge node acknowledges the far side's candidate despite its live lease to the leader.
    (PlantedBug.DOUBLE_ACK, "bridge", "quorum", 4, {"P1", "P3"}),
    # Restarted without their promises, nodes reuse epoch numbers a different leader already had.
    (PlantedBug.FORGET_PROMISE, "full-restart", "quorum", 3, {"P1"}),
    # Restarted inside its promise window to a leader whose lease still runs, a node asked to elect
    # votes for itself, and the minority that lost the leader makes it a second leader.
    (PlantedBug.BOOT_SELF_VOTE, "quick-restart-in-lease", "quorum", 1, {"P1", "P3"}),
    # Textbook Bully's stale leader keeps writing; a store that accepts stale epochs lets it in.
    (PlantedBug.STALE_STORE, "partition-leader-minority", "classic", 3, {"P2"}),
]


def test_every_case_names_its_instant():
    """A case whose scenario names no instant would pass or fail on whatever its run happened to do."""
    assert [c[1] for c in CASES if c[1] not in INSTANTS] == []


@pytest.mark.parametrize("bug, scenario, mode, seed, expected", CASES, ids=[c[0].value for c in CASES])
def test_planted_bug_is_caught(bug, scenario, mode, seed, expected, run_at_instant):
    print(
        f"\nreplay: BULLYPROOF_TEST_ONLY_PLANTED_BUGS=1 bullyproof chaos run {scenario} --mode {mode} "
        f"--seed SEED --planted-bug {bug.value}  (SEED from {seed}, below)"
    )
    result = run_at_instant(scenario, mode, seed, planted_bugs=frozenset({bug}))
    caught = expected & set(result.report.violations)
    assert caught, (
        f"{bug.value} went unnoticed in {scenario} at seed {result.seed}, although the run reached "
        f"its instant: violations {result.report.violations}\n{result.text}"
    )
