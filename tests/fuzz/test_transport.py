"""Hostile input below gRPC: garbage on raw TCP, half-open connections, oversized messages.

Against every listening port of a running cluster (each node's peer and client ports) and a store:
random bytes, an HTTP/2 preface cut short, a valid preface followed by junk frames, HTTP/1.1 and TLS
greetings, connections that never say anything; and requests larger than
node.channels.MAX_RECEIVE_BYTES, which must get RESOURCE_EXHAUSTED (one at the limit is read).
Afterwards every process is alive and answering, no node changed its view (no leader change, no
election), node state is as it was, and the store's log has not moved.
"""

from __future__ import annotations

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import protofuzz as pf
import pytest
from fuzzlib import Caller, cluster_snapshot, dead_processes, last_seq, moved, node_pids, seed_for
from hypothesis import given, seed
from hypothesis import strategies as st
from test_fuzz_rpcs import fuzz_settings

from bench.hostile import views_between
from node.api import bullyproof_pb2 as pb
from node.channels import MAX_RECEIVE_BYTES
from node.launcher.cluster import LocalCluster
from node.store.server import MAX_RECEIVE_BYTES as STORE_MAX_RECEIVE_BYTES

pytestmark = pytest.mark.integration

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame on stream 0


def frame(length: int, type_: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return length.to_bytes(3, "big") + bytes([type_, flags]) + stream.to_bytes(4, "big") + payload


PAYLOADS = st.one_of(
    st.binary(min_size=1, max_size=4096),
    st.integers(1, len(PREFACE) - 1).map(lambda n: PREFACE[:n]),  # a preface cut short
    st.binary(max_size=2048).map(lambda junk: PREFACE + junk),  # a preface, then anything
    st.binary(max_size=512).map(lambda junk: PREFACE + SETTINGS + junk),
    # frames that lie: a HEADERS frame with garbage HPACK, a frame claiming 16 MiB, a DATA frame on a
    # stream never opened, a WINDOW_UPDATE of 0, RST_STREAM on stream 0, GOAWAY with a huge last stream
    st.binary(min_size=1, max_size=64).map(lambda b: PREFACE + SETTINGS + frame(len(b), 1, 4, 1, b)),
    st.just(PREFACE + SETTINGS + frame(0xFFFFFF, 0, 0, 1, b"x" * 100)),
    st.binary(max_size=64).map(lambda b: PREFACE + SETTINGS + frame(len(b), 0, 1, 7, b)),
    st.just(PREFACE + SETTINGS + frame(4, 8, 0, 0, b"\x00\x00\x00\x00")),
    st.just(PREFACE + SETTINGS + frame(4, 3, 0, 0, b"\x00\x00\x00\x08")),
    st.just(PREFACE + SETTINGS + frame(8, 7, 0, 0, b"\x7f\xff\xff\xff\x00\x00\x00\x00")),
    st.just(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    st.just(bytes.fromhex("16030100a5010000a10303") + bytes(32)),  # the start of a TLS ClientHello
)


def poke(address: str, payload: bytes) -> None:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2) as s:
            s.sendall(payload)
            s.settimeout(0.2)
            try:
                s.recv(4096)
            except (TimeoutError, ConnectionError):
                pass
    except (TimeoutError, ConnectionError):
        pass  # the server may hang up mid-send: that is a fine answer to garbage


def ports(cluster: LocalCluster, store_address: str) -> list[str]:
    return [a for n in cluster.spec.nodes for a in (n.peer_address, n.client_address)] + [store_address]


def assert_undisturbed(cluster: LocalCluster, before: dict, t0_ns: int, store_address: str, store_seq: int) -> None:
    assert not dead_processes(cluster), dead_processes(cluster)
    views = views_between(cluster, t0_ns, time.monotonic_ns())
    assert not views, f"view changes during the test: {views}"
    after = cluster_snapshot(cluster)
    drift = moved(before, after)
    assert not drift, drift
    assert last_seq(store_address) == store_seq


def test_garbage_bytes_on_every_port(quiet_cluster, fuzz_store, fuzz_seed, fuzz_stats) -> None:
    stats = fuzz_stats("transport: raw TCP garbage")
    addresses = ports(quiet_cluster, fuzz_store.address)
    before, t0, seq = cluster_snapshot(quiet_cluster), time.monotonic_ns(), last_seq(fuzz_store.address)
    pool = ThreadPoolExecutor(16)

    @seed(seed_for(fuzz_seed, stats.rpc))
    @fuzz_settings(40)
    @given(st.lists(st.tuples(st.sampled_from(addresses), PAYLOADS), min_size=10, max_size=30))
    def run(pokes) -> None:
        list(pool.map(lambda p: poke(*p), pokes))
        stats.requests += len(pokes)
        stats.examples += 1
        stats.codes["connections"] += len(pokes)
        assert not dead_processes(quiet_cluster) and fuzz_store.alive()

    try:
        run()
    finally:
        pool.shutdown()
    assert_undisturbed(quiet_cluster, before, t0, fuzz_store.address, seq)


def test_connections_that_never_finish_the_handshake(quiet_cluster, fuzz_store) -> None:
    """500 silent connections and 500 with a preface cut short, per port kind, held for 3 s."""
    leader_id = next(n for n, s in cluster_snapshot(quiet_cluster).items() if s["role"] == pb.ROLE_LEADER)
    leader = quiet_cluster.spec.node(leader_id)
    pid = node_pids(quiet_cluster)[leader_id]
    fds_before = len(os.listdir(f"/proc/{pid}/fd"))
    before, t0, seq = cluster_snapshot(quiet_cluster), time.monotonic_ns(), last_seq(fuzz_store.address)
    held: list[socket.socket] = []
    try:
        for address in (leader.client_address, leader.peer_address, fuzz_store.address):
            host, port = address.rsplit(":", 1)
            for i in range(500 if address != fuzz_store.address else 200):
                s = socket.create_connection((host, int(port)), timeout=5)
                if i % 2:
                    s.sendall(PREFACE[: 1 + i % (len(PREFACE) - 1)])
                held.append(s)
        time.sleep(3)
        with grpc.insecure_channel(leader.client_address) as ch:  # still answering
            info = ch.unary_unary(
                "/bullyproof.v1.Leadership/GetLeader", response_deserializer=pb.LeaderInfo.FromString
            )(b"", timeout=5)
        assert info.leader_id == leader_id
    finally:
        for s in held:
            s.close()
    assert_undisturbed(quiet_cluster, before, t0, fuzz_store.address, seq)
    time.sleep(0.5)
    assert len(os.listdir(f"/proc/{pid}/fd")) <= fds_before + 10, "connections not released"


def oversized_body(method, size: int) -> bytes:
    """A well-formed request of this RPC padded with an unknown bytes field to exactly `size` bytes."""
    body = pf.message_class(method.input_type)().SerializeToString()
    pad = size - len(body)
    for header_len in range(3, 8):  # tag (field 2047, one byte too many for a short tag) + length varint
        payload = pad - header_len
        header = pf.tag(2047, 2) + pf.varint(payload)
        if len(header) == header_len:
            return body + header + b"x" * payload
    raise AssertionError(size)


@pytest.mark.parametrize("service", ["Peer", "Leadership", "FencedStore"])
def test_oversized_requests_get_resource_exhausted(service, quiet_cluster, fuzz_store) -> None:
    leader_id = next(n for n, s in cluster_snapshot(quiet_cluster).items() if s["role"] == pb.ROLE_LEADER)
    node = quiet_cluster.spec.node(leader_id)
    svc = pb.DESCRIPTOR.services_by_name[service]
    method = {"Peer": "Heartbeat", "Leadership": "GetLeader", "FencedStore": "ReadLog"}[service]
    address = {"Peer": node.peer_address, "Leadership": node.client_address, "FencedStore": fuzz_store.address}[service]
    caller = Caller(address, svc.methods_by_name[method])
    before, t0, seq = cluster_snapshot(quiet_cluster), time.monotonic_ns(), last_seq(fuzz_store.address)
    limit = STORE_MAX_RECEIVE_BYTES if service == "FencedStore" else MAX_RECEIVE_BYTES  # the store takes 64 KiB values
    try:
        at_limit = caller.send([oversized_body(caller.method, limit)])[0]
        assert at_limit.code != "RESOURCE_EXHAUSTED", at_limit  # read, then judged on its content
        sizes = [limit + 1, 2 * limit, 1 << 20, 4 << 20] * 25
        outcomes = caller.send([oversized_body(caller.method, n) for n in sizes])
        assert {o.code for o in outcomes} == {"RESOURCE_EXHAUSTED"}, {o.code for o in outcomes}
        if service == "Peer":  # the realistic one: a ring token listing 30,000 ids
            big = pb.PeerMessage(
                sender_id=1, receiver_id=leader_id, epoch=1, ring_ids=range(1, 30_001)
            ).SerializeToString()
            assert len(big) > MAX_RECEIVE_BYTES
            for rpc in ("RingElection", "Heartbeat"):
                o = Caller(address, svc.methods_by_name[rpc]).send([big])[0]
                assert o.code == "RESOURCE_EXHAUSTED", o
        normal = caller.send([pf.message_class(caller.method.input_type)().SerializeToString()])[0]
        assert normal.code in ("OK", "PERMISSION_DENIED", "INVALID_ARGUMENT"), normal  # still serving
    finally:
        caller.close()
    assert_undisturbed(quiet_cluster, before, t0, fuzz_store.address, seq)
