"""The Python SDK against real node and store processes: find and follow the leader, run work only
while leading, and the example scheduler as real processes beside a real cluster. No mocks."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import observer_channel
from node.client.fencing import BlockingSqliteFence, StaleEpoch
from node.client.sdk import (
    BlockingLeaseToken,
    Fenced,
    FencedWriter,
    LeaderClient,
    LeaderEvent,
    Leadership,
    LeaseToken,
    NodeError,
)
from node.launcher.cluster import LocalCluster, pid_alive, process_fault, stop_pids, wait_for
from node.launcher.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AGREE_TIMEOUT_S = 15.0
STEP_TIMEOUT_S = 15.0
SCENARIO_TIMEOUT_S = 90.0

T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run one async scenario with an overall deadline, so a hang fails the test instead of the suite."""

    async def bounded() -> T:
        async with asyncio.timeout(SCENARIO_TIMEOUT_S):
            return await scenario()

    return asyncio.run(bounded())


async def eventually(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll a sync or async predicate until it is truthy, without blocking the apps on this loop."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)


async def agreement(cluster: LocalCluster, **kwargs: Any) -> tuple[int, int]:
    """cluster.wait_for_agreement off the event loop, so the SDK tasks keep running meanwhile."""
    return await asyncio.to_thread(cluster.wait_for_agreement, timeout_s=AGREE_TIMEOUT_S, **kwargs)


def dead_address() -> str:
    """A port in this worker's slice that nothing listens on."""
    return f"127.0.0.1:{free_port()}"


def store_log(cluster: LocalCluster) -> list[pb.LogEntry]:
    with observer_channel(cluster.spec.store_address) as ch:  # as the cluster's admin if it runs TLS
        return list(pb_grpc.FencedStoreStub(ch).ReadLog(pb.ReadLogRequest(limit=10_000), timeout=5).entries)


# ---- LeaderClient -------------------------------------------------------------------------------------


def test_get_leader_from_a_list_that_includes_a_dead_address(make_cluster):
    cluster = make_cluster(3)
    leader_id, epoch = cluster.wait_for_agreement(timeout_s=AGREE_TIMEOUT_S)
    addresses = cluster.client_addresses()

    async def scenario() -> None:
        async with LeaderClient([dead_address(), *addresses.values()], deadline_s=1.0, insecure=True) as client:
            leader = await client.get_leader()
            assert leader is not None
            assert (leader.leader_id, leader.epoch) == (leader_id, epoch)
            assert leader.address == addresses[leader_id], "the leader's own client address, learned from the list"
            assert leader.observed_by in addresses
            assert await client.wait_for_leader(timeout_s=5) == leader

    run(scenario)


def test_get_leader_follows_the_leader_after_it_is_killed(make_cluster):
    cluster = make_cluster(3)
    old_id, old_epoch = cluster.wait_for_agreement(timeout_s=AGREE_TIMEOUT_S)
    addresses = cluster.client_addresses()

    async def scenario() -> None:
        async with LeaderClient(list(addresses.values()), insecure=True) as client:
            assert (await client.get_leader()).leader_id == old_id  # type: ignore[union-attr]
            process_fault(cluster.dir, str(old_id), "kill")

            async def new_leader():
                leader = await client.get_leader()
                return leader if leader is not None and leader.leader_id != old_id else None

            leader = await eventually(new_leader, STEP_TIMEOUT_S, "get_leader to name a new leader")
            assert leader.epoch > old_epoch
            assert leader.address == addresses[leader.leader_id]
            assert leader.observed_by != old_id

    run(scenario)


def test_watch_fails_over_and_yields_no_leader_then_the_new_leader(make_cluster):
    cluster = make_cluster(3)
    old_id, old_epoch = cluster.wait_for_agreement(timeout_s=AGREE_TIMEOUT_S)
    addresses = cluster.client_addresses()
    # The leader first, so the stream that breaks is the one we follow; the others in Bully order.
    order = [addresses[old_id], *(addresses[i] for i in sorted(addresses, reverse=True) if i != old_id)]

    async def scenario() -> list[LeaderEvent]:
        events: list[LeaderEvent] = []
        async with LeaderClient(order, insecure=True) as client:
            async with contextlib.aclosing(client.watch()) as stream:
                first = await anext(stream)
                assert (first.leader_id, first.epoch, first.node_id) == (old_id, old_epoch, old_id)
                process_fault(cluster.dir, str(old_id), "kill")
                async with asyncio.timeout(STEP_TIMEOUT_S):
                    async for ev in stream:
                        events.append(ev)
                        if ev.leader_id not in (None, old_id):
                            break
        return events

    events = run(scenario)
    assert all(ev.node_id != old_id for ev in events), "after the kill, views come from the survivors"
    no_leader = [i for i, ev in enumerate(events) if ev.leader_id is None]
    assert no_leader, f"expected a 'no leader' event before the new leader: {events}"
    new = events[-1]
    assert no_leader[0] < len(events) - 1 and new.epoch > old_epoch
    assert all(a != b for a, b in zip(events, events[1:])), "consecutive duplicates are suppressed"


def test_errors_end_the_call_instead_of_retrying_forever(make_cluster):
    cluster = make_cluster(3)
    leader_id, _ = cluster.wait_for_agreement(timeout_s=AGREE_TIMEOUT_S)
    addresses = cluster.client_addresses()
    follower_id = min(n for n in addresses if n != leader_id)

    async def never(token: LeaseToken) -> None:
        raise AssertionError("work must not start")

    async def broken(token: LeaseToken) -> None:
        raise RuntimeError(f"job failed in epoch {token.epoch}")

    async def scenario() -> None:
        with pytest.raises(NodeError, match=f"is node {follower_id}, not node {leader_id}"):  # wrong address
            await asyncio.wait_for(
                Leadership(addresses[follower_id], node_id=leader_id, insecure=True).run(never), STEP_TIMEOUT_S
            )
        async with LeaderClient([cluster.spec.store_address], insecure=True) as client:  # the store is not a node
            with pytest.raises(NodeError, match="WatchLeader"):
                await asyncio.wait_for(anext(client.watch()), STEP_TIMEOUT_S)
        stopped: list[bool] = []
        leadership = Leadership(addresses[leader_id], leader_id, insecure=True)
        with pytest.raises(RuntimeError, match="job failed"):
            await asyncio.wait_for(
                leadership.run(broken, on_stopped_leading=lambda: stopped.append(True)), STEP_TIMEOUT_S
            )
        assert stopped == [True], "the term is closed before the error leaves run()"

    run(scenario)


# ---- Leadership.run ----------------------------------------------------------------------------------------


@dataclass
class App:
    """One app beside one node: what its work and callbacks saw."""

    node_id: int
    tokens: list[LeaseToken] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)  # epochs whose work was cancelled
    log: list[tuple[Any, ...]] = field(default_factory=list)

    async def work(self, token: LeaseToken) -> None:
        self.tokens.append(token)
        try:
            await asyncio.Event().wait()  # leads until cancelled
        except asyncio.CancelledError:
            self.cancelled.append(token.epoch)
            raise

    def started(self, epoch: int) -> None:
        self.log.append(("started", epoch))

    async def stopped(self) -> None:
        self.log.append(("stopped",))

    def new_leader(self, leader_id: int | None, epoch: int) -> None:
        self.log.append(("new_leader", leader_id, epoch))

    @property
    def leading(self) -> bool:
        return bool(self.tokens) and not self.tokens[-1].lost.is_set()


@contextlib.asynccontextmanager
async def apps_beside(
    cluster: LocalCluster, release_on_cancel: bool = False
) -> AsyncIterator[dict[int, tuple[App, asyncio.Task]]]:
    apps: dict[int, tuple[App, asyncio.Task]] = {}
    for node_id, address in cluster.client_addresses().items():
        app = App(node_id)
        leadership = Leadership(address, node_id, release_on_cancel=release_on_cancel, insecure=True)
        apps[node_id] = (app, asyncio.create_task(leadership.run(app.work, app.started, app.stopped, app.new_leader)))
    try:
        yield apps
    finally:
        for _, task in apps.values():
            task.cancel()
        await asyncio.wait([task for _, task in apps.values()])


def test_leadership_runs_work_only_beside_the_leader_and_cancels_it_when_that_node_is_paused(make_cluster):
    cluster = make_cluster(3)
    old_id, old_epoch = cluster.wait_for_agreement(timeout_s=AGREE_TIMEOUT_S)

    async def scenario() -> None:
        async with apps_beside(cluster) as apps:
            old_app = apps[old_id][0]
            await eventually(lambda: old_app.leading, STEP_TIMEOUT_S, "work to start beside the leader")
            token = old_app.tokens[0]
            assert (token.epoch, token.node_id) == (old_epoch, old_id)
            assert ("started", old_epoch) in old_app.log and ("new_leader", old_id, old_epoch) in old_app.log
            for node_id, (app, task) in apps.items():
                if node_id != old_id:
                    await eventually(
                        lambda app=app: ("new_leader", old_id, old_epoch) in app.log,
                        STEP_TIMEOUT_S,
                        f"the app beside node {node_id} to learn the leader",
                    )
                    assert not app.tokens, f"work started beside follower {node_id}"
                assert not task.done(), f"run() beside node {node_id} ended: {task}"

            process_fault(cluster.dir, str(old_id), "pause")
            try:
                # The paused node cannot answer: its app must stop on its own, past the lease.
                await asyncio.wait_for(token.lost.wait(), STEP_TIMEOUT_S)
                await eventually(lambda: old_app.cancelled == [old_epoch], STEP_TIMEOUT_S, "work to be cancelled")
                await eventually(lambda: old_app.log[-1] == ("stopped",), STEP_TIMEOUT_S, "on_stopped_leading")

                app = await eventually(
                    lambda: leading_app(apps, besides=old_id), STEP_TIMEOUT_S, "work to start beside the new leader"
                )
                assert app.tokens[-1].epoch > old_epoch
                assert not old_app.leading
                new_id, new_epoch = await agreement(cluster, exclude={old_id}, differs_from=(old_id, old_epoch))
                assert (new_id, new_epoch) == (app.node_id, app.tokens[-1].epoch)
            finally:
                process_fault(cluster.dir, str(old_id), "resume")
            assert not apps[old_id][1].done(), "run() keeps watching its node through the pause"

    run(scenario)


def test_leadership_release_on_cancel_resigns_so_another_node_takes_over(make_cluster):
    cluster = make_cluster(3)
    old_id, old_epoch = cluster.wait_for_agreement(timeout_s=AGREE_TIMEOUT_S)

    async def scenario() -> None:
        async with apps_beside(cluster, release_on_cancel=True) as apps:
            old_app, old_task = apps[old_id]
            await eventually(lambda: old_app.leading, STEP_TIMEOUT_S, "work to start beside the leader")
            old_task.cancel()
            await asyncio.wait([old_task])
            assert old_app.cancelled == [old_epoch] and old_app.log[-1] == ("stopped",)
            # The node itself is healthy: only Resign can make the cluster move on from it.
            new_id, new_epoch = await agreement(cluster, differs_from=(old_id, old_epoch))
            assert new_id != old_id and new_epoch > old_epoch, "the resigning node stands aside"
            app = await eventually(
                lambda: leading_app(apps, besides=old_id), STEP_TIMEOUT_S, "work to start beside the next leader"
            )
            assert (app.node_id, app.tokens[-1].epoch) == (new_id, new_epoch)

    run(scenario)


def test_blocking_leadership_runs_work_in_a_thread_and_its_fenced_writes_are_refused_once_deposed(
    make_cluster, tmp_path
):
    """run_blocking, as a service without asyncio uses it: plain threads, a blocking SQLite fence. The
    leader's node is paused: its work sees `lost`, the next leader's work writes, and the old term's
    handle, used late (as work that had not noticed would), is refused by the database itself."""
    cluster = make_cluster(3)
    old_id, old_epoch = cluster.wait_for_agreement(timeout_s=AGREE_TIMEOUT_S)
    fence = BlockingSqliteFence(tmp_path / "jobs.db")
    stop = threading.Event()
    tokens: dict[int, list[BlockingLeaseToken]] = {n: [] for n in cluster.client_addresses()}
    returned: list[tuple[int, int]] = []

    def work(token: BlockingLeaseToken) -> None:
        tokens[token.node_id].append(token)
        while not token.lost.wait(0.02):
            token.fenced(fence).write("jobs", f"{token.node_id}@{token.epoch}".encode())
        returned.append((token.node_id, token.epoch))

    def serve(node_id: int, address: str) -> None:
        Leadership(address, node_id, insecure=True).run_blocking(work, stop=stop)

    threads = [
        threading.Thread(target=serve, args=item, name=f"app-{item[0]}", daemon=True)
        for item in cluster.client_addresses().items()
    ]
    for t in threads:
        t.start()

    def until(predicate: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not (value := predicate()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)
        return value

    try:
        until(lambda: fence.read("jobs").epoch == old_epoch, "the leader's work to write")
        assert all(not tokens[n] for n in tokens if n != old_id), "work ran beside a follower"
        old_token = tokens[old_id][0]
        process_fault(cluster.dir, str(old_id), "pause")
        try:
            until(old_token.lost.is_set, "the paused node's app to see its term end")
            until(lambda: (old_id, old_epoch) in returned, "the old term's work to return")
            new_state = until(lambda: (st := fence.read("jobs")).epoch > old_epoch and st, "the next leader to write")
            with pytest.raises(StaleEpoch) as info:
                old_token.fenced(fence).write("jobs", b"late, from a deposed leader")
            assert info.value.highest_epoch >= new_state.epoch
            assert fence.read("jobs").value != b"late, from a deposed leader"
        finally:
            process_fault(cluster.dir, str(old_id), "resume")
    finally:
        stop.set()
        for t in threads:
            t.join(STEP_TIMEOUT_S)
        fence.close()
    assert not any(t.is_alive() for t in threads), "run_blocking returned once stop was set"


def leading_app(apps: dict[int, tuple[App, asyncio.Task]], besides: int) -> App | None:
    return next((app for node_id, (app, _) in apps.items() if node_id != besides and app.leading), None)


# ---- FencedWriter ----------------------------------------------------------------------------------------


def test_fenced_writer_stamps_the_epoch_and_raises_fenced_for_a_deposed_leader(make_cluster):
    cluster = make_cluster(3)
    old_id, old_epoch = cluster.wait_for_agreement(timeout_s=AGREE_TIMEOUT_S)
    others = [n for n in cluster.client_addresses() if n != old_id]

    async def scenario() -> None:
        async with FencedWriter(cluster.spec.store_address, writer_id=old_id, insecure=True) as writer:
            old_token = LeaseToken(old_id, old_epoch)
            result = await writer.write(old_token, "sdk/current", b"ok")
            assert result.epoch == old_epoch and result.highest_epoch >= old_epoch
            async with FencedWriter(cluster.spec.store_address, writer_id=others[0], insecure=True) as intruder:
                with pytest.raises(Fenced, match="owned by writer"):
                    await intruder.write(LeaseToken(others[0], old_epoch), "sdk/intruder", b"same epoch, other writer")

            process_fault(cluster.dir, str(old_id), "kill")
            _, new_epoch = await agreement(cluster, exclude={old_id}, differs_from=(old_id, old_epoch))
            # The new leader's own duty writes raise the store's epoch; the old token is now stale.
            await eventually(
                lambda: any(e.epoch == new_epoch and e.accepted for e in store_log(cluster)),
                STEP_TIMEOUT_S,
                "a write at the new epoch",
            )
            with pytest.raises(Fenced) as info:
                await writer.write(old_token, "sdk/late", b"from a deposed leader")
            assert info.value.epoch == old_epoch and info.value.highest_epoch >= new_epoch
            assert "stale" in info.value.reason
        rows = {e.key: e for e in store_log(cluster) if e.key.startswith("sdk/")}
        assert rows["sdk/current"].accepted and rows["sdk/current"].epoch == old_epoch
        assert not rows["sdk/intruder"].accepted
        assert not rows["sdk/late"].accepted and rows["sdk/late"].seq == info.value.seq

    run(scenario)


# ---- the example scheduler, as real processes ----------------------------------------------------------


@dataclass
class SchedulerProcess:
    node_id: int
    proc: subprocess.Popen
    out: Path

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.startswith("{")]

    def saw(self, kind: str, **fields: Any) -> dict[str, Any] | None:
        return next((e for e in self.events() if e["event"] == kind and fields.items() <= e.items()), None)


def start_schedulers(cluster: LocalCluster, period_ms: int = 50) -> dict[int, SchedulerProcess]:
    procs: dict[int, SchedulerProcess] = {}
    for node_id, address in cluster.client_addresses().items():
        out = cluster.dir / f"scheduler-{node_id}.log"
        argv = [
            sys.executable,
            "-m",
            "node.client.examples.scheduler",
            "--node",
            address,
            "--node-id",
            str(node_id),
            "--store",
            cluster.spec.store_address,
            "--period-ms",
            str(period_ms),
            *(["--certs", cluster.spec.certs_dir] if cluster.spec.certs_dir else ["--insecure"]),
        ]
        with open(out, "wb") as f:
            proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        procs[node_id] = SchedulerProcess(node_id, proc, out)
    return procs


def scheduler_rows(cluster: LocalCluster) -> list[pb.LogEntry]:
    return [e for e in store_log(cluster) if e.key.startswith("scheduler/")]


def test_scheduler_runs_only_beside_the_leader_and_moves_with_it(make_cluster):
    cluster = make_cluster(3, secure=True)  # each scheduler writes and resigns as its node's certificate
    old_id, old_epoch = cluster.wait_for_agreement(timeout_s=AGREE_TIMEOUT_S)
    schedulers = start_schedulers(cluster)
    try:
        wait_for(
            lambda: len([e for e in scheduler_rows(cluster) if e.accepted]) >= 5,
            STEP_TIMEOUT_S,
            what="five accepted scheduler runs",
        )
        rows = scheduler_rows(cluster)
        assert all(e.accepted and e.writer_id == old_id and e.epoch == old_epoch for e in rows), rows
        assert all(e.key.startswith(f"scheduler/{old_id}/") and e.value.startswith(b"tick ") for e in rows)
        assert schedulers[old_id].saw("started_leading", epoch=old_epoch)
        for node_id, s in schedulers.items():
            if node_id != old_id:
                wait_for(
                    lambda s=s: s.saw("new_leader", leader=old_id, epoch=old_epoch),
                    STEP_TIMEOUT_S,
                    what=f"scheduler {node_id} to learn the leader",
                )
                assert not s.saw("started_leading") and not s.saw("job"), f"scheduler {node_id} acted as leader"
        assert all(e.writer_id == old_id for e in scheduler_rows(cluster)), "followers' schedulers never write"

        process_fault(cluster.dir, str(old_id), "kill")
        new_id, new_epoch = cluster.wait_for_agreement(
            timeout_s=AGREE_TIMEOUT_S, exclude={old_id}, differs_from=(old_id, old_epoch)
        )
        assert new_epoch > old_epoch
        wait_for(
            lambda: any(e.accepted and e.epoch == new_epoch for e in scheduler_rows(cluster)),
            STEP_TIMEOUT_S,
            what="the new leader's scheduler to run",
        )
        wait_for(
            lambda: schedulers[old_id].saw("stopped_leading"),
            STEP_TIMEOUT_S,
            what="the scheduler beside the killed node to stop leading",
        )

        rows = scheduler_rows(cluster)
        accepted = [e for e in rows if e.accepted]
        writers: dict[int, set[int]] = {}
        for e in accepted:
            writers.setdefault(e.epoch, set()).add(e.writer_id)
        assert writers == {old_epoch: {old_id}, new_epoch: {new_id}}, "one scheduler per epoch: its node's"
        first_new = min(e.seq for e in accepted if e.epoch == new_epoch)
        assert all(not e.accepted for e in rows if e.seq > first_new and e.epoch < new_epoch), "fencing held"
        assert all(e.key.startswith(f"scheduler/{new_id}/") for e in accepted if e.epoch == new_epoch)
        assert schedulers[new_id].saw("started_leading", epoch=new_epoch)

        # SIGTERM stops every scheduler cleanly, the leading one included.
        for s in schedulers.values():
            s.proc.send_signal(signal.SIGTERM)
        for s in schedulers.values():
            assert s.proc.wait(timeout=STEP_TIMEOUT_S) == 0, s.out.read_text()
            assert s.events()[-1]["event"] == "exit"
        assert schedulers[new_id].saw("stopped_leading")
    finally:
        live = [s.proc.pid for s in schedulers.values() if pid_alive(s.proc.pid)]
        stop_pids(live)
