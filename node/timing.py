"""The runtime's default timing, the one place it is spelled.

The node's flags and their help, the cluster descriptions (local, compose, Kubernetes), the chaos
harness and scenarios, the benchmarks, the dashboard, the history's judge and the simulator's
"runtime timing" all read `DEFAULT_TIMING`. It imports nothing, so every layer may read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimingDefaults:
    """Timing knobs in milliseconds, as a node's flags spell them."""

    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 500
    tick_ms: int = 10  # the core's clock resolution
    preempt_hold_down_ms: int = 3000  # quorum: how long a higher node acks before it takes over (0 = never)
    write_period_ms: int = 100  # the leader's duty write to the fenced store


DEFAULT_TIMING = TimingDefaults()
