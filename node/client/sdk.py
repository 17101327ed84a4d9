"""Leadership for your service, over the nodes' gRPC API (bullyproof.v1 Leadership and FencedStore).

Three pieces, all asyncio (grpc.aio), every call bounded by a deadline:

* `LeaderClient` asks a list of nodes who leads and with which fencing epoch, and follows changes.
* `Leadership` runs your work only while the node beside you leads, and cancels it at once when that ends.
* `FencedWriter` stamps writes with the epoch, so a deposed leader's late writes are refused by the store.
* `token.fenced(fence)` does the same in your own database: node.client.fencing has PostgreSQL, Redis
  and SQLite fences (and the store's, behind the same interface).

    async with LeaderClient(["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"], tls=client_tls) as client:
        leader = await client.wait_for_leader(timeout_s=5)

    writer = FencedWriter("127.0.0.1:7000", writer_id=1, tls=node1_tls)

    async def work(token: LeaseToken) -> None:
        while True:
            await writer.write(token, "jobs/last-run", b"done")
            await asyncio.sleep(1)

    await Leadership("127.0.0.1:7101", node_id=1, release_on_cancel=True, tls=node1_tls).run(work)

Clusters run mutual TLS by default: pass `tls=Tls.in_dir(Path("runs/local/certs"), "client")` (any
certificate of the cluster's CA may ask who leads; Resign, so release_on_cancel, needs an admin's or
the node's own; FencedWriter needs node N's certificate to write as writer_id N). For a cluster
started with --insecure, say so: `insecure=True` (plaintext; logged). Neither is a ValueError.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import grpc

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import client_channel, handshake_refused
from node.client.fencing.base import FencedTerm
from node.client.fencing.errors import EpochTaken, FencingRefused, StaleEpoch
from node.tls import MEMBER_NAME, STORE_NAME, Tls, node_name

__all__ = [
    "Backoff",
    "BlockingLeaseToken",
    "EpochTaken",
    "Fenced",
    "FencedTerm",
    "FencedWriter",
    "FencingRefused",
    "HandshakeRefused",
    "Leader",
    "LeaderClient",
    "LeaderEvent",
    "Leadership",
    "LeaseToken",
    "NodeError",
    "StaleEpoch",
    "Tls",
    "WriteResult",
    "is_leading",
    "parse_addresses",
]

log = logging.getLogger(__name__)

STOP_POLL_S = 0.05  # how often run_blocking looks at its `stop` event

# ---- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leader:
    """Who leads, as one node saw it. Stamp writes made on the leader's behalf with `epoch`."""

    leader_id: int
    epoch: int
    address: str | None  # the leader's client address, if it is among the addresses given
    observed_by: int  # the node that answered


@dataclass(frozen=True)
class LeaderEvent:
    """One node's view of the leader, from its WatchLeader stream."""

    leader_id: int | None  # None: that node knows of no leader (election under way, or cut off)
    epoch: int
    node_id: int  # the node whose view this is
    view_time_unix_ns: int  # when that node formed the view: for humans, not for ordering

    @classmethod
    def from_info(cls, info: pb.LeaderInfo) -> LeaderEvent:
        return cls(info.leader_id if info.known else None, info.epoch, info.node_id, info.view_time_unix_ns)


class _Fenceable:
    node_id: int
    epoch: int

    def fenced(self, fence: object) -> FencedTerm:
        """`fence` (node.client.fencing) bound to this term: its writes carry this epoch, with this node
        as writer, and are refused by the resource itself (StaleEpoch) once a newer leader wrote there."""
        return FencedTerm(fence, self.node_id, self.epoch)


@dataclass(frozen=True)
class LeaseToken(_Fenceable):
    """One term of leadership: `epoch` is its fencing token; `lost` is set the moment the term ends."""

    node_id: int
    epoch: int
    lost: asyncio.Event = field(default_factory=asyncio.Event, compare=False, repr=False)


@dataclass(frozen=True)
class BlockingLeaseToken(_Fenceable):
    """A term of leadership for blocking work (Leadership.run_blocking): `lost` is a threading.Event,
    set the moment the term ends; wait on it or check it between steps."""

    node_id: int
    epoch: int
    lost: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)


@dataclass(frozen=True)
class WriteResult:
    key: str
    epoch: int
    seq: int  # position of the write in the store's log
    highest_epoch: int  # the store's highest accepted epoch after this write


# The store's refusal and every other fence's are one type: StaleEpoch or EpochTaken (node.client.fencing).
Fenced = FencingRefused


class NodeError(RuntimeError):
    """The address cannot be used as configured: it is not this node, or not a bullyproof node of this version.

    Raised instead of retrying, since retrying a wrong address never succeeds.
    """


class HandshakeRefused(NodeError):
    """The TLS handshake failed: the server refused our certificate (or our plaintext), or we refused
    its certificate. The message says which and what to check (the certificate files, the CA,
    insecure=True only for a plaintext cluster). Raised instead of retrying: no retry fixes it.
    Carries the gRPC error as __cause__ when one call showed it."""


# ---- pure helpers -------------------------------------------------------------------------------


def _security(tls: Tls | None, insecure: bool) -> Tls | None:
    """Secure by default: a certificate, or an explicit (and logged) insecure=True."""
    if (tls is None) == (not insecure):
        raise ValueError(
            "give tls=Tls(...) (the cluster's certificates) or insecure=True for a plaintext cluster, "
            "not both or neither"
        )
    if insecure:
        log.warning("bullyproof client: insecure=True: plaintext, the server is not authenticated")
    return tls


def parse_addresses(addresses: str | Sequence[str]) -> tuple[str, ...]:
    """Check HOST:PORT targets (a string may list several, comma-separated); drop repeats, keep order.

    Checked up front so a typo fails here, not as an endless retry against nothing.
    """
    items = [a for a in addresses.split(",") if a.strip()] if isinstance(addresses, str) else list(addresses)
    checked: list[str] = []
    for raw in items:
        text = raw.strip()
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"address {raw!r} is not HOST:PORT")
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            raise ValueError(f"address {raw!r}: write an IPv6 host in brackets, [::1]:PORT")
        if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"address {raw!r} has port {port!r}; want 1..65535")
        if text not in checked:
            checked.append(text)
    if not checked:
        raise ValueError("no addresses given")
    return tuple(checked)


def is_leading(info: pb.LeaderInfo, node_id: int) -> bool:
    """True if `info` is node `node_id` saying it leads now with a valid lease: the only time to act."""
    return (
        info.node_id == node_id
        and info.known
        and info.leader_id == node_id
        and info.role == pb.ROLE_LEADER
        and info.lease_valid
    )


@dataclass
class Backoff:
    """Delays between retries: doubling from initial_s up to max_s, each jittered down to as little as
    half, so clients that lost the same node do not all retry in step. Call reset() after a success."""

    initial_s: float = 0.05
    max_s: float = 1.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    _ceiling_s: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {self.initial_s} and {self.max_s}")
        self._ceiling_s = self.initial_s

    def next_s(self) -> float:
        ceiling_s = self._ceiling_s
        self._ceiling_s = min(self.max_s, ceiling_s * 2)
        return ceiling_s / 2 + self.rng.uniform(0, ceiling_s / 2)

    def reset(self) -> None:
        self._ceiling_s = self.initial_s


@dataclass
class _EventFilter:
    """Passes only news: drops an event equal to the last one passed, and a leader older than one
    already passed (a node that lags behind, reached after a failover, must not move time backwards)."""

    last: tuple[int | None, int] | None = None
    highest_epoch: int = 0

    def is_news(self, event: LeaderEvent) -> bool:
        key = (event.leader_id, event.epoch)
        if key == self.last or (event.leader_id is not None and event.epoch < self.highest_epoch):
            return False
        self.last = key
        if event.leader_id is not None:
            self.highest_epoch = event.epoch
        return True


async def _call(callback: Callable[..., object] | None, *args: object) -> None:
    """Callbacks may be plain functions or coroutine functions; either way they finish before we go on."""
    if callback is None:
        return
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


def _unsupported(address: str, rpc: str) -> NodeError:
    return NodeError(f"{address} does not serve bullyproof.v1.Leadership/{rpc}: not a bullyproof node, or an older one")


# ---- asking who leads ---------------------------------------------------------------------------


class LeaderClient:
    """Asks a list of nodes (their client addresses) who leads, and follows leader changes.

    Any node answers; none needs to be the leader. Dead or unreachable nodes in the list only cost
    a deadline each, and the client remembers which node answered last and asks it first.
    """

    def __init__(
        self, addresses: str | Sequence[str], deadline_s: float = 1.0, *, tls: Tls | None = None, insecure: bool = False
    ) -> None:
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive, got {deadline_s}")
        self.addresses = parse_addresses(addresses)
        self.tls = _security(tls, insecure)
        self.deadline_s = deadline_s
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._address_of_node: dict[int, str] = {}
        self._preferred = 0  # index of the address that answered last
        self._refused: dict[str, str] = {}  # address -> why its last handshake failed

    async def __aenter__(self) -> LeaderClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every channel; stop watch() iterators first."""
        channels, self._channels = self._channels, {}
        await asyncio.gather(*(c.close() for c in channels.values()))

    async def get_leader(self) -> Leader | None:
        """The leader as the first node that knows one sees it, or None if no node that answers knows one.

        Nodes are asked one at a time, starting with the one that answered last, so a healthy cluster
        costs one call. A node's view can lag by up to an election timeout after a failure.
        """
        for index in self._rotation():
            info = await self._ask(self.addresses[index])
            if info is not None and info.known:
                self._preferred = index
                return Leader(info.leader_id, info.epoch, await self._address_of(info.leader_id), info.node_id)
        return None

    async def wait_for_leader(self, timeout_s: float) -> Leader:
        """The leader, once some node knows one; TimeoutError after timeout_s."""
        backoff = Backoff()
        deadline = time.monotonic() + timeout_s
        while (leader := await self.get_leader()) is None:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                if len(self._refused) == len(self.addresses):  # not one handshake succeeded: say why
                    raise HandshakeRefused("; ".join(self._refused.values()))
                raise TimeoutError(f"no node of {', '.join(self.addresses)} knew a leader within {timeout_s} s")
            await asyncio.sleep(min(backoff.next_s(), remaining_s))
        return leader

    async def watch(self) -> AsyncIterator[LeaderEvent]:
        """Leader changes, starting with the current view, including "no leader" (leader_id None).

        Follows one node's WatchLeader stream; when it breaks, or falls silent while the node stops
        answering, moves on to the next address, whose current view arrives at once. Repeats and
        leaders older than one already yielded are dropped. Runs until you stop iterating; raises
        NodeError if an address is not a bullyproof node. Wrap in contextlib.aclosing() to stop promptly.
        """
        news = _EventFilter()
        backoff = Backoff()
        while True:
            for index in self._rotation():
                async with contextlib.aclosing(self._follow(self.addresses[index])) as infos:
                    async for info in infos:
                        self._preferred = index
                        backoff.reset()
                        event = LeaderEvent.from_info(info)
                        if news.is_news(event):
                            yield event
            await asyncio.sleep(backoff.next_s())  # every node failed or broke off: pause before a new round

    def _rotation(self) -> list[int]:
        n = len(self.addresses)
        return [(self._preferred + k) % n for k in range(n)]

    def _stub(self, address: str) -> pb_grpc.LeadershipStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = client_channel(address, self.tls, MEMBER_NAME)
        return pb_grpc.LeadershipStub(channel)

    async def _ask(self, address: str) -> pb.LeaderInfo | None:
        try:
            info = await self._stub(address).GetLeader(pb.GetLeaderRequest(), timeout=self.deadline_s)
        except grpc.aio.AioRpcError as exc:
            log.debug("GetLeader on %s failed: %s", address, exc.code().name)
            if (refused := await asyncio.to_thread(handshake_refused, exc, address, self.tls)) is not None:
                self._refused[address] = refused
            else:
                self._refused.pop(address, None)
            return None
        self._refused.pop(address, None)
        self._address_of_node[info.node_id] = address
        return info

    async def _address_of(self, node_id: int) -> str | None:
        """Which given address is node `node_id`: nodes not yet heard from are asked once, all at once."""
        if node_id not in self._address_of_node:
            known = set(self._address_of_node.values())
            await asyncio.gather(*(self._ask(a) for a in self.addresses if a not in known))
        return self._address_of_node.get(node_id)

    async def _follow(self, address: str) -> AsyncIterator[pb.LeaderInfo]:
        """One node's WatchLeader stream, until it ends, breaks, or stays silent while the node does not
        answer GetLeader within the deadline (a paused process keeps its connections open)."""
        call = self._stub(address).WatchLeader(pb.WatchLeaderRequest())
        # Cancelling a pending read cancels the whole call, so one read stays pending across waits.
        read: asyncio.Future[pb.LeaderInfo] | None = None
        first = True
        try:
            while True:
                read = read or asyncio.ensure_future(call.read())
                done, _ = await asyncio.wait({read}, timeout=self.deadline_s)
                if not done:
                    if first or await self._ask(address) is None:  # the current view is due at once
                        return
                    continue
                info, read = read.result(), None
                if info is grpc.aio.EOF:
                    return
                first = False
                self._address_of_node[info.node_id] = address
                yield info
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise _unsupported(address, "WatchLeader") from None
            log.debug("WatchLeader on %s broke: %s", address, exc.code().name)
        finally:
            call.cancel()


# ---- running work only while leading -----------------------------------------------------------------


@dataclass
class _Term:
    token: LeaseToken
    work: asyncio.Task[None]
    confirm: asyncio.Task[None]


@dataclass(frozen=True)
class _Lost:
    token: LeaseToken
    reason: str


@dataclass(frozen=True)
class _WorkEnded:
    task: asyncio.Task[None]


@dataclass(frozen=True)
class _WatchFailed:
    error: BaseException


_Signal = pb.LeaderInfo | _Lost | _WorkEnded | _WatchFailed


def _relay_failure(task: asyncio.Task[None], inbox: asyncio.Queue[_Signal]) -> None:
    """A background task that dies must end run(), not leave it waiting for news that never comes."""
    if not task.cancelled() and (error := task.exception()) is not None:
        inbox.put_nowait(_WatchFailed(error))


class Leadership:
    """Runs work only while the node this app sits beside leads (kazoo's Election.run, client-go's
    leaderelection): give it that node's client address and id.

    Two sources decide when leadership ends, and the first to notice wins: the node's WatchLeader
    stream (another leader, no leader, not leader, lease not valid), and a poll of GetLeader every
    confirm_interval_s while work runs, which treats confirm_timeout_s without a confirmation as loss,
    because an app that cannot reach its node cannot know it still leads. Between the lease running
    out and the app noticing there is a window of up to confirm_timeout_s; the fencing epoch is what
    makes writes in that window harmless (see FencedWriter).
    """

    def __init__(
        self,
        node_address: str,
        node_id: int,
        *,
        release_on_cancel: bool = False,
        confirm_interval_s: float = 0.1,
        confirm_timeout_s: float = 0.5,
        deadline_s: float = 1.0,
        tls: Tls | None = None,
        insecure: bool = False,
    ) -> None:
        if node_id <= 0:
            raise ValueError(f"node_id must be positive, got {node_id}")
        if not 0 < confirm_interval_s < confirm_timeout_s:
            raise ValueError(
                f"need 0 < confirm_interval_s < confirm_timeout_s, got {confirm_interval_s} and {confirm_timeout_s}"
            )
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive, got {deadline_s}")
        (self.node_address,) = parse_addresses([node_address])
        self.node_id = node_id
        self.release_on_cancel = release_on_cancel
        self.confirm_interval_s = confirm_interval_s
        self.confirm_timeout_s = confirm_timeout_s
        self.deadline_s = deadline_s
        self.tls = _security(tls, insecure)

    async def run(
        self,
        work: Callable[[LeaseToken], Awaitable[None]],
        on_started_leading: Callable[[int], object] | None = None,
        on_stopped_leading: Callable[[], object] | None = None,
        on_new_leader: Callable[[int | None, int], object] | None = None,
    ) -> None:
        """Run until cancelled: start `work(token)` each time the node starts leading, cancel it (and wait
        for it) the moment it stops. Callbacks may be sync or async:
        on_started_leading(epoch) before work starts, on_stopped_leading() after it has stopped,
        on_new_leader(leader_id or None, epoch) whenever the node's view of the leader changes.

        Work that returns early is not restarted until the next term. An exception from work (also one
        raised while it is being cancelled) or from a callback ends run(). With release_on_cancel, run()
        ending while leading asks the node to Resign, so another takes over without waiting out a lease.
        Work must not swallow CancelledError: run() waits for it to finish.
        """
        inbox: asyncio.Queue[_Signal] = asyncio.Queue()
        # Verifies node_id's own name: only that node can answer here (any member would, for LeaderClient).
        async with client_channel(self.node_address, self.tls, node_name(self.node_id)) as channel:
            stub = pb_grpc.LeadershipStub(channel)
            watcher = asyncio.create_task(self._watch(stub, inbox))
            watcher.add_done_callback(lambda task: _relay_failure(task, inbox))
            term: _Term | None = None
            seen: tuple[int | None, int] | None = None
            try:
                while True:
                    signal = await inbox.get()
                    if isinstance(signal, _WatchFailed):
                        raise signal.error
                    if isinstance(signal, _WorkEnded):
                        if not signal.task.cancelled() and (error := signal.task.exception()) is not None:
                            raise error
                        continue  # work that returns early waits for the next term
                    if isinstance(signal, _Lost):
                        if term is not None and signal.token is term.token:
                            log.info(
                                "node %d: leadership of epoch %d lost: %s",
                                self.node_id,
                                term.token.epoch,
                                signal.reason,
                            )
                            await self._end(term, on_stopped_leading)
                            term = None
                        continue
                    leading = is_leading(signal, self.node_id)
                    if term is not None and (not leading or signal.epoch != term.token.epoch):
                        await self._end(term, on_stopped_leading)  # loss first: callbacks can wait
                        term = None
                    view = (signal.leader_id if signal.known else None, signal.epoch)
                    if view != seen:
                        seen = view
                        await _call(on_new_leader, *view)
                    if leading and term is None:
                        term = await self._begin(stub, work, signal.epoch, inbox, on_started_leading)
            finally:
                watcher.cancel()
                await asyncio.wait({watcher})
                if term is not None:
                    await self._end(term, on_stopped_leading)
                    if self.release_on_cancel:
                        await self._resign(stub)

    def run_blocking(
        self,
        work: Callable[[BlockingLeaseToken], None],
        *,
        stop: threading.Event | None = None,
        on_started_leading: Callable[[int], object] | None = None,
        on_stopped_leading: Callable[[], object] | None = None,
        on_new_leader: Callable[[int | None, int], object] | None = None,
    ) -> None:
        """run() for a service without asyncio: blocks the calling thread until `stop` is set (or
        KeyboardInterrupt), with the same rules. Each term, `work(token)` runs in a thread of its own.

        A thread cannot be cancelled: when the term ends, `token.lost` is set and the next term waits
        until work has returned, so work must return soon after (check `token.lost` between steps, or
        wait on it). Until it notices, its writes through `token.fenced(fence)` (a Blocking... fence of
        node.client.fencing) are refused by the resource once a newer leader wrote there. Callbacks are
        plain functions, called on the SDK's thread: keep them short.
        """

        async def in_a_thread(token: LeaseToken) -> None:
            blocking = BlockingLeaseToken(token.node_id, token.epoch)
            done = asyncio.ensure_future(asyncio.to_thread(work, blocking))
            try:
                await asyncio.shield(done)
            except asyncio.CancelledError:
                blocking.lost.set()
                await asyncio.wait({done})
                if not done.cancelled() and (error := done.exception()) is not None:
                    raise error from None  # as with run(): an exception from work ends it
                raise

        async def until_stopped() -> None:
            running = asyncio.create_task(self.run(in_a_thread, on_started_leading, on_stopped_leading, on_new_leader))
            while not running.done():
                if stop is not None and stop.is_set():
                    running.cancel()
                await asyncio.wait({running}, timeout=STOP_POLL_S)
            if not running.cancelled():
                running.result()

        asyncio.run(until_stopped())

    async def _begin(
        self,
        stub: pb_grpc.LeadershipStub,
        work: Callable[[LeaseToken], Awaitable[None]],
        epoch: int,
        inbox: asyncio.Queue[_Signal],
        on_started_leading: Callable[[int], object] | None,
    ) -> _Term:
        await _call(on_started_leading, epoch)
        token = LeaseToken(self.node_id, epoch)
        term = _Term(token, asyncio.create_task(work(token)), asyncio.create_task(self._confirm(stub, token, inbox)))
        term.work.add_done_callback(lambda task: inbox.put_nowait(_WorkEnded(task)))
        return term

    async def _end(self, term: _Term, on_stopped_leading: Callable[[], object] | None) -> None:
        """Stop a term: mark it lost and cancel its work at once, wait for the work, then tell the app."""
        term.token.lost.set()
        term.work.cancel()
        term.confirm.cancel()
        # asyncio.wait neither raises the work's exception nor swallows our own cancellation.
        await asyncio.wait({term.work, term.confirm})
        await _call(on_stopped_leading)

    async def _watch(self, stub: pb_grpc.LeadershipStub, inbox: asyncio.Queue[_Signal]) -> None:
        """Feed the node's WatchLeader stream into the inbox, reconnecting with backoff when it breaks;
        raises NodeError for a node that can never serve this app."""
        backoff = Backoff()
        while True:
            call = stub.WatchLeader(pb.WatchLeaderRequest())
            try:
                info = await asyncio.wait_for(call.read(), self.deadline_s)  # the current view is due at once
                while info is not grpc.aio.EOF:
                    if info.node_id != self.node_id:
                        raise NodeError(f"{self.node_address} is node {info.node_id}, not node {self.node_id}")
                    inbox.put_nowait(info)
                    backoff.reset()
                    info = await call.read()
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    raise _unsupported(self.node_address, "WatchLeader") from None
                log.debug("WatchLeader on %s broke: %s", self.node_address, exc.code().name)
            except TimeoutError:
                log.debug("WatchLeader on %s sent no view within %s s", self.node_address, self.deadline_s)
            finally:
                call.cancel()
            await asyncio.sleep(backoff.next_s())

    async def _confirm(self, stub: pb_grpc.LeadershipStub, token: LeaseToken, inbox: asyncio.Queue[_Signal]) -> None:
        """The safety net: while work runs, keep confirming with GetLeader that the node still leads this epoch."""
        confirmed_at = time.monotonic()
        while True:
            asked_at = time.monotonic()
            remaining_s = confirmed_at + self.confirm_timeout_s - asked_at
            if remaining_s <= 0:
                inbox.put_nowait(_Lost(token, f"node not confirmed as leader for {self.confirm_timeout_s} s"))
                return
            try:
                info = await stub.GetLeader(pb.GetLeaderRequest(), timeout=remaining_s)
            except grpc.aio.AioRpcError:
                info = None
            if info is not None:
                if not is_leading(info, self.node_id) or info.epoch != token.epoch:
                    inbox.put_nowait(_Lost(token, "node no longer leads this epoch"))
                    return
                confirmed_at = asked_at  # the answer holds from no earlier than when we asked
            until_s = confirmed_at + self.confirm_timeout_s - time.monotonic()
            await asyncio.sleep(max(0.0, min(self.confirm_interval_s, until_s)))

    async def _resign(self, stub: pb_grpc.LeadershipStub) -> None:
        try:
            reply = await stub.Resign(pb.ResignRequest(), timeout=self.deadline_s)
        except grpc.aio.AioRpcError as exc:
            # FAILED_PRECONDITION: the node no longer leads, so there is nothing to give up.
            level = logging.DEBUG if exc.code() == grpc.StatusCode.FAILED_PRECONDITION else logging.WARNING
            log.log(level, "node %d: Resign failed: %s %s", self.node_id, exc.code().name, exc.details())
            return
        log.info("node %d: resigned epoch %d", self.node_id, reply.epoch)


# ---- fenced writes -------------------------------------------------------------------------------------


class FencedWriter:
    """Writes to the fenced store stamped with a term's epoch; the store refuses any epoch below the
    highest it accepted, so a leader deposed mid-write cannot overwrite its successor's work.

    writer_id: use the id of the node whose leadership you act on. The store lets one writer own an
    epoch, and the node itself may already write with its own id at that epoch.
    """

    def __init__(
        self,
        store_address: str,
        writer_id: int,
        deadline_s: float = 1.0,
        *,
        tls: Tls | None = None,
        insecure: bool = False,
    ) -> None:
        if writer_id <= 0:
            raise ValueError(f"writer_id must be positive, got {writer_id}")
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive, got {deadline_s}")
        (self.store_address,) = parse_addresses([store_address])
        self.writer_id = writer_id
        self.deadline_s = deadline_s
        self.tls = _security(tls, insecure)
        self._channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> FencedWriter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def write(self, token: LeaseToken, key: str, value: bytes) -> WriteResult:
        """Write value under key with token.epoch. Raises StaleEpoch or EpochTaken (both Fenced, that is
        FencingRefused) if the store refuses the epoch, HandshakeRefused if the TLS handshake with the
        store failed (nothing was written), and
        grpc.aio.AioRpcError if the store does not answer within deadline_s (the write may or may not
        have been recorded) or rejects the input (INVALID_ARGUMENT)."""
        if self._channel is None:
            self._channel = client_channel(self.store_address, self.tls, STORE_NAME)
        request = pb.WriteRequest(writer_id=self.writer_id, epoch=token.epoch, key=key, value=value)
        try:
            reply = await pb_grpc.FencedStoreStub(self._channel).Write(request, timeout=self.deadline_s)
        except grpc.aio.AioRpcError as exc:
            if (refused := await asyncio.to_thread(handshake_refused, exc, self.store_address, self.tls)) is not None:
                raise HandshakeRefused(refused) from exc
            raise
        if not reply.accepted:
            refusal = StaleEpoch if token.epoch < reply.highest_epoch else EpochTaken
            raise refusal(
                token.epoch, reply.highest_epoch, reply.reason, reply.seq, resource=key, writer_id=self.writer_id
            )
        return WriteResult(key, token.epoch, reply.seq, reply.highest_epoch)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
