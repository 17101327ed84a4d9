"""Every scenario in both modes, on a real Toxiproxy and real processes, judged from the history.

Quorum mode must keep every property in every scenario, and a scenario with a dangerous moment
(its Instant) is retried with the next seed until a run reached it (tests/chaos/conftest.py), every
run judged. Classic mode must be *shown* to split its brain in the partition scenarios (runs that
cut the leader off), with what fencing did about it. Seeds are printed; replay with
`bullyproof chaos run NAME --mode MODE --seed SEED`.

One scenario per mode (WITH_ADAPTERS) also writes through the fencing adapters: an app beside each
node writes to PostgreSQL, Redis and SQLite while its node leads (chaos.apps), through proxies no
partition cuts, and P2 and P5 judge each database's log as they judge the store's
(docs/fencing-chaos.md). Those tests need the database servers (`make databases`); they skip without.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest

from chaos.runner import run_scenario
from chaos.scenarios import INSTANTS, SCENARIOS, scenarios_for

pytestmark = pytest.mark.chaos

# Partitions where textbook Bully keeps the old leader and elects another beside it.
SPLITTING = ["leader-blackholed", "partition-leader-minority", "one-way"]
# The run of each mode in which apps also write through every fencing adapter (chaos.apps).
WITH_ADAPTERS = {
    "quorum": "partition-leader-minority",
    "classic": "partition-leader-minority",
    "raft": "membership-grow-shrink",
}
ADAPTERS = ("postgres", "redis", "sqlite")


def options_for(name: str, mode: str, databases: Callable[[], dict[str, str]]) -> dict:
    """run_scenario's options: the databases (conftest.py's fenced_databases) in the run of WITH_ADAPTERS."""
    if WITH_ADAPTERS.get(mode) != name:
        return {}
    fences = databases()
    print("  and add to the replay:", *(f"--fence {db}={url}" for db, url in fences.items()))
    return {"fences": fences}


def judged_on_every_adapter(result, refusals: bool = False) -> None:
    """Each database accepted writes (its log is what P2 judged) and acknowledged some (what P5
    looked up); with `refusals`, each also refused some: a deposed leader's writes reached it."""
    p2, p5 = (next(r for r in result.report.results if r.id == p).data["resources"] for p in ("P2", "P5"))
    seen = result.report.fencing["resources"]
    print("through the adapters:", {name: seen[name] for name in ADAPTERS})
    for name in ADAPTERS:
        assert p2[name]["accepted"] > 0 and p5[name]["acknowledged"] > 0, (name, result.text)
        if refusals:
            assert seen[name]["refused"] > 0, (name, result.text)


def seed_for(name: str, mode: str) -> int:
    """Stable per scenario and mode, so a failure replays; change by editing, never by chance."""
    return zlib.crc32(f"{name}/{mode}".encode()) % 10_000


def run(name: str, mode: str, tmp_path):
    seed = seed_for(name, mode)
    print(f"\nseed {seed}: replay with `bullyproof chaos run {name} --mode {mode} --seed {seed}`")
    result = run_scenario(name, mode, seed, tmp_path / "run")
    print(result.text)
    return result


def keeps_every_property(result) -> None:
    assert result.report.violations == [], result.text
    assert not result.report.split_brain
    assert result.report.recovery_ms is not None, result.text


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_quorum_mode_keeps_every_property(name, run_at_instant, fenced_databases):
    seed = seed_for(name, "quorum")
    print(f"\nreplay with `bullyproof chaos run {name} --mode quorum --seed SEED` (SEED from {seed}, below)")
    options = options_for(name, "quorum", fenced_databases)
    result = run_at_instant(name, "quorum", seed, check_each=keeps_every_property, **options)
    if options:
        judged_on_every_adapter(result)


# Raft changes its membership through the same kit as quorum; the real-process run of that is this one.
def test_raft_mode_grows_and_shrinks_keeping_every_property(run_at_instant, fenced_databases):
    name = "membership-grow-shrink"
    seed = seed_for(name, "raft")
    print(f"\nreplay with `bullyproof chaos run {name} --mode raft --seed SEED` (SEED from {seed}, below)")
    options = options_for(name, "raft", fenced_databases)
    result = run_at_instant(name, "raft", seed, check_each=keeps_every_property, **options)
    judged_on_every_adapter(result)


def test_every_splitting_scenario_names_its_instant():
    """Classic Bully splits only where the leader was cut off; a run that missed that proves nothing."""
    assert [name for name in SPLITTING if name not in INSTANTS] == []


@pytest.mark.parametrize("name", SPLITTING)
def test_classic_mode_splits_its_brain_and_fencing_shows_it(name, run_until_seen, fenced_databases):
    seed = seed_for(name, "classic")
    print(f"\nreplay with `bullyproof chaos run {name} --mode classic --seed SEED` (SEED from {seed}, below)")
    options = options_for(name, "classic", fenced_databases)

    def refused_nowhere(result) -> str:
        """With the adapters: the databases that refused none of the deposed leader's writes (its app
        may not get to write while it is deposed: that hangs on the moment its term ends)."""
        seen = result.report.fencing["resources"]
        untouched = [db for db in ADAPTERS if seen[db]["refused"] == 0] if options else []
        return f"no deposed leader's write reached {', '.join(untouched)}" if untouched else ""

    result = run_until_seen(name, "classic", seed, refused_nowhere, **options)
    report = result.report
    assert report.split_brain, f"classic Bully kept one leader in {name}?\n{result.text}"
    assert {"P1", "P3"} & set(report.violations), result.text
    fencing = report.fencing
    # Either the store fenced off the stale leader, or (same epoch on two leaders) it could not.
    assert fencing["stale_rejected"] + fencing["unfenced"] > 0, result.text
    # The store itself stays honest whatever the leaders do; once healed, the highest id bullies
    # its way back and everyone agrees again.
    assert not {"P2", "P4", "P5"} & set(report.violations), result.text
    if options:  # so does each database behind its adapter, refusing the deposed leader's writes
        judged_on_every_adapter(result, refusals=True)


# Rolling timing changes are about promises outlasting leases, which classic mode does not make.
@pytest.mark.parametrize(
    "name", [n for n in scenarios_for("classic") if n not in SPLITTING and n != "rolling-timing-change"]
)
def test_classic_mode_other_scenarios_keep_the_store_honest(name, tmp_path):
    result = run(name, "classic", tmp_path)
    assert "P2" not in result.report.violations and "P5" not in result.report.violations, result.text
