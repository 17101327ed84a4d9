"""Membership changes, one member at a time (node.core.membership), in the core and the simulator.

The rules: a configuration is ordered by (term, index) and only moves forward; a later one is adopted
(durably, in the step's promise) and an earlier or conflicting one refused with its reason; only a
leader changes it, in its epoch, one voter at a time, once the last change is agreed by a majority of
the voters before and after it; a new member is a learner until it acknowledged, then promoted.
"""

from __future__ import annotations

import pytest

from node.core import Membership, MembershipRefused, Message, MsgType, PlantedBug, Role
from node.core.membership import CONFLICT, OUTSIDE, STALE, configuration_id, initial, joining
from node.sim.network import Network
from node.sim.schedule import Schedule, run_schedule

SETTLE_TICKS = 600


def grown(seed: int = 0, bugs: frozenset[PlantedBug] = frozenset()) -> Network:
    """Voters 1, 2, 3 agreed on a leader; 4 and 5 started to join."""
    net = Network(seed, 5, "quorum", planted_bugs=bugs, joining=(4, 5))
    assert net.run_until_agreed(SETTLE_TICKS) is not None
    return net


def change(net: Network, add: int = 0, remove: int = 0) -> Membership:
    leader = net.agreed_leader()[0]
    m = net.membership(leader)
    if add:
        net.change_membership(leader, m.voters, m.learners + (add,))
    else:
        net.change_membership(leader, tuple(v for v in m.voters if v != remove), ())
    net.run(80)
    return net.membership(net.agreed_leader()[0])


# ---- the configuration itself ------------------------------------------------------------------------


def test_one_voter_per_change_and_a_clear_reason_otherwise() -> None:
    m = initial((1, 2, 3))
    assert m.changed((1, 2, 3, 4), (), term=2) == Membership((1, 2, 3, 4), (), 1, 2, previous=(1, 2, 3))
    with pytest.raises(MembershipRefused, match="more than one voter"):
        m.changed((1, 2, 3, 4, 5), (), term=2)
    with pytest.raises(MembershipRefused, match="more than one voter"):
        m.changed((1, 4, 5), (), term=2)  # a replacement is two changes
    with pytest.raises(MembershipRefused, match="at least one voter"):
        m.changed((), (1,), term=2)
    with pytest.raises(MembershipRefused, match="both voter and learner"):
        m.changed((1, 2, 3), (3,), term=2)
    with pytest.raises(MembershipRefused, match="already"):
        m.changed((3, 2, 1), (), term=2)


def test_order_is_term_then_index_and_a_start_up_list_keeps_its_old_fingerprint() -> None:
    a = Membership((1, 2, 3), (), index=5, term=2)
    assert a.compare(Membership((1, 2), (), index=1, term=3)) == "later"  # a later leader's change wins
    assert a.compare(Membership((1, 2, 3, 4), (), index=6, term=2)) == "later"
    assert a.compare(Membership((1, 2, 3), (), index=4, term=2)) == STALE
    assert a.compare(Membership((1, 2, 4), (), index=5, term=2)) == CONFLICT
    assert a.compare(a) == ""
    assert joining().order < initial((1, 2, 3)).order  # a joining node adopts anything it hears
    assert initial((1, 2, 3)).id == configuration_id((3, 1, 2))  # the same id a start-up list always had


# ---- changes in the simulator -------------------------------------------------------------------------


def test_three_grow_to_five_and_shrink_back_with_every_node_following() -> None:
    net = grown()
    leader = net.agreed_leader()[0]
    assert change(net, add=4).voters == (1, 2, 3, 4)
    assert change(net, add=5).voters == (1, 2, 3, 4, 5)
    for node in (1, 2, 3, 4, 5):
        assert net.membership(node).voters == (1, 2, 3, 4, 5)
    removed = [v for v in (1, 2, 3) if v != leader][:2]
    for node in removed:
        change(net, remove=node)
    final = net.membership(leader)
    assert len(final.voters) == 3 and not set(removed) & set(final.voters)
    assert net.agreed_leader() is not None and not net.violations(), net.violations()
    # The removed nodes heard the change that removed them: they stand for nothing and follow no one.
    for node in removed:
        assert node not in net.membership(node).everyone
    net.run(500)
    assert not any(iv.node in removed for iv in net.intervals if iv.start > net.now - 500)


def test_a_learner_is_promoted_only_once_it_acknowledged() -> None:
    net = grown()
    leader = net.agreed_leader()[0]
    net.isolate(4)
    m = net.membership(leader)
    net.change_membership(leader, m.voters, (4,))
    net.run(200)
    assert net.membership(leader).learners == (4,) and 4 not in net.membership(leader).voters
    net.heal()
    net.run(80)
    assert 4 in net.membership(leader).voters


def test_the_leader_refuses_what_it_may_not_change_now() -> None:
    net = grown()
    leader = net.agreed_leader()[0]
    follower = next(v for v in (1, 2, 3) if v != leader)
    m = net.membership(leader)
    with pytest.raises(MembershipRefused, match="not the leader"):
        net.change_membership(follower, m.voters, (4,))
    with pytest.raises(MembershipRefused, match="cannot remove itself"):
        net.change_membership(leader, tuple(v for v in m.voters if v != leader), ())
    # A change not yet acknowledged by a majority blocks the next one.
    others = [v for v in (1, 2, 3) if v != leader]
    for node in others:
        net.cut(leader, node)
    net.change_membership(leader, m.voters, (4,))
    with pytest.raises(MembershipRefused, match="not yet agreed"):
        net.change_membership(leader, m.voters, (4, 5))
    net.heal()


def test_a_node_that_missed_two_changes_learns_the_current_one_and_never_leads_on_the_old() -> None:
    net = grown()
    leader = net.agreed_leader()[0]
    lagging = next(v for v in (1, 2, 3) if v != leader)
    net.isolate(lagging)
    for spare in (4, 5):
        m = net.membership(leader)
        net.change_membership(leader, m.voters, (spare,))
        net.run(100)
    assert net.membership(leader).voters == (1, 2, 3, 4, 5)
    assert net.membership(lagging).voters == (1, 2, 3)
    net.heal()
    assert net.run_until(lambda: net.membership(lagging) == net.membership(leader), 400)
    assert not net.violations(), net.violations()
    assert not any(iv.node == lagging for iv in net.intervals)


def test_a_message_from_an_earlier_or_conflicting_configuration_is_refused_with_its_reason() -> None:
    net = grown()
    leader = net.agreed_leader()[0]
    change(net, add=4)
    follower = next(v for v in (1, 2, 3) if v != leader)
    old = initial((1, 2, 3))
    now = net.membership(follower)
    for theirs, reason in [(old, STALE), (Membership((1, 2, 3, 5), (), now.index, now.term), CONFLICT)]:
        out = net.inject(
            Message(
                MsgType.COORDINATOR, 5 if reason == CONFLICT else 4, follower, 99, lease_ticks=35, membership=theirs
            )
        )
        reply = out.messages[0]
        assert not reply.granted and reply.refusal == reason and reply.membership == net.membership(follower)
        assert out.persist is None  # nothing promised
    # A node in no configuration (still joining) backs no one.
    out = net.inject(Message(MsgType.HEARTBEAT, leader, 5, net.view(leader).epoch, round=1, membership=joining()))
    assert out.messages[0].refusal == OUTSIDE


def test_a_later_configuration_is_durable_before_the_answer_that_reveals_it() -> None:
    net = grown()
    leader = net.agreed_leader()[0]
    follower = next(v for v in (1, 2, 3) if v != leader)
    later = net.membership(leader).changed((1, 2, 3), (4,), term=net.view(leader).epoch)
    out = net.inject(Message(MsgType.HEARTBEAT, leader, follower, net.view(leader).epoch, round=99, membership=later))
    assert out.persist is not None and out.persist.membership == later
    assert out.messages[0].membership == later


def test_a_restart_with_a_stale_list_keeps_the_durable_configuration() -> None:
    net = grown()
    change(net, add=4)
    net.crash(1)
    net.restart(1, members=(1, 2, 3))  # the operator's stale --peers
    assert net.membership(1).voters == (1, 2, 3, 4)


@pytest.mark.parametrize("bug", [PlantedBug.MEMBERSHIP_NOT_PERSISTED])
def test_without_durable_configuration_a_restart_forgets_the_change(bug: PlantedBug) -> None:
    net = grown(bugs=frozenset({bug}))
    change(net, add=4)
    net.crash(1)
    net.restart(1)
    assert net.membership(1).voters == (1, 2, 3)


def test_the_leader_hands_over_before_it_is_removed_in_a_schedule() -> None:
    """`member remove L` is refused at the leader (the CLI transfers first); the schedule's remove of a
    follower goes through, and the judge follows the configurations."""
    script = """@nodes 5
@mode quorum
@seed 3
@timing heartbeat_interval_ticks=10 election_timeout_ticks=50 leader_lease_ticks=35 follower_promise_ticks=40 alive_wait_ticks=10 coordinator_wait_ticks=25 rank_stagger_ticks=2 jitter_ticks=5 preempt_hold_down_ticks=0
@joining 4 5
run 100
member add 4
run 60
member add 5
run 60
member remove L
run 30
member remove F
run 60
"""
    outcome = run_schedule(Schedule.from_script(script))
    verbs = [c for c in outcome.schedule.commands if c[0] == "member"]
    assert [c[1] for c in verbs] == ["add", "add", "remove"], verbs  # the leader's own removal was refused
    assert not outcome.failed, outcome.violations
    leader = outcome.net.agreed_leader()[0]
    assert len(outcome.net.membership(leader).voters) == 4
    assert Schedule.from_script(outcome.schedule.to_script()).joining == (4, 5)


def test_joining_needs_a_mode_that_changes_membership() -> None:
    with pytest.raises(ValueError, match="cannot change membership"):
        Network(0, 4, "ring", joining=(4,))
    net = Network(0, 3, "classic")
    net.run_until_agreed(SETTLE_TICKS)
    assert net.view(net.agreed_leader()[0]).role == Role.LEADER
    with pytest.raises(MembershipRefused, match="cannot change membership"):
        net.change_membership(net.agreed_leader()[0], (1, 2), ())
