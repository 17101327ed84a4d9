"""Request bodies that are not valid protobuf, for every RPC: INVALID_ARGUMENT, never UNKNOWN.

protofuzz.malformed() damages well-formed encodings (cut short, bytes flipped or inserted, invalid
UTF-8 in a string field, wire types that do not exist). A body over the servers' size limit
(node.channels.MAX_RECEIVE_BYTES) gets RESOURCE_EXHAUSTED before anything reads it; one that still
parses (a cut at a field boundary) is an ordinary request and may get any precise status; one that
does not parse must get INVALID_ARGUMENT. gRPC's asyncio server answers UNKNOWN (and logs a traceback
per request) unless node.guard.DecodeGuard is installed, which node.channels.server() does on every
server.
"""

from __future__ import annotations

import os

import grpc
import protofuzz as pf
import pytest
from fuzzlib import PRECISE, Caller, FuzzStats, dead_processes, describe, seed_for
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import given, seed
from hypothesis import strategies as st
from test_fuzz_rpcs import MEMBERS, METHODS, fuzz_settings, handover_allowed, mode_for

from node.channels import MAX_RECEIVE_BYTES

pytestmark = pytest.mark.integration

REQUESTS = int(os.environ.get("BULLYPROOF_FUZZ_MALFORMED", "1000"))
BATCH = 25


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_malformed_requests_get_invalid_argument(method: MethodDescriptor, request, fuzz_seed: int, fuzz_stats) -> None:
    stats: FuzzStats = fuzz_stats(f"{method.containing_service.name}.{method.name} (malformed)")
    service = method.containing_service.name
    if service == "FencedStore":
        store = request.getfixturevalue("fuzz_store")
        callers = {m: Caller(store.address, method) for m in MEMBERS}

        def dead() -> list[str]:
            return [] if store.alive() else ["store"]
    else:
        cluster = request.getfixturevalue("clusters").get("guarded", mode_for(method.name))
        callers = {
            n.id: Caller(n.peer_address if service == "Peer" else n.client_address, method) for n in cluster.spec.nodes
        }

        def dead() -> list[str]:
            return dead_processes(cluster)

    allowed_if_parsed = handover_allowed(method)

    @seed(seed_for(fuzz_seed, stats.rpc))
    @fuzz_settings(REQUESTS // BATCH)
    @given(st.sampled_from(MEMBERS), st.lists(pf.malformed(method.input_type), min_size=BATCH, max_size=BATCH))
    def run(target: int, bodies: list[bytes]) -> None:
        outcomes = callers[target].send(bodies)
        stats.add(outcomes)
        for body, o in zip(bodies, outcomes):
            if len(body) > MAX_RECEIVE_BYTES:  # refused before anyone reads it, parsing or not
                stats.notes["over the size limit"] += 1
                assert o.code == "RESOURCE_EXHAUSTED", describe(method, body, o)
            elif pf.parses(method.input_type, body):
                stats.notes["still parsed"] += 1
                assert allowed_if_parsed(body, o) or o.code in PRECISE, describe(method, body, o)
            else:
                assert o.code == "INVALID_ARGUMENT", describe(method, body, o)
        assert not dead(), f"{dead()} died; first request {bodies[0]!r}"

    try:
        run()
    finally:
        for c in callers.values():
            c.close()


UNDECODABLE = b"\x0a\x05ab"  # field 1, length 5, two bytes follow: no message type parses it


def test_an_undecodable_request_gets_invalid_argument_as_shipped(quiet_cluster, fuzz_store) -> None:
    node = quiet_cluster.spec.node(1)
    codes = {}
    for address, path in (
        (node.peer_address, "/bullyproof.v1.Peer/Heartbeat"),
        (node.client_address, "/bullyproof.v1.Leadership/GetLeader"),
        (fuzz_store.address, "/bullyproof.v1.FencedStore/Write"),
    ):
        with grpc.insecure_channel(address) as ch:
            try:
                ch.unary_unary(path)(UNDECODABLE, timeout=5)
                codes[path] = "OK"
            except grpc.RpcError as exc:
                codes[path] = exc.code().name
    assert set(codes.values()) == {"INVALID_ARGUMENT"}, codes
