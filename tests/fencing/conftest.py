"""Fixtures for the fencing adapters' tests: `target` is one adapter's real server (SQLite, PostgreSQL,
Redis, the fenced store), the same for every kind; fencelib.py has what the tests share."""

from __future__ import annotations

import itertools
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fencelib import KINDS, Target  # noqa: E402

_store_epochs = itertools.count(1)


def make_target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    tag = uuid.uuid4().hex[:8]
    if kind == "sqlite":
        return Target(kind, f"sqlite://{tmp_path / 'app.db'}", 0, tag)
    if kind == "postgres":
        return Target(kind, request.getfixturevalue("postgres_url"), 0, tag)
    if kind == "redis":
        return Target(kind, request.getfixturevalue("redis_url"), 0, tag)
    if kind == "store":
        return Target(kind, request.getfixturevalue("store_server").url(), next(_store_epochs) * 1000, tag)
    raise ValueError(kind)


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return make_target(request.param, request, tmp_path)


@pytest.fixture
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Target]:
    """A target of the kind named, for tests that pick their kinds themselves."""
    return lambda kind: make_target(kind, request, tmp_path)
