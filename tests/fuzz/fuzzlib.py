"""Sending fuzzed requests to real processes, and judging what came back.

A `Caller` speaks one RPC with raw bytes (whatever protofuzz made, well-formed or not) and returns one
`Outcome` per request. `Snapshot` is what a node exposes that no refused request may change;
`safety_violations` reads a cluster's recorded history for two leaders in one epoch (P1) or
overlapping leaderships (P3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import protofuzz as pf
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from prometheus_client.parser import text_string_to_metric_families

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.history import epochs_led, leadership_intervals, overlapping_pairs, read_history
from node.launcher.cluster import LocalCluster, pid_alive, read_cluster_file, stop_pids

ROOT = Path(__file__).resolve().parents[2]

# Statuses that say what was wrong (or that nothing was). UNKNOWN and INTERNAL are a server's own
# failure; DEADLINE_EXCEEDED and CANCELLED a hang; UNAVAILABLE a dead or stopping server. An RPC may
# earn more of them only where a policy says why (TransferLeadership: a target that is not answering).
PRECISE = frozenset(
    {
        "OK",
        "INVALID_ARGUMENT",
        "PERMISSION_DENIED",
        "FAILED_PRECONDITION",
        "NOT_FOUND",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "RESOURCE_EXHAUSTED",
        "ALREADY_EXISTS",
        "ABORTED",
        "UNAUTHENTICATED",
    }
)

CLIENT_OPTIONS = [
    # The server's limits are under test, not the client's: a large reply must reach us whole.
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.enable_retries", 0),
]

_STREAMS = ThreadPoolExecutor(32, thread_name_prefix="fuzz-stream")


@dataclass(frozen=True)
class Outcome:
    code: str  # "OK" or a grpc.StatusCode name
    details: str = ""
    reply: Message | None = None


class Caller:
    """One RPC, by its descriptor, taking request bytes as they are (no serializer)."""

    def __init__(self, address: str, method: MethodDescriptor, timeout_s: float = 5.0) -> None:
        self.method = method
        self.timeout_s = timeout_s
        self.channel = grpc.insecure_channel(address, options=CLIENT_OPTIONS)
        path = f"/{method.containing_service.full_name}/{method.name}"
        out = pf.message_class(method.output_type).FromString
        self.client_streaming = method.client_streaming
        self.server_streaming = method.server_streaming
        make = {
            (False, False): self.channel.unary_unary,
            (False, True): self.channel.unary_stream,
            (True, False): self.channel.stream_unary,
            (True, True): self.channel.stream_stream,
        }[(method.client_streaming, method.server_streaming)]
        self.call = make(path, request_serializer=None, response_deserializer=out)

    def close(self) -> None:
        self.channel.close()

    def _request(self, body: bytes) -> Any:
        return iter([body]) if self.client_streaming else body

    def _first_reply(self, body: bytes) -> Outcome:
        """A streaming reply: the first message, then the call is cancelled (a watcher going away)."""
        call = self.call(self._request(body), timeout=self.timeout_s)
        try:
            reply = next(call)
        except StopIteration:
            return Outcome(call.code().name if call.code() else "OK", call.details() or "", None)
        except grpc.RpcError as exc:
            return Outcome(exc.code().name, exc.details() or "")
        call.cancel()
        return Outcome("OK", "", reply)

    def send(self, bodies: list[bytes]) -> list[Outcome]:
        """Every request at once (unary replies as futures, streams on a thread pool), in order."""
        if self.server_streaming:
            return list(_STREAMS.map(self._first_reply, bodies))
        futures = [self.call.future(self._request(b), timeout=self.timeout_s) for b in bodies]
        outcomes = []
        for f in futures:
            try:
                outcomes.append(Outcome("OK", "", f.result()))
            except grpc.RpcError as exc:
                outcomes.append(Outcome(exc.code().name, exc.details() or ""))
        return outcomes


def describe(method: MethodDescriptor, body: bytes, outcome: Outcome) -> str:
    """A failing request, reproducible by hand: its bytes, what they parse to, and the answer."""
    try:
        parsed = pf.message_class(method.input_type).FromString(body)
        text = str(parsed).replace("\n", " ") or "(empty)"
    except Exception as exc:  # noqa: BLE001 - the bytes may be malformed on purpose
        text = f"(does not parse: {exc})"
    call = f"{method.containing_service.name}.{method.name}({text}) bytes={body[:200]!r}"
    return f"{call} -> {outcome.code}: {outcome.details[:300]}"


def seed_for(run_seed: int, name: str) -> int:
    """One test's seed: the run's, mixed with the test's name (so each RPC gets its own requests)."""
    return (run_seed ^ zlib.crc32(name.encode())) & 0xFFFFFFFF


@dataclass
class FuzzStats:
    """Counts for the report: requests per RPC and the statuses they got."""

    rpc: str
    seed: int
    requests: int = 0
    examples: int = 0
    codes: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    goals: set[str] = field(default_factory=set)  # protofuzz.coverage_goals of the requests sent
    met: Counter = field(default_factory=Counter)  # how many requests met each of them

    def add(self, outcomes: list[Outcome]) -> None:
        self.examples += 1
        self.requests += len(outcomes)
        self.codes.update(o.code for o in outcomes)

    def cover(self, method: MethodDescriptor, bodies: list[bytes], hints: pf.Hints = ()) -> None:
        goals = pf.coverage_goals(method.input_type, hints)
        self.goals |= goals
        for body in bodies:
            self.met.update(pf.covered(method.input_type, body, hints) & goals)

    def uncovered(self) -> list[str]:
        return sorted(self.goals - set(self.met))

    def to_json(self) -> str:
        return json.dumps(
            {
                "rpc": self.rpc,
                "seed": self.seed,
                "requests": self.requests,
                "examples": self.examples,
                "codes": dict(self.codes.most_common()),
                "notes": dict(self.notes),
                "least_covered": dict(sorted(self.met.items(), key=lambda kv: kv[1])[:3]),
            }
        )


# ---- what a refused request must leave as it was ------------------------------------------------

# Heartbeats (and their acks) flow all the time on a healthy cluster; every other counter is still.
MOVING_COUNTERS = frozenset({"heartbeat", "heartbeat_ack"})


_STATUS_CHANNELS: dict[str, tuple[grpc.Channel, pb_grpc.LeadershipStub]] = {}  # one channel per live node


def forget_status_channels(cluster: LocalCluster) -> None:
    """Close the cached channels to a stopped cluster (a later cluster may get its ports)."""
    for n in cluster.spec.nodes:
        channel, _ = _STATUS_CHANNELS.pop(n.client_address, (None, None))
        if channel is not None:
            channel.close()


def snapshot(address: str) -> dict[str, Any]:
    if address not in _STATUS_CHANNELS:
        channel = grpc.insecure_channel(address, options=CLIENT_OPTIONS)
        _STATUS_CHANNELS[address] = (channel, pb_grpc.LeadershipStub(channel))
    _, stub = _STATUS_CHANNELS[address]
    s = stub.GetStatus(pb.GetStatusRequest(), timeout=5)
    return {
        "role": s.role,
        "epoch": s.epoch,
        "promised_epoch": s.promised_epoch,
        "promised_to": s.promised_to,
        "has_leader": s.has_leader,
        "leader_id": s.leader_id,
        "elections_started": s.elections_started,
        "elections_won": s.elections_won,
        "stepdowns": s.stepdowns,
        "leader_changes": s.leader_changes,
        "received": {k: v for k, v in s.messages_received.items() if k not in MOVING_COUNTERS},
        "sent": {k: v for k, v in s.messages_sent.items() if k not in MOVING_COUNTERS},
    }


def cluster_snapshot(cluster: LocalCluster) -> dict[int, dict[str, Any]]:
    return {n.id: snapshot(n.client_address) for n in cluster.spec.nodes}


def diff(before: dict, after: dict) -> dict:
    return {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def moved(before: dict[int, dict], after: dict[int, dict]) -> dict[int, dict]:
    """Per node (cluster_snapshot's), what changed between two snapshots; {} when nothing did."""
    return {nid: diff(before[nid], after[nid]) for nid in before if before[nid] != after[nid]}


# ---- processes ------------------------------------------------------------------------------------


def node_pids(cluster: LocalCluster) -> dict[int, int]:
    return {n["id"]: n["pid"] for n in read_cluster_file(cluster.dir)["nodes"]}


def dead_processes(cluster: LocalCluster) -> list[str]:
    data = read_cluster_file(cluster.dir)
    dead = [f"node {n['id']} (pid {n['pid']})" for n in data["nodes"] if not pid_alive(n["pid"])]
    if not pid_alive(data["store"]["pid"]):
        dead.append(f"store (pid {data['store']['pid']})")
    return dead


def history(cluster: LocalCluster) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for n in read_cluster_file(cluster.dir)["nodes"]:
        path = Path(n["events"])
        if path.exists():
            events += read_history(path)
    return sorted(events, key=lambda e: e["t_ns"])


def safety_violations(cluster: LocalCluster, overlap: bool = True) -> list[str]:
    """P1 (one leader per epoch) and, if asked, P3 (no two leaderships at once) from the history."""
    events = history(cluster)
    wins = [(e["node"], e["epoch"], e["t_ns"]) for e in events if e["kind"] == "view" and e["role"] == "leader"]
    found = [
        f"P1: epoch {epoch} led by nodes {sorted(nodes)}" for epoch, nodes in epochs_led(wins).items() if len(nodes) > 1
    ]
    if overlap:
        found += [f"P3: {a} overlaps {b}" for a, b in overlapping_pairs(leadership_intervals(events))]
    return found


@dataclass
class StoreProcess:
    pid: int
    address: str
    data_dir: Path

    def alive(self) -> bool:
        return pid_alive(self.pid)


def start_store(data_dir: Path, env: dict[str, str], argv: list[str] | None = None) -> StoreProcess:
    """A fenced store of its own (no nodes write to it: its log changes only by the fuzzer's writes)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = argv or [sys.executable, "-m", "node.cli"]
    with open(data_dir / "store.log", "ab") as log:
        proc = subprocess.Popen(
            [*argv, "store", "--insecure", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,
            text=True,
        )
    line = proc.stdout.readline()
    proc.stdout.close()
    if not line:
        proc.wait(timeout=10)
        raise RuntimeError(f"store did not start: {(data_dir / 'store.log').read_text()[-2000:]}")
    return StoreProcess(proc.pid, json.loads(line)["address"], data_dir)


def stop_store(store: StoreProcess) -> None:
    stop_pids([store.pid])


def child_env() -> dict[str, str]:
    """The test's environment, with this checkout first on the children's import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def store_log(address: str, after_seq: int = 0) -> Iterator[pb.LogEntry]:
    """Every entry after `after_seq`, page by page (small pages: a page of 64 KiB values is large)."""
    with grpc.insecure_channel(address, options=CLIENT_OPTIONS) as ch:
        stub = pb_grpc.FencedStoreStub(ch)
        while True:
            page = stub.ReadLog(pb.ReadLogRequest(after_seq=after_seq, limit=50), timeout=10)
            if not page.entries:
                return
            yield from page.entries
            after_seq = page.entries[-1].seq


def last_seq(address: str, after_seq: int = 0) -> int:
    for entry in store_log(address, after_seq):
        after_seq = entry.seq
    return after_seq


def watchers_gauge(metrics_address: str) -> float:
    """bullyproof_watchers on a node's /metrics: the WatchLeader streams it is serving."""
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bullyproof_watchers":
                return sample.value
    raise AssertionError("no bullyproof_watchers metric")
