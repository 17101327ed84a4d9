"""The dashboard's model, without a network: tiles and agreement from answers, the log, elections, the timeline."""

from __future__ import annotations

from dashboard.model import Model
from node.api import bullyproof_pb2 as pb

MS = 1_000_000
T0 = 10_000 * MS  # monotonic time of the first event in these histories


def model(n: int = 3) -> Model:
    return Model(
        {i: f"127.0.0.1:{7100 + i}" for i in range(1, n + 1)},
        origin_ns=T0,
        election_timeout_ms=500,
        mode="quorum",
        source="test",
    )


def info(node: int, leader: int | None, epoch: int, role: int = pb.ROLE_FOLLOWER, lease: bool = False) -> pb.LeaderInfo:
    return pb.LeaderInfo(
        known=leader is not None,
        leader_id=leader or 0,
        epoch=epoch if leader else 0,
        node_id=node,
        role=role,
        lease_valid=lease,
    )


def feed(m: Model, *events: dict) -> None:
    m.on_events([dict(e) for e in events], now_mono_ns=T0 + 60_000 * MS, now_wall_s=1_700_000_000.0)


def view(t_ms: int, node: int, role: str, epoch: int, leader: int | None, reason: str = "") -> dict:
    ev = {"t_ns": T0 + t_ms * MS, "kind": "view", "node": node, "role": role, "epoch": epoch, "leader": leader}
    if reason:
        ev["reason"] = reason
    return ev


def message(t_ms: int, node: int, type_: str, src: int, dst: int, epoch: int, **extra) -> dict:
    return {
        "t_ns": T0 + t_ms * MS,
        "kind": "message",
        "node": node,
        "type": type_,
        "src": src,
        "dst": dst,
        "epoch": epoch,
        **extra,
    }


def texts(m: Model) -> list[str]:
    return [e["text"] for e in m.log]


def test_roles_and_the_agreed_leader_come_from_live_answers_and_processes():
    m = model()
    for n in (1, 2, 3):
        m.on_process(n, 100 + n, "running")
    m.on_info(1, info(1, 3, 2))
    m.on_info(2, info(2, 3, 2))
    m.on_info(3, info(3, 3, 2, pb.ROLE_LEADER, lease=True))
    out = m.nodes_json(T0)
    assert out["agreed"] == {"leader": 3, "epoch": 2} and not out["split_brain"]
    assert [t["role"] for t in out["tiles"]] == ["follower", "follower", "leader"]
    assert out["tiles"][2]["lease"] == "lease valid"

    m.on_process(3, 103, "crashed")
    m.on_info(1, info(1, None, 0))
    out = m.nodes_json(T0)
    assert out["agreed"] is None  # node 1 knows no leader any more
    assert [t["role"] for t in out["tiles"]] == ["no leader known", "follower", "crashed"]
    m.on_process(2, 102, "paused")
    assert m.nodes_json(T0)["tiles"][1]["role"] == "paused"


def test_two_nodes_that_both_say_they_lead_are_a_split_brain_on_the_page():
    m = model()
    for n in (1, 2, 3):
        m.on_process(n, 100 + n, "running")
    m.on_info(1, info(1, 1, 1, pb.ROLE_LEADER))
    m.on_info(2, info(2, 3, 2))
    m.on_info(3, info(3, 3, 2, pb.ROLE_LEADER))
    out = m.nodes_json(T0)
    assert out["split_brain"] and out["agreed"] is None
    assert out["leaders"] == [{"node": 1, "epoch": 1}, {"node": 3, "epoch": 2}]


def test_a_poll_does_not_overwrite_what_the_stream_said():
    m = model()
    m.on_process(1, 101, "running")
    m.on_info(1, info(1, 3, 2))
    m.on_status(1, pb.NodeStatus(node_id=1, role=pb.ROLE_FOLLOWER, has_leader=False, epoch=1))
    assert m.nodes[1].info.leader_id == 3
    m.on_stream_down(1)
    m.on_status(1, pb.NodeStatus(node_id=1, role=pb.ROLE_FOLLOWER, has_leader=False, epoch=1))
    assert not m.nodes[1].info.known
    m.on_status(1, "DEADLINE_EXCEEDED")
    assert m.nodes_json(T0)["tiles"][0]["role"] == "unreachable"


def test_the_log_tells_the_failover_and_links_the_election_to_its_messages():
    m = model()
    feed(
        m,
        view(0, 3, "leader", 1, 3),
        {"t_ns": T0 + 1000 * MS, "kind": "process", "node": 3, "action": "kill", "pid": 103},
        view(1500, 2, "candidate", 1, None),
        message(1510, 2, "election", 2, 3, 1, error="UNAVAILABLE"),
        message(1520, 1, "coordinator", 2, 1, 2, reply="coordinator_ack", granted=True),
        message(1521, 3, "coordinator", 2, 3, 2, error="UNAVAILABLE"),
        view(1522, 2, "leader", 2, 2),
        view(1530, 1, "candidate", 1, None),  # a late starter, refused below
        message(
            1531,
            2,
            "coordinator",
            1,
            2,
            2,
            reply="coordinator_ack",
            granted=False,
            why="epoch 2 already promised to node 2",
        ),
        {
            "t_ns": T0 + 1540 * MS,
            "kind": "store",
            "seq": 9,
            "writer": 2,
            "epoch": 2,
            "key": "claim/2/2",
            "accepted": True,
            "reason": "",
        },
        {
            "t_ns": T0 + 1600 * MS,
            "kind": "store",
            "seq": 10,
            "writer": 3,
            "epoch": 1,
            "key": "duty/3",
            "accepted": False,
            "reason": "stale epoch",
        },
    )
    lines = texts(m)
    assert lines[:4] == [
        "node 3 is the new LEADER (epoch 1)",
        "crash node 3 (SIGKILL pid 103)",
        "node 2 started an election (epoch 1)",
        "election",
    ]
    assert "node 2 is the new LEADER (epoch 2)" in lines
    assert "store accepted node 2's claim of epoch 2: older epochs are fenced off" in lines
    assert any(line.startswith("store REJECTED node 3's write in epoch 1 (stale epoch)") for line in lines)
    leader_line = next(e for e in m.log if e["text"] == "node 2 is the new LEADER (epoch 2)")
    election = m.election(leader_line["election"])
    assert election is not None and election["total"] == 4 and election["failed"] == 2 and election["refused"] == 1
    assert election["winners"] == [{"node": 2, "epoch": 2}]
    assert [msg["type"] for msg in election["messages"]] == ["election", "coordinator", "coordinator", "coordinator"]
    assert election["messages"][-1]["why"] == "epoch 2 already promised to node 2"
    assert m.store == {"accepted": 1, "rejected": 1, "claims": 1, "highest_epoch": 2}
    feed(
        m,
        {
            "t_ns": T0 + 1700 * MS,
            "kind": "store",
            "seq": 11,
            "writer": 3,
            "epoch": 1,
            "key": "duty/3",
            "accepted": False,
            "reason": "stale epoch",
        },
    )
    assert m.store["rejected"] == 2 and sum("REJECTED" in t for t in texts(m)) == 1  # counted, not repeated


def test_quiet_time_separates_elections_and_retries_do_not_repeat_the_candidate_line():
    m = model()
    feed(
        m,
        view(0, 1, "candidate", 1, None),
        message(5, 2, "coordinator", 1, 2, 2),
        view(700, 1, "candidate", 2, None),
        message(705, 2, "coordinator", 1, 2, 3),
        view(800, 1, "follower", 3, 2),
        view(2000, 1, "candidate", 3, None),
    )
    assert [e.id for e in m.elections] == [1, 2]
    assert texts(m).count("node 1 started an election (epoch 1)") == 1
    assert "node 1 started an election (epoch 3)" in texts(m)  # it had a leader in between


def test_the_timeline_marks_two_leaders_at_once_and_logs_the_split_brain_once():
    m = model()
    feed(
        m,
        view(0, 3, "leader", 1, 3),
        {
            "t_ns": T0 + 100 * MS,
            "kind": "fault",
            "action": "start",
            "name": "partition",
            "detail": {"groups": [[3], [1, 2]]},
        },
        view(900, 2, "leader", 2, 2),
    )
    now = T0 + 1500 * MS
    assert m.refresh_timeline(now, 1_700_000_000.0)
    pic = m.picture
    assert {(i["node"], i["epoch"], i["open"]) for i in pic["intervals"]} == {(3, 1, True), (2, 2, True)}
    assert pic["overlaps"] == [{"nodes": [3, 2], "epochs": [1, 2], "start_ms": 900.0, "end_ms": 1500.0, "open": True}]
    assert pic["faults"][0]["name"] == "partition" and pic["faults"][0]["open"]
    assert sum("SPLIT BRAIN" in t for t in texts(m)) == 1
    assert not m.refresh_timeline(now + 250 * MS, 1_700_000_000.0)  # nothing new: nothing to send
    feed(m, view(1600, 3, "follower", 2, 2, reason="higher_epoch"))
    m.refresh_timeline(now + 500 * MS, 1_700_000_000.0)
    assert sum("SPLIT BRAIN" in t for t in texts(m)) == 1
    assert "node 3 stepped down from epoch 1: it saw a newer epoch" in texts(m)


def test_a_process_is_running_paused_or_crashed_as_proc_says():
    import os
    import signal
    import subprocess

    from dashboard.observe import process_state
    from node.launcher.cluster import wait_for

    assert process_state(None) == "unknown"
    assert process_state(os.getpid()) == "running"
    child = subprocess.Popen(["sleep", "30"])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        wait_for(lambda: process_state(child.pid) == "paused", 5, what="the stopped child to show as paused")
        os.kill(child.pid, signal.SIGCONT)
        wait_for(lambda: process_state(child.pid) == "running", 5, what="the resumed child to run")
        os.kill(child.pid, signal.SIGKILL)
        wait_for(lambda: process_state(child.pid) == "crashed", 5, what="the killed child to show as crashed")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert process_state(child.pid) == "crashed"


def test_a_finished_run_reports_its_verdicts_as_the_report_says(tmp_path):
    from dashboard.runs import ScenarioRun

    run = ScenarioRun("leader-pause", "classic", 3, tmp_path)
    run.state = "done"
    run.report = {
        "split_brain": True,
        "violations": ["P3"],
        "replay": "bullyproof chaos run leader-pause --mode classic --seed 3",
        "results": [
            {"id": "P1", "name": "unique leader", "ok": True, "evidence": [], "data": {}},
            {"id": "P3", "name": "no overlap", "ok": False, "evidence": ["nodes 2 and 3"], "data": {}},
            {"id": "P3g", "name": "grants", "ok": True, "evidence": ["n/a"], "data": {"applicable": False}},
        ],
    }
    out = run.to_json()
    assert [(v["id"], v["verdict"]) for v in out["verdicts"]] == [("P1", "PASS"), ("P3", "FAIL"), ("P3g", "N/A")]
    assert out["split_brain"] and out["command"].startswith("bullyproof chaos run leader-pause --mode classic --seed 3")


def test_a_failed_scenario_run_says_what_it_died_of() -> None:
    from dashboard.runs import failure_line

    grpc_error = "\n".join(
        [
            "Traceback (most recent call last):",
            '  File "runner.py", line 97, in run_scenario',
            "    events = collect()",
            "grpc._channel._InactiveRpcError: <_InactiveRpcError of RPC that terminated with:",
            "\tstatus = StatusCode.UNAVAILABLE",
            '\tdetails = "failed to connect"',
            ">",
        ]
    )
    line = failure_line(grpc_error)
    assert line.startswith("grpc._channel._InactiveRpcError") and "UNAVAILABLE" in line and "failed to connect" in line
    assert (
        failure_line('Traceback (most recent call last):\n  File "a"\nTimeoutError: timed out')
        == "TimeoutError: timed out"
    )
    assert failure_line("no traceback at all") == "no traceback at all"


def test_a_node_on_another_member_list_is_flagged_on_its_tile():
    m = model()
    m.on_process(1, 101, "running")
    m.on_info(1, info(1, 3, 2))
    m.on_status(1, pb.NodeStatus(node_id=1, role=pb.ROLE_FOLLOWER, epoch=2, peers=[pb.PeerView(id=2)]))
    assert "warning" not in m.nodes_json(T0)["tiles"][0]
    why = "node 2 runs another member list (configuration 0a0b0c0d); node 1 runs members 1,2,3 (configuration 21cdd3d7)"
    m.on_status(
        1,
        pb.NodeStatus(
            node_id=1,
            role=pb.ROLE_FOLLOWER,
            epoch=2,
            peers=[pb.PeerView(id=2, configuration_refusal=why), pb.PeerView(id=3)],
        ),
    )
    tile = m.nodes_json(T0)["tiles"][0]
    assert tile["warning"] == "another member list than node(s) 2" and tile["warning_detail"] == why


def test_a_gap_a_nodes_event_stream_reported_is_a_warning_in_the_log():
    m = model()
    feed(m, {"t_ns": 5_000_000, "kind": "gap", "node": 2, "missed": 37})
    entry = list(m.log)[-1]
    assert entry["level"] == "warn" and entry["text"].startswith("node 2: 37 history events lost here")


def test_a_cluster_watched_over_its_client_ports_takes_mode_and_timing_from_the_nodes():
    """`--nodes` knows only addresses: the mode and the election timeout (which groups an election's
    events) come from GetStatus, the longest timeout while a rolling change leaves members apart."""
    m = Model({1: "a:1", 2: "a:2"}, origin_ns=T0, election_timeout_ms=500, mode="", source="remote")
    m.on_status(1, pb.NodeStatus(node_id=1, mode=pb.MODE_RAFT, heartbeat_interval_ms=200, election_timeout_ms=2000))
    assert m.mode == "raft" and m.quiet_ns == 2000 * MS
    m.on_status(2, pb.NodeStatus(node_id=2, mode=pb.MODE_RAFT, election_timeout_ms=1000))
    assert m.quiet_ns == 2000 * MS  # the longest of what the members run
    m.on_status(1, pb.NodeStatus(node_id=1, mode=pb.MODE_RAFT))  # an older node says nothing: kept
    assert m.quiet_ns == 2000 * MS and m.nodes_json(T0)["mode"] == "raft"
