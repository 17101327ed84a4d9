"""Each deliberately broken variant must make at least one scenario fail its checks.

Planted bugs are a test-only switch: the node and store refuse them unless the harness sets
BULLYPROOF_TEST_ONLY_PLANTED_BUGS=1 (tests/integration/test_bad_input.py shows the refusal).

A bug can only be caught where its scenario reached the moment it exists for (the scenario's
Instant, judged from the history): each case starts at a fixed seed and moves to the next seed
while a run misses that moment (tests/chaos/conftest.py: how many, and when a miss skips or fails),
or reaches it and misses the bug on an overloaded machine (run_until_seen: the bite can hang on a
few milliseconds; a few such misses fail too).
Every seed is printed with whether it reached the instant; replay with the command shown.
"""

from __future__ import annotations

import pytest

from chaos.scenarios import INSTANTS
from node.client.fencing import FenceBug
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
def test_planted_bug_is_caught(bug, scenario, mode, seed, expected, run_until_seen):
    print(
        f"\nreplay: BULLYPROOF_TEST_ONLY_PLANTED_BUGS=1 bullyproof chaos run {scenario} --mode {mode} "
        f"--seed SEED --planted-bug {bug.value}  (SEED from {seed}, below)"
    )

    def unnoticed(result) -> str:
        caught = expected & set(result.report.violations)
        return "" if caught else f"{bug.value} went unnoticed (violations {result.report.violations})"

    run_until_seen(scenario, mode, seed, unnoticed, planted_bugs=frozenset({bug}))


# A fencing adapter's bug, on real databases, judged by the same P2 (chaos.apps writes through every
# adapter; docs/fencing-chaos.md). The adapters check the epoch outside the write's transaction: in
# classic Bully's split brain the deposed leader's app checks (its epoch still the highest there),
# its successor's app writes, and the deposed write lands on top. Every write pauses between the
# adapter's check and its write (the adapters' test hook, as a GC pause would), so a deposed leader's
# app is in that window most of the time. Whether it is when its successor's first write lands on a
# database is timing, like a scenario's instant: a run where it never was on any database proves
# nothing, and the next seed is tried (at most FENCE_TRIES runs, each printed with its seed).
FENCE_BUG = FenceBug.CHECK_OUTSIDE_TRANSACTION
FENCE_SCENARIO, FENCE_MODE, FENCE_SEED = "partition-leader-minority", "classic", 3
PAUSE_AT_CHECK_MS = 300
FENCE_TRIES = 3
ADAPTERS = ("postgres", "redis", "sqlite")


def test_a_planted_adapter_bug_fails_p2_on_a_database(run_at_instant, fenced_databases):
    databases = fenced_databases()
    fences = " ".join(f"--fence {name}={url}" for name, url in databases.items())
    print(
        f"\nreplay: bullyproof chaos run {FENCE_SCENARIO} --mode {FENCE_MODE} --seed SEED {fences} "
        f"--planted-fence-bug {FENCE_BUG.value} --pause-at-check-ms {PAUSE_AT_CHECK_MS}"
        f"  (SEED from {FENCE_SEED}, below)"
    )
    seed, tried = FENCE_SEED, []
    for _ in range(FENCE_TRIES):
        result = run_at_instant(
            FENCE_SCENARIO,
            FENCE_MODE,
            seed,
            fences=databases,
            fence_bugs=frozenset({FENCE_BUG}),
            pause_at_check_ms=PAUSE_AT_CHECK_MS,
        )
        p2 = next(r for r in result.report.results if r.id == "P2")
        per_resource = {name: figures["violations"] for name, figures in p2.data["resources"].items()}
        print(f"seed {result.seed}: P2 findings per resource {per_resource}", *p2.evidence[:6], sep="\n  ")
        # The store's rule is its own: only the databases behind the planted adapters may break P2.
        assert per_resource["store"] == 0, result.text
        if any(per_resource[name] for name in ADAPTERS):
            return
        tried.append(result.seed)
        seed = result.seed + 1
    pytest.fail(f"{FENCE_BUG.value} went unnoticed on every database at seeds {tried}\nlast report:\n{result.text}")
