"""Every RPC of services Peer, Leadership and FencedStore, fuzzed against running processes.

The RPCs come from the .proto's descriptors and so do the requests (tests/fuzz/protofuzz.py): a new
RPC or field is fuzzed without new code. Each RPC gets BULLYPROOF_FUZZ_REQUESTS requests (5,000 by
default; batches of 100, sent at once), and they must have covered the request type
(protofuzz.coverage_goals): every field set and unset, every hinted value and some other value of a
hinted field, unknown fields. Over ten seeds, 5,000 requests met every goal at least 177 times
(10,000 were the default before; they bought no coverage these lack). For every request: the
processes are alive afterwards, and the status is OK or one that says what was wrong (never UNKNOWN,
INTERNAL, or a hang). Beyond that, per kind of RPC:

* Peer: every message goes to a "noisy" cluster, valid ones too: a message from a fake sender can
  move a node today (no authentication yet; mTLS will refuse it), so there the cluster is judged
  only on safety, from its history: one leader per epoch. Every request the noisy node refused for
  its content is then sent again, alone, to the same node id of a "quiet" cluster: it must get the
  same status and change nothing there (role, epoch, promise, leader, election counters, message
  counters other than heartbeats, on every node).
* Leadership reads (GetLeader, GetStatus, WatchLeader, whose requests are empty, so the fuzz is unknown
  fields; WatchEvents, which may also refuse its fields with INVALID_ARGUMENT): answered, and nothing
  changes on the quiet cluster.
* Resign and TransferLeadership (and any new Leadership RPC) move leadership on purpose: sent to the
  "handover" cluster's leader, precise statuses, and the history stays safe (P1 and P3). The same
  requests sent to a quiet follower must all be refused, changing nothing.
* FencedStore, on a store of its own: Write appends exactly one log entry per OK reply, matching the
  request and reply, and none for a refused request; ReadLog changes nothing and returns a
  well-ordered slice.

Seeds and counts print at the end of the run (section "fuzzing counts"); BULLYPROOF_FUZZ_SEED
replays a run, BULLYPROOF_FUZZ_REPORT=FILE writes the counts as JSON.
"""

from __future__ import annotations

import os

import grpc
import protofuzz as pf
import pytest
from fuzzlib import (
    PRECISE,
    Caller,
    FuzzStats,
    Outcome,
    cluster_snapshot,
    dead_processes,
    describe,
    history,
    last_seq,
    moved,
    safety_violations,
    seed_for,
    store_log,
    watchers_gauge,
)
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.core import configuration_id, mode_info
from node.launcher.cluster import LocalCluster, wait_for
from node.runtime.wire import MODE_RPCS

pytestmark = pytest.mark.integration

SERVICES = ("Peer", "Leadership", "FencedStore")
METHODS: list[MethodDescriptor] = [m for s in SERVICES for m in pb.DESCRIPTOR.services_by_name[s].methods]
REQUESTS = int(os.environ.get("BULLYPROOF_FUZZ_REQUESTS", "5000"))
BATCH = 100
MEMBERS = (1, 2, 3)

READS = frozenset({"GetLeader", "GetStatus", "WatchLeader", "WatchEvents"})
HANDOVERS = frozenset({"Resign", "TransferLeadership", "ChangeMembership"})
# Refusals a request earns by its content alone: sent again anywhere, it gets the same answer.
CONTENT_REFUSALS = frozenset(
    {"INVALID_ARGUMENT", "PERMISSION_DENIED", "OUT_OF_RANGE", "UNIMPLEMENTED", "RESOURCE_EXHAUSTED", "UNAUTHENTICATED"}
)
# A peer message addressed to another node is refused whatever the receiver's state.
PEER_CONTENT_REFUSALS = CONTENT_REFUSALS | {"FAILED_PRECONDITION"}


def fuzz_settings(examples: int):
    # No shrinking: the processes keep state between examples, so a shrunk example is not the same
    # test; the failing request is printed whole instead.
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


def check_statuses(method: MethodDescriptor, bodies: list[bytes], outcomes: list[Outcome], allowed) -> None:
    bad = [describe(method, b, o) for b, o in zip(bodies, outcomes) if not allowed(b, o)]
    assert not bad, f"{len(bad)} of {len(bodies)} requests got an imprecise status, e.g.:\n" + "\n".join(bad[:5])


def check_alive(cluster: LocalCluster, method: MethodDescriptor, bodies: list[bytes]) -> None:
    dead = dead_processes(cluster)
    assert not dead, f"{dead} died during a batch of {method.name}; first request: {bodies[0]!r}"


def check_acks(method: MethodDescriptor, bodies: list[bytes], outcomes: list[Outcome]) -> None:
    """An ack answers its request: from its receiver, to its sender, same epoch and round (the sender
    drops any other: node.runtime.wire.ack_from_pb)."""
    for body, o in zip(bodies, outcomes):
        if o.code == "OK" and o.reply.HasField("ack"):
            req, ack = pb.PeerMessage.FromString(body), o.reply.ack
            assert (ack.sender_id, ack.receiver_id, ack.epoch, ack.round) == (
                req.receiver_id,
                req.sender_id,
                req.epoch,
                req.round,
            ), describe(method, body, o) + f" ack: {ack}"


def peer_hints(target: int) -> pf.Hints:
    """Values that get a request past the checks of who sent it to whom and into the elector, which
    random numbers almost never do (0 stands for "unset"; a repeated field's hints are whole lists)."""
    others = tuple(m for m in MEMBERS if m != target)
    # Fields most RPCs leave unset are mostly unset: each one set where it does not belong is a refusal
    # of its own, and a request must get past all of them to reach the elector.
    return (
        ("sender_id", others),
        ("receiver_id", (target,)),
        ("epoch", (1, 2, 3, 4, 7, 50, 2**62)),
        ("round", (0,) * 9 + (1, 2, 9)),
        ("resigning", (False,) * 9 + (True,)),
        ("successor_id", (0,) * 12 + MEMBERS),
        ("initiator_id", (0,) * 9 + MEMBERS),
        ("ring_ids", ((),) * 9 + ((others[0],), (*others, target), (target, others[1]))),
        ("lease_ms", (0,) * 6 + (350, 700)),
        ("lease_remaining_ms", (0,) * 6 + (200,)),
        ("transfer", (False,) * 9 + (True,)),
        *CONFIGURATION_HINTS,
    )


# The clusters' own configuration, mostly, so that messages in modes that change membership pass the
# wire's check and reach the elector; now and then a later, a joint or an impossible one.
CONFIGURATION_HINTS = (
    ("voters", (MEMBERS,) * 12 + ((1, 2), (1, 2, 3, 4))),
    ("learners", ((),) * 12 + ((4,),)),
    ("index", (0,) * 12 + (1, 7)),
    ("term", (0,) * 12 + (2, -1)),
    ("previous", ((),) * 12 + ((1, 2),)),
    ("notify", ((),) * 12 + ((5,),)),
    ("configuration_id", (configuration_id(MEMBERS),) * 12 + (1,)),
)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_fuzz_rpc(method: MethodDescriptor, request, fuzz_seed: int, fuzz_stats) -> None:
    stats = fuzz_stats(f"{method.containing_service.name}.{method.name}")
    service = method.containing_service.name
    if service == "Peer":
        fuzz_peer(method, request, fuzz_seed, stats)
    elif service == "Leadership" and method.name in READS:
        fuzz_reads(method, request, fuzz_seed, stats)
    elif service == "Leadership":
        fuzz_handover(method, request, fuzz_seed, stats)
    elif method.name == "Write":
        fuzz_store_write(method, request, fuzz_seed, stats)
    else:
        fuzz_store_read(method, request, fuzz_seed, stats)
    assert stats.requests >= REQUESTS
    assert not stats.uncovered(), f"{stats.requests} requests never sent {stats.uncovered()}"


# ---- Peer ---------------------------------------------------------------------------------------


def mode_for(rpc: str) -> str:
    """A mode whose nodes handle `rpc` (quorum if it does): there the request reaches the elector."""
    return next((m for m in ("quorum", *MODE_RPCS) if rpc in MODE_RPCS[m]), "quorum")


def fuzz_peer(method: MethodDescriptor, request, fuzz_seed: int, stats: FuzzStats) -> None:
    mode = mode_for(method.name)
    pool = request.getfixturevalue("clusters")
    noisy, quiet = pool.get("noisy", mode), pool.get("quiet", mode)
    stats.notes[f"mode {mode}"] = 1
    to_noisy = {n.id: Caller(n.peer_address, method) for n in noisy.spec.nodes}
    to_quiet = {n.id: Caller(n.peer_address, method) for n in quiet.spec.nodes}
    batches = st.sampled_from(MEMBERS).flatmap(
        lambda target: st.tuples(st.just(target), pf.batches(method.input_type, BATCH, hints=peer_hints(target)))
    )

    @seed(seed_for(fuzz_seed, stats.rpc))
    @fuzz_settings(REQUESTS // BATCH)
    @given(batches)
    def run(drawn: tuple[int, list[bytes]]) -> None:
        target, bodies = drawn
        outcomes = to_noisy[target].send(bodies)
        stats.add(outcomes)
        stats.cover(method, bodies, peer_hints(target))
        check_statuses(method, bodies, outcomes, lambda b, o: o.code in PRECISE - {"ABORTED"})
        check_alive(noisy, method, bodies)
        check_acks(method, bodies, outcomes)
        refused = [(b, o) for b, o in zip(bodies, outcomes) if o.code in PEER_CONTENT_REFUSALS]
        if not refused:
            return
        before = cluster_snapshot(quiet)
        again = to_quiet[target].send([b for b, _ in refused])
        after = cluster_snapshot(quiet)
        stats.notes["refused, replayed on the quiet cluster"] += len(refused)
        changed = [
            describe(method, b, o) + f" / quiet: {a.code}" for (b, o), a in zip(refused, again) if a.code != o.code
        ]
        assert not changed, "a refusal depended on more than the request:\n" + "\n".join(changed[:5])
        drift = moved(before, after)
        assert not drift, f"refused {method.name} requests changed node state {drift}; requests: " + "\n".join(
            describe(method, b, o) for b, o in refused[:10]
        )
        check_alive(quiet, method, bodies)

    try:
        run()
    finally:
        for c in (*to_noisy.values(), *to_quiet.values()):
            c.close()
    if mode_info(mode).promises:  # classic and ring promise nothing: a fake coordinator can split them
        violations = safety_violations(noisy, overlap=False)  # fake senders may break leases (P3), not P1
        assert not violations, violations


# ---- Leadership ---------------------------------------------------------------------------------


def fuzz_reads(method: MethodDescriptor, request, fuzz_seed: int, stats: FuzzStats) -> None:
    quiet: LocalCluster = request.getfixturevalue("quiet_cluster")
    callers = {n.id: Caller(n.client_address, method) for n in quiet.spec.nodes}
    # WatchEvents has fields to refuse (a kind no node records, an after_seq past its last event), and
    # a cap on streams at once (node.runtime.events.MAX_SUBSCRIBERS).
    answers = {"OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"} if method.name == "WatchEvents" else {"OK"}

    @seed(seed_for(fuzz_seed, stats.rpc))
    @fuzz_settings(REQUESTS // BATCH)
    @given(st.sampled_from(MEMBERS), pf.batches(method.input_type, BATCH))
    def run(target: int, bodies: list[bytes]) -> None:
        before = cluster_snapshot(quiet)
        outcomes = callers[target].send(bodies)
        after = cluster_snapshot(quiet)
        stats.add(outcomes)
        stats.cover(method, bodies)
        check_statuses(method, bodies, outcomes, lambda b, o: o.code in answers)
        check_alive(quiet, method, bodies)
        drift = moved(before, after)
        assert not drift, f"{method.name} changed node state: {drift}"

    try:
        run()
    finally:
        for c in callers.values():
            c.close()
    if method.server_streaming:  # every stream was cancelled after its first reply: none may stay held
        for n in quiet.spec.nodes:
            wait_for(lambda: watchers_gauge(n.metrics_address) == 0, 15, 0.05, f"node {n.id}'s streams to be released")


TRANSFER_TIMEOUT_S = 5.0


def handover_allowed(method: MethodDescriptor):
    """TransferLeadership may also say UNAVAILABLE (its target has not answered recently), and may
    outlast our deadline when it was asked to wait longer than that; ChangeMembership may say its own
    timeout_ms passed before the change was agreed."""
    cls = pf.message_class(method.input_type)

    def allowed(body: bytes, o: Outcome) -> bool:
        if o.code in PRECISE:
            return True
        if method.name == "TransferLeadership" and o.code == "UNAVAILABLE":
            return "has not answered recently" in o.details
        if method.name == "TransferLeadership" and o.code == "DEADLINE_EXCEEDED":
            return cls.FromString(body).timeout_ms >= TRANSFER_TIMEOUT_S * 1000 * 0.9
        if method.name == "ChangeMembership" and o.code == "DEADLINE_EXCEEDED":
            # The node's own deadline (the request's timeout_ms) passed before the change was agreed, or
            # it was asked to wait longer than our deadline.
            return (
                "was not agreed within" in o.details
                or cls.FromString(body).timeout_ms >= TRANSFER_TIMEOUT_S * 1000 * 0.9
            )
        return False

    return allowed


def current_leader(cluster: LocalCluster) -> int | None:
    from node.observer import agreed_leader, views_of

    agreed = agreed_leader(views_of(cluster.client_addresses(), 0.5))
    return agreed[0] if agreed else None


def fuzz_handover(method: MethodDescriptor, request, fuzz_seed: int, stats: FuzzStats) -> None:
    cluster: LocalCluster = request.getfixturevalue("clusters").get("handover")
    quiet: LocalCluster = request.getfixturevalue("quiet_cluster")
    callers = {n.id: Caller(n.client_address, method, TRANSFER_TIMEOUT_S) for n in cluster.spec.nodes}
    to_quiet = {n.id: Caller(n.client_address, method) for n in quiet.spec.nodes}
    allowed = handover_allowed(method)
    hints = (("target_id", MEMBERS), ("timeout_ms", (0, 1, 50, 300, 1000)))
    if method.name == "ChangeMembership":  # real adds and removes of the cluster's own nodes
        hints = (("node_id", MEMBERS), ("action", (1, 2)), ("timeout_ms", (0, 1, 300, 1000)))

    @seed(seed_for(fuzz_seed, stats.rpc))
    @fuzz_settings(REQUESTS // BATCH)
    @given(st.sampled_from(MEMBERS), pf.batches(method.input_type, BATCH, hints=hints))
    def run(fallback: int, bodies: list[bytes]) -> None:
        target = current_leader(cluster) or fallback
        outcomes = callers[target].send(bodies)
        stats.add(outcomes)
        stats.cover(method, bodies, hints)
        check_statuses(method, bodies, outcomes, allowed)
        check_alive(cluster, method, bodies)
        if method.name not in HANDOVERS:
            return
        # A follower must refuse every handover request, and stay as it was.
        quiet_leader = current_leader(quiet)
        follower = next(n for n in MEMBERS if n != quiet_leader)
        before = cluster_snapshot(quiet)
        again = to_quiet[follower].send(bodies)
        after = cluster_snapshot(quiet)
        stats.notes["sent to a quiet follower too"] += len(bodies)
        accepted = [describe(method, b, a) for b, a in zip(bodies, again) if a.code == "OK" or not allowed(b, a)]
        assert not accepted, f"a follower did not refuse {method.name}:\n" + "\n".join(accepted[:5])
        drift = moved(before, after)
        assert not drift, f"{method.name} refused by a follower changed node state: {drift}"

    try:
        run()
    finally:
        for c in (*callers.values(), *to_quiet.values()):
            c.close()
    violations = safety_violations(cluster)
    assert not violations, violations
    stats.notes["leader changes"] = sum(1 for e in _views(cluster) if e["role"] == "leader")


def _views(cluster: LocalCluster):
    return [e for e in history(cluster) if e["kind"] == "view"]


# ---- FencedStore ----------------------------------------------------------------------------------

STORE_HINTS = (("writer_id", MEMBERS), ("epoch", (1, 2, 3, 5, 8, 13)), ("limit", (0, 1, 10, 1000, 10000, 10001)))
READ_HINTS = STORE_HINTS + (("after_seq", (0, 1, 5, 29, 30)),)


def fuzz_store_write(method: MethodDescriptor, request, fuzz_seed: int, stats: FuzzStats) -> None:
    store = request.getfixturevalue("fuzz_store")
    caller = Caller(store.address, method)
    cls = pf.message_class(method.input_type)
    position = {"seq": last_seq(store.address)}

    @seed(seed_for(fuzz_seed, stats.rpc))
    @fuzz_settings(REQUESTS // BATCH)
    @given(pf.batches(method.input_type, BATCH, hints=STORE_HINTS))
    def run(bodies: list[bytes]) -> None:
        outcomes = caller.send(bodies)
        stats.add(outcomes)
        stats.cover(method, bodies, STORE_HINTS)
        check_statuses(
            method, bodies, outcomes, lambda b, o: o.code in ("OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED")
        )
        assert store.alive(), f"the store died during a batch of Write; first request {bodies[0]!r}"
        entries = {e.seq: e for e in store_log(store.address, position["seq"])}
        written = {o.reply.seq: (cls.FromString(b), o.reply) for b, o in zip(bodies, outcomes) if o.code == "OK"}
        assert set(entries) == set(written), (
            f"log grew by {sorted(entries)} but OK replies were {sorted(written)}: a refused write left an entry"
            if set(entries) - set(written)
            else f"OK replies {sorted(set(written) - set(entries))} have no entry"
        )
        for seq, (req, reply) in written.items():
            e = entries[seq]
            assert (e.writer_id, e.epoch, e.key, e.value) == (req.writer_id, req.epoch, req.key, req.value), (e, req)
            assert (e.accepted, e.reason) == (reply.accepted, reply.reason), (e, reply)
        stats.notes["accepted"] += sum(1 for _, r in written.values() if r.accepted)
        stats.notes["fenced off"] += sum(1 for _, r in written.values() if not r.accepted)
        if entries:
            position["seq"] = max(entries)

    try:
        run()
    finally:
        caller.close()


def fuzz_store_read(method: MethodDescriptor, request, fuzz_seed: int, stats: FuzzStats) -> None:
    store = request.getfixturevalue("fuzz_store")
    caller = Caller(store.address, method)
    cls = pf.message_class(method.input_type)
    with grpc.insecure_channel(store.address) as ch:  # something to read
        writer = pb_grpc.FencedStoreStub(ch)
        for i in range(30):
            writer.Write(
                pb.WriteRequest(writer_id=1 + i % 3, epoch=1 + i // 3, key=f"k{i}", value=bytes([i]) * i), timeout=5
            )

    @seed(seed_for(fuzz_seed, stats.rpc))
    @fuzz_settings(REQUESTS // BATCH)
    @given(pf.batches(method.input_type, BATCH, hints=READ_HINTS))
    def run(bodies: list[bytes]) -> None:
        before = last_seq(store.address)
        outcomes = caller.send(bodies)
        after = last_seq(store.address)
        stats.add(outcomes)
        stats.cover(method, bodies, READ_HINTS)
        check_statuses(method, bodies, outcomes, lambda b, o: o.code in ("OK", "INVALID_ARGUMENT"))
        assert store.alive()
        assert before == after, f"ReadLog changed the log: last seq {before} -> {after}"
        for b, o in zip(bodies, outcomes):
            if o.code != "OK":
                continue
            req, seqs = cls.FromString(b), [e.seq for e in o.reply.entries]
            assert seqs == sorted(seqs) and all(s > req.after_seq for s in seqs), describe(method, b, o)
            assert len(seqs) <= (req.limit or 1000), describe(method, b, o)

    try:
        run()
    finally:
        caller.close()
