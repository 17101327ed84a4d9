"""Where the dashboard's model gets its input: the nodes over gRPC, their processes, and the history files.

* one WatchLeader stream per node (a change reaches the page as soon as the node reports it), and a
  GetStatus poll of every node every STATUS_PERIOD_S (counters, promises, and views when a stream is down);
* every PROCESS_PERIOD_S, each node's pid from cluster.json and its state in /proc: running, stopped
  (paused) or gone (crashed); cluster.json is reread when it changes (a restart records a new pid);
* every FEED_PERIOD_S, the lines appended to the harness history and to every node's events file, and
  every STORE_PERIOD_S the store's log since the last entry read (ReadLog), as history events.

The observer talks to each node's client port directly, as `bullyproof leader` does: it is never
behind Toxiproxy, so a partition cuts the nodes from each other, not from the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from chaos.harness import HARNESS_EVENTS, store_event
from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import client_channel
from node.launcher.cluster import CLUSTER_FILE, read_cluster_file
from node.launcher.tail import JsonLinesTail

from .model import Model

STATUS_PERIOD_S = 0.3
PROCESS_PERIOD_S = 0.1
FEED_PERIOD_S = 0.1
STORE_PERIOD_S = 0.3
RPC_TIMEOUT_S = 0.25
# A node's events file grows by its grants (ten a second per follower): start a new tail this close to
# its end, so opening the dashboard beside a cluster that ran for hours reads megabytes, not gigabytes.
TAIL_FROM_END_BYTES = 4 * 1024 * 1024


def process_state(pid: int | None) -> str:
    """running | paused (stopped by SIGSTOP) | crashed (gone, or a zombie) | unknown (no pid recorded)."""
    if not pid:
        return "unknown"
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "crashed"
    if state in ("Z", "X", "x"):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # our own child (restarted from the page): reap it
        return "crashed"
    return "paused" if state in ("T", "t") else "running"


class Observer:
    def __init__(self, directory: Path, model: Model, changed: Callable[[], None]) -> None:
        self.directory = directory
        self.model = model
        self.changed = changed
        self.data = read_cluster_file(directory)
        self.cluster_mtime_ns = 0
        self.channels: dict[int, grpc.aio.Channel] = {}
        self.stubs: dict[int, pb_grpc.LeadershipStub] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.tails = [JsonLinesTail(directory / HARNESS_EVENTS)] + [
            JsonLinesTail(n["events"], from_end_bytes=TAIL_FROM_END_BYTES)
            for n in self.data["nodes"]
            if n.get("events")
        ]
        self.store_after = 0
        self.store_channel: grpc.aio.Channel | None = None
        self.poke = asyncio.Event()  # an action just happened: look now, not at the next period

    async def start(self) -> None:
        for n in self.data["nodes"]:
            self.channels[n["id"]] = client_channel(n["client_address"])
            self.stubs[n["id"]] = pb_grpc.LeadershipStub(self.channels[n["id"]])
        if self.data.get("store", {}).get("address"):
            self.store_channel = client_channel(self.data["store"]["address"])
        self._processes()
        self.tasks = [
            asyncio.ensure_future(c)
            for c in (
                *(self._watch(nid) for nid in self.stubs),
                self._every(STATUS_PERIOD_S, self._statuses),
                self._every(PROCESS_PERIOD_S, self._processes_async),
                self._every(FEED_PERIOD_S, self._feed),
                self._every(STORE_PERIOD_S, self._store),
            )
        ]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for ch in [*self.channels.values(), *([self.store_channel] if self.store_channel else [])]:
            await ch.close()

    async def look_now(self) -> None:
        """After an action: processes, files and statuses at once (the streams need no help)."""
        self._processes()
        await self._feed()
        await self._statuses()

    async def _every(self, period_s: float, step: Callable[[], Any]) -> None:
        source = step.__name__.strip("_")
        while True:
            try:
                await step()
                self.model.source_failed(source, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bad line or a vanished file must not stop the page: say so on it
                self.model.source_failed(source, f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(period_s)

    # ---- the nodes ------------------------------------------------------------------------------

    async def _watch(self, node: int) -> None:
        stub = self.stubs[node]
        while True:
            try:
                async for info in stub.WatchLeader(pb.WatchLeaderRequest()):
                    self.model.on_info(node, info)
                    self.changed()
            except grpc.aio.AioRpcError:
                pass
            self.model.on_stream_down(node)
            await asyncio.sleep(0.1)  # a crashed node: try again soon, it may be restarted any moment

    async def _statuses(self) -> None:
        async def one(node: int) -> None:
            try:
                status: pb.NodeStatus | str = await self.stubs[node].GetStatus(
                    pb.GetStatusRequest(), timeout=RPC_TIMEOUT_S
                )
            except grpc.aio.AioRpcError as exc:
                status = exc.code().name
            self.model.on_status(node, status)

        await asyncio.gather(*(one(n) for n in self.stubs))
        self.changed()

    async def _processes_async(self) -> None:
        self._processes()

    def _processes(self) -> None:
        with contextlib.suppress(OSError):
            mtime = (self.directory / CLUSTER_FILE).stat().st_mtime_ns
            if mtime != self.cluster_mtime_ns:
                self.cluster_mtime_ns = mtime
                with contextlib.suppress(Exception):  # mid-rewrite: next time
                    self.data = read_cluster_file(self.directory)
        before = self.model.versions["nodes"]
        for n in self.data["nodes"]:
            pid = n.get("pid")
            self.model.on_process(n["id"], pid, process_state(pid))
        if self.model.versions["nodes"] != before:
            self.changed()

    # ---- the history ----------------------------------------------------------------------------

    async def _feed(self) -> None:
        events = [e for tail in self.tails for e in tail.poll()]
        if events:
            self.model.on_events(events, time.monotonic_ns(), time.time())
            self.changed()

    async def _store(self) -> None:
        if self.store_channel is None:
            return
        stub = pb_grpc.FencedStoreStub(self.store_channel)
        events: list[dict[str, Any]] = []
        while True:
            try:
                reply = await stub.ReadLog(pb.ReadLogRequest(after_seq=self.store_after, limit=5000), timeout=1.0)
            except grpc.aio.AioRpcError:
                break  # the store is down or restarting: its log waits for it
            events.extend(store_event(e) for e in reply.entries)
            if not reply.entries:
                break
            self.store_after = reply.entries[-1].seq
        if events:
            self.model.on_events(events, time.monotonic_ns(), time.time())
            self.changed()


# What the page draws from the nodes' own histories: every kind but the grants (ten a second per
# follower, which the page does not show).
WATCHED_KINDS = ("view", "message", "process", "membership", "release", "write")


class RemoteObserver(Observer):
    """A cluster named by its client addresses (`--nodes`): everything comes over the client ports.

    One WatchLeader and one WatchEvents stream per node, the GetStatus poll as for a local cluster;
    no pids (another host's processes: a node that does not answer is unreachable), no files, no store
    log, no harness history. An events stream resumes where it broke (after_seq, in the node's
    incarnation; a restarted node's stream starts over at its oldest event)."""

    def __init__(self, addresses: dict[int, str], model: Model, changed: Callable[[], None]) -> None:
        self.addresses = addresses
        self.model = model
        self.changed = changed
        self.channels = {}
        self.stubs = {}
        self.tasks = []
        self.store_channel = None
        self.pending: list[dict[str, Any]] = []
        self.poke = asyncio.Event()

    async def start(self) -> None:
        for nid, address in self.addresses.items():
            self.channels[nid] = client_channel(address)
            self.stubs[nid] = pb_grpc.LeadershipStub(self.channels[nid])
        self.tasks = [
            asyncio.ensure_future(c)
            for c in (
                *(self._watch(nid) for nid in self.stubs),
                *(self._events(nid) for nid in self.stubs),
                self._every(STATUS_PERIOD_S, self._statuses),
                self._every(FEED_PERIOD_S, self._feed),
            )
        ]

    async def look_now(self) -> None:
        await self._feed()
        await self._statuses()

    async def _events(self, node: int) -> None:
        stub = self.stubs[node]
        after, incarnation = 0, 0
        while True:
            try:
                request = pb.WatchEventsRequest(after_seq=after, incarnation=incarnation, kinds=WATCHED_KINDS)
                async for ev in stub.WatchEvents(request):
                    after, incarnation = ev.seq, ev.incarnation
                    event = json.loads(ev.json)
                    # The node's monotonic clock is its host's: place the event on ours by its unix time.
                    event["t_ns"] = ev.unix_ns - (time.time_ns() - time.monotonic_ns())
                    if ev.missed:  # the stream says so: the page's log says so too
                        self.pending.append(
                            {"t_ns": event["t_ns"] - 1, "kind": "gap", "node": node, "missed": ev.missed}
                        )
                    self.pending.append(event)
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)  # down or restarting: try again soon

    async def _feed(self) -> None:
        events, self.pending = self.pending, []
        if events:
            self.model.on_events(events, time.monotonic_ns(), time.time())
            self.changed()
