"""The history format and the checkers, on small hand-written histories."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from chaos.checkers import (
    availability,
    check_agreement_after_heal,
    check_all,
    check_no_lost_writes,
    check_no_overlap,
    check_no_overlap_by_grants,
    check_store_monotonic,
    check_unique_leader_per_epoch,
    failover_times,
    fencing_summary,
    grant_backed_intervals,
    overlaps,
)
from node.history import (
    Agreement,
    HistoryWriter,
    Interval,
    agreement_at,
    grant_windows,
    leadership_intervals,
    read_history,
    recorded_promises,
    sort_events,
)

T0_NS = 7_000_000_000  # an arbitrary monotonic origin: evidence times are relative to it


def ns(at_ms: float) -> int:
    return T0_NS + round(at_ms * 1_000_000)


class History:
    """A tiny builder: every method appends one event at ``at_ms`` after the origin."""

    def __init__(self, mode: str = "quorum", nodes: tuple[int, ...] = (1, 2, 3)) -> None:
        self.events: list[dict[str, Any]] = [
            {
                "t_ns": ns(0),
                "kind": "meta",
                "seed": 1,
                "mode": mode,
                "scenario": "test",
                "nodes": list(nodes),
                "election_timeout_ms": 300,
                "heartbeat_interval_ms": 50,
            }
        ]

    def add(self, at_ms: float, kind: str, **fields: Any) -> History:
        self.events.append({"t_ns": ns(at_ms), "kind": kind, **fields})
        return self

    def view(
        self,
        at_ms: float,
        node: int,
        role: str,
        epoch: int,
        leader: int | None,
        reason: str = "test",
        lease_end_ms: float | None = None,
    ) -> History:
        fields: dict[str, Any] = {"node": node, "role": role, "epoch": epoch, "leader": leader}
        if lease_end_ms is not None:
            fields["lease_end_ns"] = ns(lease_end_ms)
        return self.add(at_ms, "view", reason=reason, **fields)

    def lead(self, at_ms: float, node: int, epoch: int) -> History:
        return self.view(at_ms, node, "leader", epoch, node, reason="elected")

    def follow(self, at_ms: float, node: int, leader: int | None, epoch: int) -> History:
        return self.view(at_ms, node, "follower", epoch, leader)

    def step_down(self, at_ms: float, node: int, epoch: int, lease_end_ms: float) -> History:
        return self.view(at_ms, node, "follower", epoch, None, reason="lease_expired", lease_end_ms=lease_end_ms)

    def process(self, at_ms: float, node: int | str, action: str) -> History:
        return self.add(at_ms, "process", node=node, action=action, pid=1000)

    def write(self, at_ms: float, node: int, epoch: int, key: str, accepted: bool | None, seq: int | None) -> History:
        error = "deadline exceeded" if accepted is None else None
        return self.add(at_ms, "write", node=node, epoch=epoch, key=key, accepted=accepted, seq=seq, error=error)

    def store(
        self,
        at_ms: float,
        seq: int,
        writer: int,
        epoch: int,
        key: str,
        accepted: bool = True,
        reason: str = "ok",
    ) -> History:
        return self.add(
            at_ms,
            "store",
            seq=seq,
            writer=writer,
            epoch=epoch,
            key=key,
            accepted=accepted,
            reason=reason,
        )

    def grant(
        self,
        at_ms: float,
        node: int,
        leader: int,
        epoch: int,
        promise_ms: int = 240,
        until_ms: float | None = None,
    ) -> History:
        """Follower ``node`` acks ``leader``: it promises to refuse others for ``promise_ms``."""
        fields: dict[str, Any] = {"node": node, "leader": leader, "epoch": epoch, "promise_ms": promise_ms}
        if until_ms is not None:
            fields["until_ns"] = ns(until_ms)
        return self.add(at_ms, "grant", **fields)

    def release(self, at_ms: float, node: int, leader: int, epoch: int) -> History:
        return self.add(at_ms, "release", node=node, leader=leader, epoch=epoch)

    def fault(self, at_ms: float, action: str, name: str) -> History:
        return self.add(at_ms, "fault", action=action, name=name, detail={})

    def heal(self, at_ms: float) -> History:
        return self.add(at_ms, "heal")


def settled(nodes: tuple[int, ...] = (1, 2, 3), leader: int = 3, epoch: int = 1) -> History:
    """Nodes start at 0 ms, ``leader`` is elected at 10 ms and followed by everyone by 12 ms."""
    history = History(nodes=nodes)
    for node in nodes:
        history.process(0, node, "start")
    history.lead(10, leader, epoch)
    for node in nodes:
        if node != leader:
            history.follow(12, node, leader, epoch)
    return history


def kill_leader_failover() -> History:
    """Leader 3 is killed at 100 ms; node 2 leads epoch 2 at 400 ms; node 1 follows at 420 ms."""
    return settled().process(100, 3, "kill").lead(400, 2, 2).follow(420, 1, 2, 2)


# ---------------------------------------------------------------------------------------------------
# History format


def test_history_writer_round_trip_from_many_threads(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        threads = [
            threading.Thread(target=lambda n=n: [writer.write({"kind": "heal", "n": n}) for _ in range(200)])
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        writer.write({"kind": "heal", "t_ns": 1})
    events = read_history(path)
    assert len(events) == 8 * 200 + 1
    assert events[0] == {"kind": "heal", "t_ns": 1}  # sorted by t_ns
    assert all(isinstance(event["t_ns"], int) for event in events)  # stamped when absent


def test_history_writer_rejects_unknown_kinds_and_use_after_close(tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / "h.jsonl")
    with pytest.raises(ValueError, match="unknown event kind"):
        writer.write({"kind": "gossip"})
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write({"kind": "heal"})


def test_read_history_is_stable_and_ignores_only_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    lines = [
        {"t_ns": 5, "kind": "heal", "order": 1},
        {"t_ns": 3, "kind": "heal", "order": 2},
        {"t_ns": 5, "kind": "heal", "order": 3},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + '\n{"t_ns": 9, "ki')
    assert [event["order"] for event in read_history(path)] == [2, 1, 3]

    path.write_text('{"t_ns": 1, "kind": "heal"}\n{"t_ns": 2, \n{"t_ns": 3, "kind": "heal"}\n')
    with pytest.raises(ValueError, match=":2: not JSON"):
        read_history(path)


def test_leadership_interval_runs_from_leader_view_to_next_view_or_end() -> None:
    history = settled().follow(200, 3, None, 1).lead(300, 1, 2).follow(310, 2, 1, 2)
    assert leadership_intervals(history.events) == [
        Interval(3, 1, ns(10), ns(200)),
        Interval(1, 2, ns(300), ns(310)),  # still open: ends with the history
    ]


def test_killed_leader_interval_ends_at_the_kill() -> None:
    intervals = leadership_intervals(kill_leader_failover().events)
    assert intervals == [Interval(3, 1, ns(10), ns(100)), Interval(2, 2, ns(400), ns(420))]


def test_lease_end_shortens_the_interval() -> None:
    history = settled().step_down(250, 3, 1, lease_end_ms=180)
    assert leadership_intervals(history.events) == [Interval(3, 1, ns(10), ns(180))]


def test_resumed_classic_leader_still_leads_from_the_resume() -> None:
    history = settled().process(100, 3, "pause").lead(400, 2, 2).process(500, 3, "resume")
    history.follow(700, 3, 2, 2)
    assert leadership_intervals(history.events) == [
        Interval(3, 1, ns(10), ns(100)),
        Interval(2, 2, ns(400), ns(700)),
        Interval(3, 1, ns(500), ns(700)),
    ]


def test_restarted_leader_does_not_lead_until_it_says_so() -> None:
    history = settled().process(100, 3, "kill").process(200, 3, "restart").process(300, 3, "resume")
    assert leadership_intervals(history.events) == [Interval(3, 1, ns(10), ns(100))]


# ---------------------------------------------------------------------------------------------------
# P1


def test_p1_passes_with_one_leader_per_epoch() -> None:
    result = check_unique_leader_per_epoch(kill_leader_failover().events)
    assert result.ok and result.id == "P1"
    assert result.data == {"epochs_led": 2, "conflicts": []}


def test_p1_fails_when_two_nodes_lead_one_epoch() -> None:
    history = History(mode="classic", nodes=(1, 2, 3, 4, 5)).lead(1234, 4, 7).lead(1240, 5, 7)
    result = check_unique_leader_per_epoch(history.events)
    assert not result.ok
    assert result.evidence == ["epoch 7 led by nodes 4 and 5 (node 4 at t=+1.234s, node 5 at t=+1.240s)"]
    assert result.data["conflicts"] == [{"epoch": 7, "nodes": [4, 5]}]


# ---------------------------------------------------------------------------------------------------
# P2


def test_p2_passes_on_monotonic_store_log_with_rejections() -> None:
    history = History().store(10, 1, 3, 1, "a").store(20, 2, 2, 2, "b")
    history.store(30, 3, 3, 1, "c", accepted=False, reason="stale epoch 1 < 2")
    result = check_store_monotonic(history.events)
    assert result.ok, result.evidence
    assert result.data == {"records": 3, "accepted": 2, "highest_epoch": 2}


def test_p2_fails_when_an_accepted_epoch_goes_down() -> None:
    history = History().store(10, 1, 2, 2, "a").store(20, 2, 3, 1, "b")
    result = check_store_monotonic(history.events)
    assert not result.ok
    assert result.evidence == ["store seq 2 accepted epoch 1 from node 3 after accepting epoch 2 (seq 1, node 2)"]


def test_p2_fails_when_one_epoch_is_accepted_from_two_writers() -> None:
    history = History().store(10, 1, 4, 7, "a").store(20, 2, 5, 7, "b")
    result = check_store_monotonic(history.events)
    assert not result.ok
    assert result.evidence == ["epoch 7 accepted from nodes 4 and 5 (seq 1 node 4, seq 2 node 5)"]


def test_p2_and_p5_survive_a_store_restart_with_a_log_dumped_twice() -> None:
    history = settled().store(20, 1, 3, 1, "a").write(21, 3, 1, "a", True, 1)
    history.process(50, "store", "stop").process(60, "store", "restart")
    history.store(70, 2, 3, 1, "b").write(71, 3, 1, "b", True, 2)
    history.store(20, 1, 3, 1, "a")  # the second dump repeats the record from before the restart
    assert check_store_monotonic(history.events).ok
    assert check_no_lost_writes(history.events).ok


def test_p2_judges_each_resource_alone_and_names_it() -> None:
    """A database behind a fencing adapter is a register of its own: its epochs may sit below the
    store's, but within its own log they must rise, one writer each."""
    history = History().store(10, 1, 2, 5, "claim").store(20, 2, 2, 5, "a")
    history.add(30, "store", seq=1, writer=1, epoch=3, key="duty", accepted=True, reason="", resource="postgres")
    history.add(40, "store", seq=2, writer=2, epoch=4, key="duty", accepted=True, reason="", resource="postgres")
    history.add(50, "store", seq=3, writer=1, epoch=3, key="duty", accepted=True, reason="", resource="postgres")
    history.add(30, "store", seq=7, writer=1, epoch=3, key="duty", accepted=True, reason="", resource="redis")
    history.add(40, "store", seq=8, writer=2, epoch=3, key="duty", accepted=True, reason="", resource="redis")
    result = check_store_monotonic(history.events)
    assert not result.ok
    assert result.evidence == [
        "postgres seq 3 accepted epoch 3 from node 1 after accepting epoch 4 (seq 2, node 2)",
        "redis: epoch 3 accepted from nodes 1 and 2 (seq 7 node 1, seq 8 node 2)",
    ]
    assert result.data["resources"] == {
        "store": {"records": 2, "accepted": 2, "highest_epoch": 5, "violations": 0},
        "postgres": {"records": 3, "accepted": 3, "highest_epoch": 4, "violations": 1},
        "redis": {"records": 2, "accepted": 2, "highest_epoch": 3, "violations": 1},
    }


def test_p5_matches_a_write_in_its_own_resource_log_value_and_all() -> None:
    def adapter_write(h: History, at_ms: float, seq: int, value: str) -> History:
        return h.add(
            at_ms, "write", node=3, epoch=1, key="duty", accepted=True, seq=seq, error=None,
            resource="sqlite", value=value,
        )  # fmt: skip

    history = settled().store(20, 1, 3, 1, "a").write(21, 3, 1, "a", True, 1)
    history.add(30, "store", seq=1, writer=3, epoch=1, key="duty", accepted=True, reason="", resource="sqlite",
                value="3/1/1")  # fmt: skip
    history.add(40, "store", seq=2, writer=3, epoch=1, key="duty", accepted=True, reason="", resource="sqlite",
                value="3/1/9")  # fmt: skip
    adapter_write(adapter_write(history, 31, 1, "3/1/1"), 41, 2, "3/1/2")
    adapter_write(history, 51, 3, "3/1/3")
    result = check_no_lost_writes(history.events)
    assert not result.ok
    assert result.evidence == [
        "write to sqlite by node 3 (epoch 1, key 'duty', value '3/1/2') at t=+0.041s acknowledged as seq 2, "
        "but the sqlite log has seq 2 as node 3 epoch 1 key 'duty' value '3/1/9' accepted",
        "write to sqlite by node 3 (epoch 1, key 'duty', value '3/1/3') at t=+0.051s acknowledged as seq 3 "
        "is missing from the sqlite log",
    ]
    assert result.data["resources"] == {
        "store": {"acknowledged": 1, "lost": 0, "unknown_outcome": 0},
        "sqlite": {"acknowledged": 3, "lost": 2, "unknown_outcome": 0},
    }


def test_p2_fails_when_the_store_log_rewrote_a_seq() -> None:
    history = History().store(20, 1, 3, 1, "a").store(70, 1, 3, 1, "b")  # seq restarted at 1
    result = check_store_monotonic(history.events)
    assert not result.ok
    assert result.evidence == [
        "store seq 1 recorded twice with different contents: node 3 epoch 1 key 'a' accepted "
        "vs node 3 epoch 1 key 'b' accepted"
    ]


# ---------------------------------------------------------------------------------------------------
# P3


def test_p3_passes_when_leaders_follow_one_another() -> None:
    result = check_no_overlap(kill_leader_failover().events)
    assert result.ok
    assert result.evidence == []
    assert result.data["summary"] == "two leaders never coexisted"


def test_p3_reports_each_overlap_with_duration() -> None:
    history = History(mode="classic", nodes=(1, 2, 3, 4, 5))
    history.lead(1234, 4, 7).lead(1240, 5, 8).follow(1252.5, 4, 5, 8)
    history.lead(2000, 3, 9).follow(2100, 5, 3, 9)
    result = check_no_overlap(history.events)
    assert not result.ok
    assert result.evidence == [
        "two leaders coexisted 2 times for up to 100.0 ms",
        "node 4 (epoch 7) and node 5 (epoch 8) both led from t=+1.240s for 12.5 ms",
        "node 5 (epoch 8) and node 3 (epoch 9) both led from t=+2.000s for 100.0 ms",
    ]
    assert result.data["count"] == 2
    assert result.data["total_overlap_ms"] == pytest.approx(112.5)
    assert result.data["max_overlap_ms"] == pytest.approx(100.0)
    assert [o.duration_ms for o in overlaps(history.events)] == pytest.approx([12.5, 100.0])


def test_p3_paused_leader_whose_lease_ran_out_does_not_overlap_the_new_leader() -> None:
    history = settled().process(100, 3, "pause").lead(600, 2, 2).follow(610, 1, 2, 2)
    history.process(800, 3, "resume").step_down(801, 3, 1, lease_end_ms=400).follow(900, 3, 2, 2)
    assert check_no_overlap(history.events).ok


def test_p3_leader_stepping_down_late_overlaps_unless_its_lease_ended_in_time() -> None:
    late = settled().lead(300, 2, 2).step_down(350, 3, 1, lease_end_ms=320)
    assert [o.duration_ms for o in overlaps(late.events)] == pytest.approx([20.0])
    on_time = settled().lead(300, 2, 2).step_down(350, 3, 1, lease_end_ms=290)
    assert overlaps(on_time.events) == []


def test_p3_killed_leader_does_not_overlap_its_successor() -> None:
    assert check_no_overlap(kill_leader_failover().events).ok


def test_p3_resumed_classic_leader_overlaps_the_new_leader() -> None:
    history = History(mode="classic").lead(10, 3, 1).process(100, 3, "pause").lead(400, 2, 1)
    history.process(500, 3, "resume").follow(650, 3, 2, 1)
    result = check_no_overlap(history.events)
    assert not result.ok
    assert result.evidence[1] == ("node 2 (epoch 1) and node 3 (epoch 1) both led from t=+0.500s for 150.0 ms")


# ---------------------------------------------------------------------------------------------------
# P3g: overlap judged from the followers' grants


def test_p3g_passes_when_every_leadership_lies_inside_a_majority_of_grants() -> None:
    history = partition_heal()
    result = check_no_overlap_by_grants(history.events)
    assert result.ok, result.evidence
    assert result.id == "P3g" and result.evidence == []
    assert result.data["overlaps"] == [] and result.data["outside_grants"] == []
    assert result.data["grants"] == 11
    backed = grant_backed_intervals(history.events)
    assert [(s.start, s.end) for s in backed[3]] == [(ns(5), ns(395))]
    # Node 2's own vote counts only once its promise to 3 is over (395 ms); 1 grants it at 398.
    assert [(s.start, s.end) for s in backed[2]] == [(ns(398), ns(1100 + 240))]


def test_p3g_fails_when_a_follower_grants_two_leaders_inside_one_window() -> None:
    # Leader 3 reports stepping down in time (P3 sees nothing), but node 1 acked 3 at 50 ms
    # (promise until 290 ms) and then node 2 at 100 ms: both had a majority's promises.
    history = History().grant(5, 1, 3, 1).lead(10, 3, 1).follow(12, 1, 3, 1).follow(12, 2, 3, 1)
    history.grant(50, 1, 3, 1).step_down(99, 3, 1, lease_end_ms=99)
    history.grant(100, 1, 2, 2).lead(101, 2, 2).grant(150, 1, 2, 2)
    assert check_no_overlap(history.events).ok
    result = check_no_overlap_by_grants(history.events)
    assert not result.ok
    assert result.data["overlaps"] == [
        {"nodes": [2, 3], "start_ns": ns(100), "end_ns": ns(290), "duration_ms": pytest.approx(190.0)}
    ]
    assert result.evidence[1] == (
        "nodes 2 and 3 were both backed by a majority's live promises from t=+0.100s for 190.0 ms"
    )
    assert result.data["disagreements_with_p3"] == [
        "the followers' grants backed nodes 2 and 3 together from t=+0.100s for 190.0 ms; their own "
        "reports show no overlap (P3 missed it)"
    ]
    report = check_all(history.events, "quorum", bound_ms=500)
    assert "P3g" in report.violations and "P3" not in report.violations
    assert report.split_brain


def test_p3g_fails_when_a_leader_outlives_its_grants() -> None:
    # The only grant (node 1 at 5 ms) lasts until 245 ms; the leader believes its lease ran to 390.
    history = History().grant(5, 1, 3, 1).lead(10, 3, 1).step_down(400, 3, 1, lease_end_ms=390)
    result = check_no_overlap_by_grants(history.events)
    assert not result.ok
    assert check_no_overlap(history.events).ok  # no second leader: P3 alone would not notice
    [outside] = result.data["outside_grants"]
    assert outside["node"] == 3 and outside["epoch"] == 1
    assert outside["outside_ms"] == pytest.approx(145.0)
    assert outside["gaps"] == [[ns(245), ns(390)]]
    assert result.evidence[1] == (
        "node 3 led epoch 1 (t=+0.010s for 380.0 ms) 145.0 ms outside a majority's live promises, "
        "first from t=+0.245s for 145.0 ms"
    )


def test_p3g_catches_a_promise_broken_to_a_killed_leader() -> None:
    """Found by review: once leader 5 is killed its own vote is gone, so followers that break their
    promises to it back no second majority at once; rule 4 must be judged by itself."""
    history = History(nodes=(1, 2, 3, 4, 5))
    for node in (1, 2, 3, 4, 5):
        history.process(0, node, "start")
    history.grant(5, 1, 5, 1).grant(5, 2, 5, 1).lead(10, 5, 1)
    history.process(100, 5, "kill")
    history.grant(150, 1, 4, 2).grant(150, 2, 4, 2).grant(150, 3, 4, 2).lead(160, 4, 2)  # 1, 2 promised 5 until 245
    result = check_no_overlap_by_grants(history.events)
    assert not result.ok
    assert result.data["overlaps"] == [] and result.data["outside_grants"] == []
    assert [(b["node"], b["granted"], b["promised"]) for b in result.data["broken_promises"]] == [(1, 4, 5), (2, 4, 5)]
    assert (
        "node 1 granted node 4 (epoch 2) at t=+0.150s while its promise to node 5 (epoch 1) lasted 95.0 ms more"
        in result.evidence
    )
    # Granted once the promises ran out: fine.
    later = History(nodes=(1, 2, 3, 4, 5))
    later.events = [e for e in history.events if e["kind"] != "grant" or e["t_ns"] < ns(100)]
    later.grant(250, 1, 4, 2).grant(250, 2, 4, 2).grant(250, 3, 4, 2)
    assert check_no_overlap_by_grants(later.events).data["broken_promises"] == []


def test_p3g_exact_promise_end_wins_over_the_nominal_window() -> None:
    # until_ns is the follower's own promise end (its tick clock); it may be shorter than t + promise_ms.
    history = History().grant(5, 1, 3, 1, until_ms=238).lead(10, 3, 1).step_down(300, 3, 1, lease_end_ms=240)
    [window] = grant_windows(recorded_promises(sort_events(history.events)))
    assert window.end == ns(238)
    result = check_no_overlap_by_grants(history.events)
    assert result.data["outside_grants"][0]["outside_ms"] == pytest.approx(2.0)


def test_p3g_a_release_ends_the_promise_to_a_resigning_leader() -> None:
    history = History().grant(5, 1, 3, 1).grant(5, 2, 3, 1).lead(10, 3, 1)
    history.view(200, 3, "follower", 1, None, reason="resigned", lease_end_ms=200)
    history.release(201, 1, 3, 1).release(201, 2, 3, 1)
    history.grant(202, 1, 2, 2).grant(203, 3, 2, 2).lead(204, 2, 2)
    assert check_no_overlap_by_grants(history.events).ok
    # Without the releases, 1 and 2 would still owe node 3 their promises until 245 ms.
    unreleased = [event for event in history.events if event["kind"] != "release"]
    result = check_no_overlap_by_grants(unreleased)
    assert not result.ok and result.data["overlaps"][0]["nodes"] == [2, 3]


def test_p3g_a_node_promised_to_another_does_not_vote_for_itself() -> None:
    # Node 2 acked leader 3 at 100 ms (until 340) and then, restarted, proposed itself: with node
    # 1's grant alone it has no majority (its own vote is owed to 3), so its leadership is unbacked.
    history = History().grant(5, 1, 3, 1).grant(100, 2, 3, 1).lead(10, 3, 1)
    history.step_down(150, 3, 1, lease_end_ms=150).process(160, 2, "kill").process(170, 2, "restart")
    history.grant(250, 1, 2, 2).lead(251, 2, 2).follow(300, 2, None, 2)
    result = check_no_overlap_by_grants(history.events)
    assert not result.ok
    [outside] = result.data["outside_grants"]
    assert (outside["node"], outside["epoch"], outside["outside_ms"]) == (2, 2, pytest.approx(49.0))


def test_p3g_does_not_apply_in_classic_mode() -> None:
    result = check_no_overlap_by_grants(classic_split_brain().events, mode="classic")
    assert result.ok and result.data == {"applicable": False}
    assert result.evidence == ["not applicable in classic mode: followers make no promises"]


def test_p3g_a_quorum_history_without_grants_cannot_pass() -> None:
    result = check_no_overlap_by_grants(settled().events)
    assert not result.ok
    assert result.evidence[-1] == "the history has no grant events at all: nodes recorded no promises"


# ---------------------------------------------------------------------------------------------------
# P4 and agreement


def partition_heal() -> History:
    """Node 3 is cut off at 100 ms, 1 and 2 elect 2 at 400 ms; heal at 1000 ms; 3 follows at 1150.

    With the followers' grants (promises of 240 ms) that back it: 1 and 2 grant 3 until 395 ms
    (3's lease ends at 390), then 1 grants 2 from 398 ms, and 3 joins at 1100 ms.
    """
    history = settled().fault(100, "start", "isolate-leader").lead(400, 2, 2).follow(410, 1, 2, 2)
    history.step_down(500, 3, 1, lease_end_ms=390).heal(1000).follow(1150, 3, 2, 2)
    for at_ms in (5, 55, 155):
        history.grant(at_ms, 1, 3, 1).grant(at_ms, 2, 3, 1)
    for at_ms in (398, 600, 800, 1000):
        history.grant(at_ms, 1, 2, 2)
    history.grant(1100, 3, 2, 2)
    return history


def test_agreement_at_follows_the_cluster() -> None:
    history = partition_heal()
    assert agreement_at(history.events, ns(5)) is None  # nobody leads yet
    assert agreement_at(history.events, ns(12)) == Agreement(leader=3, epoch=1)
    assert agreement_at(history.events, ns(450)) is None  # node 3 still leads epoch 1
    assert agreement_at(history.events, ns(1150)) == Agreement(leader=2, epoch=2)


def test_availability_is_the_share_of_the_history_with_one_agreed_leader() -> None:
    # Agreed on 3 from 12 ms until 2 leads at 400 ms; again on 2 from 1150 ms to the end at 1350 ms.
    history = partition_heal().heal(1350)
    assert availability(history.events) == pytest.approx((388 + 200) / 1350)
    # The cold start counts too: agreed from 12 ms to the kill at 100 ms, and from 420 ms to 1000 ms.
    history = kill_leader_failover().write(1000, 2, 2, "k", True, 1)
    assert availability(history.events) == pytest.approx((88 + 580) / 1000)
    # A paused follower is not live: the others still agree.
    assert availability(settled().process(50, 1, "pause").heal(112).events) == pytest.approx(100 / 112)


def test_availability_of_a_history_without_time_is_zero() -> None:
    assert availability([]) == 0.0
    assert availability(History().events) == 0.0
    assert availability(History().heal(100).events) == 0.0  # nobody ever led


def test_p4_passes_and_measures_recovery_after_the_heal() -> None:
    result = check_agreement_after_heal(partition_heal().events, bound_ms=300)
    assert result.ok
    assert result.data["recovery_ms"] == pytest.approx(150.0)
    assert result.evidence == [
        "all live nodes agreed on leader 2 at epoch 2 at t=+1.150s, 150.0 ms after the last heal (t=+1.000s)"
    ]


def test_p4_fails_when_agreement_comes_after_the_bound() -> None:
    result = check_agreement_after_heal(partition_heal().events, bound_ms=100)
    assert not result.ok
    assert result.data["recovery_ms"] == pytest.approx(150.0)
    assert result.evidence[0].endswith("later than the bound of 100 ms")
    assert result.evidence[1] == (
        "at t=+1.100s: node 1 follower of 2 at epoch 2; node 2 leads epoch 2; node 3 follower at epoch 1 with no leader"
    )


def test_p4_fails_when_live_nodes_never_agree() -> None:
    history = settled().fault(100, "start", "halves").lead(400, 2, 2).heal(1000)
    history.follow(2000, 1, 2, 2)  # node 3 (classic-like) still leads epoch 1
    result = check_agreement_after_heal(history.events, bound_ms=500)
    assert not result.ok
    assert result.data["recovery_ms"] is None
    assert result.evidence[0] == "live nodes never agreed on a leader after the last heal (t=+1.000s)"


def test_p4_paused_node_is_not_live() -> None:
    history = settled().process(100, 1, "pause").fault(150, "start", "slow").fault(200, "stop", "slow")
    result = check_agreement_after_heal(history.events, bound_ms=100)
    assert result.ok  # node 1's view is stale, but node 1 is paused
    assert result.data["anchor"] == "fault 'slow' stopped"
    assert result.data["recovery_ms"] == 0.0


def test_p4_killed_leader_survivors_must_agree() -> None:
    result = check_agreement_after_heal(kill_leader_failover().events, bound_ms=500)
    assert result.ok
    assert result.data["anchor"] == "kill of node 3"
    assert result.data["recovery_ms"] == pytest.approx(320.0)


def test_p4_restarted_node_counts_only_once_it_reports_again() -> None:
    history = kill_leader_failover().process(500, 3, "restart")
    assert agreement_at(history.events, ns(600)) is None  # node 3's old "I lead" view is gone
    history.follow(650, 3, 2, 2)
    result = check_agreement_after_heal(history.events, bound_ms=500)
    assert result.ok
    assert result.data["recovery_ms"] == pytest.approx(150.0)


def test_p4_fails_while_a_fault_is_never_healed() -> None:
    history = settled().fault(100, "start", "blackhole 1->2")
    result = check_agreement_after_heal(history.events, bound_ms=500)
    assert not result.ok
    assert result.evidence == ["faults still active at the end of the history, never healed: 'blackhole 1->2'"]


def test_p4_fails_when_the_history_ends_too_early() -> None:
    history = settled().process(100, 3, "kill").lead(150, 2, 2)
    result = check_agreement_after_heal(history.events, bound_ms=500)
    assert not result.ok
    assert result.evidence[1] == (
        "the history ends 50.0 ms after kill of node 3 (t=+0.100s), before the bound of 500 ms"
    )


# ---------------------------------------------------------------------------------------------------
# P5


def test_p5_passes_when_every_acknowledged_write_is_stored() -> None:
    history = settled().store(20, 1, 3, 1, "a").write(21, 3, 1, "a", True, 1)
    history.store(30, 2, 3, 1, "b", accepted=False, reason="owned by node 2").write(31, 3, 1, "b", False, 2)
    result = check_no_lost_writes(history.events)
    assert result.ok
    assert result.data == {"acknowledged": 1, "lost": 0, "unknown_outcome": 0}


def test_p5_fails_on_a_missing_or_different_acknowledged_write() -> None:
    history = settled().write(21, 3, 1, "a", True, 1).store(30, 2, 2, 2, "x").write(31, 3, 1, "b", True, 2)
    result = check_no_lost_writes(history.events)
    assert not result.ok
    assert result.evidence == [
        "write by node 3 (epoch 1, key 'a') at t=+0.021s acknowledged as seq 1 is missing from the store log",
        "write by node 3 (epoch 1, key 'b') at t=+0.031s acknowledged as seq 2, but the store log "
        "has seq 2 as node 2 epoch 2 key 'x' accepted",
    ]


def test_p5_unknown_outcome_is_not_a_loss() -> None:
    history = settled().write(21, 3, 1, "a", None, None)
    result = check_no_lost_writes(history.events)
    assert result.ok
    assert result.data["unknown_outcome"] == 1
    assert result.evidence == [
        "unknown outcome (not a loss): write by node 3 (epoch 1, key 'a') at t=+0.021s, error 'deadline exceeded'"
    ]


# ---------------------------------------------------------------------------------------------------
# Fencing and failover summaries


def classic_split_brain() -> History:
    """Leader 3 paused; 2 leads epoch 2; 3 resumes believing it leads epoch 1 and keeps writing."""
    history = History(mode="classic").lead(10, 3, 1).follow(12, 1, 3, 1).follow(12, 2, 3, 1)
    history.store(20, 1, 3, 1, "a").write(21, 3, 1, "a", True, 1)
    history.process(100, 3, "pause").lead(400, 2, 2).follow(410, 1, 2, 2)
    history.process(500, 3, "resume")
    history.store(510, 2, 3, 1, "b").write(511, 3, 1, "b", True, 2)  # store has not seen epoch 2
    history.store(550, 3, 2, 2, "c").write(551, 2, 2, "c", True, 3)
    history.store(560, 4, 3, 1, "d", accepted=False, reason="stale epoch 1 < 2")
    history.write(561, 3, 1, "d", False, 4)
    history.follow(700, 3, 2, 2)
    return history


def test_fencing_summary_counts_what_fencing_did_and_could_not_do() -> None:
    summary = fencing_summary(classic_split_brain().events)
    assert {key: summary[key] for key in ("accepted", "rejected", "stale_rejected", "unfenced")} == {
        "accepted": 3,
        "rejected": 1,
        "stale_rejected": 1,
        "unfenced": 1,
    }
    assert summary["unfenced_writes"] == [
        {
            "seq": 2,
            "writer": 3,
            "epoch": 1,
            "key": "b",
            "t_ns": ns(510),
            "newest_leaders": [2],
            "newest_epoch": 2,
        }
    ]


def test_fencing_summary_quorum_history_has_nothing_unfenced() -> None:
    history = kill_leader_failover().store(20, 1, 3, 1, "a").store(450, 2, 2, 2, "b")
    assert fencing_summary(history.events)["unfenced"] == 0


def test_fencing_summary_counts_writes_accepted_after_the_lease_ended() -> None:
    # Leader 3's lease ended at 180 ms; a duty write it sent in time reaches the store at 300 ms
    # and is accepted (no newer epoch yet). Node 2 leads epoch 2 at 400 and claims it at once: from
    # then on node 3's next late write is rejected.
    history = settled().store(15, 1, 3, 1, "claim/3/1").store(60, 2, 3, 1, "duty/3/1/1")
    history.step_down(250, 3, 1, lease_end_ms=180).store(300, 3, 3, 1, "duty/3/1/2")
    history.lead(400, 2, 2).store(403, 4, 2, 2, "claim/2/2")
    history.store(420, 5, 3, 1, "duty/3/1/3", accepted=False, reason="stale epoch 1 < 2")
    summary = fencing_summary(history.events)
    assert summary["after_lease_end"] == 1
    assert summary["after_lease_end_max_ms"] == pytest.approx(120.0)
    [late] = summary["after_lease_end_writes"]
    assert (late["seq"], late["writer"], late["epoch"], late["lease_end_ns"]) == (3, 3, 1, ns(180))
    assert summary["accepted_unled"] == 0
    assert summary["claims"] == 2 and summary["not_claimed_first"] == [] and summary["unclaimed"] == 0
    assert summary["claim_delay_max_ms"] == pytest.approx(5.0)


def test_a_write_from_an_epoch_the_writer_moved_beyond_itself_is_not_late() -> None:
    # A reassert: node 3 moves from epoch 1 to epoch 2 and keeps leading; its epoch-1 write lands after.
    history = settled().view(100, 3, "leader", 2, 3, reason="reassert").store(105, 1, 3, 1, "duty/3/1/1")
    history.store(106, 2, 3, 2, "claim/3/2")
    summary = fencing_summary(history.events)
    assert summary["after_lease_end"] == 0 and summary["accepted_unled"] == 0
    assert summary["not_claimed_first"] == [{"node": 3, "epoch": 1, "first_key": "duty/3/1/1", "led_from": "t=+0.010s"}]
    assert summary["claims"] == 1


def test_fencing_summary_reports_writes_from_an_epoch_that_never_led() -> None:
    summary = fencing_summary(settled().store(50, 1, 2, 5, "duty/2/5/1").events)
    assert summary["accepted_unled"] == 1 and summary["after_lease_end"] == 0
    assert summary["unclaimed"] == 1  # node 3 led epoch 1 and never reached the store


def test_failover_after_killing_the_leader() -> None:
    history = kill_leader_failover().process(450, 1, "pause")  # not the leader: no failover entry
    assert failover_times(history.events) == [
        {
            "cause": "kill of leader node 3",
            "t_ns": ns(100),
            "failover_ms": pytest.approx(320.0),
            "previous": {"leader": 3, "epoch": 1},
            "new": {"leader": 2, "epoch": 2},
        }
    ]


def test_failover_is_none_when_a_fault_never_changed_the_leader() -> None:
    history = settled().fault(100, "start", "latency").fault(300, "stop", "latency")
    [entry] = failover_times(history.events)
    assert entry["cause"] == "fault 'latency' started"
    assert entry["failover_ms"] is None


# ---------------------------------------------------------------------------------------------------
# check_all


def test_check_all_on_a_clean_quorum_run() -> None:
    history = partition_heal().store(20, 1, 3, 1, "a").write(21, 3, 1, "a", True, 1)
    report = check_all(history.events, "quorum", bound_ms=500)
    assert report.violations == []
    assert not report.split_brain
    assert report.recovery_ms == pytest.approx(150.0)
    assert [entry["failover_ms"] for entry in report.failover] == [pytest.approx(1050.0)]
    decoded = json.loads(report.to_json())
    assert [result["id"] for result in decoded["results"]] == ["P1", "P2", "P3", "P3g", "P4", "P5", "P6"]


def test_check_all_detects_classic_split_brain_and_fencing() -> None:
    report = check_all(classic_split_brain().events, "classic", bound_ms=500)
    assert report.split_brain
    assert report.violations == ["P3"]  # P3g does not apply: classic followers promise nothing
    assert report.stale_writes_rejected == 1
    p3 = next(result for result in report.results if result.id == "P3")
    assert p3.data["summary"] == "two leaders coexisted 1 time for up to 200.0 ms"


def test_check_all_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        check_all([], "paxos", bound_ms=100)  # "raft" is a registered mode now
