"""The simulator experiments behave like the literature says (deterministic: fixed seeds)."""

from __future__ import annotations

import statistics

from node.sim.figures import election_messages, figure16_line


def test_randomized_timeouts_shorten_the_time_without_a_leader() -> None:
    """Raft figure 16's point: identical timeouts split votes again and again; a spread breaks ties."""
    same = figure16_line(150, 150, trials=30)
    spread = figure16_line(150, 300, trials=30)
    assert same.failed == spread.failed == 0
    assert statistics.median(spread.samples_ms) < statistics.median(same.samples_ms)
    # Timeouts run from the last heartbeat, which came up to one interval (75 ms) before the crash.
    assert min(spread.samples_ms) >= 150 - 75


def test_bully_is_quadratic_only_when_everyone_times_out_at_once() -> None:
    at_once = [election_messages("classic", n, simultaneous=True) for n in (5, 9, 15)]
    assert at_once[1] > 2.5 * at_once[0] and at_once[2] > 2.2 * at_once[1], at_once  # ~n^2
    staggered = [election_messages("classic", n) for n in (5, 9, 15)]
    assert all(m < 3 * n for m, n in zip(staggered, (5, 9, 15))), staggered  # the highest goes first: ~n


def test_ring_and_quorum_stay_linear() -> None:
    for mode in ("ring", "quorum"):
        counts = [election_messages(mode, n) for n in (5, 15)]
        assert counts[1] < 5 * counts[0], (mode, counts)
