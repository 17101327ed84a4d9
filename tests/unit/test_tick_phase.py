"""The runtime's tick grid has a phase per node (each process floors its own clock from its own boot),
so a follower may stamp a receipt up to one tick early and its promise would end early by as much.
The core holds every promise one tick longer (Timing.promise_hold_ticks) for exactly that. This test
drives the real core on the runtime's clock mapping (a finer global grid, per-node phase and rate),
in the schedule an outside review found, at an accepted timing with only a one-tick lease/promise gap.
(Found by review: docs/design.md section 7.)
"""

from __future__ import annotations

import copy
import math
from fractions import Fraction

import pytest

from node.core import Message, Mode, MsgType, Timing
from node.core.bully import _Phase
from node.sim.network import Network

SUB = 10  # global ticks per node tick: a node tick of 10 ms on a 1 ms grid
RATES = {1: Fraction(95, 100), 2: Fraction(105, 100), 3: Fraction(105, 100)}  # the 5% drift bound


class RuntimeClockNetwork(Network):
    """Stock Network, but each node's tick is floor((g * rate + phase) / sub) over a finer global grid."""

    def __init__(self, seed, n, timing, rates, phases, sub):
        self.fine_rates = {m: Fraction(r) for m, r in rates.items()}
        self.phases = {m: Fraction(p) for m, p in phases.items()}
        self.sub = sub
        super().__init__(seed, n, Mode.QUORUM, timing)

    def local(self, node, tick=None):
        g = self.now if tick is None else tick
        return math.floor((g * self.fine_rates[node] + self.phases[node]) / self.sub)

    def global_tick(self, node, local_tick):
        return max(0, math.ceil((local_tick * self.sub - self.phases[node]) / self.fine_rates[node]))


def setup(timing, rates, phases, sub):
    net = RuntimeClockNetwork(0, 3, timing, rates, phases, sub)
    for _ in range(600 * sub):
        net.tick()
        if net.agreed_leader() and net.agreed_leader()[0] == 3:
            break
    net.run(20 * sub)
    net.transfer(3, 1)  # a lower node leads (hold-down 0: nobody preempts it)
    for _ in range(400 * sub):
        net.tick()
        if net.agreed_leader() and net.agreed_leader()[0] == 1:
            break
    net.run(30 * sub)
    net.cut(1, 3)  # 3 stops hearing 1 and, being the highest id, keeps proposing
    return net


def attempt(base, timing, sub, p, c):
    """Cut 1->2 at global tick c; hold 3's Coordinator (sent at p) until 2 may grant; deliver it then."""
    net = copy.deepcopy(base)
    net.run(c - net.now)
    net.cut(1, 2)
    net.cut(3, 2)
    while net.now < p + timing.coordinator_wait_ticks * sub:
        net.tick()
        x, y, a = net.elector(3), net.elector(2), net.elector(1)
        if x.phase != _Phase.PROPOSING or net.local(2) < y.promise_until:
            continue
        if a.phase == _Phase.LEADING and net.local(1) < a.lease_until:
            net.inject(Message(MsgType.COORDINATOR, 3, 2, x.proposal_epoch))  # the held copy arrives
            net.run(40 * sub)
            return net
        return None
    return None


def found_schedule(timing: Timing) -> list[str] | None:
    """The reviewed schedule: 1 leads on a slow clock, 3 keeps proposing, 2 (fast clock) is asked just
    as its promise to 1 runs out on its own tick grid. None: 2 never may grant while 1's lease runs."""
    base = setup(timing, RATES, {1: 0, 2: 0, 3: 0}, SUB)
    net = attempt(base, timing, SUB, p=934, c=634)
    return None if net is None else net.violations()


TIMING = Timing.from_ms(40, 130, 10, 0)  # accepted by node.config: lease 9, promise 10 ticks


def test_a_promise_outlasts_the_lease_across_tick_phases() -> None:
    assert not found_schedule(TIMING)


def test_without_the_extra_tick_the_same_schedule_splits_the_brain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Timing, "promise_hold_ticks", property(lambda t: t.follower_promise_ticks))
    monkeypatch.setattr(Timing, "hold_ticks_for", lambda t, lease_ticks: t.window_ticks_for(lease_ticks))
    violations = found_schedule(TIMING)
    assert violations and any(v.startswith("P3") for v in violations)
