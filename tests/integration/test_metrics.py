"""Prometheus metrics per node over HTTP, and one JSON object per line in every node's log."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest
from lone_node import lone_node_argv
from prometheus_client.parser import text_string_to_metric_families

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import peer_channel
from node.launcher.cluster import process_fault, read_cluster_file, wait_for
from node.observer import get_status

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def scrape(address: str) -> dict[str, list]:
    """{sample name: [Sample, ...]} from one node's /metrics."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list], name: str, **labels: str) -> float:
    """The one sample `name` whose labels include `labels` (0 if the labelled child does not exist yet)."""
    found = [s.value for s in samples.get(name, []) if labels.items() <= s.labels.items()]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else 0.0


def metrics_addresses(cluster) -> dict[int, str]:
    addresses = {n["id"]: n["metrics_address"] for n in read_cluster_file(cluster.dir)["nodes"]}
    assert all(addresses.values()), addresses
    return addresses


def scrape_all(addresses: dict[int, str]) -> dict[int, dict[str, list]]:
    return {nid: scrape(addr) for nid, addr in addresses.items()}


def test_metrics_show_leader_epoch_heartbeats_and_failover(make_cluster):
    cluster = make_cluster(5)
    addresses = metrics_addresses(cluster)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)

    # Gauges follow the view; the agreed view may take a tick or two to land in every registry.
    def settled() -> dict[int, dict[str, list]] | None:
        m = scrape_all(addresses)
        ok = all(
            value(s, "bullyproof_has_leader") == 1
            and value(s, "bullyproof_is_leader") == (1 if nid == leader else 0)
            and value(s, "bullyproof_epoch") == epoch
            for nid, s in m.items()
        )
        return m if ok else None

    m = wait_for(settled, 10, interval_s=0.1, what="metrics to show the agreed leader and epoch")
    lm = m[leader]
    assert value(lm, "bullyproof_elections_won_total") >= 1
    assert value(lm, "bullyproof_promised_epoch") >= epoch
    assert value(lm, "bullyproof_lease_valid") == 1
    assert value(lm, "bullyproof_elections_started_total") >= 1
    assert value(lm, "bullyproof_election_duration_seconds_count") >= 1
    wait_for(
        lambda: value(scrape(addresses[leader]), "bullyproof_lease_renewals_total") > 0,
        10,
        interval_s=0.1,
        what="the leader to renew its lease",
    )
    for nid, s in m.items():
        if nid != leader:
            assert value(s, "bullyproof_messages_received_total", type="heartbeat") > 0, nid

    # Heartbeats keep going out: the counter grows between scrapes (no claim about how fast).
    sent_before = value(lm, "bullyproof_messages_sent_total", type="heartbeat")
    wait_for(
        lambda: value(scrape(addresses[leader]), "bullyproof_messages_sent_total", type="heartbeat") > sent_before,
        10,
        interval_s=0.1,
        what="the leader to send more heartbeats",
    )

    before = scrape_all(addresses)
    process_fault(cluster.dir, str(leader), "kill")
    new_leader, new_epoch = cluster.wait_for_agreement(timeout_s=15, exclude={leader}, differs_from=(leader, epoch))
    survivors = {nid: addr for nid, addr in addresses.items() if nid != leader}

    def failed_over() -> dict[int, dict[str, list]] | None:
        m = scrape_all(survivors)
        ok = (
            value(m[new_leader], "bullyproof_is_leader") == 1
            and value(m[new_leader], "bullyproof_elections_won_total")
            > value(before[new_leader], "bullyproof_elections_won_total")
            and all(
                value(s, "bullyproof_leader_changes_total") > value(before[nid], "bullyproof_leader_changes_total")
                and value(s, "bullyproof_epoch") >= new_epoch
                for nid, s in m.items()
            )
            # The new leader's heartbeats to the dead node fail (refused, or past their deadline).
            and sum(
                s.value for s in m[new_leader].get("bullyproof_rpc_errors_total", []) if s.labels["peer"] == str(leader)
            )
            > 0
        )
        return m if ok else None

    wait_for(failed_over, 10, interval_s=0.1, what="metrics to show the failover")


WIN_COUNTERS = ("elections_started", "elections_won", "handovers_won")


def win_counts(addresses: dict[int, str], cluster) -> dict[int, dict[str, int]] | None:
    """Each node's three counters, when /metrics and GetStatus show the same values (else None)."""
    counts = {}
    for nid, address in addresses.items():
        m = scrape(address)
        status = get_status(cluster.spec.node(nid).client_address, timeout_s=2)
        from_metrics = {c: int(value(m, f"bullyproof_{c}_total")) for c in WIN_COUNTERS}
        if isinstance(status, str) or from_metrics != {c: getattr(status, c) for c in WIN_COUNTERS}:
            return None
        counts[nid] = from_metrics
    return counts


@pytest.mark.parametrize("mode", ["quorum", "raft"])
def test_a_transfer_is_counted_as_what_it_is_and_wins_never_outnumber_starts_and_handovers(make_cluster, mode):
    """quorum: the named successor proposes without an election of its own (a handover); raft: it
    runs an election. Either way no node has won more than it started plus what was handed to it."""
    cluster = make_cluster(5, mode)
    addresses = metrics_addresses(cluster)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    target = min(nid for nid in addresses if nid != leader)
    before = wait_for(lambda: win_counts(addresses, cluster), 10, interval_s=0.1, what="metrics to match GetStatus")
    with grpc.insecure_channel(cluster.spec.node(leader).client_address) as channel:
        reply = pb_grpc.LeadershipStub(channel).TransferLeadership(pb.TransferRequest(target_id=target), timeout=10)
    assert reply.leader_id == target and reply.epoch > epoch

    grew = {"quorum": "handovers_won", "raft": "elections_won"}[mode]
    after = wait_for(
        lambda: (c := win_counts(addresses, cluster)) and c[target][grew] > before[target][grew] and c,
        10,
        interval_s=0.1,
        what=f"node {target}'s {grew} to count the transfer",
    )
    if mode == "quorum":
        assert after[target]["elections_won"] == before[target]["elections_won"]
    else:
        assert after[target]["elections_started"] > before[target]["elections_started"]
        assert after[target]["handovers_won"] == 0
    for nid, c in after.items():
        assert c["elections_won"] <= c["elections_started"] + c["handovers_won"], (nid, c)
        assert c["elections_won"] <= c["elections_started"], (nid, c)  # bully and raft win only what they start


# Long enough for gRPC's default server ping policy to close an idle link several times over (it
# sent GOAWAY too_many_pings ~3 s after each connect to a link pinged every second: 4 times over).
IDLE_S = 12


async def drops_of_an_idle_link(address: str, heartbeat_interval_ms: int, idle_s: float) -> int:
    """Hold a peer channel (the nodes' own options: keepalive pings, no calls) to `address` for
    idle_s; how often its connection went down. Reconnects at once, as a node would at its next call."""
    ready = grpc.ChannelConnectivity.READY
    async with peer_channel(address, heartbeat_interval_ms) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)
        loop = asyncio.get_running_loop()
        end, state, drops = loop.time() + idle_s, ready, 0
        while (left_s := end - loop.time()) > 0:
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), left_s)
            except TimeoutError:
                break
            new = channel.get_state(try_to_connect=True)
            drops += state == ready and new != ready
            state = new
        return drops


def test_idle_peer_links_stay_open(make_cluster):
    """Peer channels ping links without calls; every node's server must accept those pings (gRPC's
    default policy answers them with GOAWAY), and the nodes count each dropped link."""
    cluster = make_cluster(5)
    addresses = metrics_addresses(cluster)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    nodes = read_cluster_file(cluster.dir)["nodes"]
    follower = next(n for n in nodes if n["id"] != leader)
    before = scrape_all(addresses)

    # A link with our peer options and no calls, like one follower's link to another between elections.
    assert asyncio.run(drops_of_an_idle_link(follower["peer_address"], cluster.spec.heartbeat_interval_ms, IDLE_S)) == 0

    # Nor did any node's own links drop (the elections at boot connected some followers to each other).
    after = scrape_all(addresses)
    drops = {nid: sum(s.value for s in m.get("bullyproof_peer_disconnects_total", [])) for nid, m in after.items()}
    assert drops == {
        nid: sum(s.value for s in m.get("bullyproof_peer_disconnects_total", [])) for nid, m in before.items()
    }
    assert cluster.wait_for_agreement(timeout_s=5) == (leader, epoch)  # no election in between
    # The leader heartbeats each follower on one stream, opened once and kept through the calm window.
    opened = [
        {n["id"]: value(m, "bullyproof_heartbeat_streams_opened_total", peer=str(n["id"])) for n in nodes}
        for m in (before[leader], after[leader])
    ]
    assert opened[0] == opened[1] and all(opened[1][n["id"]] >= 1 for n in nodes if n["id"] != leader), opened

    # The counter counts: the leader's busy link to a follower that dies goes down.
    process_fault(cluster.dir, str(follower["id"]), "kill")
    wait_for(
        lambda: value(scrape(addresses[leader]), "bullyproof_peer_disconnects_total", peer=str(follower["id"])) >= 1,
        10,
        interval_s=0.1,
        what="the leader to count its link to the killed follower going down",
    )


def test_every_log_line_is_json_with_node_and_epoch(make_cluster):
    cluster = make_cluster(3)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    process_fault(cluster.dir, str(leader), "kill")
    cluster.wait_for_agreement(timeout_s=15, exclude={leader}, differs_from=(leader, epoch))
    cluster.stop()  # survivors log their shutdown too

    for n in read_cluster_file(cluster.dir)["nodes"]:
        lines = (cluster.dir / f"node-{n['id']}" / "node.log").read_text().splitlines()
        assert lines, n["id"]
        listening = []
        for line in lines:
            obj = json.loads(line)  # stderr goes to the same file: anything else fails here
            assert isinstance(obj, dict) and obj["node"] == n["id"] and isinstance(obj["epoch"], int), line
            assert {"ts", "level", "msg"} <= obj.keys(), line
            if obj.get("event") == "listening":
                listening.append(obj)
        assert len(listening) == 1, n["id"]
        assert listening[0]["metrics_address"] == n["metrics_address"]


def start_lone_node(tmp_path, *extra: str) -> subprocess.Popen:
    argv = lone_node_argv(tmp_path / "state", *extra)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def listening_line(proc: subprocess.Popen) -> dict:
    for line in proc.stdout:  # the node logs boot lines first; the test's timeout bounds this
        obj = json.loads(line)
        if obj.get("event") == "listening":
            return obj
    raise AssertionError(f"no listening line; stderr: {proc.stderr.read()}")


@pytest.mark.parametrize("metrics", [False, True], ids=["without", "with"])
def test_metrics_server_is_optional_and_port_0_reports_the_bound_port(tmp_path, metrics):
    proc = start_lone_node(tmp_path, *(["--metrics-listen", "127.0.0.1:0"] if metrics else []))
    try:
        line = listening_line(proc)
        assert line["node"] == 1 and line["epoch"] == 0
        if not metrics:
            assert "metrics_address" not in line
            return
        host, _, port = line["metrics_address"].rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0
        m = scrape(line["metrics_address"])
        assert value(m, "bullyproof_has_leader") == 0 and value(m, "bullyproof_is_leader") == 0
        assert "python_gc_objects_collected_total" not in m, "a node's registry must not be the global one"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_docs_list_every_metric_a_node_serves(tmp_path):
    listed = set()
    for line in (ROOT / "docs" / "operating.md").read_text().splitlines():  # Metrics and logs
        if line.startswith("| `bullyproof_"):
            listed |= set(re.findall(r"`(bullyproof_[a-z_]+)", line.split(" | ")[0]))
    proc = start_lone_node(tmp_path, "--metrics-listen", "127.0.0.1:0")
    try:
        with urllib.request.urlopen(f"http://{listening_line(proc)['metrics_address']}/metrics", timeout=2) as resp:
            families = list(text_string_to_metric_families(resp.read().decode()))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    # Labelled families are served (HELP and TYPE) before their first sample; counters end in _total;
    # prometheus_client's `_created` timestamp beside each unlabelled counter is said once in docs/operating.md.
    served = {f.name + ("_total" if f.type == "counter" else "") for f in families if not f.name.endswith("_created")}
    assert listed == served


def test_metrics_address_in_use_is_a_one_line_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = start_lone_node(tmp_path, "--metrics-listen", f"127.0.0.1:{taken.getsockname()[1]}")
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [err.strip()] and "cannot serve metrics on" in err, err
