"""Real node processes, real gRPC, the real store: elect, fail over, fence, remember promises."""

from __future__ import annotations

import json
import os
import signal
import time

import grpc
import pytest

from chaos.checkers import check_no_overlap_by_grants
from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.core import mode_info, mode_names
from node.core.membership import initial
from node.launcher.cluster import process_fault, read_cluster_file, wait_for
from node.runtime.wire import membership_to_pb

pytestmark = pytest.mark.integration


def read_events(cluster, node_id: int) -> list[dict]:
    path = cluster.dir / f"node-{node_id}" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def store_log(cluster) -> list[pb.LogEntry]:
    with grpc.insecure_channel(cluster.spec.store_address) as ch:
        return list(pb_grpc.FencedStoreStub(ch).ReadLog(pb.ReadLogRequest(), timeout=2).entries)


def status(cluster, node_id: int) -> pb.NodeStatus:
    with grpc.insecure_channel(cluster.spec.node(node_id).client_address) as ch:
        return pb_grpc.LeadershipStub(ch).GetStatus(pb.GetStatusRequest(), timeout=2)


def test_five_nodes_elect_one_leader_all_agree(make_cluster):
    cluster = make_cluster(5)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    assert leader == 5, "with everyone up, Bully order makes the highest id the leader"
    assert epoch >= 1
    st = status(cluster, leader)
    assert st.role == pb.ROLE_LEADER and st.lease_valid and st.elections_won >= 1
    assert {p.id for p in st.peers} == {1, 2, 3, 4}
    timing = (cluster.spec.heartbeat_interval_ms, cluster.spec.election_timeout_ms)
    assert (st.heartbeat_interval_ms, st.election_timeout_ms) == timing  # the timing it runs, as started


@pytest.mark.parametrize("mode", mode_names())
def test_every_mode_elects_and_fails_over_on_real_processes(make_cluster, mode):
    """Each registered algorithm runs as real node processes over gRPC: elect, then SIGKILL the
    leader and see the survivors agree on a new leader with a higher epoch; the store fences."""
    cluster = make_cluster(3, mode=mode)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    assert status(cluster, leader).mode == pb.Mode.Value(f"MODE_{mode.upper()}")
    process_fault(cluster.dir, str(leader), "kill")
    new_leader, new_epoch = cluster.wait_for_agreement(timeout_s=15, exclude={leader}, differs_from=(leader, epoch))
    assert new_leader != leader and new_epoch > epoch
    wait_for(
        lambda: any(e.writer_id == new_leader and e.epoch == new_epoch and e.accepted for e in store_log(cluster)),
        10,
        what="the new leader's claim or write",
    )


def test_sigkill_leader_then_survivors_agree_on_a_new_leader_with_higher_epoch(make_cluster):
    cluster = make_cluster(5)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    process_fault(cluster.dir, str(leader), "kill")
    new_leader, new_epoch = cluster.wait_for_agreement(timeout_s=15, exclude={leader}, differs_from=(leader, epoch))
    assert new_leader != leader
    assert new_epoch > epoch


def test_paused_leader_steps_down_and_fencing_rejects_its_epoch(make_cluster):
    cluster = make_cluster(5)
    old, old_epoch = cluster.wait_for_agreement(timeout_s=15)
    # The old leader's duty writes reach the store while it leads.
    wait_for(lambda: any(e.writer_id == old and e.accepted for e in store_log(cluster)), 10, what="a duty write")

    process_fault(cluster.dir, str(old), "pause")
    try:
        new, new_epoch = cluster.wait_for_agreement(timeout_s=15, exclude={old}, differs_from=(old, old_epoch))
        assert new_epoch > old_epoch
        wait_for(
            lambda: any(e.writer_id == new and e.epoch == new_epoch and e.accepted for e in store_log(cluster)),
            10,
            what="the new leader's first accepted write",
        )
    finally:
        process_fault(cluster.dir, str(old), "resume")

    # Rule 5: on waking, the old leader re-checks its lease and steps down instead of acting.
    def stepped_down():
        return [e for e in read_events(cluster, old) if e["kind"] == "view" and e.get("reason") == "lease_expired"]

    down = wait_for(stepped_down, 10, what="the resumed leader to report lease_expired")[-1]
    assert down["lease_end_ns"] <= down["t_ns"], "the lease ran out while it was paused"

    # A write stamped with the old epoch (as one in flight across the pause would be) is refused...
    with grpc.insecure_channel(cluster.spec.store_address) as ch:
        reply = pb_grpc.FencedStoreStub(ch).Write(
            pb.WriteRequest(writer_id=old, epoch=old_epoch, key="in-flight", value=b"stale"), timeout=2
        )
    assert not reply.accepted and "stale" in reply.reason
    assert reply.highest_epoch >= new_epoch

    # ...while the new leader's keep being accepted, and nothing older got in after it.
    log = store_log(cluster)
    first_new = min(e.seq for e in log if e.epoch == new_epoch and e.accepted)
    later_old = [e for e in log if e.seq > first_new and e.epoch < new_epoch]
    assert later_old and all(not e.accepted for e in later_old)
    wait_for(
        lambda: any(e.seq > reply.seq and e.epoch >= new_epoch and e.accepted for e in store_log(cluster)),
        10,
        what="accepted writes after the stale one",
    )


def test_a_new_leaders_first_store_record_is_its_claim_and_it_comes_at_once(make_cluster):
    """Part of fencing: the store learns a new epoch when its leader starts, not a write period later.

    Duty writes come every 5 s here, so only the claim can explain a store record within a second.
    """
    cluster = make_cluster(3, write_period_ms=5000)

    def check_claim(leader: int, epoch: int) -> None:
        became = next(
            e
            for e in read_events(cluster, leader)
            if e["kind"] == "view" and e["role"] == "leader" and e["epoch"] == epoch
        )
        first = wait_for(
            lambda: next((e for e in store_log(cluster) if e.writer_id == leader and e.epoch == epoch), None),
            5,
            what=f"node {leader}'s first store record in epoch {epoch}",
        )
        assert first.key == f"claim/{leader}/{epoch}" and first.accepted, first
        delay_ms = (first.recorded_monotonic_ns - became["t_ns"]) / 1e6
        assert 0 <= delay_ms < 1000, f"the claim reached the store {delay_ms:.0f} ms after node {leader} began to lead"
        writes = wait_for(
            lambda: [e for e in read_events(cluster, leader) if e["kind"] == "write"], 5, what="the write event"
        )
        assert writes[0]["key"] == first.key and writes[0]["accepted"] and writes[0]["seq"] == first.seq
        assert writes[0]["sent_ns"] >= became["t_ns"]

    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    check_claim(leader, epoch)
    process_fault(cluster.dir, str(leader), "kill")
    new, new_epoch = cluster.wait_for_agreement(timeout_s=15, exclude={leader}, differs_from=(leader, epoch))
    check_claim(new, new_epoch)
    # From the claim on, the old epoch is fenced off, before the new leader's first duty write.
    with grpc.insecure_channel(cluster.spec.store_address) as ch:
        reply = pb_grpc.FencedStoreStub(ch).Write(
            pb.WriteRequest(writer_id=leader, epoch=epoch, key="in-flight", value=b"late"), timeout=2
        )
    assert not reply.accepted and "stale" in reply.reason
    assert not [e for e in store_log(cluster) if e.key.startswith(f"duty/{new}/")], "a duty write came first"


def test_quorum_followers_record_what_they_grant(make_cluster):
    cluster = make_cluster(3)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    for node in (n.id for n in cluster.spec.nodes if n.id != leader):
        # Ten of them (a second of heartbeats): on a busy machine one grant alone may be recorded late.
        grants = wait_for(
            lambda: (
                (g := [e for e in read_events(cluster, node) if e["kind"] == "grant" and e["leader"] == leader])
                and len(g) >= 10
                and g
            ),
            15,
            what=f"node {node} to record ten grants",
        )
        # 0.8 election timeouts from receipt, on the follower's 10 ms ticks
        assert all(g["epoch"] == epoch and g["promise_ms"] == 400 for g in grants)
        # Never longer than the window plus one tick (its receipt tick may be up to a tick early), and
        # still ahead when recorded. How much of it is left then depends on how busy the machine was
        # between receipt and record (the checkers read until_ns, not t_ns), so no tighter lower bound.
        assert all(g["t_ns"] < g["until_ns"] <= g["t_ns"] + 410_000_000 for g in grants)
        assert any(g["until_ns"] > g["t_ns"] + 300_000_000 for g in grants), "most grants are recorded at once"


@pytest.mark.parametrize("mode", [m for m in mode_names() if mode_info(m).promises])
def test_a_node_records_its_vote_for_itself_as_a_grant(make_cluster, mode):
    """Proposing (quorum) or campaigning (raft), a node promises itself: a grant to itself with no
    window of its own (promise_ms 0), recorded once durable and before it leads; the grant checker
    finds no promise broken by it."""
    cluster = make_cluster(3, mode=mode)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    events = read_events(cluster, leader)
    own = [e for e in events if e["kind"] == "grant" and e["leader"] == leader and e["epoch"] == epoch]
    assert [(e["node"], e["promise_ms"], "until_ns" in e) for e in own] == [(leader, 0, False)]
    became = next(e for e in events if e["kind"] == "view" and e["role"] == "leader" and e["epoch"] == epoch)
    assert own[0]["t_ns"] <= became["t_ns"]
    history = [e for n in cluster.spec.nodes for e in read_events(cluster, n.id)]
    assert check_no_overlap_by_grants(history, mode).ok, check_no_overlap_by_grants(history, mode).evidence


def test_a_resigning_leaders_lease_ends_when_it_resigned(make_cluster):
    """The lease end a resigning leader records is the instant it resigned, never the start of the
    tick it resigned in (up to a tick earlier, while it still led). Asked just after one of its tick
    boundaries (read off a grant's until_ns, an exact tick of its clock), it must not report that
    boundary: its lease end cannot precede the request."""
    cluster = make_cluster(3)
    first, epoch = cluster.wait_for_agreement(timeout_s=15)
    resign(cluster, first)
    leader, _ = cluster.wait_for_agreement(timeout_s=15, differs_from=(first, epoch))
    grant = next(e for e in read_events(cluster, leader) if e["kind"] == "grant" and e["leader"] != leader)
    tick_ns = 10_000_000  # the nodes' default --tick-ms
    now_ns = time.monotonic_ns()
    boundary_ns = now_ns + tick_ns - (now_ns - grant["until_ns"]) % tick_ns
    while time.monotonic_ns() < boundary_ns + 500_000:
        pass  # busy: a sleep could overshoot most of the tick
    asked_ns = time.monotonic_ns()
    resign(cluster, leader)
    stepdown = wait_for(
        lambda: next(
            (
                e
                for e in read_events(cluster, leader)
                if e["kind"] == "view" and e.get("reason") == "resigned" and e["t_ns"] > asked_ns
            ),
            None,
        ),
        5,
        what=f"node {leader}'s resignation",
    )
    assert asked_ns <= stepdown["lease_end_ns"] <= stepdown["t_ns"], (asked_ns, stepdown)


def resign(cluster, node_id: int) -> None:
    with grpc.insecure_channel(cluster.spec.node(node_id).client_address) as ch:
        pb_grpc.LeadershipStub(ch).Resign(pb.ResignRequest(), timeout=2)


def test_restarted_node_never_acknowledges_an_epoch_it_has_passed(make_cluster):
    cluster = make_cluster(3)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    follower = min(n.id for n in cluster.spec.nodes if n.id != leader)
    other = next(n.id for n in cluster.spec.nodes if n.id not in (leader, follower))
    before = status(cluster, follower).promised_epoch
    assert before == epoch

    process_fault(cluster.dir, str(follower), "restart")
    address = cluster.spec.node(follower).peer_address

    start = initial(tuple(n.id for n in cluster.spec.nodes))  # the configuration every node runs

    def ask(e: int) -> pb.Ack | None:
        try:
            with grpc.insecure_channel(address) as ch:
                return (
                    pb_grpc.PeerStub(ch)
                    .Coordinator(
                        pb.PeerMessage(
                            sender_id=other,
                            receiver_id=follower,
                            epoch=e,
                            configuration_id=start.id,
                            configuration=membership_to_pb(start),
                        ),
                        timeout=1,
                    )
                    .ack
                )
        except grpc.RpcError:
            return None

    for stale in range(1, epoch + 1):
        ack = wait_for(lambda: ask(stale), 10, what="the restarted node to answer")
        assert not ack.granted, f"restarted node acknowledged epoch {stale} after promising {epoch}"
        assert ack.promised_epoch >= epoch
    assert status(cluster, follower).promised_epoch >= epoch


def test_sigterm_leader_resigns_and_others_take_over(make_cluster):
    cluster = make_cluster(5)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    pid = next(n["pid"] for n in read_cluster_file(cluster.dir)["nodes"] if n["id"] == leader)
    os.kill(pid, signal.SIGTERM)
    new_leader, new_epoch = cluster.wait_for_agreement(timeout_s=15, exclude={leader}, differs_from=(leader, epoch))
    assert new_epoch > epoch
    views = [e for e in read_events(cluster, leader) if e["kind"] == "view"]
    assert any(e.get("reason") == "resigned" for e in views)


def test_classic_mode_elects_highest(make_cluster):
    cluster = make_cluster(3, mode="classic")
    leader, _ = cluster.wait_for_agreement(timeout_s=15)
    assert leader == 3
    assert status(cluster, 3).mode == pb.MODE_CLASSIC
    # Classic followers promise nothing, so they record no grants (P3g does not apply there).
    assert not [e for n in (1, 2) for e in read_events(cluster, n) if e["kind"] in ("grant", "release")]
