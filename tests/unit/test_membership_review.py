"""An adversarial review of membership changes (3a676f0: one member at a time, quorum mode).

The rules under review (node.core.membership): configurations are ordered by (term, index); a node adopts
any later one it hears and refuses an earlier or conflicting one; it counts majorities against its own
voters; a leader changes the configuration in its own epoch, only once the current one was acknowledged in
that epoch by a majority of its voters and of the voters before it.

Two findings fail today (xfail, strict):

* Safety. The precondition is Raft's "commit an entry in your own term before changing the configuration"
  (Ongaro, 2015), but the order that settles which configuration wins is the configuration's own
  (term, index), not the epoch in which a node last acknowledged it. A node that acknowledged the leader
  of epoch 2 running C0 still adopts a configuration C1 that the leader of epoch 1 made from C0 and never
  got out (term 1 > term 0). When the leader of epoch 2 then makes its own change C2 (a sibling of C1,
  from an even-sized C0), C1 and C2 have disjoint majorities: two leaders, one backed by each. In Raft the
  voter's log would end in the epoch-2 entry and it would refuse the epoch-1 configuration's candidate.
* Liveness. `_agreed` asks for a majority of the voters *before* the change too, and a removed voter never
  acknowledges (it refuses as not-a-member). Shrinking a two-voter configuration to one leaves it
  unagreed for ever: no later change (adding a node back) is ever possible. From four voters to three,
  all three must acknowledge: one of them down for good blocks every later change (Raft needs two).

The others are schedules that looked dangerous and hold (regressions).
"""

from __future__ import annotations

import pytest

from node.core import Mode
from node.core.membership import MembershipRefused
from node.sim.network import Network
from node.sim.schedule import Schedule, run_schedule

HEADER = """@nodes {n}
@mode quorum
@seed 0
@timing heartbeat_interval_ticks=10 election_timeout_ticks=50 leader_lease_ticks=35 follower_promise_ticks=40 alive_wait_ticks=10 coordinator_wait_ticks=25 rank_stagger_ticks=2 jitter_ticks=5 preempt_hold_down_ticks=300
"""


def run(n: int, body: str, joining: str = ""):
    text = HEADER.format(n=n) + (f"@joining {joining}\n" if joining else "") + body
    return run_schedule(Schedule.from_script(text))


def agreed(net: Network, leader: int, voters: tuple[int, ...], max_ticks: int = 400) -> None:
    """Run until `leader` runs `voters` and sees that configuration agreed."""
    net.run_until(lambda: net.membership(leader).voters == voters and net.elector(leader).membership_agreed(),
                  max_ticks)
    assert net.membership(leader).voters == voters and net.elector(leader).membership_agreed()


# ---- findings ---------------------------------------------------------------------------------------

# C0 = {1,2,3,4}. Node 4 leads epoch 1 and, isolated, removes 1: C1 = {2,3,4} (term 1) never leaves it.
# 1, 2, 3 elect 3 in epoch 2 under C0 (3 sees C0 agreed: all three granted). Cut off from 2, 3 removes 4:
# C2 = {1,2,3} (term 2), which 1 adopts; {1,3} is a majority of C2 and keeps 3's lease. 2 (still C0) and
# 4 meet: 2 adopts C1 ((1,1) is later than (0,0)) and grants 4 a later epoch; {2,4} is a majority of C1.
SIBLINGS = """run 150
isolate 4
member remove 1
run 250
partition 1,3|2|4
member remove 4
run 1
heal_link 2 4
heal_link 4 2
run 600
"""


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="a configuration made in an earlier epoch and never agreed is still adopted "
                   "by nodes that acknowledged a later epoch's leader under its parent; with the later leader's own "
                   "change (a sibling, from an even-sized parent) the two have disjoint majorities")
def test_a_sibling_configuration_from_an_earlier_epoch_makes_no_second_leader() -> None:
    # Fails today: "P3: node 3 (epoch 2) and node 4 (epoch 5) both led from tick 460 for 551 ticks", and
    # P3g (both backed by a majority's live promises).
    outcome = run(4, SIBLINGS)
    assert not outcome.violations, outcome.violations


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="the same overlap, driven by hand: node 2 acknowledged epoch 2 under C0 "
                   "and then adopts C1 of term 1 from the deposed leader 4")
def test_a_node_that_acknowledged_a_later_epoch_refuses_an_earlier_epochs_configuration() -> None:
    net = Network(0, 4, Mode.QUORUM)
    assert net.run_until_agreed(1000) is not None and net.agreed_leader() == (4, 1)
    net.isolate(4)
    net.change_membership(4, (2, 3, 4))  # C1, term 1: reaches no one
    net.run_until(lambda: net.agreed_among([1, 2, 3]) is not None, 3000)
    assert net.agreed_among([1, 2, 3])[0] == 3 and net.elector(3).membership_agreed()
    net.partition([[1, 3], [2], [4]])
    net.change_membership(3, (1, 2, 3))  # C2, term 2: reaches 1, not 2
    net.heal_link(2, 4)
    net.heal_link(4, 2)
    net.run(600)
    # Today 2 runs C1 ({2,3,4}, term 1) though it granted epoch 2 under C0, and 3 and 4 both lead.
    assert net.membership(2).term != 1, net.membership(2)
    assert not net.violations(), net.violations()


@pytest.mark.xfail(strict=True, raises=MembershipRefused, reason="_agreed wants a majority of the voters before the change, and the removed "
                   "voter never acknowledges: from two voters to one, the configuration is never agreed")
def test_a_cluster_shrunk_to_one_voter_can_grow_again() -> None:
    net = Network(0, 4, Mode.QUORUM, joining=(4,))
    assert net.run_until_agreed(1000) is not None and net.agreed_leader()[0] == 3
    net.change_membership(3, (2, 3))
    agreed(net, 3, (2, 3))
    net.change_membership(3, (3,))
    net.run(2000)
    assert not net.violations(), net.violations()
    assert net.agreed_leader()[0] == 3  # it still leads (a majority of {3} is itself)...
    # ...but "configuration 2 of term 1 (voters 3) is not yet acknowledged by a majority of its voters and
    # of the voters before it": 2 of {2,3} are needed and 2 refuses as not-a-member, now and for ever.
    net.change_membership(3, (3,), (4,), promote=(4,))


@pytest.mark.xfail(strict=True, raises=MembershipRefused, reason="from four voters to three, all three must acknowledge (three of the four "
                   "before, the removed one never does): one of them down blocks every later change")
def test_after_removing_one_of_four_a_dead_voter_can_still_be_replaced() -> None:
    net = Network(0, 5, Mode.QUORUM, joining=(5,))
    assert net.run_until_agreed(1000) is not None and net.agreed_leader()[0] == 4
    net.crash(1)  # its disk failed: it will not come back
    net.change_membership(4, (1, 2, 4))  # retire 3 (C0 was agreed before 1 failed)
    net.run(2000)
    assert not net.violations(), net.violations()
    assert net.elector(4).confirmed == {2, 4}  # a majority of {1,2,4}, two of the four before
    # Raft would count C1 committed by {2,4}; here "not yet acknowledged by a majority of its voters and
    # of the voters before it" until 1 comes back, so 1 can be neither removed nor replaced.
    net.change_membership(4, (2, 4))


# ---- regressions: looked dangerous, hold --------------------------------------------------------------


def test_siblings_from_an_odd_sized_configuration_intersect() -> None:
    """The sibling schedule on C0 = {1,2,3}: 3 leads epoch 1 and, isolated, removes 1 (C1 = {2,3}, term 1);
    2 leads epoch 2 and, cut off from both, removes 3 (C2 = {1,2}, term 2); then 1 (still C0) meets 3. 1
    adopts C1 and is outside it; 3 would need 2, which runs C2 and refuses. Siblings of an odd-sized parent
    always intersect: adding gives 2k+2 voters (majority k+2, so k+1 of the parent), removing 2k (majority
    k+1 of the parent): two such parts of 2k+1 meet."""
    outcome = run(3, """run 150
isolate 3
member remove 1
run 250
partition 1|2|3
member remove 3
run 1
heal_link 1 3
heal_link 3 1
run 600
""")
    assert ("member", "remove", "3") in outcome.schedule.commands  # 2 led and made C2
    assert not outcome.violations, outcome.violations
