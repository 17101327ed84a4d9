"""An adversarial review of the elector kit (9727afd) and of raft membership changes through it (fcd6b70).

Findings (strict expected failures below, each with its minimal schedule):

* Liveness, raft with `no-pre-vote` (fcd6b70). The kit's `step` checks the epoch (`_check_epoch`) before
  the configuration (`_admit`), and raft's epoch check adopts the `promised_epoch` of every reply, also of
  one refused for its configuration (configuration-conflict, -stale, not-a-member). A node that runs a
  configuration of the same order as the cluster's but another one (a fresh disk started with a longer
  `--peers` list: "two start-up lists that were never one") never adopts the cluster's; without PreVote
  it campaigns for ever, one term higher each time, and answers every heartbeat of the leader with a
  configuration-conflict refusal carrying that term. The leader adopts it and steps down (higher_epoch),
  about once per election timeout, for as long as that node runs: a majority that could lead undisturbed
  has an agreed leader a third of the time. Quorum mode ignores the epoch of a configuration refusal
  (`QuorumBully._on_heartbeat_ack`); raft at 9727afd never saw such a node (the transport refused its
  list). The same path lets a node removed while it was cut off depose the leader once after the heal,
  with the term it reached alone (not-a-member carries it).
* Judge (P3g false positive, raft, predates the kit: the same at 6ca5dca). A candidate that wins, steps
  down on a higher term and votes for a rival in one tick is judged "outside a majority's live promises"
  for the tick its announced leadership is held through (its own vote ended in that tick). The class of
  the second membership review's expected failure, reached without any configuration change.

The others are schedules that looked dangerous and hold (regressions), and the kit's claim that behaviour
did not change, checked on paths the swarm seldom takes.
"""

from __future__ import annotations

import pytest

from node.core import Mode, Reason, SteppedDown
from node.sim.network import Network
from node.sim.schedule import Schedule, run_schedule

NO_PRE_VOTE = frozenset({"no-pre-vote"})

HEADER = """@nodes {n}
@mode raft
@seed {seed}
@timing heartbeat_interval_ticks=10 election_timeout_ticks=50 leader_lease_ticks=35 follower_promise_ticks=40 alive_wait_ticks=10 coordinator_wait_ticks=25 rank_stagger_ticks=2 jitter_ticks=5 preempt_hold_down_ticks=300
"""


def run(n: int, body: str, seed: int = 0, joining: str = "", options: str = ""):
    text = (HEADER.format(n=n, seed=seed) + "".join(f"@option {o}\n" for o in options.split())
            + (f"@joining {joining}\n" if joining else "") + body)
    return run_schedule(Schedule.from_script(text))


def higher_epoch_stepdowns(net: Network, nodes) -> int:
    return sum(1 for m in nodes for _, e in net.events_of(m, SteppedDown) if e.reason == Reason.HIGHER_EPOCH)


def conflicting_third_node(mode: Mode, options: frozenset[str]) -> tuple[Network, int]:
    """Voters {1,2,3}; node 3 was started afresh with the list {1,2,3,4} (4 never runs): its configuration
    conflicts with 1's and 2's, and it refuses them all. 1 and 2 are a majority of {1,2,3}. Returns the
    network after 3000 ticks and how many of those ticks 1 and 2 agreed on a leader."""
    net = Network(0, 4, mode, joining=(4,), member_lists={3: (1, 2, 3, 4)}, mode_options=options)
    net.crash(4)
    agreed = 0
    for _ in range(3000):
        net.tick()
        agreed += net.agreed_among([1, 2]) is not None
    return net, agreed


# ---- findings ---------------------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="raft adopts the term of a reply refused for its configuration "
                   "(_check_epoch runs before _admit): a node on a conflicting list deposes the leader every "
                   "election timeout without PreVote")
def test_a_node_on_a_conflicting_list_does_not_depose_the_raft_leader_without_pre_vote() -> None:
    net, agreed = conflicting_third_node(Mode.RAFT, NO_PRE_VOTE)
    assert not net.violations(), net.violations()
    # Today: 26 stepdowns (higher_epoch), each on node 3's configuration-conflict refusal of a heartbeat,
    # and 1 and 2 agree on a leader in 1136 ticks of 3000 (the same run in quorum mode: 0 and 2931).
    assert higher_epoch_stepdowns(net, (1, 2)) == 0
    assert agreed > 2500, agreed


@pytest.mark.parametrize("mode, options", [(Mode.RAFT, frozenset()), (Mode.QUORUM, frozenset())])
def test_a_node_on_a_conflicting_list_is_harmless_with_pre_vote_and_in_quorum_mode(mode, options) -> None:
    """With PreVote its pre-votes are never counted (every answer is a conflict), so its term never moves;
    quorum's leader ignores the epoch of a configuration refusal."""
    net, agreed = conflicting_third_node(mode, options)
    assert not net.violations(), net.violations()
    assert higher_epoch_stepdowns(net, (1, 2)) == 0 and agreed > 2500, agreed
    assert net.membership(3).voters == (1, 2, 3, 4)  # it never runs the cluster's configuration


def test_a_leader_removed_while_cut_off_stands_for_nothing_after_the_heal() -> None:
    """3 leads, is cut off, 2 leads the others and removes 3 (joint, then settled). Healed, 3's pre-votes
    carry the start-up list: refused as stale, 3 adopts the new configuration and is outside it. With
    PreVote 3's term never rose while it was alone, and 2 leads on."""
    net = Network(0, 5, Mode.RAFT)
    assert net.run_until_agreed(2000) is not None and net.agreed_leader() == (3, 1)
    net.isolate(3)
    rest = [1, 2, 4, 5]
    net.run_until(lambda: net.agreed_among(rest) is not None, 3000)
    leader = net.agreed_among(rest)[0]
    net.run(50)
    net.change_membership(leader, tuple(rest))
    net.run(300)
    assert net.membership(leader).voters == tuple(rest) and not net.membership(leader).joint
    before = len(net.events_of(leader, SteppedDown))
    net.heal()
    net.run(800)
    assert not net.violations(), net.violations()
    assert 3 not in net.membership(3).everyone and not any(iv.node == 3 and iv.start > 150 for iv in net.intervals)
    assert net.events_of(leader, SteppedDown)[before:] == [] and net.agreed_leader()[0] == leader


def test_without_pre_vote_a_removed_leader_deposes_the_new_one_once_with_the_term_it_reached_alone() -> None:
    """The same without PreVote: cut off, 3 campaigned alone, a term higher each time. Healed, it adopts the new
    configuration from 2's heartbeat and refuses it as not-a-member, with that term: 2 steps down once
    (higher_epoch), the four elect again, and 3 (outside) never raises its term again. The documented cost
    of no-pre-vote for a rejoining member; a removed one could be spared it (the finding above)."""
    net = Network(0, 5, Mode.RAFT, mode_options=NO_PRE_VOTE)
    assert net.run_until_agreed(2000) is not None and net.agreed_leader() == (3, 1)
    net.isolate(3)
    rest = [1, 2, 4, 5]
    net.run_until(lambda: net.agreed_among(rest) is not None, 3000)
    leader = net.agreed_among(rest)[0]
    net.run(50)
    net.change_membership(leader, tuple(rest))
    net.run(300)
    assert net.elector(3).term > net.elector(leader).term  # it comes back with a term above the cluster's
    before = len(net.events_of(leader, SteppedDown))
    net.heal()
    net.run(800)
    assert not net.violations(), net.violations()
    assert [e.reason for _, e in net.events_of(leader, SteppedDown)[before:]] == [Reason.HIGHER_EPOCH]
    assert 3 not in net.membership(3).everyone and net.agreed_leader() is not None


# Explore (raft membership swarm, seed 90672), shrunk; no configuration change is needed. Node 4 wins
# epoch 3 at tick 339 (its vote, 1's and 2's), and in the same tick steps down on a refusal carrying a
# higher term and votes for 5, which leads from tick 340.
ONE_TICK_WIN = """@nodes 5
@mode raft
@seed 90672
@timing heartbeat_interval_ticks=10 election_timeout_ticks=50 leader_lease_ticks=35 follower_promise_ticks=40 alive_wait_ticks=10 coordinator_wait_ticks=25 rank_stagger_ticks=2 jitter_ticks=5 preempt_hold_down_ticks=60
@option no-pre-vote
cut 1 5
restart_all
stale 5
restart_all
until lease-end * 200
restart_all
restart_all
"""


@pytest.mark.xfail(strict=True, reason="P3g false positive (judge, predates the kit): a raft win undone by a "
                   "higher term in the same tick, with a vote for a rival, is held through the tick unbacked")
def test_a_raft_win_undone_in_its_own_tick_is_not_judged_unbacked() -> None:
    outcome = run_schedule(Schedule.from_script(ONE_TICK_WIN))
    # Today: "P3g: node 4 led epoch 3 (tick 339 for 1 tick) 1 tick outside a majority's live promises".
    # Node 4 never acted as leader (no store write, its view was a follower's again at the tick's end).
    assert not outcome.violations, outcome.violations
