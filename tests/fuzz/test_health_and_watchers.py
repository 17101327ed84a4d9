"""Streams a caller abandons must not hold anything on the node.

* grpc.health.v1.Health/Watch: the node used grpc_health's HealthServicer, whose Watch on an asyncio
  server is a blocking generator in a thread of the loop's default executor, never woken when the
  caller cancels. Six abandoned Watch calls (the executor's size on two cores) left every later
  health Check hanging (container and Kubernetes probes fail), and a node with one stuck Watch did
  not exit on SIGTERM. node.runtime.observe.NodeHealth runs Watch on the loop instead.
* WatchLeader: a cancelled stream leaves bullyproof_watchers (and its handler) at once.
"""

from __future__ import annotations

import os
import signal
import time

import grpc
import pytest
from fuzzlib import watchers_gauge
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.launcher.cluster import pid_alive, read_cluster_file, wait_for

pytestmark = pytest.mark.integration


def test_abandoned_health_watches_leave_check_working_and_sigterm_prompt(make_cluster):
    cluster = make_cluster(3)
    leader, _ = cluster.wait_for_agreement(timeout_s=20)
    node = cluster.spec.node(leader)
    for service in ["", "leader"] * 6:  # twice the default executor's size on two cores
        with grpc.insecure_channel(node.client_address) as ch:
            stream = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
            stream.cancel()
    with grpc.insecure_channel(node.client_address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        assert (
            stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=3).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        assert (
            stub.Check(health_pb2.HealthCheckRequest(service="leader"), timeout=3).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        with pytest.raises(grpc.RpcError) as missing:
            stub.Check(health_pb2.HealthCheckRequest(service="no-such-service"), timeout=3)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        # Watch still follows changes: the leader resigns, "leader" goes NOT_SERVING
        watch = stub.Watch(health_pb2.HealthCheckRequest(service="leader"), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        pb_grpc.LeadershipStub(ch).Resign(pb.ResignRequest(), timeout=3)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
    # one more abandoned Watch, then SIGTERM: the node exits within its grace, not at the launcher's SIGKILL
    with grpc.insecure_channel(node.client_address) as ch:
        stream = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""), timeout=5)
        next(stream)
        stream.cancel()
    pid = next(n["pid"] for n in read_cluster_file(cluster.dir)["nodes"] if n["id"] == leader)
    os.kill(pid, signal.SIGTERM)
    started = time.monotonic()
    wait_for(lambda: not pid_alive(pid), 2.5, what=f"node {leader} to exit on SIGTERM")
    assert time.monotonic() - started < 2.5


def test_cancelled_watch_leader_streams_are_released(quiet_cluster):
    node = quiet_cluster.spec.node(2)
    baseline = watchers_gauge(node.metrics_address)
    channels = [
        grpc.insecure_channel(node.client_address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(4)
    ]
    streams = []
    for i in range(200):
        stream = pb_grpc.LeadershipStub(channels[i % 4]).WatchLeader(pb.WatchLeaderRequest(), timeout=30)
        next(stream)
        streams.append(stream)
    assert watchers_gauge(node.metrics_address) == baseline + 200
    for stream in streams:
        stream.cancel()
    wait_for(lambda: watchers_gauge(node.metrics_address) == baseline, 10, what="watchers to be released")
    for ch in channels[:2]:  # a caller that vanishes without cancelling: its connection closes
        ch.close()
    streams = [pb_grpc.LeadershipStub(channels[3]).WatchLeader(pb.WatchLeaderRequest(), timeout=30) for _ in range(50)]
    for s in streams:
        next(s)
    assert watchers_gauge(node.metrics_address) == baseline + 50
    channels[3].close()
    wait_for(
        lambda: watchers_gauge(node.metrics_address) == baseline,
        10,
        what="watchers of a closed connection to be released",
    )
    channels[2].close()
