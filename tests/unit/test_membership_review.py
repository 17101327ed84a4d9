"""An adversarial review of membership changes (3a676f0: one member at a time, quorum mode).

The rules under review (node.core.membership): configurations are ordered by (term, index); a node adopts
any later one it hears and refuses an earlier or conflicting one; it counts majorities against its own
voters; a leader changes the configuration in its own epoch, only once the current one was acknowledged in
that epoch by a majority of its voters and of the voters before it.

Three findings, all fixed since by making each change two steps, through a joint configuration that
needs a majority of the voters before and after (docs/design.md, *Membership changes*); the tests that
reproduced them now hold:

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
* Liveness (P4). A learner removed before it was promoted is in no one's peers (voters, learners and the
  voters before the change): it never hears its removal, keeps running the configuration that names it
  as a learner, follows no one, and the judge waits for it for ever. The swarm found it too.

The others are schedules that looked dangerous and held already (regressions).
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
    net.run_until(
        lambda: net.membership(leader).voters == voters and net.elector(leader).membership_agreed(), max_ticks
    )
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

# Adds, removals, crash-restarts mid-change, a stale restart and a partition, in one schedule of 5 nodes.
ADDS_REMOVALS_RESTARTS = """run 100
member add 5
crash_restart 5
run 3
member remove 1
crash_restart 2
run 30
stale 3
partition 1,2|3,4,5
run 80
member add 5
heal
run 300
"""


def test_a_sibling_configuration_from_an_earlier_epoch_makes_no_second_leader() -> None:
    # Fails today: "P3: node 3 (epoch 2) and node 4 (epoch 5) both led from tick 460 for 551 ticks", and
    # P3g (both backed by a majority's live promises).
    outcome = run(4, SIBLINGS)
    assert not outcome.violations, outcome.violations


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
    # 2 may run C1 ({2,3,4}, term 1), but C1 and C2 are joint with C0: leading under either needs a
    # majority of C0 too, and those share a node. 3 and 4 never both lead.
    assert not net.violations(), net.violations()


def test_a_cluster_shrunk_to_one_voter_can_grow_again() -> None:
    net = Network(0, 4, Mode.QUORUM, joining=(4,))
    assert net.run_until_agreed(1000) is not None and net.agreed_leader()[0] == 3
    net.change_membership(3, (2, 3))
    agreed(net, 3, (2, 3))
    net.change_membership(3, (3,))
    net.run(2000)
    assert not net.violations(), net.violations()
    assert net.agreed_leader()[0] == 3  # it still leads (a majority of {3} is itself)...
    # ...and the change was agreed (while joint, 2 still voted), so the cluster can grow again.
    net.change_membership(3, (3,), (4,))
    agreed(net, 3, (3, 4))


def test_after_removing_one_of_four_a_dead_voter_can_still_be_replaced() -> None:
    net = Network(0, 5, Mode.QUORUM, joining=(5,))
    assert net.run_until_agreed(1000) is not None and net.agreed_leader()[0] == 4
    net.crash(1)  # its disk failed: it will not come back
    net.change_membership(4, (1, 2, 4))  # retire 3 (C0 was agreed before 1 failed)
    net.run(2000)
    assert not net.violations(), net.violations()
    # While joint, 3 still voted: {2,3,4} of the four before and {2,4} of {1,2,4} agreed it; settled,
    # {2,4} is a majority of {1,2,4}, so the dead 1 can be removed too.
    agreed(net, 4, (1, 2, 4))
    net.change_membership(4, (2, 4))
    agreed(net, 4, (2, 4))


def test_a_learner_removed_before_promotion_hears_its_removal() -> None:
    # The swarm found it (explore seed 1, schedule 1205, shrunk: "cut 6 5 / member add 6 / run 2 /
    # member remove 6": 6's acks never reach the leader, so it is never promoted; and seed 2, schedule
    # 1039, on two nodes: "member add 2 / stale 1 / run 60 / member remove 2"). Here the leader's
    # restart drops the pending promotion instead. No fault is needed at all: remove a learner that the
    # operator added without promotion (test below, by hand).
    outcome = run(
        4,
        """run 120
member add 4
crash_restart L
run 50
member remove 4
run 50
member remove 4
run 300
""",
        joining="4",
    )
    assert ("member", "remove", "4") in outcome.schedule.commands
    assert not outcome.violations, outcome.violations  # today: P4, no agreed leader after the heal


def test_a_removed_learner_leaves_the_configuration_without_faults() -> None:
    """4 added while cut off from the leader (so never promoted), then removed: the change names it to
    be told (Membership.notify), and once the link heals it hears it."""
    net = Network(0, 4, Mode.QUORUM, joining=(4,))
    assert net.run_until_agreed(1000) is not None and net.agreed_leader()[0] == 3
    net.cut(4, 3)  # its acks never reach the leader: never promoted
    net.change_membership(3, (1, 2, 3), (4,))
    agreed(net, 3, (1, 2, 3))
    assert net.membership(4).learners == (4,)
    net.change_membership(3, (1, 2, 3))
    net.heal()
    net.run(1000)
    assert not net.violations(), net.violations()
    assert 4 not in net.membership(4).everyone, net.membership(4)


# ---- regressions: looked dangerous, hold --------------------------------------------------------------


def test_siblings_from_an_odd_sized_configuration_intersect() -> None:
    """The sibling schedule on C0 = {1,2,3}: 3 leads epoch 1 and, isolated, removes 1 (C1 = {2,3}, term 1);
    2 leads epoch 2 and, cut off from both, removes 3 (C2 = {1,2}, term 2); then 1 (still C0) meets 3. 1
    adopts C1 and is outside it; 3 would need 2, which runs C2 and refuses. Siblings of an odd-sized parent
    always intersect: adding gives 2k+2 voters (majority k+2, so k+1 of the parent), removing 2k (majority
    k+1 of the parent): two such parts of 2k+1 meet."""
    outcome = run(
        3,
        """run 150
isolate 3
member remove 1
run 250
partition 1|2|3
member remove 3
run 1
heal_link 1 3
heal_link 3 1
run 600
""",
    )
    assert ("member", "remove", "3") in outcome.schedule.commands  # 2 led and made C2
    assert not outcome.violations, outcome.violations


def test_a_node_two_changes_behind_cannot_elect() -> None:
    """C0 = {1,2,3} grows to {1,2,3,4} and {1,2,3,4,5} while 1 is cut off: 1 still runs C0, two changes
    behind, whose majorities need not meet those of the last. Each change waited for its agreement (a
    majority of its voters and of those before), so 2 and 3 run the last one: 1 and 2 together are
    refused, 1 adopts it from the refusal, and {3,4,5} keep their leader."""
    net = Network(0, 5, Mode.QUORUM, joining=(4, 5))
    assert net.run_until_agreed(1000) is not None
    leader = net.agreed_leader()[0]
    net.isolate(1)
    net.change_membership(leader, (1, 2, 3), (4,))
    agreed(net, leader, (1, 2, 3, 4))
    net.change_membership(leader, (1, 2, 3, 4), (5,))
    agreed(net, leader, (1, 2, 3, 4, 5))
    assert net.membership(1).voters == (1, 2, 3)
    net.heal()
    net.partition([[1, 2], [3, 4, 5]])
    net.run(600)
    assert net.membership(1).voters == (1, 2, 3, 4, 5)
    assert not net.violations(), net.violations()
    assert net.agreed_among([3, 4, 5]) == (leader, net.view(leader).epoch)
    net.heal()
    assert net.run_until_agreed(1000) is not None


def test_a_follower_removed_while_partitioned_hears_it_and_stands_for_nothing() -> None:
    """5 removes 1 while 1 is cut off, then 2: 1 is then no longer anyone's peer and still runs {1..5}.
    After the heal its proposals carry that configuration: refused as stale, it adopts the newer one,
    is outside it, and the cluster agrees without it (P4 counts only nodes in their configuration)."""
    outcome = run(
        5,
        """run 150
isolate 1
member remove 1
run 60
member remove 2
run 60
heal
run 400
""",
    )
    net = outcome.net
    assert ("member", "remove", "2") in outcome.schedule.commands
    assert not outcome.violations, outcome.violations
    assert net.membership(1).voters == (3, 4, 5) and 1 not in net.membership(1).everyone
    assert not any(iv.node == 1 for iv in net.intervals)


def test_the_leader_cannot_remove_itself_but_can_after_a_transfer() -> None:
    net = Network(0, 3, Mode.QUORUM)
    assert net.run_until_agreed(1000) is not None and net.agreed_leader()[0] == 3
    with pytest.raises(MembershipRefused, match="transfer leadership first"):
        net.change_membership(3, (1, 2))
    net.transfer(3, 2)
    net.run_until(lambda: net.agreed_among([1, 2, 3]) is not None, 600)
    assert net.agreed_leader()[0] == 2
    net.run(50)
    net.change_membership(2, (1, 2))
    net.run(600)
    assert not net.violations(), net.violations()
    assert 3 not in net.membership(3).everyone and net.agreed_leader()[0] == 2


def test_one_change_at_a_time() -> None:
    """A second change before the first is agreed is refused, whatever it is; after agreement it goes."""
    net = Network(0, 5, Mode.QUORUM, joining=(5,))
    assert net.run_until_agreed(1000) is not None
    leader = net.agreed_leader()[0]
    net.isolate(1)
    net.cut(5, leader)  # 5 stays a learner: its acks never reach the leader
    net.change_membership(leader, (1, 2, 3, 4), (5,))  # a learner change: still one at a time
    with pytest.raises(MembershipRefused, match="not yet agreed"):
        net.change_membership(leader, (2, 3, 4), (5,))
    agreed(net, leader, (1, 2, 3, 4))
    with pytest.raises(MembershipRefused, match="one voter"):
        net.change_membership(leader, (3, 4, 5))  # two voters at once
    net.change_membership(leader, (2, 3, 4), (5,))  # retire the cut-off 1: {2,3,4} must all acknowledge
    net.run(300)
    assert not net.violations(), net.violations()


def test_a_node_restarted_with_its_stale_list_keeps_the_configuration_it_adopted() -> None:
    """2 adopts {1,2,3,4} from 3's heartbeat and is crashed in the same tick, before anything else; its
    restart with the start-up list {1,2,3} (`stale`) runs the durable configuration, not the list."""
    net = Network(0, 4, Mode.QUORUM, joining=(4,))
    assert net.run_until_agreed(1000) is not None and net.agreed_leader()[0] == 3
    net.change_membership(3, (1, 2, 3), (4,))
    net.run_until(lambda: net.membership(2).voters == (1, 2, 3, 4), 200)
    net.crash(2)
    net.restart(2, members=net.first_lists[2])
    assert net.member_lists[2] == (1, 2, 3) and net.membership(2).voters == (1, 2, 3, 4)
    outcome = run(
        4,
        """run 150
member add 4
run 20
stale 2
stale 1
run 20
stale 3
run 600
""",
        joining="4",
    )
    assert not outcome.violations, outcome.violations
    assert outcome.net.membership(1).voters == (1, 2, 3, 4)


def test_learners_count_for_nothing() -> None:
    """Voters {1,2,3} with learners 4 and 5: 3 cut off with the learners keeps no lease (they ack its
    heartbeats, and promise, but are not counted); 1 and 2 elect 2; no overlap."""
    net = Network(0, 5, Mode.QUORUM, joining=(4, 5))
    assert net.run_until_agreed(1000) is not None and net.agreed_leader()[0] == 3
    net.change_membership(3, (1, 2, 3), (4, 5))
    # Cut off before any voter acknowledged: the learners hear 3, but 3's configuration is never agreed,
    # so they are never promoted.
    net.partition([[1, 2], [3, 4, 5]])
    net.run(100)
    assert set(net.membership(4).learners) == {4, 5}
    net.run(500)
    assert not net.violations(), net.violations()
    assert not net.view(3).lease_valid and net.agreed_among([1, 2])[0] == 2


def test_joining_nodes_are_added_and_promoted_one_at_a_time() -> None:
    outcome = run(
        5,
        """run 150
member add 4
run 5
member add 5
run 60
member add 5
run 200
""",
        joining="4 5",
    )
    assert not outcome.violations, outcome.violations
    assert all(outcome.net.membership(m).voters == (1, 2, 3, 4, 5) for m in range(1, 6))


def test_no_configuration_is_revealed_before_it_is_durable() -> None:
    """Every message that commits its sender (a grant, a Coordinator, a leader's heartbeat) carries the
    configuration the sender had persisted when it left, over schedules that change membership while
    crashing, restarting with stale lists and partitioning."""
    from node.core import MsgType

    seen: list[str] = []
    original = Network._apply

    def checked(self, node, out, request=None):
        original(self, node, out, request)
        durable = self.persisted[node].membership
        for msg in out.messages:
            commits = msg.granted or msg.type in (MsgType.COORDINATOR, MsgType.HEARTBEAT)
            if commits and msg.membership is not None and msg.membership != durable:
                seen.append(f"node {node} sent {msg.type} with {msg.membership} but persisted {durable}")

    Network._apply = checked
    try:
        for body in (
            SIBLINGS,
            ADDS_REMOVALS_RESTARTS,
            """run 120
member add 4
run 1
member add 5
crash_restart L
run 50
stale F
member remove F
run 50
restart_all
run 300
""",
        ):
            run(5 if "5" in body else 4, body, joining="4 5" if "5" in body else "")
    finally:
        Network._apply = original
    assert not seen, seen[:3]
