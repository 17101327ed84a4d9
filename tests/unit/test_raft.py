"""Raft election (node/core/raft.py), driven through the deterministic simulator with mode "raft".

Time is in ticks and every run is seeded, so tick and message counts are exact.
"""

from __future__ import annotations

from collections import Counter

import pytest

from node.core import (
    BecameLeader,
    Config,
    ElectionStarted,
    Message,
    Mode,
    MsgType,
    Output,
    Promise,
    RaftElector,
    Role,
    SteppedDown,
    Timing,
)
from node.sim.network import Network

T = Timing()
ET = T.election_timeout_ticks
SETTLE_TICKS = 10 * ET
VOTE_TYPES = (MsgType.PRE_VOTE, MsgType.PRE_VOTE_ACK, MsgType.REQUEST_VOTE, MsgType.VOTE)


def settled(n: int, seed: int = 0, timing: Timing = T, mode_options: frozenset[str] = frozenset()) -> Network:
    net = Network(seed, n, Mode.RAFT, timing, mode_options=mode_options)
    assert net.run_until_agreed(SETTLE_TICKS) is not None, "no leader at cold start"
    return net


def only_reply(out: Output) -> Message:
    assert len(out.messages) == 1, out.messages
    return out.messages[0]


def request_vote(src: int, dst: int, term: int) -> Message:
    return Message(MsgType.REQUEST_VOTE, src, dst, term)


def safe(net: Network) -> bool:
    return not net.violations()


# ---- electing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_cold_start_elects_one_leader(n: int) -> None:
    net = settled(n)
    leader, term = net.agreed_leader()
    assert net.leaders() == [leader] and term >= 1
    assert all(net.persisted[m].epoch == term for m in net.members)
    assert safe(net), net.violations()


@pytest.mark.parametrize("seed", range(5))
def test_election_timeouts_are_randomized_within_one_to_two_timeouts(seed: int) -> None:
    import random

    timeouts = set()
    for node in range(1, 40):
        e = RaftElector(Config(node, tuple(range(1, 40))), Promise(), random.Random(f"{seed}:{node}"), 1000)
        assert 1000 + ET <= e.election_deadline < 1000 + 2 * ET
        timeouts.add(e.election_deadline)
    assert len(timeouts) > 10


def test_leadership_is_stable_without_faults() -> None:
    net = settled(5)
    leader, term = net.agreed_leader()
    net.run(20 * ET)
    assert net.agreed_leader() == (leader, term)
    assert len([e for e in net.events if isinstance(e.event, BecameLeader)]) == 1
    assert net.elector(leader).stats.lease_renewals >= 20 * ET // T.heartbeat_interval_ticks - 2


@pytest.mark.parametrize("seed", range(4))
def test_kill_leader_a_new_leader_with_a_higher_term_within_a_few_timeouts(seed: int) -> None:
    net = settled(5, seed)
    old, old_term = net.agreed_leader()
    killed_at = net.now
    net.crash(old)
    taken = net.run_until_agreed(SETTLE_TICKS)
    assert taken is not None and taken <= 4 * ET, taken
    leader, term = net.agreed_leader()
    assert leader != old and term > old_term
    assert net.events_of(leader, BecameLeader, killed_at)
    assert safe(net), net.violations()


def test_isolated_leader_steps_down_within_its_lease() -> None:
    net = settled(5)
    old, old_term = net.agreed_leader()
    isolated_at = net.now
    net.isolate(old)
    rest = [m for m in net.members if m != old]
    net.run_until(lambda: net.agreed_among(rest) is not None, SETTLE_TICKS)

    ((down_tick, down),) = net.events_of(old, SteppedDown, isolated_at)
    assert down.reason == "lease_expired" and down.epoch == old_term
    assert down_tick <= isolated_at + T.leader_lease_ticks
    new, new_term = net.agreed_among(rest)
    ((won_tick, won),) = net.events_of(new, BecameLeader, isolated_at)
    assert won.epoch == new_term > old_term and won_tick >= down.lease_end_tick
    assert net.view(old).role != Role.LEADER
    assert safe(net), net.violations()


def test_a_paused_leader_rechecks_its_lease_on_resume() -> None:
    net = settled(3)
    old, _ = net.agreed_leader()
    paused_at = net.now
    net.pause(old, 3 * ET)
    net.run(3 * ET + 1)
    ((_, down),) = net.events_of(old, SteppedDown, paused_at)
    assert down.reason == "lease_expired" and down.lease_end_tick <= paused_at + T.leader_lease_ticks
    assert net.run_until_agreed(SETTLE_TICKS) is not None
    assert safe(net), net.violations()


def test_messages_per_election_are_linear() -> None:
    """A campaign costs at most (n-1) PreVotes, (n-1) RequestVotes and their answers: O(n), not O(n^2).
    Nodes whose timeouts fire within the same few ticks campaign concurrently; that stays rare."""
    counts, campaigns = {}, {}
    for n in range(3, 16):
        net = settled(n, seed=n)
        before = net.sent.copy()
        crashed_at = net.now
        net.crash(net.agreed_leader()[0])
        assert net.run_until_agreed(SETTLE_TICKS) is not None
        sent = net.sent - before
        counts[n] = sum(sent[t] for t in VOTE_TYPES)
        campaigns[n] = sum(len(net.events_of(m, ElectionStarted, crashed_at)) for m in net.members)
        assert counts[n] <= 4 * (n - 1) * campaigns[n], (n, counts[n], sent)
        assert counts[n] >= 2 * (n - 1)  # one successful campaign at least: every peer asked twice
    print("\nraft: election messages per failover", counts, "campaigns", campaigns)
    assert sum(campaigns.values()) / len(campaigns) <= 2.5, campaigns
    assert all(counts[n] <= 16 * n for n in counts), counts


# ---- votes are promises -----------------------------------------------------------------------


def test_the_vote_is_persisted_in_the_output_that_reveals_it() -> None:
    net = Network(0, 3, Mode.RAFT)
    out = net.inject(request_vote(3, 1, 2))
    vote = only_reply(out)
    assert vote.type == MsgType.VOTE and vote.granted and vote.promised_epoch == 2
    assert out.persist.names == (2, 3) and out.persist == net.persisted[1]
    again = net.inject(request_vote(3, 1, 2))  # a duplicate: the same vote, nothing new to persist
    assert again.persist is None and only_reply(again).granted


def test_one_vote_per_term_across_a_crash_restart() -> None:
    net = Network(0, 5, Mode.RAFT)
    net.isolate(1)  # only the hand-made requests below reach it (its own pre-votes go nowhere)
    assert only_reply(net.inject(request_vote(3, 1, 7))).granted
    net.tick()
    net.crash_restart(1)
    assert net.elector(1).promise.names == (7, 3)
    # It may have granted 3 just before the crash: a full promise window from boot, to others.
    assert not only_reply(net.inject(request_vote(4, 1, 8))).granted
    assert only_reply(net.inject(request_vote(3, 1, 8))).granted  # the node it promised may have it again
    net.run(T.follower_promise_ticks + 1)
    refused = only_reply(net.inject(request_vote(4, 1, 8)))  # term 8 is 3's now: one vote per term
    assert not refused.granted and refused.promised_epoch == 8
    assert not only_reply(net.inject(request_vote(4, 1, 7))).granted  # below the term
    assert net.persisted[1].names == (8, 3)
    net.run(T.follower_promise_ticks + 1)
    assert only_reply(net.inject(request_vote(4, 1, 9))).granted
    assert net.persisted[1].names == (9, 4)


def test_a_follower_of_a_live_leader_ignores_votes_and_does_not_adopt_their_term() -> None:
    net = settled(5)
    leader, term = net.agreed_leader()
    follower = next(m for m in net.members if m != leader)
    other = next(m for m in net.members if m not in (leader, follower))
    for msg_type in (MsgType.REQUEST_VOTE, MsgType.PRE_VOTE):
        reply = only_reply(net.inject(Message(msg_type, other, follower, term + 5)))
        assert not reply.granted and reply.promised_epoch == term
    assert net.view(follower).epoch == term and net.view(follower).leader_id == leader
    assert net.persisted[follower].names == (term, leader)


def test_the_leader_ignores_votes_while_its_lease_lives() -> None:
    net = settled(3)
    leader, term = net.agreed_leader()
    other = next(m for m in net.members if m != leader)
    assert not only_reply(net.inject(request_vote(other, leader, term + 1))).granted
    assert net.agreed_leader() == (leader, term)


def test_a_node_inside_its_promise_window_does_not_vote_for_itself() -> None:
    """It granted node 3 a vote; its own election timeout comes, but the window still runs."""
    net = Network(0, 3, Mode.RAFT)
    net.cut(1, 3)  # node 3 never hears back, so it never leads or heartbeats
    net.cut(1, 2)
    e = net.elector(1)
    assert only_reply(net.inject(request_vote(3, 1, 1))).granted
    window_end = e.promise_until
    e.election_deadline = net.local(1) + 1  # time out now, inside the window
    net.run(window_end - net.local(1) - 1)
    assert net.persisted[1].names == (1, 3) and net.view(1).role == Role.FOLLOWER
    assert not net.events_of(1, ElectionStarted)
    assert safe(net), net.violations()


# ---- PreVote: a rejoining node does not depose a healthy leader ------------------------------------------


def isolate_a_follower_and_heal(net: Network) -> tuple[int, int, int]:
    leader, term = net.agreed_leader()
    follower = min(m for m in net.members if m != leader)
    net.isolate(follower)
    net.run(10 * ET)  # many election timeouts alone
    net.heal()
    net.run(4 * ET)
    return leader, term, follower


def test_with_pre_vote_a_rejoining_node_does_not_change_the_leader_or_term() -> None:
    net = settled(5)
    leader, term, follower = isolate_a_follower_and_heal(net)
    assert net.elector(follower).stats.elections_started >= 5  # it tried, with pre-votes only
    assert net.agreed_leader() == (leader, term)
    assert not net.events_of(leader, SteppedDown)
    assert net.persisted[follower].names == (term, leader)
    assert safe(net), net.violations()


def test_without_pre_vote_a_rejoining_node_deposes_the_leader() -> None:
    net = settled(5, mode_options=frozenset({"no-pre-vote"}))  # the user's switch: --mode-option no-pre-vote
    leader, term, follower = isolate_a_follower_and_heal(net)
    ((_, down),) = net.events_of(leader, SteppedDown)
    assert down.reason == "higher_epoch"
    assert net.run_until_agreed(SETTLE_TICKS) is not None
    assert net.agreed_leader()[1] > term + 5  # the inflated term of the rejoined node won out
    assert safe(net), net.violations()


def test_pre_votes_persist_nothing_and_change_no_term() -> None:
    net = Network(0, 3, Mode.RAFT)
    out = net.inject(Message(MsgType.PRE_VOTE, 2, 1, 4, round=1))
    ack = only_reply(out)
    assert ack.type == MsgType.PRE_VOTE_ACK and ack.granted and ack.round == 1
    assert out.persist is None and net.view(1).epoch == 0


# ---- terms: a stale leader learns and steps down ----------------------------------------------------


def test_a_stale_leader_steps_down_on_an_ack_with_a_newer_term() -> None:
    net = settled(3)
    leader, term = net.agreed_leader()
    follower = next(m for m in net.members if m != leader)
    out = net.inject(Message(MsgType.HEARTBEAT_ACK, follower, leader, term, round=1, promised_epoch=term + 3))
    assert [type(e) for e in out.events] == [SteppedDown] and out.events[0].reason == "higher_epoch"
    assert net.view(leader).epoch == term + 3 and net.persisted[leader].names == (term + 3, 0)


def test_a_stale_heartbeat_is_refused_with_the_newer_term() -> None:
    net = Network(0, 3, Mode.RAFT)
    assert only_reply(net.inject(request_vote(3, 1, 5))).granted
    ack = only_reply(net.inject(Message(MsgType.HEARTBEAT, 2, 1, 4, round=1)))
    assert not ack.granted and ack.promised_epoch == 5


# ---- handing over --------------------------------------------------------------------------------


def test_resign_releases_followers_and_another_node_leads_soon() -> None:
    net = settled(5)
    leader, term = net.agreed_leader()
    resigned_at = net.now
    out = net.resign(leader)
    assert [type(e) for e in out.events] == [SteppedDown] and out.events[0].reason == "resigned"
    assert {m.dst for m in out.messages if m.resigning} == set(net.members) - {leader}
    taken = net.run_until_agreed(2 * ET)
    assert taken is not None and taken < ET, taken
    new, new_term = net.agreed_leader()
    assert new != leader and new_term > term  # the resigner abstained
    assert not net.events_of(leader, ElectionStarted, resigned_at)
    assert safe(net), net.violations()


def test_transfer_the_successor_elects_at_once_without_pre_vote() -> None:
    net = settled(5)
    leader, term = net.agreed_leader()
    successor = min(m for m in net.members if m != leader)
    before = net.sent.copy()
    transferred_at = net.now
    net.transfer(leader, successor)
    net.run_until(lambda: bool(net.events_of(successor, BecameLeader, transferred_at)), ET)
    ((won_tick, won),) = net.events_of(successor, BecameLeader, transferred_at)
    assert won_tick - transferred_at <= 3 and won.epoch == term + 1
    assert (net.sent - before)[MsgType.PRE_VOTE] == 0
    assert net.run_until_agreed(ET) is not None and net.agreed_leader() == (successor, term + 1)
    assert safe(net), net.violations()


def test_restart_of_every_node_waits_out_the_boot_window_then_elects() -> None:
    net = settled(5)
    _, term = net.agreed_leader()
    restarted_at = net.now
    net.restart_all()
    assert net.run_until_agreed(SETTLE_TICKS) is not None
    assert net.agreed_leader()[1] > term
    first = min(tick for m in net.members for tick, _ in net.events_of(m, ElectionStarted, restarted_at))
    assert first >= restarted_at + T.follower_promise_ticks
    assert safe(net), net.violations()


def test_counters() -> None:
    net = settled(3)
    net.run(ET)
    leader, _ = net.agreed_leader()
    stats = net.elector(leader).stats
    assert stats.elections_started >= 1 and stats.elections_won == 1 and stats.lease_renewals >= 1
    net.resign(leader)
    assert stats.stepdowns == 1
    assert isinstance(net.elector(leader).lease_until, int) and isinstance(net.elector(leader).election_deadline, int)
    assert Counter(type(e.event) for e in net.events)[BecameLeader] == 1


def test_only_raft_takes_the_no_pre_vote_switch() -> None:
    with pytest.raises(ValueError, match="mode quorum has no option 'no-pre-vote' \\(it takes: none\\)"):
        Network(0, 3, Mode.QUORUM, mode_options=frozenset({"no-pre-vote"}))
    with pytest.raises(ValueError, match="mode raft has no option 'pre-vote' \\(it takes: no-pre-vote\\)"):
        Network(0, 3, Mode.RAFT, mode_options=frozenset({"pre-vote"}))
