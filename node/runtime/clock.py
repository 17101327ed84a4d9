"""The clock leases and promises are measured on.

CLOCK_MONOTONIC stops while the system is suspended: a host that suspends and resumes would wake
believing its lease (or, as a follower, its promise to a leader) still has time left, while the rest
of the cluster, whose clocks kept running, has long moved on. CLOCK_BOOTTIME is monotonic too but
keeps counting through suspend, so time asleep is time gone. It exists on Linux only; elsewhere we
fall back to the monotonic clock.

History timestamps (t_ns in event lines) stay on time.monotonic_ns(): the checkers compare them
across processes, so they must all come from one clock. `ClockPair` converts lease times to it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)
LEASE_CLOCK_NAME = "CLOCK_BOOTTIME" if _BOOTTIME is not None else "CLOCK_MONOTONIC"


def lease_clock_ns() -> int:
    """Now in ns on the lease clock: CLOCK_BOOTTIME (counts suspend), else the monotonic clock."""
    if _BOOTTIME is not None:
        return time.clock_gettime_ns(_BOOTTIME)
    return time.monotonic_ns()


@dataclass(frozen=True)
class ClockPair:
    """One instant read on both clocks, to turn a lease-clock time into a history (monotonic) time.

    Exact while the host has not suspended since the pair was read. After a suspend the monotonic
    clock lags by the time asleep, so a converted instant comes out *later* in history time than it
    was: a leadership interval closed at a converted lease end can only look longer, never shorter
    (the checkers stay conservative).
    """

    lease_ns: int
    monotonic_ns: int

    @classmethod
    def now(cls) -> ClockPair:
        # Monotonic read between two lease-clock reads, paired with their midpoint.
        a = lease_clock_ns()
        m = time.monotonic_ns()
        b = lease_clock_ns()
        return cls((a + b) // 2, m)

    def to_monotonic_ns(self, lease_ns: int) -> int:
        return self.monotonic_ns + (lease_ns - self.lease_ns)
