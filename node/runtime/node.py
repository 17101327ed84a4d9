"""The node process: the only place with asyncio, grpc.aio, clocks and disks.

It feeds the pure elector (node.core) with ticks from the lease clock (node.clock: CLOCK_BOOTTIME,
which counts suspend) and with validated peer messages, and carries out what comes back in order:
persist the promise (fsync), then send. If the promise cannot be persisted the node fail-stops:
nothing that could reveal it leaves, and the process exits (run_node raises PersistError; the CLI
exits 3).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node import channels
from node.channels import peer_channel
from node.config import ConfigError, NodeSettings
from node.core import REPLY_TYPE, BecameLeader, Config, ElectionStarted, Message, Output, Role, SteppedDown, View, make_elector, mode_names
from node.runtime.clock import LEASE_CLOCK_NAME, ClockPair, lease_clock_ns
from node.runtime.metrics import NodeMetrics
from node.runtime.state import PersistError, PromiseStore
from node.store.db import claim_key
from node.runtime.wire import RPC_NAME, ROLE_PB, ack_from_pb, ack_to_pb, check_peer_message, message_from_pb, message_to_pb

MODE_PB = {name: pb.Mode.Value(f"MODE_{name.upper()}") for name in mode_names()}  # the .proto lists every mode


class EventLog:
    """History lines for the chaos checkers (JSON, one per event) and log lines on stdout.

    Every stdout line is one JSON object with ts, level, node, epoch and msg, whichever thread
    writes it (the metrics server logs from its own), so lines never interleave.
    """

    def __init__(self, node_id: int, path: Path | None) -> None:
        self.node_id = node_id
        self.file = open(path, "a", buffering=1) if path else None  # line-buffered: survives SIGKILL
        self._stdout_lock = threading.Lock()

    def record(self, kind: str, **fields: Any) -> None:
        if self.file:
            self.file.write(json.dumps({"t_ns": time.monotonic_ns(), "kind": kind, "node": self.node_id, **fields}) + "\n")

    def log(self, msg: str, epoch: int, level: str = "info", **fields: Any) -> None:
        line = {"ts": round(time.time(), 3), "level": level, "node": self.node_id, "epoch": epoch, "msg": msg, **fields}
        text = json.dumps(line, default=str) + "\n"
        with self._stdout_lock:
            sys.stdout.write(text)
            sys.stdout.flush()

    def error(self, msg: str, epoch: int, exc: BaseException | None = None, **fields: Any) -> None:
        if exc is not None:
            fields["error"] = repr(exc)
            fields["traceback"] = "".join(traceback.format_exception(exc))
        self.log(msg, epoch, level="error", **fields)

    def close(self) -> None:
        if self.file:
            self.file.close()


class JsonLogHandler(logging.Handler):
    """Python `logging` (asyncio, grpc, warnings) as EventLog lines: node and epoch on every one."""

    def __init__(self, events: EventLog, epoch: Callable[[], int]) -> None:
        super().__init__()
        self.events = events
        self.epoch = epoch

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info and record.exc_info[1] is not None:
                fields["error"] = repr(record.exc_info[1])
                fields["traceback"] = "".join(traceback.format_exception(*record.exc_info))
            self.events.log(record.getMessage(), self.epoch(), level=record.levelname.lower(), **fields)
        except Exception:
            self.handleError(record)


def route_logging(events: EventLog, epoch: Callable[[], int]) -> None:
    """Send the process's Python logging through `events` instead of bare text on stderr."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(JsonLogHandler(events, epoch))
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)


@dataclass
class PeerState:
    address: str
    channel: grpc.aio.Channel
    stub: pb_grpc.PeerStub
    last_heard_ns: int = 0
    reachable: bool = True


class NodeRuntime:
    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.id = settings.node_id
        self.tick_ns = settings.tick_ms * 1_000_000
        # Ticks count on the lease clock; the same instant on the monotonic clock converts lease ends
        # back to history time (tick_to_ns).
        self.t0 = ClockPair.now()
        self.failed: PersistError | None = None  # set once a promise could not be made durable
        self.started_unix = time.time()
        self.promises = PromiseStore(settings.state_dir)
        config = Config(settings.node_id, settings.members, settings.timing, settings.planted_bugs)
        # Seeded per node and boot, so a run's randomness is reproducible from its log line.
        seed = hash((settings.node_id, self.t0.lease_ns)) & 0xFFFFFFFF
        self.elector = make_elector(settings.mode, config, self.promises.load(), random.Random(seed), self.now())
        self.events = EventLog(self.id, settings.events_path)
        self.metrics = NodeMetrics(self.id)
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.leader_changes = 0
        self.view: View = self.elector.view(self.now())
        self.view_seq = 0
        self.view_changed = asyncio.Event()
        self.peers: dict[int, PeerState] = {}
        self.tasks: set[asyncio.Task] = set()
        self.stopping = asyncio.Event()
        self.server: grpc.aio.Server | None = None
        self.health = health.HealthServicer()
        self.rpc_timeout_s = settings.heartbeat_interval_ms / 1000
        self.events.log("boot", self.view.epoch, seed=seed, mode=str(settings.mode.value), promise=self.elector.promise.__dict__,
                        lease_clock=LEASE_CLOCK_NAME)
        self.events.record("process", action="start", pid=_pid())
        self._record_view(self.view, "boot")

    # ---- time ----------------------------------------------------------------------------

    def now(self) -> int:
        """The core's clock: ticks since boot on the lease clock (suspend counts as time gone)."""
        return (lease_clock_ns() - self.t0.lease_ns) // self.tick_ns

    def tick_to_ns(self, tick: int) -> int:
        """A tick as a history timestamp (CLOCK_MONOTONIC, the clock every t_ns is on)."""
        return self.t0.to_monotonic_ns(self.t0.lease_ns + tick * self.tick_ns)

    # ---- carrying out the elector's output -------------------------------------------------

    def apply(self, out: Output, reply_to: Message | None = None) -> Message | None:
        """Persist, then send; returns the reply to `reply_to` (sent on the same call) if any.

        Raises PersistError, having sent nothing, if the promise could not be made durable (or one
        could not be earlier): the elector now holds a promise the disk does not, so the node stops.
        """
        if self.failed is not None:
            raise self.failed
        if out.persist is not None:
            try:
                self.promises.save(out.persist)  # fsync before anything that reveals it
            except PersistError as exc:
                self._fail_stop(exc)
                raise
        reply = None
        for msg in out.messages:
            if reply_to is not None and msg.dst == reply_to.src and msg.type == REPLY_TYPE.get(reply_to.type):
                reply = msg
            else:
                self._spawn(self._send(msg))
        for ev in out.events:
            self._on_event(ev)
        self._refresh_view()
        return reply

    def _fail_stop(self, exc: PersistError) -> None:
        """Mark the node failed and stop it; every later apply() raises, so nothing more is sent."""
        self.failed = exc
        self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        self.health.set("leader", health_pb2.HealthCheckResponse.NOT_SERVING)
        self.events.log(f"fail-stop: {exc}; stopping without answering", self.view.epoch, level="error",
                        event="persist_failed", file=str(exc.target), failed_path=str(exc.path),
                        os_error=exc.error.strerror or str(exc.error), errno=exc.error.errno)
        self.stopping.set()

    def _on_event(self, ev: Any) -> None:
        if isinstance(ev, ElectionStarted):
            self.metrics.election_started()
        elif isinstance(ev, BecameLeader):
            self.events.log("became leader", ev.epoch)
            self.metrics.election_won()
        elif isinstance(ev, SteppedDown):
            self.events.log("stepped down", ev.epoch, reason=ev.reason)
            self.metrics.stepped_down(ev.reason)
            self._stepdown = ev

    _stepdown: SteppedDown | None = None

    def _refresh_view(self) -> None:
        view = self.elector.view(self.now())
        if (view.role, view.epoch, view.leader_id) != (self.view.role, self.view.epoch, self.view.leader_id):
            if view.leader_id != self.view.leader_id:
                self.leader_changes += 1
                self.metrics.leader_changed()
            self._record_view(view)
            self._notify_watchers(view)
        elif view.lease_valid != self.view.lease_valid:
            self._notify_watchers(view)
        self._stepdown = None
        self.metrics.view_changed(view, self.elector.promise.epoch, self.elector.stats.lease_renewals)

    def _record_view(self, view: View, reason: str = "") -> None:
        self.view = v = view
        fields: dict[str, Any] = {"role": v.role.value, "epoch": v.epoch, "leader": v.leader_id}
        sd = self._stepdown
        if sd is not None:
            fields["reason"] = sd.reason
            if sd.lease_end_tick is not None:
                fields["lease_end_ns"] = self.tick_to_ns(sd.lease_end_tick)
        elif reason:
            fields["reason"] = reason
        self.events.record("view", **fields)
        self.events.log(f"view: {v.role.value}, leader {v.leader_id}", v.epoch, leader=v.leader_id)

    def _notify_watchers(self, view: View) -> None:
        """Wake WatchLeader streams, and keep health service "leader" true only with a valid lease."""
        self.view = view
        serving = health_pb2.HealthCheckResponse.SERVING if view.lease_valid else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set("leader", serving)
        self.view_seq += 1
        changed, self.view_changed = self.view_changed, asyncio.Event()
        changed.set()

    async def watch(self) -> AsyncIterator[pb.LeaderInfo]:
        """The current view, then each change. A slow reader skips to the latest (no backlog)."""
        seen = -1
        while not self.stopping.is_set():
            changed = self.view_changed
            if self.view_seq != seen:
                seen = self.view_seq
                yield self.leader_info()
                continue
            await self._until_changed_or_stopping(changed)

    async def _until_changed_or_stopping(self, changed: asyncio.Event) -> None:
        """Wait for the view change `changed` stands for, or for the node to stop."""
        waiter = asyncio.ensure_future(changed.wait())
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait([waiter, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stop.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(), PersistError):
            self.events.error("task failed", self.view.epoch, task.exception(), task=task.get_coro().__qualname__)

    async def _send(self, msg: Message) -> None:
        peer = self.peers[msg.dst]
        rpc = RPC_NAME[msg.type]
        self._count_sent(msg)
        try:
            reply = await getattr(peer.stub, rpc)(message_to_pb(msg), timeout=self.rpc_timeout_s)
        except grpc.aio.AioRpcError as exc:
            self.metrics.rpc_failed(exc.code().name, msg.dst)
            peer.reachable = False
            self.apply(self.elector.send_failed(self.now(), msg))
            return
        peer.reachable = True
        peer.last_heard_ns = time.monotonic_ns()
        if reply.HasField("ack"):
            answer = ack_from_pb(msg, reply.ack)
            if answer is not None:
                self._count_received(answer)
                self.apply(self.elector.step(self.now(), answer))

    # ---- inbound peer messages -----------------------------------------------------------

    async def handle_peer(self, rpc: str, req: pb.PeerMessage, context: grpc.aio.ServicerContext) -> pb.PeerReply:
        rejection = check_peer_message(rpc, req, self.id, self.settings.members)
        if rejection is not None:
            await context.abort(rejection.code, rejection.detail)
        if self.failed is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"node {self.id} is stopping: {self.failed}")
        msg = message_from_pb(rpc, req)
        self._count_received(msg)
        self.peers[msg.src].last_heard_ns = time.monotonic_ns()
        promise_until = getattr(self.elector, "promise_until", None)  # quorum mode only
        try:
            reply = self.apply(self.elector.step(self.now(), msg), reply_to=msg)
        except PersistError as exc:
            # The ack would reveal a promise the disk does not hold: no answer but an error.
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"node {self.id} is stopping: {exc}")
        if promise_until is not None:
            self._record_promise(msg, reply, promise_until)
        if reply is None:
            return pb.PeerReply()
        self._count_sent(reply)
        return pb.PeerReply(ack=ack_to_pb(reply))

    def _record_promise(self, msg: Message, reply: Message | None, promise_until_before: int) -> None:
        """Quorum: history of what this follower promised, for the checker that does not trust leaders.

        A granted ack is a "grant" (recorded after the promise is on disk, before the ack leaves);
        a promise cut short (a resigning leader released it) is a "release".
        """
        promise_until = self.elector.promise_until
        if reply is not None and reply.granted:
            self.events.record(
                "grant", leader=reply.dst, epoch=reply.epoch,
                promise_ms=self.elector.timing.follower_promise_ticks * self.settings.tick_ms,
                until_ns=self.tick_to_ns(promise_until),
            )
        elif promise_until < promise_until_before:
            self.events.record("release", leader=msg.src, epoch=msg.epoch)

    def _count_sent(self, msg: Message) -> None:
        self.sent[msg.type.value] += 1
        self.metrics.message_sent(msg.type.value)

    def _count_received(self, msg: Message) -> None:
        self.received[msg.type.value] += 1
        self.metrics.message_received(msg.type.value)

    # ---- client-facing answers ---------------------------------------------------------------

    def leader_info(self) -> pb.LeaderInfo:
        v = self.elector.view(self.now())
        return pb.LeaderInfo(
            known=v.leader_id is not None,
            leader_id=v.leader_id or 0,
            epoch=v.epoch if v.leader_id is not None else 0,
            node_id=self.id,
            role=ROLE_PB[v.role],
            lease_valid=v.lease_valid,
            view_time_unix_ns=time.time_ns(),
        )

    def status(self) -> pb.NodeStatus:
        v = self.elector.view(self.now())
        now_ns = time.monotonic_ns()
        stats = self.elector.stats
        return pb.NodeStatus(
            node_id=self.id,
            role=ROLE_PB[v.role],
            mode=MODE_PB[self.settings.mode.value],
            epoch=v.epoch,
            promised_epoch=self.elector.promise.epoch,
            promised_to=self.elector.promise.leader_id,
            has_leader=v.leader_id is not None,
            leader_id=v.leader_id or 0,
            lease_valid=v.lease_valid,
            peers=[
                pb.PeerView(
                    id=pid,
                    address=p.address,
                    last_heard_ms=(now_ns - p.last_heard_ns) // 1_000_000 if p.last_heard_ns else -1,
                    reachable=p.reachable,
                )
                for pid, p in sorted(self.peers.items())
            ],
            elections_started=stats.elections_started,
            elections_won=stats.elections_won,
            stepdowns=stats.stepdowns,
            messages_sent=dict(self.sent),
            messages_received=dict(self.received),
            leader_changes=self.leader_changes,
            uptime_ms=int((time.time() - self.started_unix) * 1000),
        )

    # ---- handing leadership over ----------------------------------------------------------------

    def not_leader_detail(self) -> str:
        v = self.elector.view(self.now())
        leader = f"node {v.leader_id} leads epoch {v.epoch}" if v.leader_id else "no leader is known"
        return f"node {self.id} is not the leader ({leader}); ask the leader"

    def resign(self, successor: int = 0) -> int | None:
        """Step down now (telling followers, and whom to let go first); the epoch given up, or None."""
        v = self.elector.view(self.now())
        if v.role != Role.LEADER:
            return None
        self.apply(self.elector.resign(self.now(), successor))
        return v.epoch

    async def transfer(self, target: int, timeout_ms: int) -> tuple[int, int]:
        if target == self.id or target not in self.settings.members:
            raise TransferError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"target {target} must be another member ({', '.join(map(str, self.settings.peers))})")
        v = self.elector.view(self.now())
        if v.role != Role.LEADER:
            raise TransferError(grpc.StatusCode.FAILED_PRECONDITION, self.not_leader_detail())
        peer = self.peers[target]
        recent_ns = 2 * self.settings.heartbeat_interval_ms * 1_000_000
        if not peer.reachable or time.monotonic_ns() - peer.last_heard_ns > recent_ns:
            # Checked before stepping down: an unreachable target leaves the current leader in place.
            raise TransferError(grpc.StatusCode.UNAVAILABLE,
                                f"node {target} has not answered recently; node {self.id} keeps leading epoch {v.epoch}")
        self.resign(successor=target)
        timeout_s = (timeout_ms or 4 * self.settings.election_timeout_ms) / 1000
        try:
            async with asyncio.timeout(timeout_s):
                async for info in self.watch():
                    if info.known and info.leader_id == target and info.epoch > v.epoch:
                        return info.leader_id, info.epoch
                    if info.known and info.leader_id != target:
                        break  # someone else won; report it
        except TimeoutError:
            pass
        now_v = self.elector.view(self.now())
        raise TransferError(grpc.StatusCode.ABORTED,
                            f"node {target} did not take over (now: leader {now_v.leader_id} epoch {now_v.epoch})")

    # ---- the leader's duty: fenced writes while it believes it leads ---------------------------

    async def leader_duty(self) -> None:
        """Fenced writes while this node leads with a valid lease, over one channel to the store.

        The first store action in every epoch this node leads (elected, or moved to a fresh epoch by
        a reassert) is a claim of that epoch (key ``claim/<node>/<epoch>``), sent as soon as the view
        changes rather than after a write period: from the moment the store accepts it, any older
        leader's write still in flight is rejected. Duty writes follow every ``write_period_ms``, in
        an epoch only after its claim was answered (or timed out).
        """
        assert self.settings.store
        async with peer_channel(self.settings.store, self.settings.heartbeat_interval_ms) as ch:
            stub = pb_grpc.FencedStoreStub(ch)
            claimed = _Claimed()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._claim_loop(stub, claimed))
                group.create_task(self._duty_loop(stub, claimed))

    async def _claim_loop(self, stub: pb_grpc.FencedStoreStub, claimed: "_Claimed") -> None:
        while not self.stopping.is_set():
            changed = self.view_changed  # taken before looking: a change from here on wakes us
            v = self.elector.view(self.now())
            if v.role == Role.LEADER and v.lease_valid and v.epoch > claimed.sent:
                claimed.sent = v.epoch
                await self._store_write(stub, v.epoch, claim_key(self.id, v.epoch), b"")
                claimed.answered = max(claimed.answered, v.epoch)
                continue
            await self._until_changed_or_stopping(changed)

    async def _duty_loop(self, stub: pb_grpc.FencedStoreStub, claimed: "_Claimed") -> None:
        period_s = self.settings.write_period_ms / 1000
        counter = 0
        while not self.stopping.is_set():
            await asyncio.sleep(period_s)
            v = self.elector.view(self.now())  # re-checked right before writing (pauses happen)
            if v.role != Role.LEADER or not v.lease_valid or v.epoch > claimed.answered:
                continue
            counter += 1
            await self._store_write(stub, v.epoch, f"duty/{self.id}/{v.epoch}/{counter}", str(counter).encode())

    async def _store_write(self, stub: pb_grpc.FencedStoreStub, epoch: int, key: str, value: bytes) -> None:
        """One fenced write, recorded in the history as a "write" event when its answer comes."""
        req = pb.WriteRequest(writer_id=self.id, epoch=epoch, key=key, value=value)
        sent_ns = time.monotonic_ns()
        try:
            reply = await stub.Write(req, timeout=max(0.5, self.rpc_timeout_s))
        except grpc.aio.AioRpcError as exc:
            self.events.record("write", epoch=epoch, key=key, accepted=None, seq=None, error=exc.code().name, sent_ns=sent_ns)
            return
        self.events.record(
            "write", epoch=epoch, key=key, accepted=reply.accepted, seq=reply.seq, error=reply.reason or None, sent_ns=sent_ns
        )
        if not reply.accepted:
            self.events.log("store rejected write", epoch, level="warning", reason=reply.reason, key=key)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        s = self.settings
        for pid, address in s.peers.items():
            channel = peer_channel(address, s.heartbeat_interval_ms)
            self.peers[pid] = PeerState(address, channel, pb_grpc.PeerStub(channel))
        self.server = channels.server()
        pb_grpc.add_PeerServicer_to_server(PeerServicer(self), self.server)
        pb_grpc.add_LeadershipServicer_to_server(LeadershipServicer(self), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [pb.DESCRIPTOR.services_by_name[n].full_name for n in ("Peer", "Leadership")]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        try:
            peer_port = self.server.add_insecure_port(s.peer_listen)
            client_port = self.server.add_insecure_port(s.client_listen)
        except RuntimeError:
            raise ConfigError(f"cannot listen on {s.peer_listen} and {s.client_listen}: address in use or not local") from None
        metrics_port = self._start_metrics()
        await self.server.start()
        for name in ("", *names):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.health.set("leader", health_pb2.HealthCheckResponse.NOT_SERVING)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        addresses = {"peer_address": f"{_host(s.peer_listen)}:{peer_port}", "client_address": f"{_host(s.client_listen)}:{client_port}"}
        if s.metrics_listen is not None:
            addresses["metrics_address"] = f"{_host(s.metrics_listen)}:{metrics_port}"
        self.events.log("listening", self.view.epoch, event="listening", **addresses, pid=_pid())
        try:
            if s.store:
                self._spawn(self.leader_duty())
            await self._tick_loop()
        except PersistError:
            pass  # already recorded in self.failed; run_node reports it
        finally:
            await self._shutdown()

    def _start_metrics(self) -> int | None:
        listen = self.settings.metrics_listen
        if listen is None:
            return None
        try:
            return self.metrics.start(listen, on_error=lambda msg, exc: self.events.error(msg, self.view.epoch, exc))
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from None

    async def _tick_loop(self) -> None:
        tick_s = self.settings.tick_ms / 1000
        while not self.stopping.is_set():
            self.apply(self.elector.tick(self.now()))  # PersistError ends the loop (fail-stop)
            # A plain sleep: wait_for(event) built a task and a timer every tick (a fifth of idle CPU).
            # A stop request is noticed within one tick.
            await asyncio.sleep(tick_s)

    async def _shutdown(self) -> None:
        # A leader resigns first so the others elect at once instead of waiting out a timeout; a failed
        # node sends nothing at all (its elector holds a promise the disk does not).
        if self.failed is None and self.resign() is not None:
            pending = [t for t in self.tasks if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=self.rpc_timeout_s * 2)
        self.events.log("shutting down", self.view.epoch)
        self.events.record("process", action="stop", pid=_pid())
        for task in list(self.tasks):
            task.cancel()
        metrics_stopped = asyncio.ensure_future(asyncio.to_thread(self.metrics.stop))
        if self.server is not None:
            await self.server.stop(grace=0 if self.failed else 0.5)
        await metrics_stopped
        for p in self.peers.values():
            await p.channel.close()
        self.events.close()


@dataclass
class _Claimed:
    """The newest epoch whose claim was sent, and the newest whose claim was answered (or timed out)."""

    sent: int = 0
    answered: int = 0


class TransferError(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class PeerServicer(pb_grpc.PeerServicer):
    """Thin: validation and conversion live in node.wire, decisions in node.core.

    One method per RPC of service Peer, made from the .proto: a new mode's RPCs need no code here.
    """

    def __init__(self, node: NodeRuntime) -> None:
        self.node = node


def _peer_rpc(rpc: str) -> Callable[..., Any]:
    async def handle(self: PeerServicer, request: pb.PeerMessage, context: grpc.aio.ServicerContext) -> pb.PeerReply:
        return await self.node.handle_peer(rpc, request, context)

    handle.__name__ = rpc
    return handle


for _rpc in pb.DESCRIPTOR.services_by_name["Peer"].methods_by_name:
    setattr(PeerServicer, _rpc, _peer_rpc(_rpc))


class LeadershipServicer(pb_grpc.LeadershipServicer):
    def __init__(self, node: NodeRuntime) -> None:
        self.node = node

    async def _refuse_if_failed(self, context) -> None:
        # After a fail-stop the view may show a promise the disk does not hold: answer nothing from it.
        if self.node.failed is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"node {self.node.id} is stopping: {self.node.failed}")

    async def GetLeader(self, request, context):
        await self._refuse_if_failed(context)
        return self.node.leader_info()

    async def GetStatus(self, request, context):
        await self._refuse_if_failed(context)
        return self.node.status()

    async def WatchLeader(self, request, context):
        await self._refuse_if_failed(context)
        async for info in self.node.watch():
            yield info

    async def Resign(self, request, context):
        await self._refuse_if_failed(context)
        epoch = self.node.resign()
        if epoch is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, self.node.not_leader_detail())
        return pb.ResignReply(epoch=epoch)

    async def TransferLeadership(self, request, context):
        await self._refuse_if_failed(context)
        try:
            leader, epoch = await self.node.transfer(request.target_id, request.timeout_ms)
        except TransferError as exc:
            await context.abort(exc.code, exc.detail)
        return pb.TransferReply(leader_id=leader, epoch=epoch)


def _pid() -> int:
    return os.getpid()


def _host(listen: str) -> str:
    return listen.rpartition(":")[0]


def run_node(settings: NodeSettings) -> int:
    """Run until stopped; 0 on a clean stop, 1 on a crash.

    Raises PersistError after a fail-stop (the CLI reports it in one line, exit EXIT_STORAGE_FAULT),
    and ConfigError for settings that cannot work (one line, exit status 2).
    """
    node = NodeRuntime(settings)
    route_logging(node.events, lambda: node.view.epoch)
    try:
        asyncio.run(node.run())
    except KeyboardInterrupt:
        pass
    except ConfigError:
        raise  # the CLI reports it in one line on stderr, exit status 2
    except PersistError:
        pass  # node.failed holds it
    except Exception as exc:
        if node.failed is None:
            node.events.error("node crashed", node.view.epoch, exc)
            return 1
    if node.failed is not None:
        raise node.failed
    return 0

