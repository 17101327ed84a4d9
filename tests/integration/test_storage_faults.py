"""A node whose promise cannot be persisted stops without answering; a bad promise file stops it starting.

The fault is real, not mocked: the state directory's `promise.tmp` (where every save writes first) is
made a directory, so the node's first save fails with EISDIR, which root cannot bypass the way it
bypasses permission bits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from lone_node import lone_node_argv

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.core.membership import initial
from node.launcher.cluster import LocalCluster, local_spec, pid_alive, wait_for
from node.launcher.ports import free_port
from node.runtime.state import PROMISE_FILE, PROMISE_TMP
from node.runtime.wire import membership_to_pb

pytestmark = pytest.mark.integration

EXIT_STORAGE_FAULT = 3


def break_persistence(state: Path) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / PROMISE_TMP).mkdir()


class NodeProcess:
    """One `bullyproof node` whose two other members never answer (nothing listens there)."""

    def __init__(self, tmp_path: Path, state: Path, election_timeout_ms: int = 10_000) -> None:
        self.peer = f"127.0.0.1:{free_port()}"
        self.client = f"127.0.0.1:{free_port()}"
        self.stdout_path, self.stderr_path = tmp_path / "node.out", tmp_path / "node.err"
        argv = [
            sys.executable,
            "-m",
            "node.cli",
            "node",
            "--insecure",
            "--id",
            "1",
            "--listen",
            self.peer,
            "--client-listen",
            self.client,
            "--peers",
            f"2=127.0.0.1:{free_port()},3=127.0.0.1:{free_port()}",
            "--state-dir",
            str(state),
            "--heartbeat-interval-ms",
            str(election_timeout_ms // 5),
            "--election-timeout-ms",
            str(election_timeout_ms),
        ]
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    def wait_serving(self, timeout_s: float = 15) -> None:
        def serving() -> bool:
            assert self.proc.poll() is None, f"node exited early: {self.stderr_path.read_text()}"
            with grpc.insecure_channel(self.client) as ch:
                try:
                    reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=0.3)
                except grpc.RpcError:
                    return False
            return reply.status == health_pb2.HealthCheckResponse.SERVING

        wait_for(serving, timeout_s, what="the node to serve")

    def log_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout_path.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def node_process(tmp_path: Path):
    started: list[NodeProcess] = []

    def start(state: Path, **kwargs) -> NodeProcess:
        started.append(NodeProcess(tmp_path, state, **kwargs))
        return started[-1]

    yield start
    for n in started:
        n.stop()


def assert_fail_stop_reported(node: NodeProcess, state: Path) -> None:
    assert node.proc.wait(timeout=10) == EXIT_STORAGE_FAULT
    stderr = node.stderr_path.read_text()
    assert "Traceback" not in stderr
    assert stderr.count("\n") == 1 and stderr.startswith("bullyproof: error: node 1 stopped: cannot persist"), stderr
    assert str(state / PROMISE_FILE) in stderr and "Is a directory" in stderr
    errors = [ln for ln in node.log_lines() if ln["level"] == "error"]
    assert [e.get("event") for e in errors] == ["persist_failed"], errors
    assert errors[0]["file"] == str(state / PROMISE_FILE) and errors[0]["failed_path"] == str(state / PROMISE_TMP)
    assert errors[0]["os_error"] == "Is a directory"
    assert not (state / PROMISE_FILE).exists(), "nothing was persisted"


def test_unpersistable_ack_is_never_sent_and_the_node_stops(tmp_path, node_process):
    state = tmp_path / "state"
    break_persistence(state)
    node = node_process(state)  # a 10 s election timeout: the Coordinator below is its first promise
    node.wait_serving()
    with grpc.insecure_channel(node.peer) as ch:
        with pytest.raises(grpc.RpcError) as info:
            start = initial((1, 2, 3))
            first = pb.PeerMessage(
                sender_id=3, receiver_id=1, epoch=1, configuration_id=start.id, configuration=membership_to_pb(start)
            )
            pb_grpc.PeerStub(ch).Coordinator(first, timeout=5)
    # Not a granted ack, not any ack: the call fails, and says why.
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
    assert "cannot persist the promise" in info.value.details()
    assert_fail_stop_reported(node, state)


def test_unpersistable_self_vote_stops_the_node_before_it_campaigns(tmp_path, node_process):
    state = tmp_path / "state"
    break_persistence(state)
    node = node_process(state, election_timeout_ms=500)  # it times out and votes for itself
    assert_fail_stop_reported(node, state)
    assert not any(ln["msg"] == "became leader" for ln in node.log_lines())


def test_a_cluster_elects_without_the_node_that_cannot_persist(tmp_path):
    cluster = LocalCluster(local_spec(3), tmp_path / "cluster", env=dict(os.environ))
    broken = cluster.dir / "node-3" / "state"
    break_persistence(broken)  # node 3, the one Bully prefers
    data = cluster.start()
    try:
        pid3 = data["nodes"][2]["pid"]
        wait_for(lambda: not pid_alive(pid3), 15, what="node 3 to stop")
        leader, epoch = cluster.wait_for_agreement(timeout_s=15, exclude={3})
        assert leader == 2 and epoch >= 1
        log = (cluster.dir / "node-3" / "node.log").read_text()
        assert f"cannot persist the promise to {broken / PROMISE_FILE}" in log
        assert '"event": "persist_failed"' in log and "Traceback" not in log
        for n in (1, 2, 3):
            events = cluster.dir / f"node-{n}" / "events.jsonl"
            views = [json.loads(ln) for ln in events.read_text().splitlines() if '"kind": "view"' in ln]
            assert all(v["leader"] != 3 for v in views), f"node {n} saw node 3 lead: {views}"
    finally:
        cluster.stop()


# ---- refusing to start --------------------------------------------------------------------------


def run_cli_node(state: Path, timeout_s: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(lone_node_argv(state), capture_output=True, text=True, timeout=timeout_s)


@pytest.mark.parametrize(
    "content, words",
    [(b"", "is empty"), (b'{"epoch": 3, "leader', "is corrupt"), (b"\x89PNG\r\n\x1a\n\x00garbage", "is corrupt")],
    ids=["empty", "half-object", "garbage"],
)
def test_a_bad_promise_file_refuses_to_start_in_one_line(tmp_path, content, words):
    state = tmp_path / "state"
    state.mkdir()
    (state / PROMISE_FILE).write_bytes(content)
    result = run_cli_node(state)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("bullyproof: error: "), result.stderr
    assert str(state / PROMISE_FILE) in result.stderr and words in result.stderr
    assert result.stdout == "", "it never booted"
    assert (state / PROMISE_FILE).read_bytes() == content, "the evidence is left as it was"


def test_a_leftover_temp_file_is_ignored_and_the_promise_kept(tmp_path, node_process):
    state = tmp_path / "state"
    state.mkdir()
    (state / PROMISE_FILE).write_text('{"epoch": 4, "leader_id": 3}')
    (state / PROMISE_TMP).write_text('{"epoch": 9, "lea')  # a write that crashed before its rename
    node = node_process(state)
    node.wait_serving()
    with grpc.insecure_channel(node.client) as ch:
        status = pb_grpc.LeadershipStub(ch).GetStatus(pb.GetStatusRequest(), timeout=2)
    assert (status.promised_epoch, status.promised_to) == (4, 3)
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(timeout=10) == 0
    assert json.loads((state / PROMISE_FILE).read_text()) == {"epoch": 4, "leader_id": 3}
