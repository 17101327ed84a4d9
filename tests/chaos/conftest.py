"""Running a scenario until it reaches the moment it exists for (chaos.scenarios.Instant)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chaos.runner import RunResult, run_until_reached

# Seeds tried per test before giving up on the instant. One try is enough on an idle machine; under
# load (two CPU-bound processes on two cores) a schedule aimed from outside the nodes misses
# sometimes, and six misses in a row are rare enough to mean something.
INSTANT_TRIES = 6
# Per test, for up to INSTANT_TRIES runs: a slow scenario (quick-restart-in-lease) takes about a minute under load.
INSTANT_TIMEOUT_S = 1200
# More runnable tasks than cores, on average over the last minute: processes waited for a CPU.
OVERLOADED_LOAD_PER_CORE = 1.0
# Runs that reach the instant but miss what the test must see there, each on an overloaded machine,
# before the test fails anyway (run_until_seen).
SEEN_TRIES = 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Room for INSTANT_TRIES runs in every test that may need them."""
    for item in items:
        if "run_at_instant" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(INSTANT_TIMEOUT_S))


@pytest.fixture
def fenced_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], dict[str, str]]:
    """databases(): what chaos.apps writes to through the fencing adapters, by name: this worker's
    PostgreSQL (a fresh database) and Redis servers, started on first use (tests/conftest.py; the test
    skips where they cannot run), and a SQLite file. Each run keeps its own tables and keys there."""

    def databases() -> dict[str, str]:
        return {
            "postgres": request.getfixturevalue("postgres_url"),
            "redis": request.getfixturevalue("redis_url"),
            "sqlite": f"sqlite://{tmp_path / 'fence.sqlite3'}",
        }

    return databases


@pytest.fixture
def run_at_instant(tmp_path: Path) -> Callable[..., RunResult]:
    """run(name, mode, seed, check_each=None, **run_scenario options): the first run, from seed
    upwards, that reached the scenario's instant; ``check_each`` is called on every run, reached or not.

    If no run reached it within INSTANT_TRIES seeds, is that a skip or a failure? Passing would be a
    lie (nothing was tested), and a skip that is always allowed would hide a scenario that stopped
    reaching its moment (a changed protocol, a broken schedule): every test must be able to fail.
    But a busy machine alone can push every try past its moment, and no test may fail merely
    because the machine was busy. So the miss is a skip, loud and with every seed's evidence, only
    when the machine was measurably overloaded during the tries (the 1-minute load average per core
    at the end of some run was at least OVERLOADED_LOAD_PER_CORE); on a machine with CPU to spare,
    six misses mean the scenario no longer does what it is for, and the test fails.
    """

    def run(
        name: str, mode: str, seed: int, check_each: Callable[[RunResult], None] | None = None, **options: Any
    ) -> RunResult:
        results = run_until_reached(name, mode, seed, tmp_path, INSTANT_TRIES, **options)
        for result in results:
            if check_each is not None:
                check_each(result)
        if results[-1].reached:
            print(results[-1].text)
            return results[-1]
        misses = "\n".join(
            f"  seed {r.seed} (load {r.load_per_core:.2f} per core): {r.instant.evidence}"
            for r in results
            if r.instant is not None
        )
        what = (
            f"{name} ({mode}) never reached its instant ({results[-1].instant.description}) in "
            f"{len(results)} seeds from {seed}:\n{misses}\nlast report:\n{results[-1].text}"
        )
        load = max(r.load_per_core for r in results)
        if load >= OVERLOADED_LOAD_PER_CORE:
            pytest.skip(f"MACHINE OVERLOADED (load up to {load:.2f} per core), nothing tested: {what}")
        pytest.fail(
            f"the scenario no longer reaches its instant on a machine with CPU to spare "
            f"(load at most {load:.2f} per core): {what}"
        )

    return run


@pytest.fixture
def run_until_seen(run_at_instant: Callable[..., RunResult]) -> Callable[..., RunResult]:
    """run(name, mode, seed, missing, **run_scenario options): the first run that reached the
    scenario's instant (run_at_instant) in which ``missing(result)`` is '' (else it says what the test
    did not see: a planted bug that did not bite, a deposed leader's write that reached no database).

    Once the instant is reached, whether that happens can still hang on a few milliseconds. On a
    machine with CPU to spare a miss fails at once; on an overloaded one the next seed is tried,
    SEEN_TRIES runs in all, and then it fails too: something never seen any more must not pass as a
    busy machine (`make test` itself keeps both cores busy).
    """

    def run(name: str, mode: str, seed: int, missing: Callable[[RunResult], str], **options: Any) -> RunResult:
        misses: list[str] = []
        for _ in range(SEEN_TRIES):
            result = run_at_instant(name, mode, seed, **options)
            why = missing(result)
            if not why:
                return result
            what = (
                f"{why}, in {name} ({mode}) at seed {result.seed}, although the run reached its instant\n{result.text}"
            )
            if result.load_per_core < OVERLOADED_LOAD_PER_CORE:
                pytest.fail(what)
            misses.append(f"seed {result.seed} (load {result.load_per_core:.2f} per core)")
            seed = result.seed + 1
        pytest.fail(f"missed in {SEEN_TRIES} overloaded runs that reached the instant ({', '.join(misses)}): {what}")

    return run
