"""The node process: lifecycle, and carrying out the elector's output. The only place with clocks and disks.

It feeds the pure elector (node.core) with ticks from the lease clock (node.runtime.clock:
CLOCK_BOOTTIME, which counts suspend) and with validated peer messages, and carries out what comes
back in order: persist the promise (fsync), then send. If the promise cannot be persisted the node
fail-stops: nothing that could reveal it leaves, and the process exits (run_node raises
PersistError; the CLI exits 3). The jobs around it each have a module: peers.py (transport and the
Peer service), observe.py (view, WatchLeader, health, status), leadership.py (resign, transfer, the
Leadership service), duty.py (fenced writes), joining.py (--self-join: asking to be added), events.py
(history and logs). Each job takes this node as its port (port.py: exactly the members it uses) and
never imports this module.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from node import channels
from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.config import INSECURE_WARNING, ConfigError, NodeSettings
from node.core import (
    REPLY_TYPE,
    BecameLeader,
    Config,
    ElectionStarted,
    MembershipChanged,
    Message,
    Output,
    PromiseReleased,
    SteppedDown,
    make_elector,
    mode_info,
)
from node.runtime.clock import LEASE_CLOCK_NAME, ClockPair, lease_clock_ns
from node.runtime.duty import LeaderDuty
from node.runtime.events import EventLog, keep_events, route_logging
from node.runtime.joining import SelfJoin
from node.runtime.leadership import Handover, LeadershipServicer
from node.runtime.metrics import NodeMetrics
from node.runtime.observe import Observation
from node.runtime.peers import PeerServicer, PeerTransport
from node.runtime.state import PersistError, PromiseStore


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
        self.promises = PromiseStore(settings.state_dir, settings.timing, settings.tick_ms)
        outside = settings.starts_outside  # --join, or --self-join and not in --voters
        config = Config(
            settings.node_id,
            settings.initial_voters if not outside else settings.members,
            settings.timing,
            settings.planted_bugs,
            settings.mode_options,
            join=outside,
        )
        # Seeded per node and boot, so a run's randomness is reproducible from its log line.
        seed = hash((settings.node_id, self.t0.lease_ns)) & 0xFFFFFFFF
        self.elector = make_elector(settings.mode, config, self.promises.load(), random.Random(seed), self.now())
        self.events = EventLog(self.id, settings.events_path, keep=keep_events())
        # In modes whose acks are promises, what this node promises goes into the history (P3g):
        # "grant" (acks: peers.py; votes for itself: apply) and "release".
        self.records_promises = mode_info(settings.mode).promises
        self.metrics = NodeMetrics(self.id)
        self.tasks: set[asyncio.Task] = set()
        self.stopping = asyncio.Event()
        self._wakeup: asyncio.Future | None = None  # what the tick loop sleeps on (wake() resolves it)
        self.peer_server: grpc.aio.Server | None = None  # Peer only
        self.server: grpc.aio.Server | None = None  # Leadership, health, reflection
        # The jobs, each in its own module.
        self.observe = Observation(self)
        self.transport = PeerTransport(self)
        self.handover = Handover(self)
        self.duty = LeaderDuty(self)
        self.joining = SelfJoin(self)
        self.events.log(
            "boot",
            self.epoch(),
            seed=seed,
            mode=str(settings.mode.value),
            promise=self.elector.promise.__dict__,
            lease_clock=LEASE_CLOCK_NAME,
        )
        self.events.record("process", action="start", pid=os.getpid())
        self.observe.record(self.observe.view, "boot")

    # ---- time ----------------------------------------------------------------------------

    def now(self) -> int:
        """The core's clock: ticks since boot on the lease clock (suspend counts as time gone)."""
        return (lease_clock_ns() - self.t0.lease_ns) // self.tick_ns

    def tick_to_ns(self, tick: int) -> int:
        """A tick as a history timestamp (CLOCK_MONOTONIC, the clock every t_ns is on)."""
        return self.t0.to_monotonic_ns(self.t0.lease_ns + tick * self.tick_ns)

    def epoch(self) -> int:
        """The epoch of the view last reported (for log lines)."""
        return self.observe.view.epoch

    # ---- carrying out the elector's output -------------------------------------------------

    def apply(self, out: Output, reply_to: Message | None = None) -> Message | None:
        """Persist, then send; returns the reply to `reply_to` (sent on the same call) if any.

        Raises PersistError, having sent nothing, if the promise could not be made durable (or one
        could not be earlier): the elector now holds a promise the disk does not, so the node stops.
        """
        if self.failed is not None:
            raise self.failed
        if self.records_promises:
            # A release happened in the step, before anything the step persisted (a successor votes
            # for itself right after its leader released it): recorded first, as the simulator does.
            for ev in out.events:
                if isinstance(ev, PromiseReleased):
                    self.events.record("release", leader=ev.leader, epoch=ev.epoch)
        if out.persist is not None:
            try:
                self.promises.save(out.persist)  # fsync before anything that reveals it
            except PersistError as exc:
                self._fail_stop(exc)
                raise
            if self.records_promises and out.persist.leader_id == self.id:
                # Its vote for itself (proposing, campaigning, reasserting) is a grant to itself, judged
                # against its live promises to others; it holds no window of its own (promise_ms 0):
                # its own backing is counted apart (node.history.own_votes), as in the simulator.
                self.events.record("grant", leader=self.id, epoch=out.persist.epoch, promise_ms=0)
        reply = None
        for msg in out.messages:
            if reply_to is not None and msg.dst == reply_to.src and msg.type == REPLY_TYPE.get(reply_to.type):
                reply = msg
            else:
                self.spawn(self.transport.send(msg))
        for ev in out.events:
            self._on_event(ev)
        self.observe.refresh()
        self.wake()  # the elector's timers may have moved: the tick loop asks for its next deadline (a
        # no-op when the tick loop itself applies: nothing else runs between its tick and its sleep)
        return reply

    def _fail_stop(self, exc: PersistError) -> None:
        """Mark the node failed and stop it; every later apply() raises, so nothing more is sent."""
        self.failed = exc
        self.observe.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        self.observe.health.set("leader", health_pb2.HealthCheckResponse.NOT_SERVING)
        self.events.log(
            f"fail-stop: {exc}; stopping without answering",
            self.epoch(),
            level="error",
            event="persist_failed",
            file=str(exc.target),
            failed_path=str(exc.path),
            os_error=exc.error.strerror or str(exc.error),
            errno=exc.error.errno,
        )
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.wake()

    def _on_event(self, ev: Any) -> None:
        if isinstance(ev, ElectionStarted):
            self.metrics.election_started()
        elif isinstance(ev, BecameLeader):
            self.events.log("became leader", ev.epoch)
        elif isinstance(ev, SteppedDown):
            self.events.log("stepped down", ev.epoch, reason=ev.reason)
            self.metrics.stepped_down(ev.reason)
            self.observe.stepdown, self.observe.stepdown_ns = ev, time.monotonic_ns()
        elif isinstance(ev, MembershipChanged):
            m = ev.membership
            self.events.log(("agreed " if ev.committed else "runs ") + m.describe(), self.epoch(), configuration=m.id)
            if not ev.committed:  # the history's record of whom this node counts, from now on
                self.events.record(
                    "membership",
                    voters=list(m.voters),
                    learners=list(m.learners),
                    index=m.index,
                    term=m.term,
                    previous=list(m.previous),
                )
            self.handover.membership_changed()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(), PersistError):
            self.events.error("task failed", self.epoch(), task.exception(), task=task.get_coro().__qualname__)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        s = self.settings
        self.transport.connect()
        # Two servers: peers reach only the Peer service, other services only Leadership, health and
        # reflection. A client port that took peer messages would let any program that reaches it
        # speak for a member (and with --insecure, speaking for one is all it takes).
        self.peer_server = channels.server()
        pb_grpc.add_PeerServicer_to_server(PeerServicer(self.transport), self.peer_server)
        self.server = channels.server()
        pb_grpc.add_LeadershipServicer_to_server(LeadershipServicer(self, self.handover), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.observe.health, self.server)
        names = [pb.DESCRIPTOR.services_by_name[n].full_name for n in ("Peer", "Leadership")]
        reflection.enable_server_reflection([names[1], health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        try:
            peer_port = channels.listen(self.peer_server, s.peer_listen, s.tls)
            client_port = channels.listen(self.server, s.client_listen, s.tls)
        except RuntimeError:
            raise ConfigError(
                f"cannot listen on {s.peer_listen} and {s.client_listen}: address in use or not local"
            ) from None
        if s.tls is None:
            self.events.log(INSECURE_WARNING, self.epoch(), level="warning", event="insecure")
        metrics_port = self._start_metrics()
        await self.peer_server.start()
        await self.server.start()
        for name in ("", *names):
            self.observe.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.observe.health.set("leader", health_pb2.HealthCheckResponse.NOT_SERVING)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        addresses = {
            "peer_address": f"{_host(s.peer_listen)}:{peer_port}",
            "client_address": f"{_host(s.client_listen)}:{client_port}",
        }
        if s.metrics_listen is not None:
            addresses["metrics_address"] = f"{_host(s.metrics_listen)}:{metrics_port}"
        self.events.log("listening", self.epoch(), event="listening", **addresses, pid=os.getpid())
        try:
            if s.store:
                self.spawn(self.duty.run())
            if s.self_join:
                self.spawn(self.joining.run())
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
            return self.metrics.start(
                listen, on_error=lambda msg, exc: self.events.error(msg, self.epoch(), exc), tls=self.settings.tls
            )
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from None

    async def _tick_loop(self) -> None:
        """Tick the elector, then sleep until its next deadline (capped at one heartbeat interval),
        or until a message, a send failure or a stop request wakes the loop (wake()). Idle nodes
        wake about once per heartbeat instead of every tick: the elector's next_deadline promises
        that the ticks in between would do nothing (tests/unit/test_next_deadline.py checks it)."""
        loop = asyncio.get_running_loop()
        cap_ticks = max(1, self.settings.heartbeat_interval_ms // self.settings.tick_ms)
        while not self.stopping.is_set():
            now = self.now()
            self.apply(self.elector.tick(now))  # PersistError ends the loop (fail-stop)
            deadline = min(self.elector.next_deadline(now), now + cap_ticks)
            delay_s = (self.t0.lease_ns + deadline * self.tick_ns - lease_clock_ns()) / 1e9
            if delay_s <= 0:  # the deadline passed while ticking: tick again, after letting others run
                await asyncio.sleep(0)
                continue
            # A bare future and one timer handle: cheaper than wait_for(event), which builds a task.
            self._wakeup = loop.create_future()
            timer = loop.call_later(delay_s, self.wake)
            try:
                await self._wakeup
            finally:
                timer.cancel()
                self._wakeup = None

    def wake(self) -> None:
        """Tick at once: the elector's state changed outside a tick (a message, a failed send, a
        resignation) or the node is stopping."""
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _shutdown(self) -> None:
        # A leader resigns first so the others elect at once instead of waiting out a timeout; a failed
        # node sends nothing at all (its elector holds a promise the disk does not).
        if self.failed is None and self.handover.resign() is not None:
            pending = [t for t in self.tasks if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=self.transport.rpc_timeout_s * 2)
        self.events.log("shutting down", self.epoch())
        self.events.record("process", action="stop", pid=os.getpid())
        self.transport.closing = True
        for task in list(self.tasks):
            task.cancel()
        metrics_stopped = asyncio.ensure_future(asyncio.to_thread(self.metrics.stop))
        grace_s = 0 if self.failed else 0.5
        await asyncio.gather(*(srv.stop(grace=grace_s) for srv in (self.peer_server, self.server) if srv is not None))
        await metrics_stopped
        await self.transport.close()
        self.events.close()


def _host(listen: str) -> str:
    return listen.rpartition(":")[0]


def run_node(settings: NodeSettings) -> int:
    """Run until stopped; 0 on a clean stop, 1 on a crash.

    Raises PersistError after a fail-stop (the CLI reports it in one line, exit EXIT_STORAGE_FAULT),
    and ConfigError for settings that cannot work (one line, exit status 2).
    """
    node = NodeRuntime(settings)
    route_logging(node.events, node.epoch)
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
            node.events.error("node crashed", node.epoch(), exc)
            return 1
    if node.failed is not None:
        raise node.failed
    return 0
