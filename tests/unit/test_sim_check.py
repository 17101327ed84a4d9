"""The exhaustive small-scope checker (node/sim/check.py, `bullyproof sim check`) over the real electors:
the clean core has no violation at a small bound, planted bugs are caught with a shortest path that
replays, its fingerprint merges what commutes, and raft's symmetry reduction loses no violation."""

from __future__ import annotations

import json

import pytest

from node.core import Message, MsgType, PlantedBug, RaftElector
from node.core.kit import EPOCH_STALE
from node.sim.check import (
    MESSAGE,
    Checker,
    Settings,
    State,
    Violation,
    check,
    clone_elector,
    item_of,
    quorum_key,
    replay,
)
from node.sim.cli import main as sim_main


def settings(**kw) -> Settings:
    kw.setdefault("budget_s", None)  # bounded by depth only: the same answer on a busy machine
    return Settings(**kw)


# ---- the clean core ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode, depth", [("quorum", 8), ("raft", 7)])
def test_clean_core_has_no_violation_at_a_small_bound(mode: str, depth: int) -> None:
    report = check(settings(mode=mode, depth=depth, faults=1))
    assert report.violation is None, report.violation and "\n".join(report.violation.lines())
    assert report.ended_by == "bound" and report.depth_explored == depth
    assert report.distinct_states > 1000  # it did search: elections, acks, crashes and their orders


# ---- planted bugs: caught, shortest, real ---------------------------------------------------------

# (bug, nodes, faults, property, actions on the shortest path); each within a few seconds here.
CAUGHT = [
    ("double-ack", 3, 0, "P3g", 6),
    ("forget-promise", 3, 1, "P3g", 8),
]


@pytest.mark.parametrize("bug, nodes, faults, prop, length", CAUGHT, ids=[c[0] for c in CAUGHT])
def test_planted_bug_is_caught_with_a_shortest_path_that_replays(bug, nodes, faults, prop, length) -> None:
    base = settings(nodes=nodes, faults=faults, depth=length + 2, planted_bugs=frozenset({PlantedBug(bug)}))
    report = check(base)
    v = report.violation
    assert v is not None and report.ended_by == "violation"
    assert (v.property, len(v.path)) == (prop, length), "\n".join(v.lines())
    # The path is real: replaying its actions from the start breaks the same property at its end...
    again = replay(base, v.actions)
    assert isinstance(again, Violation) and (again.property, again.message) == (v.property, v.message)
    # ...and nothing shorter does (breadth-first: every path one action shorter was checked, clean).
    clean = check(settings(nodes=nodes, faults=faults, depth=length - 1, planted_bugs=base.planted_bugs))
    assert clean.violation is None and clean.depth_explored == length - 1


def test_a_lease_running_out_needs_a_leap() -> None:
    """ignore-lease shows only once a silent leader's followers' promises run out: about ten timer
    instants after it won, each an action of its own. With --leap one action lets time pass over
    several of them, and the bug comes out in five."""
    bug = frozenset({PlantedBug.IGNORE_LEASE})
    assert check(settings(depth=5, faults=0, planted_bugs=bug)).violation is None
    report = check(settings(depth=5, faults=0, leap=6, planted_bugs=bug))
    v = report.violation
    assert v is not None and (v.property, len(v.path)) == ("P3g", 5), v and "\n".join(v.lines())
    assert "but no majority's promises backed it" in v.message
    assert isinstance(replay(settings(leap=6, planted_bugs=bug), v.actions), Violation)


def test_a_clean_core_path_replays_without_violation() -> None:
    """The same path as double-ack's counterexample, on the clean core: node 1 refuses the second
    coordinator, so the path ends in a state, not a violation (the bug, not the path, broke P3g)."""
    buggy = check(settings(depth=8, faults=0, planted_bugs=frozenset({PlantedBug.DOUBLE_ACK})))
    assert buggy.violation is not None
    assert isinstance(replay(settings(), buggy.violation.actions), State)


# ---- the fingerprint ---------------------------------------------------------------------------------


def _deliver(checker: Checker, state: State, pick) -> State:
    item = next(i for i in sorted(set(state.flight)) if pick(i))
    checker.rng.start()
    out = checker.apply(state, ("deliver", item))
    assert isinstance(out, State)
    return out


def _after_first_proposal(checker: Checker) -> State:
    """Quorum, 3 nodes: node 3 has sent Coordinator(1) to nodes 1 and 2."""
    state = checker.initial()
    while not any(i[1] == "coordinator" for i in state.flight):
        checker.rng.start()
        state = checker.apply(state, ("advance",))
    return state


def test_fingerprint_merges_deliveries_that_commute() -> None:
    checker = Checker(settings())
    checker.memo = None  # each delivery copies and steps its elector: two different objects
    start = _after_first_proposal(checker)
    to = lambda node: lambda i: i[1] == "coordinator" and i[3] == node  # noqa: E731
    one_then_two = _deliver(checker, _deliver(checker, start, to(1)), to(2))
    two_then_one = _deliver(checker, _deliver(checker, start, to(2)), to(1))
    assert one_then_two.electors[0] is not two_then_one.electors[0]
    assert checker.fingerprint(one_then_two) == checker.fingerprint(two_then_one)
    # ...and tells apart what does not commute: only node 1 has acknowledged.
    assert checker.fingerprint(_deliver(checker, start, to(1))) != checker.fingerprint(one_then_two)


def test_fingerprint_counts_time_from_now() -> None:
    """Once the rounds a lease still counts have filled up, a leader's heartbeat round acknowledged
    by both followers ends where the previous one did, ten ticks later and one round number up: the
    same state, relative to now. (Absolute times and rounds would never repeat.)"""
    checker = Checker(settings())
    state = _after_first_proposal(checker)
    for node in (1, 2):
        state = _deliver(checker, state, lambda i, node=node: i[1] == "coordinator" and i[3] == node)
    state = _deliver(checker, state, lambda i: i[1] == "coordinator_ack")  # node 3 leads, heartbeats out
    state = _deliver(checker, state, lambda i: i[1] == "coordinator_ack")

    def full_round(s: State) -> State:
        for node in (1, 2):
            s = _deliver(checker, s, lambda i, node=node: i[1] == "heartbeat" and i[3] == node)
        for _ in range(2):
            s = _deliver(checker, s, lambda i: i[1] == "heartbeat_ack")
        while not any(i[1] == "heartbeat" for i in s.flight):
            checker.rng.start()
            s = checker.apply(s, ("advance",))
        return s

    rounds = [state]
    for _ in range(6):
        rounds.append(full_round(rounds[-1]))
    first, second = rounds[-2], rounds[-1]
    assert second.now == first.now + 10
    assert first.electors[2].round + 1 == second.electors[2].round
    assert checker.fingerprint(first) == checker.fingerprint(second)
    assert checker.fingerprint(rounds[1]) != checker.fingerprint(rounds[2])  # lease rounds still filling up


def test_remembered_reactions_change_nothing() -> None:
    """The checker remembers what an elector object did at an instant with an input, and reuses it
    when a commuting order meets the same again: the search is the same without."""
    with_memo = Checker(settings(depth=7))
    without = Checker(settings(depth=7))
    without.memo = None
    a, b = with_memo.run(), without.run()
    assert (a.distinct_states, a.transitions) == (b.distinct_states, b.transitions)
    assert with_memo.memo


def test_copies_share_nothing_mutable() -> None:
    checker = Checker(settings())
    state = _after_first_proposal(checker)
    original = state.electors[2]
    before = quorum_key(original)
    copy = clone_elector(original)
    copy.step(state.now, Message(MsgType.COORDINATOR_ACK, 1, 3, epoch=1, granted=True, promised_epoch=1))
    assert quorum_key(copy) != before and quorum_key(original) == before


def test_an_unknown_elector_field_stops_the_checker() -> None:
    """A field the canonical form does not know could make two different states look alike: refuse."""
    checker = Checker(settings())
    elector = clone_elector(checker.initial().electors[0])
    elector.new_timer = 7
    with pytest.raises(TypeError, match="new_timer"):
        quorum_key(elector)


# ---- symmetry (raft) ------------------------------------------------------------------------------


class DoubleVoteRaft(RaftElector):
    """Raft that grants every RequestVote of its term or above: two candidates can win one term."""

    def _on_request_vote(self, msg, batch) -> None:
        if msg.epoch < self.term:
            self._reply(batch, msg, EPOCH_STALE)
            return
        self._observe(msg.epoch, batch)
        self._back(msg, batch)
        self._reply(batch, msg)


def test_symmetry_merges_mirror_images() -> None:
    on, off = Checker(settings(mode="raft")), Checker(settings(mode="raft", symmetry=False))
    for checker, merged in ((on, True), (off, False)):
        start = checker.initial()
        while not start.flight:
            checker.rng.start()
            start = checker.apply(start, ("advance",))
        to_2 = _deliver(checker, start, lambda i: i[1] == "pre_vote" and (i[2], i[3]) == (1, 2))
        to_3 = _deliver(checker, start, lambda i: i[1] == "pre_vote" and (i[2], i[3]) == (1, 3))
        assert (checker.fingerprint(to_2) == checker.fingerprint(to_3)) is merged


def test_symmetry_reduction_loses_no_violation() -> None:
    found = {}
    for symmetry in (True, False):
        report = check(settings(mode="raft", depth=10, faults=0, symmetry=symmetry, elector_factory=DoubleVoteRaft))
        assert report.violation is not None, f"symmetry={symmetry}"
        found[symmetry] = (report.violation.property, len(report.violation.path), report.distinct_states)
    assert found[True][:2] == found[False][:2]
    assert found[True][2] < found[False][2]  # and it did merge states


def test_quorum_is_not_reduced_by_symmetry() -> None:
    """Bully order compares ids: quorum's mirror images are different states."""
    checker = Checker(settings(mode="quorum"))
    assert not checker.symmetry


# ---- jitter ------------------------------------------------------------------------------------------


def test_both_jitter_ends_branch() -> None:
    low = check(settings(depth=5, faults=0))
    both = check(settings(depth=5, faults=0, jitter="both"))
    assert both.distinct_states > low.distinct_states


# ---- the command ----------------------------------------------------------------------------------


def test_command_reports_and_exits_1_on_a_violation(capsys) -> None:
    assert sim_main(["check", "--depth", "4", "--faults", "0", "--json"]) == 0
    clean = json.loads(capsys.readouterr().out)
    assert clean["ended_by"] == "bound" and clean["depth_explored"] == 4 and clean["violation"] is None
    assert clean["clocks"] == "exact"

    assert sim_main(["check", "--depth", "8", "--faults", "0", "--bug", "double-ack"]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION P3g" in out and "shortest path (6 actions)" in out
    assert "deliver Coordinator 2->1 epoch 1" in out


def test_in_flight_items_are_plain_data() -> None:
    item = item_of(MESSAGE, Message(MsgType.HEARTBEAT, 3, 1, epoch=2, round=4, lease_remaining=30))
    assert item == (MESSAGE, "heartbeat", 3, 1, 2, 4, False, 0, False, 0, False, 30)
