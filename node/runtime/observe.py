"""Observation: the node's view as others see it (history, logs, metrics), WatchLeader, health, status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.api import bullyproof_pb2 as pb
from node.core import Reason, SteppedDown, View, mode_info, mode_names
from node.runtime.port import ObserveNode
from node.runtime.wire import ROLE_PB, membership_to_pb

MODE_PB = {name: pb.Mode.Value(f"MODE_{name.upper()}") for name in mode_names()}  # the .proto lists every mode


class NodeHealth(health_pb2_grpc.HealthServicer):
    """grpc.health.v1 for the node, on its event loop; set() is a plain call, as the node makes it.

    Not grpc_health's HealthServicer: on an asyncio server its Watch is a blocking generator run in a
    thread of the loop's default executor, and nothing wakes that thread when the caller goes away
    (the asyncio server never runs a stream's close callbacks). Six cancelled Watch calls (the
    executor's size on two cores) left every later Check hanging, and a node with a stuck Watch could
    not exit on SIGTERM (asyncio.run waits for the executor). Here Watch is a coroutine: cancelled
    with its call, and, like WatchLeader, a slow reader gets the latest status, never a backlog.
    """

    def __init__(self, stopping: asyncio.Event) -> None:
        self.statuses: dict[str, int] = {"": health_pb2.HealthCheckResponse.SERVING}
        self.changed = asyncio.Event()
        self.stopping = stopping

    def set(self, service: str, status: int) -> None:
        if self.statuses.get(service) == status:
            return
        self.statuses[service] = status
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext):
        status = self.statuses.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no health service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext):
        last = None
        while not self.stopping.is_set():
            changed = self.changed
            status = self.statuses.get(request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status)
                continue
            await _first_of(changed, self.stopping)


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def lease_end_ns(stepdown: SteppedDown, tick_to_ns: Callable[[int], int], stepped_down_ns: int) -> int | None:
    """When a leader that stepped down stopped leading, in history time (a view's ``lease_end_ns``).

    A lease that ran out ended where its end tick began (``tick_to_ns``), maybe long before a paused
    node noticed. A resignation or preemption names the tick it happened in, and the node led through
    that tick up to the instant it stepped down (``stepped_down_ns``): the start of the tick would be
    up to a tick too early. No lease end (a newer epoch seen): None, the view's own time stands."""
    if stepdown.lease_end_tick is None:
        return None
    if stepdown.reason == Reason.LEASE_EXPIRED:
        return tick_to_ns(stepdown.lease_end_tick)
    return stepped_down_ns


class Observation:
    def __init__(self, node: ObserveNode) -> None:
        self.node = node
        self.health = NodeHealth(node.stopping)
        self.leader_changes = 0
        self.view: View = node.elector.view(node.now())
        self.view_seq = 0
        self.view_changed = asyncio.Event()
        # Set by the node's event handling (the stepdown, and when it happened), read by refresh().
        self.stepdown: SteppedDown | None = None
        self.stepdown_ns = 0

    def refresh(self) -> None:
        """After every elector output: record a changed view, wake watchers, update health and metrics."""
        node = self.node
        view = node.elector.view(node.now())
        if (view.role, view.epoch, view.leader_id) != (self.view.role, self.view.epoch, self.view.leader_id):
            if view.leader_id != self.view.leader_id:
                self.leader_changes += 1
                node.metrics.leader_changed()
            self.record(view)
            self._notify_watchers(view)
        elif view.lease_valid != self.view.lease_valid:
            self._notify_watchers(view)
        self.stepdown = None
        node.metrics.view_changed(view, node.elector.promise.epoch, node.elector.stats)

    def record(self, view: View, reason: str = "") -> None:
        node = self.node
        self.view = v = view
        fields: dict[str, Any] = {"role": v.role.value, "epoch": v.epoch, "leader": v.leader_id}
        sd = self.stepdown
        if sd is not None:
            fields["reason"] = sd.reason
            end_ns = lease_end_ns(sd, node.tick_to_ns, self.stepdown_ns)
            if end_ns is not None:
                fields["lease_end_ns"] = end_ns
        elif reason:
            fields["reason"] = reason
        node.events.record("view", **fields)
        node.events.log(f"view: {v.role.value}, leader {v.leader_id}", v.epoch, leader=v.leader_id)

    def _notify_watchers(self, view: View) -> None:
        """Wake WatchLeader streams, and keep health service "leader" true only with a valid lease."""
        self.view = view
        serving = (
            health_pb2.HealthCheckResponse.SERVING if view.lease_valid else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.health.set("leader", serving)
        self.view_seq += 1
        changed, self.view_changed = self.view_changed, asyncio.Event()
        changed.set()

    async def watch(self) -> AsyncIterator[pb.LeaderInfo]:
        """The current view, then each change. A slow reader skips to the latest (no backlog).

        Counted in the metrics while it runs (bullyproof_watchers): a stream whose caller went away
        is cancelled by gRPC, and must not stay counted (or held)."""
        seen = -1
        self.node.metrics.watcher_opened()
        try:
            while not self.node.stopping.is_set():
                changed = self.view_changed
                if self.view_seq != seen:
                    seen = self.view_seq
                    yield self.leader_info()
                    continue
                await self.until_changed_or_stopping(changed)
        finally:
            self.node.metrics.watcher_closed()

    async def until_changed_or_stopping(self, changed: asyncio.Event) -> None:
        """Wait for the view change `changed` stands for, or for the node to stop."""
        await _first_of(changed, self.node.stopping)

    def leader_info(self) -> pb.LeaderInfo:
        node = self.node
        v = node.elector.view(node.now())
        leader, epoch = v.answer or (0, 0)  # only what holds now: see View.answer
        return pb.LeaderInfo(
            known=v.answer is not None,
            leader_id=leader,
            epoch=epoch,
            node_id=node.id,
            role=ROLE_PB[v.role],
            lease_valid=v.lease_valid,
            view_time_unix_ns=time.time_ns(),
            outside=self.outside(),
        )

    def outside(self) -> bool:
        """In no configuration (joining, or removed): modes that change membership only."""
        node = self.node
        if not mode_info(node.settings.mode).membership_changes:
            return False
        return node.id not in node.elector.membership.everyone

    def status(self) -> pb.NodeStatus:
        node = self.node
        v = node.elector.view(node.now())
        now_ns = time.monotonic_ns()
        stats = node.elector.stats
        # The configuration, in modes that change it (node.core.membership); None in the others.
        m = node.elector.membership if mode_info(node.settings.mode).membership_changes else None
        return pb.NodeStatus(
            node_id=node.id,
            role=ROLE_PB[v.role],
            mode=MODE_PB[node.settings.mode.value],
            epoch=v.epoch,
            promised_epoch=node.elector.promise.epoch,
            promised_to=node.elector.promise.leader_id,
            has_leader=v.answer is not None,
            leader_id=v.answer[0] if v.answer else 0,
            lease_valid=v.lease_valid,
            peers=[
                pb.PeerView(
                    id=pid,
                    address=p.address,
                    last_heard_ms=(now_ns - p.last_heard_ns) // 1_000_000 if p.last_heard_ns else -1,
                    reachable=p.reachable,
                    configuration_refusal=p.configuration_refusal,
                )
                for pid, p in sorted(node.transport.peers.items())
            ],
            elections_started=stats.elections_started,
            elections_won=stats.elections_won,
            handovers_won=stats.handovers_won,
            configuration_id=m.id if m is not None else node.transport.configuration,
            configuration=membership_to_pb(m) if m is not None else None,
            configuration_agreed=m is not None and node.elector.membership_agreed(),
            stepdowns=stats.stepdowns,
            messages_sent=dict(node.transport.sent),
            messages_received=dict(node.transport.received),
            leader_changes=self.leader_changes,
            uptime_ms=int((time.time() - node.started_unix) * 1000),
            heartbeat_interval_ms=node.settings.heartbeat_interval_ms,
            election_timeout_ms=node.settings.election_timeout_ms,
        )
