"""WatchEvents on real node processes: the history events over the client port, resumable, filtered,
with gaps said, refused precisely, readable by any certificate of the cluster's CA and nobody else."""

from __future__ import annotations

import json
import queue
import threading
import time

import grpc
import pytest

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import channel_credentials
from node.launcher.cluster import process_fault
from node.tls import Tls, make_cluster_certs, node_name

pytestmark = pytest.mark.integration


class Reader:
    """One WatchEvents stream, pumped into a queue by a thread."""

    def __init__(self, channel: grpc.Channel, request: pb.WatchEventsRequest) -> None:
        self.channel = channel
        self.events: queue.Queue = queue.Queue()
        self.stream = pb_grpc.LeadershipStub(channel).WatchEvents(request, timeout=60)
        self.error: grpc.RpcError | None = None
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            for e in self.stream:
                self.events.put(e)
        except grpc.RpcError as exc:
            self.error = exc
            self.events.put(None)

    def next(self, timeout_s: float = 10) -> pb.NodeEvent:
        e = self.events.get(timeout=timeout_s)
        assert e is not None, f"the stream ended: {self.error}"
        return e

    def close(self) -> None:
        self.stream.cancel()
        self.channel.close()


def reader(cluster, node_id: int, **request) -> Reader:
    return Reader(grpc.insecure_channel(cluster.spec.node(node_id).client_address), pb.WatchEventsRequest(**request))


def first_error(cluster, node_id: int, **request) -> grpc.RpcError:
    with grpc.insecure_channel(cluster.spec.node(node_id).client_address) as ch:
        with pytest.raises(grpc.RpcError) as info:
            next(iter(pb_grpc.LeadershipStub(ch).WatchEvents(pb.WatchEventsRequest(**request), timeout=5)))
    return info.value


def test_events_arrive_as_the_events_file_holds_them_then_resume_without_gaps(make_cluster):
    cluster = make_cluster(3)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    follower = next(n.id for n in cluster.spec.nodes if n.id != leader)
    r = reader(cluster, follower)
    try:
        first = r.next()
        assert first.seq == 1 and first.missed == 0 and first.kind == "process" and first.incarnation > 0
        body = json.loads(first.json)
        assert body["kind"] == "process" and body["action"] == "start" and body["node"] == follower
        assert body["t_ns"] == first.monotonic_ns and abs(first.unix_ns - time.time_ns()) < 60e9
        seen = [first]
        # Live: the follower's view of the leader's death reaches the stream as it is recorded.
        since = time.time_ns()
        process_fault(cluster.dir, str(leader), "kill")
        while not (seen[-1].unix_ns > since and seen[-1].kind == "view"):
            seen.append(r.next())
        assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
        assert all(e.missed == 0 for e in seen)
    finally:
        r.close()
    # The same lines as the events file, seq for line.
    lines = (cluster.dir / f"node-{follower}" / "events.jsonl").read_text().splitlines()
    assert [e.json for e in seen] == lines[: len(seen)]
    # Resume where we left off: the next event is the one after, nothing lost.
    r = reader(cluster, follower, after_seq=seen[-1].seq, incarnation=first.incarnation)
    try:
        e = r.next()
        assert e.seq == seen[-1].seq + 1 and e.missed == 0
    finally:
        r.close()


def test_a_kind_filter_sends_only_those_kinds(make_cluster):
    cluster = make_cluster(3)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    follower = next(n.id for n in cluster.spec.nodes if n.id != leader)
    r = reader(cluster, follower, kinds=["view", "membership"])
    try:
        kinds = {r.next().kind for _ in range(1)}
        process_fault(cluster.dir, str(leader), "kill")
        got = []
        while not (got and got[-1].kind == "view" and json.loads(got[-1].json).get("leader") not in (None, leader)):
            got.append(r.next())
        kinds |= {e.kind for e in got}
        assert kinds <= {"view", "membership"} and "view" in kinds
        assert all(e.missed == 0 for e in got)
    finally:
        r.close()


def test_a_too_old_after_seq_is_a_reported_gap_and_a_restart_starts_over(make_cluster):
    cluster = make_cluster(3, env={"BULLYPROOF_KEEP_EVENTS": "40"}, heartbeat_interval_ms=20)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    follower = next(n.id for n in cluster.spec.nodes if n.id != leader)
    r = reader(cluster, follower, kinds=["grant"])  # a follower grants every heartbeat
    try:
        while (e := r.next()).seq < 200:
            pass
        incarnation = e.incarnation
    finally:
        r.close()
    r = reader(cluster, follower, after_seq=1)
    try:
        first = r.next()
        assert first.seq > 150 and first.missed == first.seq - 2, (first.seq, first.missed)
        assert r.next().seq == first.seq + 1
    finally:
        r.close()
    # After a restart seq counts from 1 again: the old incarnation's after_seq is ignored.
    process_fault(cluster.dir, str(follower), "restart")
    cluster.wait_for_agreement(timeout_s=15)
    r = reader(cluster, follower, after_seq=e.seq, incarnation=incarnation)
    try:
        first = r.next()
        assert first.seq == 1 and first.kind == "process" and first.incarnation != incarnation
    finally:
        r.close()


def test_invalid_fields_are_refused_precisely(make_cluster):
    cluster = make_cluster(3)
    cluster.wait_for_agreement(timeout_s=15)
    exc = first_error(cluster, 1, kinds=["view", "grnat"])
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'grnat'" in exc.details() and "grant" in exc.details()
    exc = first_error(cluster, 1, after_seq=10**12)
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "after_seq 1000000000000 is past node 1's last event" in exc.details()
    exc = first_error(cluster, 1, incarnation=-5)
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "incarnation" in exc.details()


def test_any_certificate_of_the_cluster_ca_may_read_and_strangers_may_not(make_cluster, tmp_path):
    cluster = make_cluster(3, secure=True)
    cluster.wait_for_agreement(timeout_s=15)
    address = cluster.spec.node(2).client_address
    certs = cluster.dir / "certs"

    def channel(tls: Tls) -> grpc.Channel:
        return grpc.secure_channel(
            address, channel_credentials(tls), options=[("grpc.ssl_target_name_override", node_name(2))]
        )

    for holder in ("client", "admin", "node-1"):
        r = Reader(channel(Tls.in_dir(certs, holder)), pb.WatchEventsRequest())
        try:
            assert r.next().seq == 1, holder
        finally:
            r.close()
    stranger = make_cluster_certs(tmp_path / "other-ca", 3)["client"]
    r = Reader(channel(stranger), pb.WatchEventsRequest())
    try:
        assert r.events.get(timeout=10) is None and r.error.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        r.close()


def test_streams_are_capped_and_a_cancelled_one_is_released(make_cluster):
    from node.launcher.cluster import wait_for
    from node.runtime.events import MAX_SUBSCRIBERS

    cluster = make_cluster(3)
    cluster.wait_for_agreement(timeout_s=15)
    with grpc.insecure_channel(cluster.spec.node(1).client_address) as ch:
        stub = pb_grpc.LeadershipStub(ch)
        streams = [stub.WatchEvents(pb.WatchEventsRequest(), timeout=60) for _ in range(MAX_SUBSCRIBERS)]
        for s in streams:
            assert next(s).seq == 1
        with pytest.raises(grpc.RpcError) as info:
            next(stub.WatchEvents(pb.WatchEventsRequest(), timeout=5))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"already serves {MAX_SUBSCRIBERS} event streams" in info.value.details()
        for s in streams:
            s.cancel()

        def opens() -> bool:
            try:
                return next(stub.WatchEvents(pb.WatchEventsRequest(), timeout=5)).seq == 1
            except grpc.RpcError:
                return False

        wait_for(opens, 10, 0.1, "a new stream once the cancelled ones are released")
