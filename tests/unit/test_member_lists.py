"""Members that run different member lists (a node started with a stale list, say).

Every peer message carries its sender's member list as a fingerprint (node.core.configuration_id);
a node refuses a request from a node on another list and ignores its replies, in the simulator as
in the runtime (node.runtime.wire), so no node counts a vote, grant or ack from a list it does not run.
"""

from __future__ import annotations

import pytest

from node.core import Mode
from node.sim.network import Network

OLD, NEW = (1, 2, 3), (1, 2, 3, 4, 5)


@pytest.mark.parametrize("mode", [Mode.QUORUM, Mode.RAFT])
def test_nodes_on_another_list_are_refused_and_never_counted(mode: Mode) -> None:
    """1, 2 and 3 run {1,2,3}; 4 and 5 were started with {1..5}. The three elect among themselves;
    4 and 5 ask the three, are refused every time, and never lead: no grant crosses the lists."""
    net = Network(0, 5, mode, member_lists={m: OLD for m in OLD})
    net.run(1500)
    assert net.configuration_refusals > 0
    assert not net.violations(), net.violations()
    leader = net.agreed_among(list(OLD))
    assert leader is not None and leader[0] in OLD, leader
    assert not any(iv.node in (4, 5) for iv in net.intervals), "a node on the other list led"
    assert not any(g.node in OLD and g.leader in (4, 5) for g in net.grants)
    assert not any(g.node in (4, 5) and g.leader in OLD for g in net.grants)


@pytest.mark.parametrize("mode", [Mode.QUORUM, Mode.RAFT])
def test_a_member_restarted_with_a_longer_list_makes_no_second_majority(mode: Mode) -> None:
    """The outside review's schedule: node 1 of {1,2,3} is restarted with {1..5} and 4 and 5 start with
    it. {1,4,5} would be a majority of five while {2,3} is still a majority of three. Node 1 promised
    under {1,2,3}, and that configuration is durable with its promise: it keeps counting {1,2,3},
    refuses 4 and 5 (a conflicting list), and they are two of five."""
    net = Network(0, 5, mode, member_lists={m: OLD for m in OLD})
    net.crash(4)
    net.crash(5)
    assert net.run_until(lambda: net.agreed_among(list(OLD)) is not None, 600) is not None
    net.crash(1)
    net.restart(1, members=NEW)
    net.restart(4)
    net.restart(5)
    net.run(600)
    assert not net.violations(), net.violations()
