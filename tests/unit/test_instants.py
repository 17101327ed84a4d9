"""Each scenario's instant (chaos.scenarios.INSTANTS), on small hand-written histories: reached, and
not reached for the reasons a busy machine gives (a moment missed by a little)."""

from __future__ import annotations

from test_checkers import History

from chaos.checkers import check_all
from chaos.report import text_report
from chaos.scenarios import INSTANTS, judge_instant

FIVE = (1, 2, 3, 4, 5)


def judged(name: str, history: History, mode: str = "quorum"):
    result = judge_instant(name, mode, history.events)
    assert result is not None
    return result


# ---- quick-restart-in-lease: restarted inside its promise, then asked to elect -------------------


def quick_restart(restart_ms: float, election_ms: float) -> History:
    """Node 5 promised leader 4 until 2400 ms; it is restarted, and node 3 sends it Election."""
    h = History(nodes=FIVE).lead(10, 4, 2).grant(100, 5, 4, 2, until_ms=2400)
    h.process(restart_ms, 5, "restart").process(restart_ms + 20, 5, "start")
    h.follow(restart_ms + 150, 5, None, 2)
    return h.add(election_ms, "message", node=5, type="election", src=3, dst=5, epoch=2)


def test_quick_restart_reached_when_asked_to_elect_inside_the_promise():
    result = judged("quick-restart-in-lease", quick_restart(1800, 2100))
    assert result.reached, result.evidence
    assert "node 5 restarted" in result.evidence and "node 3 asked it to elect" in result.evidence


def test_quick_restart_not_reached_when_asked_after_the_promise_ended():
    result = judged("quick-restart-in-lease", quick_restart(1800, 2450))
    assert not result.reached
    assert "no one asked it to elect" in result.evidence


def test_quick_restart_not_reached_when_restarted_after_the_promise_ended():
    result = judged("quick-restart-in-lease", quick_restart(2500, 2600))
    assert not result.reached
    assert "holding no live promise" in result.evidence


def test_quick_restart_not_reached_by_an_election_that_never_arrived():
    history = quick_restart(1800, 2100)
    history.events[-1]["error"] = "DEADLINE_EXCEEDED"  # recorded by a sender whose request failed
    assert not judged("quick-restart-in-lease", history).reached


def test_an_instant_of_promises_does_not_apply_to_a_mode_without_them():
    assert judge_instant("quick-restart-in-lease", "classic", quick_restart(1800, 2100).events) is None
    assert judge_instant("random-halves", "quorum", quick_restart(1800, 2100).events) is None  # names none


# ---- partition-leader-minority: the leader on the minority side ----------------------------------


def partition(groups: list[list[int]], leader_steps_down_ms: float | None = None) -> History:
    h = History(nodes=FIVE).lead(10, 5, 1)
    if leader_steps_down_ms is not None:
        h.step_down(leader_steps_down_ms, 5, 1, lease_end_ms=leader_steps_down_ms)
    return h.add(100, "fault", action="start", name="partition", detail={"groups": groups}).heal(1000)


def test_partition_reached_with_the_leader_on_the_minority_side():
    result = judged("partition-leader-minority", partition([[2, 5], [1, 3, 4]]))
    assert result.reached, result.evidence
    assert "node 5 (epoch 1) leading on the minority side [2, 5]" in result.evidence


def test_partition_not_reached_with_the_leader_on_the_majority_side():
    result = judged("partition-leader-minority", partition([[1, 2], [3, 4, 5]]))
    assert not result.reached
    assert "node 5 (epoch 1) led, not on a minority side" in result.evidence


def test_partition_not_reached_when_no_one_led_as_it_began():
    result = judged("partition-leader-minority", partition([[2, 5], [1, 3, 4]], leader_steps_down_ms=90))
    assert not result.reached
    assert "no node led" in result.evidence


# ---- bridge: a live promise to one side when the other side proposes -----------------------------

BRIDGE = {"1": [3, 5], "2": [3, 4], "3": [1, 2, 4, 5], "4": [2, 3], "5": [1, 3]}  # middle 3; {1, 5} | {2, 4}


def bridge(proposer: int, proposal_ms: float) -> History:
    """Middle node 3 promised leader 5 until 300 ms; the bridge is up from 50 to 1000 ms."""
    h = History(nodes=FIVE).lead(10, 5, 1).grant(20, 3, 5, 1, until_ms=300)
    h.add(50, "fault", action="start", name="bridge", detail={"allowed": BRIDGE})
    h.add(
        proposal_ms,
        "message",
        node=3,
        type="coordinator",
        src=proposer,
        dst=3,
        epoch=2,
        reply="coordinator_ack",
        granted=False,
        why="promise to node 5 still live",
    )
    return h.fault(1000, "stop", "bridge").heal(1000)


def test_bridge_reached_when_the_other_side_proposes_inside_the_promise():
    result = judged("bridge", bridge(proposer=4, proposal_ms=200))
    assert result.reached, result.evidence
    assert "bridge node 3 held a promise to node 5" in result.evidence and "node 4 of the other side" in result.evidence


def test_bridge_not_reached_by_a_proposal_from_the_leaders_own_side():
    assert not judged("bridge", bridge(proposer=1, proposal_ms=200)).reached


def test_bridge_not_reached_by_a_proposal_after_the_promise_ended():
    result = judged("bridge", bridge(proposer=4, proposal_ms=350))
    assert not result.reached
    assert "bridge node 3 got 1 proposal(s)" in result.evidence


def test_bridge_not_reached_by_a_proposal_after_the_bridge_was_healed():
    assert not judged("bridge", bridge(proposer=4, proposal_ms=1100)).reached


# ---- full-restart: every node restarted having promised, and a node that never led leads first ------


def full_restart(first_after: int = 2, kill_before_promising: int | None = None) -> History:
    """Node 3 leads epoch 1 (nodes 1 and 2 grant it), every node is killed, then restarted."""
    h = History().lead(10, 3, 1)
    for node in (1, 2):
        if node != kill_before_promising:
            h.grant(20, node, 3, 1)
    for node in (1, 2, 3):
        h.process(100 + node, node, "kill")
    for node in (1, 2, 3):
        h.process(200 + node, node, "restart").process(210 + node, node, "start")
    return h.lead(400, first_after, 2).heal(1000)  # a leadership interval lasts until the history's end


def test_full_restart_reached():
    result = judged("full-restart", full_restart())
    assert result.reached, result.evidence
    assert "node 2, which had never led, led epoch 2 first" in result.evidence


def test_full_restart_not_reached_when_the_first_leader_afterwards_had_led_before():
    result = judged("full-restart", full_restart(first_after=3))
    assert not result.reached
    assert "node 3, had led before" in result.evidence


def test_full_restart_not_reached_when_a_node_had_promised_nothing():
    result = judged("full-restart", full_restart(kill_before_promising=1))
    assert not result.reached
    assert "node(s) [1] had promised no epoch" in result.evidence


def test_full_restart_not_reached_when_the_nodes_were_never_all_down():
    history = History().lead(10, 3, 1).grant(20, 1, 3, 1).grant(20, 2, 3, 1)
    for node in (1, 2, 3):  # one after another: someone is always up
        history.process(100 * node, node, "restart").process(100 * node + 10, node, "start")
    result = judged("full-restart", history.lead(400, 2, 2).heal(1000))
    assert not result.reached
    assert "never all down at once" in result.evidence


# ---- faults aimed at the leader: it still led when they began --------------------------------------


def test_leader_blackholed_reached_only_if_the_blackholed_node_led():
    def run(target: int) -> History:
        return (
            History(nodes=FIVE)
            .lead(10, 5, 1)
            .add(100, "fault", action="start", name="blackhole", detail={"node": target})
            .heal(1000)
        )

    assert judged("leader-blackholed", run(5)).reached
    missed = judged("leader-blackholed", run(4))
    assert not missed.reached
    assert "on node 4, but node 5 (epoch 1) led" in missed.evidence


def test_one_way_reached_only_if_the_cut_node_led():
    def run(lead_ms: float) -> History:
        return (
            History(nodes=FIVE)
            .lead(lead_ms, 5, 1)
            .add(100, "fault", action="start", name="one-way", detail={"from": 5, "to": [1, 2, 3, 4]})
            .heal(1000)
        )

    assert judged("one-way", run(10), mode="classic").reached
    assert not judged("one-way", run(150), mode="classic").reached  # it led only after the cut


def test_the_report_says_whether_the_instant_was_reached():
    for history, verdict in (
        (partition([[2, 5], [1, 3, 4]]), "instant: REACHED"),
        (partition([[1, 2], [3, 4, 5]]), "instant: NOT REACHED"),
    ):
        instant = judged("partition-leader-minority", history)
        text = text_report(
            check_all(history.events, "quorum", 5000), history.events, "partition-leader-minority", 3, instant, 2.5
        )
        assert verdict in text and INSTANTS["partition-leader-minority"].description in text
        assert ("machine load 2.50 per core" in text) == (not instant.reached)
