"""Leases count suspend (CLOCK_BOOTTIME); history times stay on the monotonic clock."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import node.runtime.clock as clock
import node.runtime.node as runtime
from node.config import NodeSettings
from node.core import Mode
from node.runtime.clock import ClockPair, lease_clock_ns


@pytest.mark.skipif(not hasattr(time, "CLOCK_BOOTTIME"), reason="CLOCK_BOOTTIME is Linux-only")
def test_the_lease_clock_is_boottime_where_it_exists() -> None:
    assert clock.LEASE_CLOCK_NAME == "CLOCK_BOOTTIME"
    before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    now = lease_clock_ns()
    after = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert before <= now <= after


def test_the_lease_clock_falls_back_to_monotonic(monkeypatch) -> None:
    monkeypatch.setattr(clock, "_BOOTTIME", None)
    before = time.monotonic_ns()
    now = lease_clock_ns()
    after = time.monotonic_ns()
    assert before <= now <= after


def test_the_lease_clock_never_goes_back() -> None:
    reads = [lease_clock_ns() for _ in range(1000)]
    assert reads == sorted(reads)


def test_a_clock_pair_converts_lease_times_to_monotonic() -> None:
    pair = ClockPair(lease_ns=5_000_000_000, monotonic_ns=2_000_000_000)
    assert pair.to_monotonic_ns(5_000_000_000) == 2_000_000_000
    assert pair.to_monotonic_ns(5_250_000_000) == 2_250_000_000
    # Read live, the pair names one instant: converting "now" lands near monotonic "now".
    live = ClockPair.now()
    m_before = time.monotonic_ns()
    converted = live.to_monotonic_ns(lease_clock_ns())
    m_after = time.monotonic_ns()
    assert abs(converted - (m_before + m_after) // 2) < 5_000_000  # within 5 ms, generously


class FakeClocks:
    """A host that can suspend: the lease clock keeps counting, the monotonic clock does not."""

    def __init__(self) -> None:
        self.monotonic_ns = 1_000_000_000
        self.boottime_ns = 7_000_000_000

    def advance(self, ns: int) -> None:
        self.monotonic_ns += ns
        self.boottime_ns += ns

    def suspend(self, ns: int) -> None:
        self.boottime_ns += ns


def test_runtime_ticks_count_suspend_and_lease_ends_report_in_monotonic_time(tmp_path: Path, monkeypatch) -> None:
    fake = FakeClocks()
    monkeypatch.setattr(clock, "lease_clock_ns", lambda: fake.boottime_ns)
    monkeypatch.setattr(runtime, "lease_clock_ns", lambda: fake.boottime_ns)
    monkeypatch.setattr(clock.time, "monotonic_ns", lambda: fake.monotonic_ns)
    settings = NodeSettings(
        node_id=1,
        peer_listen="127.0.0.1:0",
        client_listen="127.0.0.1:0",
        peers={2: "127.0.0.1:1"},
        mode=Mode.QUORUM,
        state_dir=tmp_path,
        tick_ms=10,
    )
    node = runtime.NodeRuntime(settings)
    try:
        assert node.t0 == ClockPair(7_000_000_000, 1_000_000_000)
        assert node.now() == 0
        fake.advance(55_000_000)
        assert node.now() == 5  # 55 ms at 10 ms a tick
        fake.suspend(3_000_000_000)  # asleep for 3 s: a lease on the monotonic clock would not notice
        assert node.now() == 305
        # History time is monotonic: tick 5 (lease clock t0 + 50 ms) is monotonic t0 + 50 ms.
        assert node.tick_to_ns(0) == 1_000_000_000
        assert node.tick_to_ns(5) == 1_050_000_000
    finally:
        node.events.close()
