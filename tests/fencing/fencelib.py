"""Helpers for the fencing adapters' tests (fixtures in conftest.py): one adapter's real server, made
alike for every kind, so a test is written once and runs on each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from node.client.fencing import open_fence

T = TypeVar("T")
SCENARIO_TIMEOUT_S = 60.0
KINDS = ("sqlite", "postgres", "redis", "store")


@dataclass
class Target:
    kind: str
    url: str
    epoch_base: int  # the store's epochs are one for all keys and tests: each test starts above the last
    tag: str  # makes resource names unique on a server shared by tests

    def fence(self, **options: Any) -> Any:
        return open_fence(self.url, **options)

    def blocking(self, **options: Any) -> Any:
        return open_fence(self.url, blocking=True, **options)

    def e(self, n: int) -> int:
        return self.epoch_base + n

    def resource(self, name: str = "r") -> str:
        return f"{self.tag}/{name}"


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    """One async scenario with an overall deadline, so a hang fails the test instead of the suite."""

    async def bounded() -> T:
        async with asyncio.timeout(SCENARIO_TIMEOUT_S):
            return await scenario()

    return asyncio.run(bounded())
