"""Shared fixtures: real processes, owned by the test that starts them and stopped by pid."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from node.launcher.cluster import LocalCluster, local_spec  # noqa: E402
from tests.databases import PostgresServer, RedisServer, StoreServer, Unavailable  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (a stable sort keeps the rest in order): pytest-xdist hands tests out in this
    order, so the long ones start at once instead of leaving one worker busy alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    started: list[LocalCluster] = []

    def make(n: int = 5, mode: str = "quorum", env: dict[str, str] | None = None,
             write_period_ms: int | None = None, secure: bool = False, spares: int = 0, **timing: int) -> LocalCluster:
        """Plaintext unless `secure` (mutual TLS, certificates in the cluster's directory): these
        tests are about elections; tests/integration/test_security.py is about who may do what."""
        directory = tmp_path / f"cluster-{len(started)}"
        spec = local_spec(n, mode, certs_dir=str(directory / "certs") if secure else None, spares=spares, **timing)
        if write_period_ms is not None:
            spec = dataclasses.replace(spec, write_period_ms=write_period_ms)
        cluster = LocalCluster(spec, directory, env={**os.environ, **(env or {})})
        started.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in started:
        cluster.stop()


# ---- real database servers (tests/databases.py): one of each per test process, started on first use ----


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database of the session's PostgreSQL server, for this test alone."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis server, emptied (keys and cached scripts) for this test."""
    redis_server.flush()
    return redis_server.url()


@pytest.fixture(scope="session")
def store_server() -> Iterator[StoreServer]:
    """A fenced store process alone (plaintext). Its highest epoch is one for all keys and all tests
    of the session: a test gives it epochs above every earlier test's."""
    server = StoreServer()
    try:
        yield server.start()
    finally:
        server.stop()
