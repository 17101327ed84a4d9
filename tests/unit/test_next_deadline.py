"""The runtime sleeps until the core's next deadline instead of ticking every 10 ms (idle cost).
That is only correct if every tick it skips would have done nothing: here the explorer's schedules
run twice, ticking every elector every tick and only at its next_deadline, and must record the same
history, message for message, in every mode."""

from __future__ import annotations

import pytest

from node.core import Mode, mode_names
from node.sim.network import Network
from node.sim.schedule import run_schedule
from node.sim.swarm import SwarmSettings, swarm_schedule

SCHEDULES_PER_MODE = 60


def history(outcome) -> tuple:
    net = outcome.net
    return (net.views, net.events, net.faults, dict(net.sent), net.promises, net.store_log, outcome.violations)


@pytest.mark.parametrize("mode", mode_names())
def test_ticking_only_at_the_next_deadline_changes_nothing(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for seed in range(SCHEDULES_PER_MODE):
        schedule = swarm_schedule(seed, SwarmSettings(mode=Mode(mode)))
        every_tick = history(run_schedule(schedule))
        monkeypatch.setattr(Network, "sleepy", True)
        sleepy = history(run_schedule(schedule))
        monkeypatch.setattr(Network, "sleepy", False)
        assert sleepy == every_tick, (
            f"mode {mode}, schedule seed {seed}: replay with `bullyproof sim run --seed {seed} --mode {mode}`"
        )


def test_the_check_would_see_a_late_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A next_deadline that is too late (here: never before the horizon) changes the history."""
    from node.core.bully import QuorumBully

    monkeypatch.setattr(QuorumBully, "next_deadline", lambda self, now: now + 10_000)
    schedule = swarm_schedule(1, SwarmSettings(mode=Mode("quorum")))
    every_tick = history(run_schedule(schedule))
    monkeypatch.setattr(Network, "sleepy", True)
    assert history(run_schedule(schedule)) != every_tick
