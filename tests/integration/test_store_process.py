"""The real store process over real gRPC: fencing, bad input, SIGKILL + restart (P5), CLI errors."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.launcher.cluster import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
RPC_TIMEOUT_S = 5.0
EXIT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class StoreProcess:
    proc: subprocess.Popen
    address: str
    log_path: Path


def store_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "node.store.server", "--insecure", *args]  # the store alone: plaintext


def read_line(proc: subprocess.Popen, timeout_s: float, log_path: Path) -> str:
    """The first stdout line of proc, or a failure that shows its stderr."""
    deadline = time.monotonic() + timeout_s
    fd = proc.stdout.fileno()
    data = b""
    while b"\n" not in data:
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            raise TimeoutError(f"no listening line after {timeout_s:.0f}s; stderr: {log_path.read_text()}")
        if select.select([fd], [], [], remaining_s)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"store exited ({proc.wait(EXIT_TIMEOUT_S)}); stderr: {log_path.read_text()}")
            data += chunk
    return data.decode()


@pytest.fixture
def start_store(tmp_path: Path) -> Iterator[Callable[[Path], StoreProcess]]:
    """Start a store on port 0 over a data dir; every process started is killed by pid at teardown."""
    started: list[subprocess.Popen] = []

    def start(data_dir: Path) -> StoreProcess:
        log_path = tmp_path / f"store-{len(started)}.stderr"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                store_argv("--listen", "127.0.0.1:0", "--data-dir", str(data_dir)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
            )
        started.append(proc)
        event = json.loads(read_line(proc, START_TIMEOUT_S, log_path))
        assert event["event"] == "listening" and event["pid"] == proc.pid, event
        assert event["address"].startswith("127.0.0.1:") and not event["address"].endswith(":0"), event
        return StoreProcess(proc, event["address"], log_path)

    yield start
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(EXIT_TIMEOUT_S)
        proc.stdout.close()


def write(
    stub: pb_grpc.FencedStoreStub, writer_id: int, epoch: int, key: str = "k", value: bytes = b""
) -> pb.WriteReply:
    return stub.Write(pb.WriteRequest(writer_id=writer_id, epoch=epoch, key=key, value=value), timeout=RPC_TIMEOUT_S)


def read_all(stub: pb_grpc.FencedStoreStub, limit: int = 0) -> tuple[list[pb.LogEntry], int, int]:
    """Every log entry, paging by after_seq; plus the highest epoch and its writer."""
    entries: list[pb.LogEntry] = []
    while True:
        reply = stub.ReadLog(
            pb.ReadLogRequest(after_seq=entries[-1].seq if entries else 0, limit=limit), timeout=RPC_TIMEOUT_S
        )
        if not reply.entries:
            return entries, reply.highest_epoch, reply.highest_epoch_writer
        entries.extend(reply.entries)


def store_errors(store: StoreProcess) -> list[str]:
    """The store's stderr lines other than the --insecure warning (plaintext stores, tests not about security)."""
    return [ln for ln in store.log_path.read_text().splitlines() if '"event": "insecure"' not in ln]


def test_writes_are_fenced_and_read_log_returns_every_attempt(start_store, tmp_path: Path):
    store = start_store(tmp_path / "data")
    with grpc.insecure_channel(store.address) as ch:
        stub = pb_grpc.FencedStoreStub(ch)
        replies = [
            write(stub, 1, 2, value=b"a"),  # accepted: writer 1 owns epoch 2
            write(stub, 1, 2, value=b"b"),  # accepted: the owner again
            write(stub, 2, 2, value=b"c"),  # rejected: epoch 2 is writer 1's
            write(stub, 2, 3, value=b"d"),  # accepted: writer 2 owns epoch 3
            write(stub, 1, 2, value=b"e"),  # rejected: stale
        ]
        assert [(r.accepted, r.highest_epoch, r.seq, r.reason) for r in replies] == [
            (True, 2, 1, ""),
            (True, 2, 2, ""),
            (False, 2, 3, "epoch 2 already owned by writer 1"),
            (True, 3, 4, ""),
            (False, 3, 5, "stale epoch 2 < highest 3"),
        ]
        entries, highest_epoch, owner_id = read_all(stub, limit=2)
        assert (highest_epoch, owner_id) == (3, 2)
        assert [(e.seq, e.writer_id, e.epoch, e.key, e.value, e.accepted, e.reason) for e in entries] == [
            (1, 1, 2, "k", b"a", True, ""),
            (2, 1, 2, "k", b"b", True, ""),
            (3, 2, 2, "k", b"c", False, "epoch 2 already owned by writer 1"),
            (4, 2, 3, "k", b"d", True, ""),
            (5, 1, 2, "k", b"e", False, "stale epoch 2 < highest 3"),
        ]
        assert all(e.recorded_unix_ns > 0 and e.recorded_monotonic_ns > 0 for e in entries)


BAD_CALLS = [
    ("Write", pb.WriteRequest(writer_id=0, epoch=1, key="k"), "writer_id must be in 1.."),
    ("Write", pb.WriteRequest(writer_id=1, epoch=0, key="k"), "epoch must be in 1.."),
    ("Write", pb.WriteRequest(writer_id=1, epoch=2**63, key="k"), "epoch must be in 1.."),
    ("Write", pb.WriteRequest(writer_id=1, epoch=1, key=""), "key must not be empty"),
    ("Write", pb.WriteRequest(writer_id=1, epoch=1, key="k" * 257), "key must be at most 256 bytes"),
    (
        "Write",
        pb.WriteRequest(writer_id=1, epoch=1, key="k", value=b"x" * (64 * 1024 + 1)),
        "value must be at most 65536 bytes",
    ),
    ("ReadLog", pb.ReadLogRequest(limit=10_001), "limit must be in 1..10000"),
    ("ReadLog", pb.ReadLogRequest(after_seq=2**63), "after_seq must be in 0.."),
]


def test_bad_input_is_invalid_argument_records_nothing_and_the_store_keeps_serving(start_store, tmp_path: Path):
    store = start_store(tmp_path / "data")
    with grpc.insecure_channel(store.address) as ch:
        stub = pb_grpc.FencedStoreStub(ch)
        for rpc, request, words in BAD_CALLS:
            with pytest.raises(grpc.RpcError) as info:
                getattr(stub, rpc)(request, timeout=RPC_TIMEOUT_S)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (rpc, info.value.details())
            assert words in info.value.details(), (rpc, info.value.details())
        assert write(stub, 1, 1) == pb.WriteReply(accepted=True, highest_epoch=1, seq=1)
        entries, _, _ = read_all(stub)
        assert [e.seq for e in entries] == [1]
    assert store.proc.poll() is None


def test_acknowledged_writes_survive_sigkill_and_stale_epochs_stay_rejected(start_store, tmp_path: Path):
    """P5: SIGKILL the store while writes are in flight; everything it acknowledged is still there."""
    data_dir = tmp_path / "data"
    store = start_store(data_dir)
    acked: list[tuple[pb.WriteRequest, pb.WriteReply]] = []
    stop = threading.Event()

    def writer() -> None:
        with grpc.insecure_channel(store.address) as ch:
            stub = pb_grpc.FencedStoreStub(ch)
            i = 0
            while not stop.is_set():
                i += 1
                # Two writers taking turns, epochs rising every 4 attempts: a mix of accepts and rejects.
                request = pb.WriteRequest(writer_id=1 + i % 2, epoch=1 + i // 4, key=f"k{i}", value=str(i).encode())
                try:
                    reply = stub.Write(request, timeout=RPC_TIMEOUT_S)
                except grpc.RpcError:
                    return  # the store died during this call: its outcome is unknown, not acknowledged
                acked.append((request, reply))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(acked) >= 40, 60, what="40 acknowledged writes")
        os.kill(store.proc.pid, signal.SIGKILL)
        store.proc.wait(EXIT_TIMEOUT_S)
    finally:
        stop.set()
        thread.join(RPC_TIMEOUT_S * 2)
    assert not thread.is_alive()
    assert any(reply.accepted for _, reply in acked) and any(not reply.accepted for _, reply in acked)

    restarted = start_store(data_dir)
    with grpc.insecure_channel(restarted.address) as ch:
        stub = pb_grpc.FencedStoreStub(ch)
        entries, highest_epoch, owner_id = read_all(stub)
        by_seq = {e.seq: e for e in entries}
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        for request, reply in acked:
            entry = by_seq.get(reply.seq)
            assert entry is not None, f"acknowledged write seq {reply.seq} lost"
            assert (entry.writer_id, entry.epoch, entry.key, entry.value, entry.accepted, entry.reason) == (
                request.writer_id,
                request.epoch,
                request.key,
                request.value,
                reply.accepted,
                reply.reason,
            )
        last_accepted = max((e for e in entries if e.accepted), key=lambda e: e.seq)
        assert (highest_epoch, owner_id) == (last_accepted.epoch, last_accepted.writer_id)
        assert highest_epoch >= max(r.epoch for r, reply in acked if reply.accepted)

        stale = write(stub, owner_id, highest_epoch - 1)
        assert not stale.accepted and stale.reason == f"stale epoch {highest_epoch - 1} < highest {highest_epoch}"
        other = 1 if owner_id == 2 else 2
        taken = write(stub, other, highest_epoch)
        assert not taken.accepted and taken.reason == f"epoch {highest_epoch} already owned by writer {owner_id}"
        assert write(stub, other, highest_epoch + 1).accepted


def test_health_and_reflection_name_the_store(start_store, tmp_path: Path):
    store = start_store(tmp_path / "data")
    with grpc.insecure_channel(store.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", "bullyproof.v1.FencedStore"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT_S)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        services = ProtoReflectionDescriptorDatabase(ch).get_services()
        assert {"bullyproof.v1.FencedStore", "grpc.health.v1.Health"} <= set(services)


def test_sigterm_stops_gracefully_and_stdout_was_one_line(start_store, tmp_path: Path):
    store = start_store(tmp_path / "data")
    os.kill(store.proc.pid, signal.SIGTERM)
    assert store.proc.wait(EXIT_TIMEOUT_S) == 0
    assert store.proc.stdout.read() == b""  # nothing after the listening line
    # stderr holds only the --insecure warning (this test is about stopping, not security)
    assert store_errors(store) == []


@pytest.mark.parametrize(
    "args, words",
    [
        (["--data-dir", "DATA"], "the following arguments are required: --listen"),
        (["--listen", "127.0.0.1:0"], "the following arguments are required: --data-dir"),
        (["--listen", "nope", "--data-dir", "DATA"], "--listen 'nope' is not HOST:PORT"),
        (["--listen", "127.0.0.1:70000", "--data-dir", "DATA"], "port 70000 outside 0..65535"),
        (["--listen", "127.0.0.1:x", "--data-dir", "DATA"], "non-numeric port"),
        (["--listen", "127.0.0.1:0", "--data-dir", "FILE"], "cannot create it"),
    ],
)
def test_bad_arguments_exit_2_with_an_error_naming_the_problem(tmp_path: Path, args: list[str], words: str):
    (tmp_path / "file").write_text("not a directory")
    args = [str(tmp_path / "data") if a == "DATA" else str(tmp_path / "file") if a == "FILE" else a for a in args]
    done = subprocess.run(store_argv(*args), capture_output=True, text=True, cwd=ROOT, timeout=START_TIMEOUT_S)
    assert done.returncode == 2
    assert done.stdout == ""
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("bullyproof store: error: ") and words in last_line, done.stderr
    assert not (tmp_path / "data").exists()
