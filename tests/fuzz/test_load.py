"""Client load must not move leadership or grow a node without bound.

* 1,000 WatchLeader subscribers on the leader, then on a follower, 30% of them never reading after
  their first view: every stream opens, no node changes its view while they are held (followers kept
  hearing the leader within their promise), the loaded node's RSS grows by a bounded amount and
  stops growing, and every stream is released once the callers go away (bullyproof_watchers).
* Subscribers that never read while leadership changes 10 times under them (Resign): memory stays
  bounded, the reading ones see the changes, and no epoch has two leaders.
* A GetLeader flood from two processes on the leader, then a follower: no view change, no failed call.
  The flood runs at CPU priority 19 (as clients on other machines: it takes the CPU the nodes leave).
  At normal priority, on a two-core machine, it starves the other nodes of CPU and their late answers
  can cost the leader its lease; bench.hostile shows that too, for contrast.

Nothing here asserts a duration. The cluster's election timeout is 1 s (heartbeats every 100 ms) to
leave a busy, shared test machine room; `python -m bench.hostile` measures heartbeat
gaps, RSS and throughput at the default 100/500 ms.
"""

from __future__ import annotations

import grpc
import pytest
from fuzzlib import node_pids, safety_violations, watchers_gauge

from bench.hostile import Flood, Watchers, rss_mb, run_phase
from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.launcher.cluster import wait_for

pytestmark = pytest.mark.integration

# Generous: 1,000 streams cost about 26 MB on a node (measured; bench.hostile prints it).
MAX_GROWTH_MB = 120
SETTLED_SPREAD_MB = 8  # the RSS samples of the last second of a window lie within this


@pytest.fixture
def load_cluster(clusters):
    return clusters.get("load")


def leader_and_follower(cluster) -> tuple[int, int]:
    leader, _ = cluster.wait_for_agreement(30)
    return leader, min(n.id for n in cluster.spec.nodes if n.id != leader)


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_1000_watchers_leave_leadership_alone_and_memory_bounded(role, load_cluster):
    leader, follower = leader_and_follower(load_cluster)
    target = leader if role == "leader" else follower
    node = load_cluster.spec.node(target)
    result = run_phase(
        load_cluster, "watchers", target, 4.0, lambda: Watchers(node.client_address, 1000, idle_share=0.3)
    )
    load = result["load"]
    assert (load["opened"], load["errors"]) == (1000, {}), load
    assert result["alive"], result
    assert result["view_changes_in_window"] == 0 and result["leader_after"] == leader, result
    assert result["epoch_after"] == result["epoch_before"], result
    assert result["rss_mb_peak"] - result["rss_mb_before"] < MAX_GROWTH_MB, result
    assert result["rss_mb_last_second_spread"] < SETTLED_SPREAD_MB, result
    wait_for(lambda: watchers_gauge(node.metrics_address) == 0, 15, 0.05, "the 1,000 streams to be released")


def test_watchers_that_never_read_while_leadership_changes(clusters):
    cluster = clusters.get("handover")  # leadership moves here on purpose (not on the load cluster)
    leader, follower = leader_and_follower(cluster)
    node = cluster.spec.node(follower)
    pid = node_pids(cluster)[follower]
    before = rss_mb(pid)
    with Watchers(node.client_address, 1000, idle_share=0.5) as watchers:
        assert watchers.opened == 1000, watchers.summary()
        for _ in range(10):
            # The follower is serving 1000 streams on a busy machine: give it time to answer (this
            # test is about memory and about leadership moving, not about answer latency).
            current, _ = cluster.wait_for_agreement(60, rpc_timeout_s=2.0)
            with grpc.insecure_channel(cluster.spec.node(current).client_address) as ch:
                pb_grpc.LeadershipStub(ch).Resign(pb.ResignRequest(), timeout=5)
        grown = rss_mb(pid) - before
        assert grown < MAX_GROWTH_MB, (before, grown)
        assert watchers.updates > 0, watchers.summary()  # the reading half saw the changes
    assert not safety_violations(cluster), safety_violations(cluster)
    wait_for(lambda: watchers_gauge(node.metrics_address) == 0, 15, 0.05, "the streams to be released")


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_getleader_flood_leaves_leadership_alone(role, load_cluster):
    leader, follower = leader_and_follower(load_cluster)
    target = leader if role == "leader" else follower
    node = load_cluster.spec.node(target)
    result = run_phase(load_cluster, "flood", target, 4.0, lambda: Flood(node.client_address, 2, 16, 4.0, nice=19))
    load = result["load"]
    assert load["calls"] > 0 and load["errors"] == {}, load
    assert result["alive"], result
    assert result["view_changes_in_window"] == 0 and result["leader_after"] == leader, result
    assert result["epoch_after"] == result["epoch_before"], result
    assert result["rss_mb_peak"] - result["rss_mb_before"] < MAX_GROWTH_MB, result
