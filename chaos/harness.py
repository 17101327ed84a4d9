"""A cluster wired through a real Toxiproxy server: one proxy per directed link, and faults on them.

Node a dials peer b only through proxy "a->b" (so one-way partitions exist), and the store through
"a->store". The observer (this harness, `bullyproof leader`) talks to each node's client port
directly and is never partitioned. Every fault and process action is written to the harness's
history file with a monotonic timestamp; `collect_history` merges it with the nodes' own events and
the store's log into one history for the checkers.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import observer_channel
from node.config import (
    DEFAULT_TIMING,
    PLANTED_BUGS_ENV,
    ConfigError,
)
from node.core import PlantedBug
from node.faults import DroppedLinks
from node.history import HistoryWriter, sort_events
from node.launcher.cluster import (
    PROCESS_ACTIONS,
    STORE,
    ClusterSpec,
    Link,
    LocalCluster,
    NodeSpec,
    dial_through,
    directed_links,
    link_name,
    local_spec,
    make_run_dir,
    node_record,
    parse_node_id,
    process_fault,
    read_cluster_file,
    run_env,
)
from node.launcher.ports import free_port
from node.observer import agreed_leader, member_change, transfer_leadership, views_of

from .toxiproxy import Toxiproxy, ToxiproxyError, ToxiproxyServer

HARNESS_EVENTS = "harness.jsonl"
APPS_EVENTS = "apps.jsonl"  # chaos.apps writes it (the same name there)
HISTORY = "history.jsonl"


def wire_links(spec: ClusterSpec, api: Toxiproxy) -> tuple[ClusterSpec, dict[str, str]]:
    """Create one proxy per directed peer link and per node->store link; return the rewired spec."""
    listen: dict[Link, str] = {}
    for link in directed_links(spec):
        listen[link] = f"127.0.0.1:{free_port()}"
        api.create_proxy(link.name, listen[link], link.upstream)
    return dial_through(spec, listen), {link.name: address for link, address in listen.items()}


@dataclass
class ChaosCluster(DroppedLinks):
    """Toxiproxy + store + N nodes, all started and stopped by this object (by pid)."""

    directory: Path
    nodes: int = 5
    mode: str = "quorum"
    heartbeat_interval_ms: int = DEFAULT_TIMING.heartbeat_interval_ms
    election_timeout_ms: int = DEFAULT_TIMING.election_timeout_ms
    planted_bugs: frozenset[PlantedBug] = frozenset()
    seed: int = 0
    scenario: str = "manual"
    direct: bool = False  # skip Toxiproxy: nodes dial each other directly
    preempt_hold_down_ms: int = (
        DEFAULT_TIMING.preempt_hold_down_ms  # quorum: how long a higher node acks before it takes over (0 = never)
    )
    mode_options: tuple[str, ...] = ()  # the mode's switches, e.g. raft's no-pre-vote
    insecure: bool = False  # plaintext, no certificates (otherwise mutual TLS with certificates in DIR/certs)
    spares: int = 0  # more nodes (ids after `nodes`) started to join, for membership changes
    toxiproxy: ToxiproxyServer | None = None
    api: Toxiproxy | None = None
    cluster: LocalCluster | None = None
    history: HistoryWriter | None = None
    active: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # fault name -> toxics

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self, launcher_pid: int | None = None) -> ChaosCluster:
        self.directory = self.directory.resolve()
        make_run_dir(self.directory)
        try:
            self._start(launcher_pid)
        except BaseException:  # a stop signal or Ctrl-C halfway through too: nothing started may outlive it
            self.stop()
            raise
        return self

    def _start(self, launcher_pid: int | None) -> None:
        certs = None if self.insecure else str(self.directory / "certs")
        spec = replace(
            local_spec(
                self.nodes,
                self.mode,
                self.heartbeat_interval_ms,
                self.election_timeout_ms,
                certs_dir=certs,
                spares=self.spares,
            ),
            preempt_hold_down_ms=self.preempt_hold_down_ms,
            mode_options=self.mode_options,
        )
        extra: dict[str, Any] = {}
        if not self.direct:
            # Kept before it starts: a stop signal while it comes up must find it to stop it.
            self.toxiproxy = ToxiproxyServer(env=run_env(self.directory))
            self.toxiproxy.start()
            self.api = self.toxiproxy.client()
            spec, links = wire_links(spec, self.api)
            extra = {
                "toxiproxy_api": f"{self.toxiproxy.host}:{self.toxiproxy.port}",
                "toxiproxy_pid": self.toxiproxy.pid,
                "links": links,
            }
        env = dict(os.environ)
        node_args: list[str] = []
        store_args: list[str] = []
        if self.planted_bugs:
            env[PLANTED_BUGS_ENV] = "1"
            for bug in sorted(self.planted_bugs, key=lambda b: b.value):
                (store_args if bug == PlantedBug.STALE_STORE else node_args).extend(["--planted-bug", bug.value])
        self.history = HistoryWriter(self.directory / HARNESS_EVENTS)
        self.history.write(
            {
                "kind": "meta",
                "seed": self.seed,
                "mode": self.mode,
                "scenario": self.scenario,
                "nodes": [n.id for n in spec.nodes],
                "election_timeout_ms": self.election_timeout_ms,
                "heartbeat_interval_ms": self.heartbeat_interval_ms,
                "preempt_hold_down_ms": self.preempt_hold_down_ms,
                "planted_bugs": sorted(b.value for b in self.planted_bugs),
                "mode_options": sorted(self.mode_options),
                # Who votes at first, when some nodes start outside the configuration (the judge counts each
                # leader's backing against the configuration it runs: node.history.History.configurations).
                **({"voters": [n.id for n in spec.nodes if n.id not in spec.joining]} if spec.joining else {}),
            }
        )
        self.cluster = LocalCluster(
            spec, self.directory, env=env, extra_node_args=node_args, extra=extra, extra_store_args=store_args
        )
        self.cluster.start(launcher_pid)

    @classmethod
    def attach(cls, directory: Path) -> ChaosCluster:
        """Drive a cluster that another process started (bullyproof cluster up), via cluster.json."""
        data = read_cluster_file(directory)
        if not data.get("toxiproxy_api"):
            raise ConfigError(
                f"the cluster in {directory} was started --direct: it has no Toxiproxy to inject faults with"
            )
        return cls.from_record(data, Path(directory), f"is the cluster up? bullyproof cluster up --dir {directory}")

    @classmethod
    def from_record(cls, data: dict[str, Any], directory: Path, how_to_start: str) -> ChaosCluster:
        """Drive a running cluster from its record, a local cluster.json or a compose file's
        (node.launcher.compose.read_compose_file); faults are recorded in DIRECTORY/harness.jsonl."""
        host, _, port = data["toxiproxy_api"].rpartition(":")
        api = Toxiproxy(host, int(port))
        try:
            api.version()
        except ToxiproxyError as exc:
            answer = "no response" if exc.status is None else f"HTTP {exc.status}"
            raise ConfigError(
                f"Toxiproxy does not answer at {data['toxiproxy_api']} ({answer}): {how_to_start}"
            ) from None
        spec = ClusterSpec(
            tuple(NodeSpec(n["id"], n["peer_address"], n["client_address"]) for n in data["nodes"]),
            data["store"]["address"],
            data["mode"],
            data["heartbeat_interval_ms"],
            data["election_timeout_ms"],
            certs_dir=data.get("certs"),
            joining=tuple(data.get("spec", {}).get("joining", ())),
        )
        cc = cls(Path(directory), len(spec.nodes), spec.mode, spec.heartbeat_interval_ms, spec.election_timeout_ms)
        cc.directory = Path(directory).resolve()
        cc.directory.mkdir(parents=True, exist_ok=True)
        cc.api = api
        cc.cluster = LocalCluster(spec, cc.directory)
        cc.history = HistoryWriter(cc.directory / HARNESS_EVENTS)
        return cc

    def stop(self) -> None:
        """Always safe: resumes paused processes, stops every pid this cluster started."""
        if self.cluster is not None:
            self.cluster.stop()
        if self.toxiproxy is not None:
            self.toxiproxy.stop()
        if self.history is not None:
            self.history.close()

    def __enter__(self) -> ChaosCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ids(self) -> list[int]:
        assert self.cluster is not None
        return [n.id for n in self.cluster.spec.nodes]

    def record(self, kind: str, **fields: Any) -> None:
        assert self.history is not None
        self.history.write({"kind": kind, **fields})

    # ---- observation ---------------------------------------------------------------------

    def views(self) -> dict[int, pb.LeaderInfo | None]:
        assert self.cluster is not None
        return views_of(self.cluster.client_addresses(), 0.3)

    def leader(self) -> tuple[int, int] | None:
        return agreed_leader(self.views())

    def current_leader(self) -> int | None:
        """The node that claims leadership right now with the highest epoch (may be unagreed)."""
        claims = [(v.epoch, nid) for nid, v in self.views().items() if v is not None and v.role == pb.ROLE_LEADER]
        return max(claims)[1] if claims else None

    def wait_for_leader(self, timeout_s: float = 15.0, exclude: Iterable[int] = ()) -> tuple[int, int]:
        """Until every node (but `exclude`) answers and those in a configuration agree."""
        assert self.cluster is not None
        return self.cluster.wait_for_agreement(timeout_s, exclude=set(exclude))

    def transfer(self, target: int) -> tuple[int, int]:
        """Ask the agreed leader to hand leadership to `target` (TransferLeadership); recorded.
        Raises node.observer.HandoverFailed if it did not happen."""
        leader, epoch = self.wait_for_leader()
        self.record("transfer", node=leader, target=target, epoch=epoch)
        return transfer_leadership(self.cluster.spec.node(leader).client_address, target, timeout_ms=0, timeout_s=10)

    def change_membership(self, action: str, target: int, timeout_s: float = 10.0) -> pb.Configuration:
        """An operator's `bullyproof member add|remove`, at the leader (removing the leader hands over
        first). Raises node.observer.HandoverFailed if it did not happen."""
        assert self.cluster is not None
        _, configuration = member_change(
            self.cluster.client_addresses(), action, target, timeout_ms=0, timeout_s=timeout_s
        )
        return configuration

    @property
    def joining(self) -> tuple[int, ...]:
        return self.cluster.spec.joining if self.cluster is not None else ()

    # ---- process faults ------------------------------------------------------------------

    def kill(self, node: int) -> None:
        self.process(node, "kill")

    def restart(self, node: int) -> None:
        self.process(node, "restart")

    def pause(self, node: int) -> None:
        self.process(node, "pause")

    def resume(self, node: int) -> None:
        self.process(node, "resume")

    def retime(self, node: int, election_timeout_ms: int) -> None:
        self.process(node, "restart", timing_ms={"--election-timeout-ms": election_timeout_ms})

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def process(self, target: int | str, action: str, timing_ms: dict[str, int] | None = None) -> None:
        """kill | pause | resume | restart a node or the store; recorded before it happens. A restart
        with `timing_ms` ({"--election-timeout-ms": 1000}) changes the node's timings."""
        assert self.history is not None
        process_action(
            self.directory,
            target,
            action,
            self.history,
            env=self.cluster.env if self.cluster else None,
            timing_ms=timing_ms,
        )

    # ---- network faults through Toxiproxy ------------------------------------------------

    def _toxic(self, fault: str, link: str, type_: str, attributes: dict[str, Any], stream: str) -> None:
        assert self.api is not None, "network faults need Toxiproxy (this cluster was started --direct)"
        name = f"{fault}-{type_}-{stream}-{len(self.active.get(fault, []))}"
        self.api.add_toxic(link, name, type_, stream, attributes)
        self.active.setdefault(fault, []).append((link, name))

    def _links(self, pairs: Iterable[tuple[int | str, int | str]]) -> list[str]:
        return [link_name(a, b) for a, b in pairs]

    # The network faults of node.faults.FaultTarget: cut, partition, one_way, blackhole and reachability
    # come from node.faults.DroppedLinks (as in the simulator's node/sim/target.py), over this _drop.

    def _drop(self, fault: str, pairs: Iterable[tuple[int, int]], detail: dict[str, Any]) -> None:
        """Silently drop everything on the given directed links (timeout toxic 0, both streams)."""
        self.record("fault", action="start", name=fault, detail=detail)
        for link in self._links(pairs):
            for stream in ("upstream", "downstream"):
                self._toxic(fault, link, "timeout", {"timeout": 0}, stream)

    def latency(
        self, links: Iterable[tuple[int, int]], latency_ms: int, jitter_ms: int = 0, fault: str = "latency"
    ) -> None:
        """Delay what each link's dialler sends (Toxiproxy's upstream) by latency_ms, give or take jitter_ms."""
        self.degrade(fault, links, "latency", {"latency": latency_ms, "jitter": jitter_ms}, ("upstream",))

    def refuse(self, node: int, fault: str = "refuse") -> None:
        """Disable every proxy into `node`: connections are refused (and held ones closed)."""
        assert self.api is not None
        self.record("fault", action="start", name=fault, detail={"node": node})
        for o in self.ids:
            if o != node:
                self.api.set_enabled(link_name(o, node), False)
                self.active.setdefault(fault, []).append((link_name(o, node), ""))

    def degrade(
        self,
        fault: str,
        links: Iterable[tuple[int | str, int | str]],
        type_: str,
        attributes: dict[str, Any],
        streams: tuple[str, ...] = ("downstream",),
    ) -> None:
        """latency / bandwidth / slicer / reset_peer on the given links."""
        links = list(links)
        self.record(
            "fault",
            action="start",
            name=fault,
            detail={"type": type_, "links": [link_name(*pair) for pair in links], **attributes},
        )
        for link in self._links(links):
            for stream in streams:
                self._toxic(fault, link, type_, attributes, stream)

    def all_peer_links(self) -> list[tuple[int, int]]:
        return [(a, b) for a in self.ids for b in self.ids if a != b]

    def clear(self, fault: str) -> None:
        assert self.api is not None
        for link, toxic in self.active.pop(fault, []):
            if toxic:
                self.api.remove_toxic(link, toxic)
            else:
                self.api.set_enabled(link, True)
        self.record("fault", action="stop", name=fault)

    def heal(self) -> None:
        """Remove every network fault at once (Toxiproxy /reset re-enables proxies, drops toxics)."""
        if self.api is not None:
            for fault in list(self.active):
                self.record("fault", action="stop", name=fault)
            self.active.clear()
            self.api.reset()
        self.record("heal")


def process_action(
    directory: Path,
    target: int | str,
    action: str,
    history: HistoryWriter | None = None,
    env: dict[str, str] | None = None,
    timing_ms: dict[str, int] | None = None,
) -> dict[str, Any]:
    """kill | pause | resume | restart a node (by id) or the store, by pid (node.launcher's process_fault),
    recorded in the cluster's harness history before it happens (a restart also records the new start).

    The one way to do it: ChaosCluster, `bullyproof kill|pause|resume|restart` and the dashboard all
    call this. Without `history`, appends to DIR/harness.jsonl. Returns the process record after it.
    """
    if action not in PROCESS_ACTIONS:
        raise ConfigError(f"unknown action {action!r}; one of {', '.join(PROCESS_ACTIONS)}")
    target = str(target)
    data = read_cluster_file(directory)
    rec = data["store"] if target == STORE else node_record(data, parse_node_id(target))
    node: int | str = STORE if target == STORE else rec["id"]
    writer = history if history is not None else HistoryWriter(Path(directory) / HARNESS_EVENTS)
    try:
        writer.write({"kind": "process", "node": node, "action": action, "pid": rec["pid"]})
        after = process_fault(directory, target, action, env=env, timing_ms=timing_ms)
        if action == "restart":
            # Under new timings, the start says which: the checkers' tolerances take the longest.
            timing = {flag.strip("-").replace("-", "_"): value for flag, value in (timing_ms or {}).items()}
            writer.write({"kind": "process", "node": node, "action": "start", "pid": after["pid"], **timing})
        return after
    finally:
        if history is None:
            writer.close()


class AnswerRecorder:
    """A client asking every node who leads, every ``period_s``, for as long as it runs: each answer
    that named a leader is recorded ("answer": the node asked, the leader and epoch it named, when the
    call began and when its reply came), and P6 judges them (chaos.checkers.check_answers). It talks
    to the client ports directly, like every observer: never partitioned.
    """

    def __init__(self, cc: ChaosCluster, period_s: float = 0.1, timeout_s: float = 0.25) -> None:
        assert cc.cluster is not None and cc.history is not None
        self.addresses = cc.cluster.client_addresses()
        self.history = cc.history
        self.period_s, self.timeout_s = period_s, timeout_s
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="answer-recorder", daemon=True)
        self.asked = 0

    def __enter__(self) -> AnswerRecorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()

    def _run(self) -> None:
        channels = {nid: observer_channel(address) for nid, address in self.addresses.items()}
        stubs = {nid: pb_grpc.LeadershipStub(ch) for nid, ch in channels.items()}
        try:
            while not self.stopping.wait(self.period_s):
                for nid, stub in stubs.items():
                    self._ask(nid, stub)
        finally:
            for ch in channels.values():
                ch.close()

    def _ask(self, nid: int, stub: pb_grpc.LeadershipStub) -> None:
        start_ns = time.monotonic_ns()
        try:
            info = stub.GetLeader(pb.GetLeaderRequest(), timeout=self.timeout_s)
        except grpc.RpcError:
            return  # down, paused or slow: it told the client nothing
        end_ns = time.monotonic_ns()
        self.asked += 1
        if info.known:
            self.history.write(
                {
                    "kind": "answer",
                    "t_ns": start_ns,
                    "end_ns": end_ns,
                    "node": nid,
                    "leader": info.leader_id,
                    "epoch": info.epoch,
                }
            )


# ---- merging the history -------------------------------------------------------------------------


def store_event(entry: pb.LogEntry) -> dict[str, Any]:
    """One entry of the store's log as a history event (at the store's own decision time)."""
    return {
        "t_ns": entry.recorded_monotonic_ns,
        "kind": "store",
        "seq": entry.seq,
        "writer": entry.writer_id,
        "epoch": entry.epoch,
        "key": entry.key,
        "accepted": entry.accepted,
        "reason": entry.reason,
    }


def store_events(address: str) -> list[dict[str, Any]]:
    """The store's durable log as history events (its own decision times)."""
    events: list[dict[str, Any]] = []
    after = 0
    with observer_channel(address) as ch:
        stub = pb_grpc.FencedStoreStub(ch)
        while True:
            reply = stub.ReadLog(pb.ReadLogRequest(after_seq=after, limit=5000), timeout=5)
            events.extend(store_event(e) for e in reply.entries)
            if not reply.entries:
                return events
            after = reply.entries[-1].seq


def collect_history(
    directory: Path, store_address: str | None = None, extra: Iterable[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Merge harness events, every node's events, the apps' writes (chaos.apps, if any ran), the
    store log and `extra` events (the databases' logs the apps wrote to) into DIR/history.jsonl."""
    data = read_cluster_file(directory)
    events: list[dict[str, Any]] = list(extra)
    for path in [directory / HARNESS_EVENTS, directory / APPS_EVENTS, *(Path(n["events"]) for n in data["nodes"])]:
        with contextlib.suppress(FileNotFoundError):
            for line in path.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):  # a line cut short by SIGKILL
                    events.append(json.loads(line))
    events.extend(store_events(store_address or data["store"]["address"]))
    events = sort_events(events)
    # meta first, whatever its timestamp
    events.sort(key=lambda e: e["kind"] != "meta")
    with open(directory / HISTORY, "w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
    return events
