"""Preferred leader without ping-pong: a flapping high node must not cause an election per flap."""

from __future__ import annotations

from node.core import BecameLeader, Timing
from node.sim.network import Network

HOLD_DOWN_TICKS = 150


def leaders_after(net: Network, tick: int) -> list[tuple[int, int]]:
    """(node, epoch) of every BecameLeader after `tick`, in order."""
    return [(e.node, e.event.epoch) for e in net.events if e.tick > tick and isinstance(e.event, BecameLeader)]


def flap(net: Network, node: int, flaps: int, up_ticks: int, down_ticks: int) -> None:
    for _ in range(flaps):
        net.restart(node)
        net.run(up_ticks)
        net.crash(node)
        net.run(down_ticks)


def failover_from_highest(mode: str, timing: Timing) -> tuple[Network, int]:
    net = Network(seed=7, n=5, mode=mode, timing=timing)
    assert net.run_until_agreed(500) is not None
    assert net.agreed_leader()[0] == 5
    net.crash(5)
    assert net.run_until_agreed(500) is not None
    assert net.agreed_leader()[0] == 4
    return net, net.now


def test_quorum_flapping_high_node_causes_no_election_per_flap():
    net, since = failover_from_highest("quorum", Timing(preempt_hold_down_ticks=HOLD_DOWN_TICKS))
    flaps = 6
    flap(net, 5, flaps, up_ticks=HOLD_DOWN_TICKS // 2, down_ticks=60)
    changes = leaders_after(net, since)
    assert all(node == 4 for node, _ in changes), f"leadership left node 4 during flapping: {changes}"
    assert len(changes) < flaps, f"an epoch change per flap: {changes}"
    assert net.agreed_leader() is not None and net.agreed_leader()[0] == 4

    # Healthy for longer than the hold-down, the preferred (highest) node takes over by handover.
    before = net.now
    net.restart(5)
    net.run(HOLD_DOWN_TICKS + 4 * net.elector(4).timing.election_timeout_ticks)
    assert net.agreed_leader() is not None and net.agreed_leader()[0] == 5
    assert [n for n, _ in leaders_after(net, before)][-1] == 5
    assert net.violations() == []


def test_quorum_without_hold_down_never_preempts():
    net, since = failover_from_highest("quorum", Timing(preempt_hold_down_ticks=0))
    net.restart(5)
    net.run(1000)
    assert net.agreed_leader()[0] == 4
    assert all(node == 4 for node, _ in leaders_after(net, since))


def test_classic_bully_ping_pongs_on_every_return():
    net, since = failover_from_highest("classic", Timing())
    flaps = 4
    flap(net, 5, flaps, up_ticks=HOLD_DOWN_TICKS // 2, down_ticks=120)
    taken_by_5 = [e for n, e in leaders_after(net, since) if n == 5]
    assert len(taken_by_5) >= flaps, "textbook Bully: the returning highest id bullies its way back each time"
