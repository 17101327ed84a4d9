"""A scenario written once runs in both worlds: the chaos scenarios that use only faults both worlds
can do (node.faults) run here unchanged in the simulator (chaos/simulated.py), judged by the judge
that judges their real runs (tests/chaos/test_scenarios.py). Fast: simulated time.

Quorum and raft keep every property in every one of them; classic Bully splits its brain where the
leader is cut off, as it does on real processes; each run replays exactly from its seed; and the
faults are recorded as the real harness records them, so the scenario's own instant judges the
simulated history as it judges a real one.
"""

from __future__ import annotations

import pytest

from chaos.scenarios import INSTANTS, SCENARIOS, WORLDS_OF, scenarios_for, simulated_scenarios
from chaos.simulated import simulate_scenario
from node.faults import FAULTS, REAL, SIM, FaultTarget, ScenarioWorld
from node.sim.network import Network
from node.sim.target import SimTarget

SPLITTING = ["leader-blackholed", "partition-leader-minority", "one-way"]  # as tests/chaos/test_scenarios.py
# Their instants are judged from the history alone; in the simulator each of these reaches its own.
REACHED_IN_THE_SIMULATOR = ["leader-blackholed", "partition-leader-minority", "one-way", "membership-grow-shrink"]


def test_most_scenarios_run_in_both_worlds():
    both = simulated_scenarios()
    assert {"partition-leader-minority", "leader-pause", "bridge", "one-way", "full-restart"} <= set(both)
    assert all(REAL in WORLDS_OF[name] for name in SCENARIOS)
    # What keeps the others on real processes: a fault only Toxiproxy can do, or what they read off real nodes.
    assert "random-mix" not in both and "quick-restart-in-lease" not in both


def test_both_backends_implement_the_interface():
    from chaos.harness import ChaosCluster

    world = SimTarget(Network(0, 3, "quorum"), 10, 100, 500)
    assert isinstance(world, ScenarioWorld) and isinstance(world, FaultTarget)
    for method in [m for m in dir(ScenarioWorld) if not m.startswith("_")]:
        assert hasattr(ChaosCluster, method) or method in ChaosCluster.__dataclass_fields__, method
    # FaultTarget's methods are the fault kinds both worlds can do (their names, in Python's spelling).
    both = {name.replace("-", "_") for name, kind in FAULTS.items() if kind.worlds == {SIM, REAL}}
    assert both - {"member"} <= set(dir(FaultTarget)), both - set(dir(FaultTarget))


@pytest.mark.parametrize("mode", ["quorum", "raft"])
@pytest.mark.parametrize("name", simulated_scenarios())
def test_quorum_and_raft_keep_every_property(name, mode):
    if name not in scenarios_for(mode):
        pytest.skip(f"{mode} keeps its member list")
    for seed in (1, 2):
        run = simulate_scenario(name, mode, seed)
        assert run.violations == [], f"{name} {mode} seed {seed}: {run.violations}"
        assert run.recovered_after_ms is not None


@pytest.mark.parametrize("name", SPLITTING)
def test_classic_splits_its_brain_where_the_leader_is_cut_off(name):
    run = simulate_scenario(name, "classic", seed=1)
    assert run.reached, run.instant
    assert {v.split(":")[0] for v in run.violations} & {"P1", "P3"}, run.violations


@pytest.mark.parametrize("name", REACHED_IN_THE_SIMULATOR)
def test_the_scenario_instant_judges_the_simulated_history(name):
    run = simulate_scenario(name, "quorum", seed=3)
    assert name in INSTANTS and run.instant is not None
    assert run.instant.reached, run.instant.evidence


def test_a_simulated_scenario_replays_from_its_seed():
    first, again = (simulate_scenario("random-halves", "quorum", seed=5) for _ in range(2))
    assert first.net.record.history == again.net.record.history
    other = simulate_scenario("random-halves", "quorum", seed=6)
    assert other.net.record.history != first.net.record.history


def test_faults_are_recorded_as_the_real_harness_records_them():
    run = simulate_scenario("bridge", "quorum", seed=1)
    faults = [e for e in run.net.record.history if e["kind"] in ("fault", "heal")]
    start = next(e for e in faults if e["kind"] == "fault")
    assert start["name"] == "bridge" and start["action"] == "start" and set(start["detail"]) == {"allowed"}
    assert faults[-1]["kind"] == "heal"


def test_a_real_only_scenario_says_so():
    with pytest.raises(ValueError, match="real processes only"):
        simulate_scenario("random-mix")
