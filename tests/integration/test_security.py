"""Let no one in: mutual TLS between members, ids bound to certificates, admin-only handovers, two
ports with separate services, and a store that takes writes only from nodes. Real processes, real TLS."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import channel_credentials, dial_as
from node.config import ConfigError
from node.launcher.cluster import LocalCluster, local_spec, read_cluster_file
from node.tls import MEMBER_NAME, STORE_NAME, Tls, make_cluster_certs, node_name

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory):
    """One mutual-TLS cluster of 3 for the whole module (the tests below change nothing, or say so)."""
    base = tmp_path_factory.mktemp("secure")
    spec = local_spec(3, certs_dir=str(base / "certs"))
    cluster = LocalCluster(spec, base / "cluster", env=dict(os.environ))
    cluster.start()
    try:
        cluster.wait_for_agreement(timeout_s=15)
        yield cluster
    finally:
        cluster.stop()


def certs(cluster: LocalCluster) -> Path:
    return Path(cluster.spec.certs_dir)


def channel(address: str, tls: Tls | None, name: str = MEMBER_NAME) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, channel_credentials(tls), options=[("grpc.ssl_target_name_override", name)])


def as_holder(cluster: LocalCluster, holder: str) -> Tls:
    return Tls.in_dir(certs(cluster), holder)


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def status(cluster: LocalCluster, node_id: int) -> pb.NodeStatus:
    with channel(cluster.spec.node(node_id).client_address, as_holder(cluster, "client")) as ch:
        return pb_grpc.LeadershipStub(ch).GetStatus(pb.GetStatusRequest(), timeout=2)


def test_each_port_serves_only_its_own_services(secure):
    node = secure.spec.node(1)
    admin = as_holder(secure, "admin")
    me = as_holder(secure, "node-2")
    with channel(node.peer_address, admin, node_name(1)) as ch:
        assert (
            code_of(lambda: pb_grpc.LeadershipStub(ch).GetLeader(pb.GetLeaderRequest(), timeout=2))
            == grpc.StatusCode.UNIMPLEMENTED
        )
        assert (
            code_of(lambda: health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2))
            == grpc.StatusCode.UNIMPLEMENTED
        )
    with channel(node.client_address, me, node_name(1)) as ch:
        hb = pb.PeerMessage(sender_id=2, receiver_id=1, epoch=1)
        assert code_of(lambda: pb_grpc.PeerStub(ch).Heartbeat(hb, timeout=2)) == grpc.StatusCode.UNIMPLEMENTED
        assert pb_grpc.LeadershipStub(ch).GetLeader(pb.GetLeaderRequest(), timeout=2).known


def test_a_member_cannot_speak_for_another_and_nothing_changes(secure):
    """Node 1's certificate, a message that says it comes from node 3 (the leader): refused, and the
    receiver's epoch, promise and leader stay as they were."""
    target = secure.spec.node(2)
    before = status(secure, 2)
    forged = pb.PeerMessage(sender_id=3, receiver_id=2, epoch=before.epoch + 10, round=1)
    with channel(target.peer_address, as_holder(secure, "node-1"), node_name(2)) as ch:
        stub = pb_grpc.PeerStub(ch)
        for rpc in ("Heartbeat", "Coordinator", "Election"):
            with pytest.raises(grpc.RpcError) as info:
                getattr(stub, rpc)(forged, timeout=2)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, rpc
            assert "certificate names node 1" in info.value.details()
        # The heartbeat stream checks every message as the unary call does: a forged one ends it.
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Heartbeats(iter([forged]), timeout=2))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "certificate names node 1" in info.value.details()
    after = status(secure, 2)
    assert (after.epoch, after.promised_epoch, after.promised_to, after.leader_id) == (
        before.epoch,
        before.promised_epoch,
        before.promised_to,
        before.leader_id,
    )


@pytest.mark.parametrize("holder", ["client", "admin", "store"])
def test_only_node_certificates_may_send_peer_messages(secure, holder):
    target = secure.spec.node(1)
    msg = pb.PeerMessage(sender_id=2, receiver_id=1, epoch=1)
    with channel(target.peer_address, as_holder(secure, holder), node_name(1)) as ch:
        assert code_of(lambda: pb_grpc.PeerStub(ch).Heartbeat(msg, timeout=2)) == grpc.StatusCode.PERMISSION_DENIED
        stream = lambda: list(pb_grpc.PeerStub(ch).Heartbeats(iter([msg]), timeout=2))  # noqa: E731
        assert code_of(stream) == grpc.StatusCode.PERMISSION_DENIED


def test_strangers_are_refused_at_the_handshake(secure, tmp_path):
    """Plaintext, and a certificate from another CA (even one naming node 1): no RPC runs at all."""
    stranger = make_cluster_certs(tmp_path / "other-ca", 3)
    for address in (secure.spec.node(1).peer_address, secure.spec.node(1).client_address, secure.spec.store_address):
        for tls in (None, stranger["node-1"], stranger["admin"]):
            with channel(address, tls, node_name(1)) as ch:
                code = code_of(lambda: health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2))
                assert code == grpc.StatusCode.UNAVAILABLE, (address, tls)


def test_a_dialler_verifies_the_node_behind_the_address_not_the_address(secure):
    """What keeps a proxy (Toxiproxy) or a mixed-up address from passing for a peer: peers verify
    node_name(N) in the certificate. Node 1's port presented as node 2 fails verification."""
    with channel(secure.spec.node(1).peer_address, as_holder(secure, "node-3"), node_name(2)) as ch:
        msg = pb.PeerMessage(sender_id=3, receiver_id=1, epoch=1)
        assert code_of(lambda: pb_grpc.PeerStub(ch).Heartbeat(msg, timeout=2)) == grpc.StatusCode.UNAVAILABLE


def test_clients_read_but_only_admins_and_the_node_itself_hand_over(secure):
    leader_id = next(n.id for n in secure.spec.nodes if status(secure, n.id).role == pb.ROLE_LEADER)
    address = secure.spec.node(leader_id).client_address
    other_node = next(n.id for n in secure.spec.nodes if n.id != leader_id)
    for holder in ("client", f"node-{other_node}"):
        with channel(address, as_holder(secure, holder)) as ch:
            stub = pb_grpc.LeadershipStub(ch)
            assert stub.GetLeader(pb.GetLeaderRequest(), timeout=2).leader_id == leader_id
            assert stub.GetStatus(pb.GetStatusRequest(), timeout=2).node_id == leader_id
            first = next(stub.WatchLeader(pb.WatchLeaderRequest(), timeout=2))
            assert first.leader_id == leader_id
            for call in (
                lambda: stub.Resign(pb.ResignRequest(), timeout=2),
                lambda: stub.TransferLeadership(pb.TransferRequest(target_id=1), timeout=2),
                lambda: stub.ChangeMembership(
                    pb.MembershipRequest(action=pb.MembershipRequest.ACTION_REMOVE, node_id=1), timeout=2
                ),
            ):
                with pytest.raises(grpc.RpcError) as info:
                    call()
                assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
                # (ChangeMembership: not even a node's own, without --self-join: test_k8s_members.py)
                assert (
                    "needs an admin certificate" in info.value.details()
                    or "needs a certificate of kind admin or node" in info.value.details()
                )
    assert status(secure, leader_id).role == pb.ROLE_LEADER, "a refused Resign must not step down"
    # An admin, or the node's own certificate, at a follower gets past authorisation to the precise
    # answer: not the leader.
    for holder in ("admin", f"node-{other_node}"):
        with channel(secure.spec.node(other_node).client_address, as_holder(secure, holder)) as ch:
            assert (
                code_of(lambda: pb_grpc.LeadershipStub(ch).Resign(pb.ResignRequest(), timeout=2))
                == grpc.StatusCode.FAILED_PRECONDITION
            )


def test_the_store_takes_writes_only_from_nodes_under_their_own_id(secure):
    with channel(secure.spec.store_address, as_holder(secure, "admin"), STORE_NAME) as ch:
        log_before = list(pb_grpc.FencedStoreStub(ch).ReadLog(pb.ReadLogRequest(), timeout=2).entries)
    with channel(secure.spec.store_address, as_holder(secure, "client"), STORE_NAME) as ch:
        store = pb_grpc.FencedStoreStub(ch)
        assert code_of(lambda: store.ReadLog(pb.ReadLogRequest(), timeout=2)) == grpc.StatusCode.PERMISSION_DENIED
        big_epoch = pb.WriteRequest(writer_id=1, epoch=10**9, key="claim/1/1000000000", value=b"")
        assert code_of(lambda: store.Write(big_epoch, timeout=2)) == grpc.StatusCode.PERMISSION_DENIED
    with channel(secure.spec.store_address, as_holder(secure, "node-1"), STORE_NAME) as ch:
        store = pb_grpc.FencedStoreStub(ch)
        as_other = pb.WriteRequest(writer_id=2, epoch=10**9, key="claim/2/1000000000", value=b"")
        with pytest.raises(grpc.RpcError) as info:
            store.Write(as_other, timeout=2)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "names node 1" in info.value.details()
        after = list(store.ReadLog(pb.ReadLogRequest(), timeout=2).entries)
    assert not any(e.epoch >= 10**9 for e in after), "a refused write must not reach the log"
    assert [e.seq for e in after[: len(log_before)]] == [e.seq for e in log_before]


def _node_argv(cluster: LocalCluster, extra: list[str], node_id: int = 1) -> list[str]:
    spec = dataclasses.replace(cluster.spec, certs_dir=None)
    args = [a for a in spec.node_args(spec.node(node_id), "/tmp/never", None) if a != "--insecure"]
    return [sys.executable, "-m", "node.cli", *args, *extra]


@pytest.mark.parametrize(
    "extra, words",
    [
        ([], "give exactly one of --certs"),
        (["--certs", "CERTS", "--insecure"], "give exactly one of --certs"),
        (["--ca", "CERTS/ca.pem"], "go together"),
        (
            ["--ca", "CERTS/ca.pem", "--cert", "CERTS/node-2.pem", "--key", "CERTS/node-2.key"],
            "names bullyproof://node/2",
        ),
        (
            ["--ca", "CERTS/ca.pem", "--cert", "CERTS/admin.pem", "--key", "CERTS/admin.key"],
            "but this process is bullyproof://node/1",
        ),
        (["--certs", "/nonexistent"], "cannot read /nonexistent/ca.pem"),
    ],
)
def test_a_node_refuses_to_start_without_usable_certificates(secure, extra, words):
    argv = _node_argv(secure, [a.replace("CERTS", str(certs(secure))) for a in extra])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert words in out.stderr and "Traceback" not in out.stderr


def test_the_health_command_takes_certificates(secure):
    address = secure.spec.node(1).client_address

    def run(*a: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "node.cli", "health", address, *a], capture_output=True, text=True, timeout=30
        )

    ok = run("--certs", str(certs(secure)))
    assert ok.returncode == 0 and ok.stdout.strip() == "SERVING", ok.stderr
    plain = run("--insecure")
    assert plain.returncode == 1 and plain.stdout.strip() == "UNAVAILABLE"
    neither = run()
    assert neither.returncode == 2 and "give exactly one of" in neither.stderr


def test_a_refused_second_start_leaves_the_running_clusters_certificates_alone(secure):
    # cluster up on the directory of a running cluster is refused; it must not reissue the running
    # cluster's keys on the way (admin.key is also the root of the dashboard's token).
    before = {p.name: p.read_bytes() for p in certs(secure).iterdir()}
    with pytest.raises(ConfigError, match="already running"):
        LocalCluster(secure.spec, secure.dir, env=dict(os.environ)).start()
    assert {p.name: p.read_bytes() for p in certs(secure).iterdir()} == before


def test_a_node_rereads_its_certificate_files_for_new_connections(make_cluster, tmp_path):
    """Rotation without a restart: replace node 1's files (here with another CA's, so the change is
    visible), and the next handshake uses them: the new CA's admin gets in, the old one no longer does."""
    cluster = make_cluster(2, secure=True)
    cluster.wait_for_agreement(timeout_s=15)
    old = certs(cluster)
    new = make_cluster_certs(tmp_path / "rotated", 2)
    address = cluster.spec.node(1).client_address

    def get_leader(tls: Tls) -> grpc.StatusCode:
        with channel(address, tls) as ch:  # a fresh channel: a new connection, a new handshake
            try:
                pb_grpc.LeadershipStub(ch).GetLeader(pb.GetLeaderRequest(), timeout=2)
                return grpc.StatusCode.OK
            except grpc.RpcError as exc:
                return exc.code()

    kept = {
        p: p.read_bytes() for p in (old / "ca.pem", old / "admin.pem", old / "admin.key")
    }  # the old admin's own copy
    old_admin = Tls(*(tmp_path / f"old-admin{suffix}" for suffix in (".ca", ".pem", ".key")))
    for path, src in zip((old_admin.ca, old_admin.cert, old_admin.key), kept.values()):
        path.write_bytes(src)
    assert get_leader(old_admin) == grpc.StatusCode.OK
    assert get_leader(new["admin"]) == grpc.StatusCode.UNAVAILABLE
    for name in ("ca.pem", "node-1.pem", "node-1.key"):
        (old / name).write_bytes((tmp_path / "rotated" / name).read_bytes())
    assert get_leader(new["admin"]) == grpc.StatusCode.OK
    assert get_leader(old_admin) == grpc.StatusCode.UNAVAILABLE


def test_metrics_need_a_client_certificate_too(secure):
    import ssl
    import urllib.error
    import urllib.request

    address = secure.spec.node(1).metrics_address
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://{address}/metrics", timeout=2).read()
    context = ssl.create_default_context(cafile=str(certs(secure) / "ca.pem"))
    context.check_hostname = False  # the address is an IP; the CA is what matters here
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):  # no client certificate
        urllib.request.urlopen(f"https://{address}/metrics", timeout=2, context=context).read()
    context.load_cert_chain(certs(secure) / "client.pem", certs(secure) / "client.key")
    with urllib.request.urlopen(f"https://{address}/metrics", timeout=2, context=context) as reply:
        assert b"bullyproof_epoch" in reply.read()


def test_an_unfinished_handshake_does_not_stall_metrics(secure):
    """One connection that never says anything must not block a scraper that has a certificate."""
    import socket
    import ssl
    import urllib.request

    address = secure.spec.node(2).metrics_address
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(certs(secure) / "ca.pem"))
    context.check_hostname = False
    context.load_cert_chain(certs(secure) / "client.pem", certs(secure) / "client.key")
    with socket.create_connection((host, int(port))):
        with urllib.request.urlopen(f"https://{address}/metrics", timeout=3, context=context) as reply:
            assert b"bullyproof_epoch" in reply.read()


def _record_with_certs(cluster: LocalCluster, where: Path, certs_dir: Path | None) -> Path:
    """A copy of the cluster's record (cluster.json) whose operator certificates are `certs_dir`
    (None: plaintext), as a user with the wrong directory, or none, would have."""
    import json

    record = json.loads((cluster.dir / "cluster.json").read_text())
    record.pop("certs")
    if certs_dir is not None:
        record["certs"] = str(certs_dir)
    where.mkdir()
    (where / "cluster.json").write_text(json.dumps(record))
    return where


@pytest.mark.parametrize("who", ["plaintext", "foreign-ca"])
def test_the_cli_says_the_handshake_was_refused_and_what_to_check(secure, tmp_path, who):
    foreign = tmp_path / "other-ca"
    make_cluster_certs(foreign, 3)
    view = _record_with_certs(secure, tmp_path / "view", None if who == "plaintext" else foreign)
    for command in ("leader", "status"):
        out = subprocess.run(
            [sys.executable, "-m", "node.cli", command, "--dir", str(view)], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        error = out.stderr.strip().splitlines()[-1]
        assert error.startswith("bullyproof: error: handshake refused: "), error
        if who == "plaintext":
            assert "expects mutual TLS and we dialled in plaintext" in error and "--certs" in error, error
        else:
            assert f"not signed by {foreign / 'ca.pem'}" in error and str(foreign) in error, error

    # health: a certificate of another CA, presented with the right CA: the node refuses it.
    address = secure.spec.node(1).client_address
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "node.cli",
            "health",
            address,
            "--ca",
            str(certs(secure) / "ca.pem"),
            "--cert",
            str(foreign / "client.pem"),
            "--key",
            str(foreign / "client.key"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and out.stdout.strip() == "UNAVAILABLE"
    assert f"it refused our certificate {foreign / 'client.pem'}" in out.stderr, out.stderr


def test_a_cluster_that_is_down_is_not_called_a_refused_handshake(tmp_path):
    cluster = LocalCluster(local_spec(2, certs_dir=str(tmp_path / "certs")), tmp_path / "cluster", env=dict(os.environ))
    cluster.start()
    cluster.stop()
    out = subprocess.run(
        [sys.executable, "-m", "node.cli", "leader", "--dir", str(cluster.dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "handshake" not in out.stderr, out.stderr


@pytest.mark.parametrize("who", ["no-certificate", "foreign-ca", "foreign-client-certificate"])
def test_the_sdk_raises_handshake_refused_saying_what_to_check(secure, tmp_path, who):
    import asyncio

    from node.client import FencedWriter, HandshakeRefused, LeaderClient, LeaseToken

    foreign = make_cluster_certs(tmp_path / "other-ca", 3)
    own = as_holder(secure, "node-1")
    tls = {
        "no-certificate": None,
        "foreign-ca": foreign["node-1"],
        "foreign-client-certificate": Tls(own.ca, foreign["node-1"].cert, foreign["node-1"].key),
    }[who]
    words = {
        "no-certificate": "expects mutual TLS and we dialled in plaintext",
        "foreign-ca": f"not signed by {foreign['node-1'].ca}",
        "foreign-client-certificate": f"it refused our certificate {foreign['node-1'].cert}",
    }[who]
    security = {"tls": tls} if tls else {"insecure": True}
    # This process dials the cluster as its admin (the fixture read its record): forget that here,
    # or insecure=True would present the admin's certificate from that book.
    addresses = [n.client_address for n in secure.spec.nodes] + [secure.spec.store_address]
    for address in addresses:
        dial_as(address, None)

    async def ask() -> None:
        async with LeaderClient([n.client_address for n in secure.spec.nodes], deadline_s=1, **security) as client:
            with pytest.raises(HandshakeRefused, match=words):
                await client.wait_for_leader(timeout_s=2)
        async with FencedWriter(secure.spec.store_address, writer_id=1, **security) as writer:
            with pytest.raises(HandshakeRefused, match=words) as info:
                await writer.write(LeaseToken(1, 1), "k", b"v")
            assert isinstance(info.value.__cause__, grpc.aio.AioRpcError)

    try:
        asyncio.run(ask())
    finally:
        read_cluster_file(secure.dir)  # dial it as its admin again


@pytest.mark.parametrize("plaintext", [False, True], ids=["tls", "plaintext"])
def test_a_link_cut_at_connect_is_not_called_a_refused_handshake(secure, plaintext):
    """A proxy that closes every connection at once (a cut Toxiproxy link) looks to gRPC like a server
    refusing us mid-handshake ("Socket closed"): the SDK must raise the plain UNAVAILABLE, retryable,
    not HandshakeRefused, which tells the user to fix certificates that are fine."""
    import asyncio
    import socket
    import threading

    from node.client import FencedWriter, HandshakeRefused, LeaseToken

    cutter = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{cutter.getsockname()[1]}"

    def close_every_connection() -> None:
        with contextlib.suppress(OSError):
            while True:
                cutter.accept()[0].close()

    threading.Thread(target=close_every_connection, daemon=True).start()
    security = {"insecure": True} if plaintext else {"tls": as_holder(secure, "node-1")}

    async def write() -> None:
        async with FencedWriter(address, writer_id=1, deadline_s=2, **security) as writer:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await writer.write(LeaseToken(1, 1), "k", b"v")
            assert not isinstance(info.value, HandshakeRefused)
            # ("Socket closed" mostly; a busy machine may see the reset first, which was never mistaken)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE

    try:
        asyncio.run(write())
    finally:
        cutter.close()
