"""Settings that would break the lease rule are refused with a message that says what to change."""

from __future__ import annotations

import dataclasses

import pytest

from node.config import ConfigError, check_timings
from node.core import CLOCK_DRIFT_BOUND


def test_a_timing_whose_ticks_leave_too_little_drift_margin_is_refused() -> None:
    # 160 ms in 10 ms ticks: lease 11, promise 12 ticks, safe only under 4.3% clock drift.
    with pytest.raises(ConfigError, match=r"drift less than 4\.3% \(need 5%\).*smaller --tick-ms"):
        check_timings(50, 160, 10)
    assert check_timings(50, 160, 5).drift_margin >= CLOCK_DRIFT_BOUND  # finer ticks fix it


@pytest.mark.parametrize("heartbeat_ms, election_timeout_ms, tick_ms", [(100, 500, 10), (100, 1000, 10), (50, 500, 10),
                                                                      (1000, 3000, 10), (100, 500, 100)])
def test_the_documented_timings_keep_the_margin(heartbeat_ms: int, election_timeout_ms: int, tick_ms: int) -> None:
    assert check_timings(heartbeat_ms, election_timeout_ms, tick_ms).drift_margin >= CLOCK_DRIFT_BOUND


def test_a_mode_option_the_mode_does_not_take_is_refused_by_name() -> None:
    from node.launcher.cluster import local_spec

    spec = local_spec(3, "raft")
    assert "--mode-option" not in spec.node_args(spec.nodes[0], "/s", None)
    spec = dataclasses.replace(spec, mode_options=("no-pre-vote",))
    args = spec.node_args(spec.nodes[0], "/s", None)
    assert args[args.index("--mode-option") + 1] == "no-pre-vote"
    with pytest.raises(ConfigError, match=r"--mode-option: mode quorum has no option 'no-pre-vote' \(it takes: none\)"):
        dataclasses.replace(spec, mode="quorum")


def test_an_election_timeout_whose_lease_peers_would_refuse_is_refused_first() -> None:
    from node.config import MAX_ELECTION_TIMEOUT_MS
    from node.runtime.wire import MAX_LEASE_MS

    longest = check_timings(1000, MAX_ELECTION_TIMEOUT_MS, 10)
    assert longest.leader_lease_ticks * 10 <= MAX_LEASE_MS  # the longest accepted lease is one peers take
    with pytest.raises(ConfigError, match="10 minutes"):
        check_timings(1000, MAX_ELECTION_TIMEOUT_MS + 1, 10)
