"""Fixtures for hostile-input tests: clusters and a store owned by this worker, stopped by pid; and
the fuzzing counts (requests per RPC, statuses, seed) printed at the end of the run.

The clusters live as long as a test module: an idle 3-node cluster (heartbeats every 100 ms) costs
about a tenth of a CPU, and a pool kept for the whole session held up to a dozen of them through
every later test on a two-core machine."""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fuzzlib import FuzzStats, child_env, forget_status_channels, start_store, stop_store  # noqa: E402

from node.launcher.cluster import LocalCluster, local_spec  # noqa: E402

SEED: int = 0


def pytest_configure(config) -> None:
    """One seed per run, the same in every xdist worker: BULLYPROOF_FUZZ_SEED, or drawn from the
    run's id (which the workers share), or at random without xdist. Each test derives its own from it."""
    global SEED
    given = os.environ.get("BULLYPROOF_FUZZ_SEED")
    run_id = getattr(config, "workerinput", {}).get("testrunuid")
    SEED = int(given) if given else int(run_id[:8], 16) if run_id else random.SystemRandom().randrange(2**32)


@pytest.fixture(scope="session")
def fuzz_seed() -> int:
    return SEED


# Election timeout per kind of cluster. "quiet" clusters get only requests they must refuse (and
# reads), so their state must not move: a long timeout keeps a busy test machine from electing on its
# own and looking like a bug. "noisy" ones take every fuzzed peer message, valid ones too (a fake
# sender can move a node today; mTLS will refuse it) and are judged on statuses, liveness and safety.
# "handover" ones take fuzzed Resign and TransferLeadership calls: leadership moves, safely.
# "guarded" ones take undecodable bodies (every server has DecodeGuard); "load" ones take client load: their
# timeout leaves a shared, busy test machine room (the benchmark measures the default 100/500 ms).
ELECTION_TIMEOUT_MS = {"quiet": 2000, "noisy": 500, "handover": 500, "guarded": 500, "load": 1000}


class ClusterPool:
    """3-node clusters of this worker's current test module, one per (kind, mode), started when first asked for."""

    def __init__(self, tmp_path_factory) -> None:
        self.tmp = tmp_path_factory
        self.started: dict[tuple[str, str], LocalCluster] = {}

    def get(self, kind: str, mode: str = "quorum") -> LocalCluster:
        if (kind, mode) not in self.started:
            spec = local_spec(3, mode, 100, ELECTION_TIMEOUT_MS[kind])
            cluster = LocalCluster(spec, self.tmp.mktemp(f"{kind}-{mode}"), env=child_env())
            self.started[kind, mode] = cluster
            cluster.start()
            cluster.wait_for_agreement(timeout_s=20)
        return self.started[kind, mode]

    def stop(self) -> None:
        for cluster in self.started.values():
            cluster.stop()
            forget_status_channels(cluster)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory) -> Iterator[ClusterPool]:
    pool = ClusterPool(tmp_path_factory)
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture(scope="module")
def quiet_cluster(clusters) -> LocalCluster:
    return clusters.get("quiet")


@pytest.fixture
def fuzz_store(tmp_path):
    """A store of the test's own: nothing else writes to it."""
    store = start_store(tmp_path / "store", child_env())
    try:
        yield store
    finally:
        stop_store(store)


@pytest.fixture
def fuzz_stats(request, record_property):
    made: list[FuzzStats] = []

    def make(rpc: str) -> FuzzStats:
        stats = FuzzStats(rpc, SEED)
        made.append(stats)
        return stats

    yield make
    for stats in made:
        record_property("fuzz", stats.to_json())
        print(stats.to_json())


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    rows: dict[tuple[str, str], dict] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == "fuzz":
                    row = json.loads(value)
                    rows[report.nodeid, row["rpc"]] = row
    if not rows:
        return
    tr = terminalreporter
    tr.section(f"fuzzing counts (run seed {next(iter(rows.values()))['seed']}; replay: BULLYPROOF_FUZZ_SEED=<seed>)")
    total = 0
    for (_nodeid, _), row in sorted(rows.items(), key=lambda kv: kv[1]["rpc"]):
        total += row["requests"]
        codes = ", ".join(f"{k} {v}" for k, v in row["codes"].items())
        notes = f"; {row['notes']}" if row.get("notes") else ""
        tr.write_line(f"{row['rpc']:<40} {row['requests']:>7} requests (seed {row['seed']}): {codes}{notes}")
    tr.write_line(f"{'total':<40} {total:>7} requests")
    out = os.environ.get("BULLYPROOF_FUZZ_REPORT")
    if out:
        Path(out).write_text(json.dumps(sorted(rows.values(), key=lambda r: r["rpc"]), indent=1) + "\n")
