"""A chaos scenario run in the deterministic simulator: the same scenario function as on real
processes (chaos/scenarios.py), the same faults (node.faults) done by the simulator's backend
(node/sim/target.py), the same run around it (chaos/runner.py: a first leader, a wait, the scenario,
then agreement within the recovery bound) and the same judge (node.history, via Network.violations),
in milliseconds of simulated time: fast and exactly replayable from its seed.

    from chaos.simulated import simulate_scenario
    result = simulate_scenario("partition-leader-minority", "quorum", seed=7)
    assert result.violations == [], result.violations
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from node.config import DEFAULT_TIMING
from node.core import PlantedBug, Timing
from node.sim.network import Network
from node.sim.target import SimTarget

from .runner import RECOVERY_BOUND_ELECTION_TIMEOUTS
from .scenarios import SCENARIOS, SPARES, TIMINGS, WORLDS_OF, Context, InstantResult, judge_instant

TICK_MS = DEFAULT_TIMING.tick_ms  # the runtime's default tick, and the explorer's


@dataclass
class SimulatedRun:
    scenario: str
    mode: str
    seed: int
    net: Network
    violations: list[str]  # each starts with its property's id (P1, P3, P3g, P4, P6...)
    instant: InstantResult | None
    recovered_after_ms: int | None  # from the scenario's end to agreement (P4); None: never

    @property
    def reached(self) -> bool:
        return self.instant is None or self.instant.reached


TIME_FIELDS_NS = ("t_ns", "until_ns", "lease_end_ns", "end_ns")


def in_ns(events: list[dict], tick_ms: int = TICK_MS) -> list[dict]:
    """The simulated history (times in ticks) with its times in nanoseconds, as a real one has them:
    a scenario's instant tells its evidence in seconds from the start."""
    tick_ns = tick_ms * 1_000_000
    out = []
    for e in events:
        e = dict(e)
        for key in TIME_FIELDS_NS:
            if isinstance(e.get(key), int):
                e[key] *= tick_ns
        if isinstance(e.get("promise_ms"), int):
            e["promise_ms"] *= tick_ms
        out.append(e)
    return out


def simulate_scenario(
    name: str, mode: str = "quorum", seed: int = 0, nodes: int = 5, planted_bugs: frozenset[PlantedBug] = frozenset()
) -> SimulatedRun:
    """Run scenario `name` in the simulator at its own timing (chaos.scenarios.TIMINGS), as
    chaos.runner.run_scenario runs it on real processes, and judge the simulated history."""
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    if "sim" not in WORLDS_OF[name]:
        raise ValueError(f"scenario {name} runs on real processes only")
    timing = TIMINGS[name]
    spares = SPARES.get(name, 0)
    net = Network(
        seed,
        nodes,
        mode,
        Timing.from_ms(timing.heartbeat_interval_ms, timing.election_timeout_ms, TICK_MS, timing.preempt_hold_down_ms),
        planted_bugs,
        joining=range(nodes - spares + 1, nodes + 1),
    )
    world = SimTarget(net, TICK_MS, timing.heartbeat_interval_ms, timing.election_timeout_ms)
    world.wait_for_leader(timeout_s=20)
    ctx = Context(world, random.Random(seed))
    ctx.wait(1)  # a few duty writes under the first leader
    SCENARIOS[name](ctx)
    bound_ms = RECOVERY_BOUND_ELECTION_TIMEOUTS * timing.election_timeout_ms
    start = net.now
    try:
        world.wait_for_leader(timeout_s=bound_ms / 1000)
        recovered: int | None = (net.now - start) * TICK_MS
    except TimeoutError:
        recovered = None
    ctx.wait(1)  # writes under the healed leader
    violations = net.violations()
    if recovered is None:
        violations.append(f"P4: no agreed leader {bound_ms} ms after the scenario ended")
    instant = judge_instant(name, mode, in_ns(net.record.events_now()))
    return SimulatedRun(name, mode, seed, net, violations, instant, recovered)
