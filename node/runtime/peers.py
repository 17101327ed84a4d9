"""Peer transport: channels to the other nodes, sending the elector's messages, and the Peer service."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import peer_channel, require
from node.core import Membership, Message, MsgType, Promise, Role, configuration_id
from node.core.kit import (
    CONFIGURATION_REFUSALS,
    EPOCH_PROMISED,
    EPOCH_STALE,
    LEADING,
    LOWER_ID,
    NOT_A_VOTER,
    OTHER_LEADER,
    PROMISE_LIVE,
    REFUSALS,
)
from node.core.membership import CONFLICT, OUTSIDE, STALE
from node.runtime.events import MessageLog
from node.runtime.port import PeersNode
from node.runtime.state import PersistError
from node.runtime.wire import (
    RPC_NAME,
    ack_from_pb,
    ack_to_pb,
    check_peer_message,
    configuration_refusal,
    message_from_pb,
    message_to_pb,
)
from node.tls import node_name

# Requests whose acks build a lease: a leader's heartbeat rounds and a candidate's Coordinator round.
LEASE_ROUNDS = frozenset({MsgType.HEARTBEAT, MsgType.COORDINATOR})


def ack_deadline_s(msg: Message, rpc_timeout_s: float, lease_s: float) -> float:
    """How long a request may wait for its answer: one heartbeat interval (`rpc_timeout_s`), but a
    request whose ack builds a lease, as long as the lease. Such an ack is worth having until then:
    the lease counts from the round's send (a late ack extends nothing a prompt one could not), and
    dropping acks after one interval lost the leader over and over on links whose round trip is near
    it (bench/false_alarms.py). No mode acts on such a request failing, so waiting longer delays
    nothing but the link's metrics. A resigning heartbeat gets no ack: it keeps the short deadline."""
    if msg.type not in LEASE_ROUNDS or msg.resigning:
        return rpc_timeout_s
    return max(rpc_timeout_s, lease_s)


def is_election_traffic(msg: Message) -> bool:
    """Recorded as "message" events: every request but a plain heartbeat (the lease's rhythm, ten a
    second per follower, only counted in GetStatus). A resigning heartbeat is a handover: recorded."""
    return msg.type != MsgType.HEARTBEAT or msg.resigning


@dataclass(frozen=True)
class Before:
    """What a receiver looked like just before it handled a request: enough to say why it refused."""

    node: int
    role: Role
    epoch: int
    promise: Promise
    promised_to: int  # whom a live promise window backs (0: nobody)
    promise_left_ms: int  # how long that window still runs


def refusal_words(refusal: str, msg: Message, before: Before) -> str:
    """The core's reason for refusing `msg` (Message.refusal), in words, with the numbers from the
    refuser's state before the step."""
    promised = before.promise
    to = f" to node {promised.leader_id}" if promised.leader_id else ""
    return {
        EPOCH_STALE: f"stale epoch {msg.epoch}: promised epoch {promised.epoch}{to}",
        EPOCH_PROMISED: f"epoch {msg.epoch} already promised{to}",
        LEADING: f"leads epoch {before.epoch} itself",
        PROMISE_LIVE: f"promise to node {before.promised_to} still live ({before.promise_left_ms} ms left)",
        NOT_A_VOTER: f"node {before.node} is a learner: it does not vote",
        LOWER_ID: f"node {msg.src} is lower: node {before.node} takes over (Bully)",
        OTHER_LEADER: f"follows a later leader (epoch {before.epoch})",
    }.get(refusal) or REFUSALS.get(refusal, "refused")


def core_refusal(refuser: int, refused: int, reason: str, refuser_m: Membership, refused_m: Membership | None) -> str:
    """A core's refusal for a configuration (node.core.membership), in words, naming both sides'."""
    why = {
        STALE: f"node {refused} runs an earlier configuration than node {refuser}",
        CONFLICT: f"nodes {refused} and {refuser} run different configurations of the same order "
        "(started with different --voters or --peers lists?)",
        OUTSIDE: f"node {refuser} is in no configuration (removed, or still joining)",
    }.get(reason, reason)
    theirs = f"node {refused} runs {refused_m.describe()}; " if refused_m is not None else ""
    return f"node {refuser} refused node {refused}: {why}. {theirs}node {refuser} runs {refuser_m.describe()}"


class SendFailed(Exception):
    """A request that got no answer: a gRPC status (as a unary call would end with), and its details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code, self.details = code, details


def _failure(exc: grpc.aio.AioRpcError) -> SendFailed:
    return SendFailed(exc.code(), exc.details() or "")


class HeartbeatStream:
    """One open Peer/Heartbeats call to a peer: heartbeats written in order, their acks read in the same
    order. An ack that comes after its sender stopped waiting is dropped (as a late unary reply is) and
    the stream goes on. Broken (the peer refused a message, the connection went, a write did not finish
    in time, or more than `max_unanswered` heartbeats wait for acks) it stays broken: the next heartbeat opens a new
    one."""

    def __init__(self, stub: pb_grpc.PeerStub, max_unanswered: int) -> None:
        self.max_unanswered = max_unanswered
        self.call = stub.Heartbeats()
        # One per request written, in order: its round (an ack must echo it) and its answer.
        self.pending: deque[tuple[int, asyncio.Future[pb.PeerReply]]] = deque()
        self.lock = asyncio.Lock()  # one write at a time (gRPC takes one outstanding message per call)
        self.broken: SendFailed | None = None
        self.reader = asyncio.ensure_future(self._read())

    async def exchange(self, request: pb.PeerMessage) -> pb.PeerReply:
        """Write `request` and wait for its ack (the caller bounds the wait: a stalled link blocks no one)."""
        if self.broken is not None:
            raise self.broken
        answer: asyncio.Future[pb.PeerReply] = asyncio.get_running_loop().create_future()
        async with self.lock:
            if self.broken is not None:
                raise self.broken
            # Queued before the write: its ack cannot be read before it is waited for. Every entry is a
            # message written (a write that fails breaks the stream), so acks and entries stay aligned.
            self.pending.append((request.round, answer))
            try:
                await self.call.write(request)
            except grpc.aio.AioRpcError as exc:
                self._break(_failure(exc))
            except asyncio.InvalidStateError:  # the call ended between the check and the write
                self._break(self.broken or SendFailed(grpc.StatusCode.UNAVAILABLE, "heartbeat stream ended"))
            except asyncio.CancelledError:  # the sender's time ran out mid-write: stalled, or never started
                self._break(SendFailed(grpc.StatusCode.DEADLINE_EXCEEDED, "heartbeat stream stalled"))
                raise
        if len(self.pending) > self.max_unanswered:  # acks stopped coming: start afresh next time
            self._break(SendFailed(grpc.StatusCode.DEADLINE_EXCEEDED, "heartbeat stream: no acks"))
        return await answer

    async def _read(self) -> None:
        why = SendFailed(grpc.StatusCode.UNAVAILABLE, "heartbeat stream ended")
        try:
            async for reply in self.call:
                if not self.pending:  # an answer to nothing: the peer does not speak this protocol
                    why = SendFailed(grpc.StatusCode.INTERNAL, "heartbeat stream: an ack without a heartbeat")
                    break
                round_, answer = self.pending.popleft()
                if reply.HasField("ack") and reply.ack.round != round_:
                    # Out of step with what we wrote (a reply skipped or doubled): every later ack would
                    # land on the wrong heartbeat and be dropped. Start afresh.
                    why = SendFailed(grpc.StatusCode.INTERNAL, "heartbeat stream: an ack out of step")
                    self.pending.appendleft((round_, answer))
                    break
                if not answer.done():  # (done: its sender stopped waiting)
                    answer.set_result(reply)
        except grpc.aio.AioRpcError as exc:
            why = _failure(exc)
        except asyncio.CancelledError:
            why = SendFailed(grpc.StatusCode.CANCELLED, "heartbeat stream closed")
        self._break(why)

    def _break(self, why: SendFailed) -> None:
        if self.broken is None:
            self.broken = why
            self.call.cancel()
        while self.pending:
            _, answer = self.pending.popleft()
            if not answer.done():
                answer.set_exception(self.broken)

    def close(self) -> None:
        self._break(SendFailed(grpc.StatusCode.CANCELLED, "heartbeat stream closed"))
        self.reader.cancel()


@dataclass
class PeerState:
    address: str
    channel: grpc.aio.Channel
    stub: pb_grpc.PeerStub
    last_heard_ns: int = 0
    reachable: bool = True
    configuration_refusal: str = ""  # the last refusal between us because we run different member lists
    heartbeats: HeartbeatStream | None = None  # the open heartbeat stream to it, if any
    unary_heartbeats: bool = False  # it does not serve Peer/Heartbeats (an older version): unary calls

    def heartbeat_stream(self, max_unanswered: int) -> HeartbeatStream:
        if self.heartbeats is None or self.heartbeats.broken is not None:
            self.heartbeats = HeartbeatStream(self.stub, max_unanswered)
        return self.heartbeats

    def close_heartbeats(self) -> None:
        if self.heartbeats is not None:
            self.heartbeats.close()
            self.heartbeats = None


class PeerTransport:
    def __init__(self, node: PeersNode) -> None:
        self.node = node
        self.peers: dict[int, PeerState] = {}
        self.configuration = configuration_id(node.settings.members)  # our member list, on every message
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.rpc_timeout_s = node.settings.heartbeat_interval_ms / 1000
        self.messages = MessageLog(node.events)  # election traffic, for people (the dashboard)
        self.link_watchers: list[asyncio.Task] = []
        self.unaddressed: set[int] = set()  # configuration members without an address (logged once each)
        self.closing = False  # the node is stopping: inbound heartbeat streams end at their next message

    def connect(self) -> None:
        for pid in self.node.settings.peers:
            self._open(pid)

    def peer(self, pid: int) -> PeerState | None:
        """The link to node `pid`: one of --peers, or (with --peer-address-template) opened the first
        time the configuration names a node this one was not started with. None: no address for it."""
        state = self.peers.get(pid)
        if state is None and self.node.settings.peer_address(pid) is not None:
            state = self._open(pid)
        return state

    def _open(self, pid: int) -> PeerState:
        s = self.node.settings
        address = s.peer_address(pid)
        assert address is not None
        # Verifies node `pid`'s own name in the certificate: a proxy (or anyone) in between cannot pose as it.
        channel = peer_channel(address, s.heartbeat_interval_ms, s.tls, node_name(pid))
        state = self.peers[pid] = PeerState(address, channel, pb_grpc.PeerStub(channel))
        self.link_watchers.append(asyncio.ensure_future(self._watch_link(pid, channel)))
        return state

    async def _watch_link(self, pid: int, channel: grpc.aio.Channel) -> None:
        """Count every time the connection to `pid` was up and went (peer_disconnects_total): a peer
        that died or restarted, a reset, or a server that sent GOAWAY. Watching never connects."""
        ready = grpc.ChannelConnectivity.READY
        state = channel.get_state(try_to_connect=False)
        while True:
            await channel.wait_for_state_change(state)
            new = channel.get_state(try_to_connect=False)
            if state == ready and new != ready:
                self.node.metrics.peer_disconnected(pid)
                peer = self.peers.get(pid)
                if peer is not None:  # it may come back upgraded: try its heartbeat stream again
                    peer.unary_heartbeats = False
            state = new

    async def close(self) -> None:
        for task in self.link_watchers:
            task.cancel()
        for p in self.peers.values():
            p.close_heartbeats()
            await p.channel.close()

    def deadline_s(self, msg: Message) -> float:
        """How long `msg` may wait for its answer (see ack_deadline_s)."""
        lease_s = self.node.elector.timing.leader_lease_ticks * self.node.settings.tick_ms / 1000
        return ack_deadline_s(msg, self.rpc_timeout_s, lease_s)

    async def send(self, msg: Message) -> None:
        """One request to a peer; its reply (an ack on the same call) goes to the elector."""
        node = self.node
        peer = self.peer(msg.dst)
        if peer is None:
            # The configuration names a node this one has no address for: as if it were down.
            if msg.dst not in self.unaddressed:
                self.unaddressed.add(msg.dst)
                node.events.log(
                    f"node {msg.dst} is in the configuration but not in --peers (and no "
                    "--peer-address-template): no address to reach it",
                    node.epoch(),
                    level="warning",
                    peer=msg.dst,
                )
            node.apply(node.elector.send_failed(node.now(), msg))
            return
        self._count_sent(msg)
        request = message_to_pb(msg, self.node.settings.tick_ms, self.configuration)
        try:
            if msg.type == MsgType.HEARTBEAT and not peer.unary_heartbeats:
                reply = await self._stream_heartbeat(peer, request, self.deadline_s(msg))
            else:
                reply = await self._unary(peer, RPC_NAME[msg.type], request, self.deadline_s(msg))
        except SendFailed as failed:
            node.metrics.rpc_failed(failed.code.name, msg.dst)
            if failed.code == grpc.StatusCode.FAILED_PRECONDITION and "member list" in failed.details:
                self.configuration_refused(msg.dst, failed.details)
            peer.reachable = False
            if is_election_traffic(msg):  # not delivered, or no answer: the receiver recorded nothing
                self.messages.record(**_message_fields(msg), error=failed.code.name)
            node.apply(node.elector.send_failed(node.now(), msg))
            return
        peer.reachable = True
        peer.last_heard_ns = time.monotonic_ns()
        if reply.HasField("ack"):
            answer = ack_from_pb(msg, reply.ack, self.configuration)  # validated, configuration included
            if answer is not None and answer.refusal in CONFIGURATION_REFUSALS:
                self.configuration_refused(
                    msg.dst, core_refusal(msg.dst, node.id, answer.refusal, answer.membership, msg.membership)
                )
            elif not reply.ack.HasField("configuration") and reply.ack.configuration_id != self.configuration:
                s = node.settings
                self.configuration_refused(
                    msg.dst, configuration_refusal(msg.dst, reply.ack.configuration_id, node.id, s.members)
                )
            if answer is not None:
                self._count_received(answer)
                node.apply(node.elector.step(node.now(), answer))

    async def _unary(self, peer: PeerState, rpc: str, request: pb.PeerMessage, timeout_s: float) -> pb.PeerReply:
        try:
            return await getattr(peer.stub, rpc)(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc) from None

    async def _stream_heartbeat(self, peer: PeerState, request: pb.PeerMessage, timeout_s: float) -> pb.PeerReply:
        """A heartbeat on the peer's stream, its ack within the deadline a unary Heartbeat has
        (deadline_s: the lease), or it fails (an ack still on its way is dropped when it comes, as a late unary reply
        is). Writing counts against that time too: a stalled link never blocks the sender."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        # As many heartbeats as fit in that time may wait for their acks at once (a slow link), twice.
        before = peer.heartbeats
        stream = peer.heartbeat_stream(2 * math.ceil(timeout_s / self.rpc_timeout_s) + 2)
        if stream is not before:  # none was open, or it broke: a new one
            self.node.metrics.heartbeat_stream_opened(request.receiver_id)
        try:
            async with asyncio.timeout_at(deadline):
                return await stream.exchange(request)
        except TimeoutError:
            raise SendFailed(grpc.StatusCode.DEADLINE_EXCEEDED, "no ack on the heartbeat stream in time") from None
        except SendFailed as failed:
            if failed.code != grpc.StatusCode.UNIMPLEMENTED:
                raise
        # An older node without the stream: unary heartbeats to it (until its connection goes and comes).
        peer.unary_heartbeats = True
        peer.close_heartbeats()
        async with asyncio.timeout_at(deadline):  # what is left of this heartbeat's time
            try:
                return await self._unary(peer, "Heartbeat", request, timeout_s)
            except TimeoutError:
                raise SendFailed(grpc.StatusCode.DEADLINE_EXCEEDED, "no ack in time") from None

    async def handle(self, rpc: str, req: pb.PeerMessage, context: grpc.aio.ServicerContext) -> pb.PeerReply:
        """An inbound peer request: validate, step the elector, answer on the same call."""
        node = self.node
        # The certificate says who is talking; a member cannot speak for another.
        await require(
            context, node.settings.tls is not None, ("node",), f"Peer/{rpc}", claimed=("sender_id", req.sender_id)
        )
        rejection = check_peer_message(
            rpc, req, node.id, node.settings.members, node.settings.mode.value, node.settings.open_membership
        )
        if rejection is not None:
            if rejection.member_list:  # (its sender is a peer: that is checked first)
                self.configuration_refused(req.sender_id, rejection.detail)
            await context.abort(rejection.code, rejection.detail)
        if node.failed is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"node {node.id} is stopping: {node.failed}")
        msg = message_from_pb(rpc, req, node.settings.tick_ms)
        self._count_received(msg)
        sender = self.peers.get(msg.src)  # a sender alone opens no channel: the configuration does (send)
        if sender is not None:
            sender.last_heard_ns = time.monotonic_ns()
        before = self._before() if is_election_traffic(msg) else None
        try:
            reply = node.apply(node.elector.step(node.now(), msg), reply_to=msg)
        except PersistError as exc:
            # The ack would reveal a promise the disk does not hold: no answer but an error.
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"node {node.id} is stopping: {exc}")
        if node.records_promises and reply is not None and reply.granted:
            self._record_grant(msg, reply)
        if before is not None:
            self._record_message(msg, reply, before)
        if reply is None:
            return pb.PeerReply()
        if reply.refusal in CONFIGURATION_REFUSALS:
            self.configuration_refused(
                req.sender_id, core_refusal(node.id, req.sender_id, reply.refusal, reply.membership, msg.membership)
            )
        self._count_sent(reply)
        return pb.PeerReply(ack=ack_to_pb(reply, self.configuration))

    def configuration_refused(self, peer: int, why: str) -> None:
        """A message between us and `peer` was refused because we run different member lists: counted,
        shown in GetStatus (the peer's configuration_refusal), and logged when the reason is new."""
        node = self.node
        node.metrics.configuration_refused(peer)
        state = self.peer(peer)
        if state is None or why != state.configuration_refusal:
            node.events.log(why, node.elector.view(node.now()).epoch, level="warning", peer=peer)
        if state is not None:
            state.configuration_refusal = why

    def _record_grant(self, request: Message, reply: Message) -> None:
        """A granted ack is a "grant" in the history, for the checker that does not trust leaders
        (recorded after the promise is on disk, before the ack leaves). Releases and the node's votes
        for itself are recorded where the elector's output is carried out (NodeRuntime.apply)."""
        node = self.node
        node.events.record(
            "grant",
            leader=reply.dst,
            epoch=reply.epoch,
            promise_ms=node.elector.timing.window_ticks_for(request.lease_ticks) * node.settings.tick_ms,
            until_ns=node.tick_to_ns(node.elector.promise_until),
        )

    def _before(self) -> Before:
        node, elector = self.node, self.node.elector
        now = node.now()
        view = elector.view(now)
        promise_until = getattr(elector, "promise_until", now)  # modes without promises have no window
        return Before(
            node.id,
            view.role,
            view.epoch,
            elector.promise,
            getattr(elector, "promised_to", elector.promise.leader_id),
            max(0, promise_until - now) * node.settings.tick_ms,
        )

    def _record_message(self, msg: Message, reply: Message | None, before: Before) -> None:
        """A "message" event: the request as received, with the answer it got on the same call."""
        fields = _message_fields(msg)
        if reply is not None:
            fields.update(reply=reply.type.value, granted=reply.granted)
            if not reply.granted:
                fields["why"] = refusal_words(reply.refusal, msg, before)
        self.messages.record(**fields)

    def _count_sent(self, msg: Message) -> None:
        self.sent[msg.type.value] += 1
        self.node.metrics.message_sent(msg.type.value)

    def _count_received(self, msg: Message) -> None:
        self.received[msg.type.value] += 1
        self.node.metrics.message_received(msg.type.value)


def _message_fields(msg: Message) -> dict[str, Any]:
    fields: dict[str, Any] = {"type": msg.type.value, "src": msg.src, "dst": msg.dst, "epoch": msg.epoch}
    if msg.resigning:
        fields.update(resigning=True, successor=msg.successor or None)
    if msg.ids:
        fields["ids"] = list(msg.ids)
    return fields


class PeerServicer(pb_grpc.PeerServicer):
    """Thin: validation and conversion live in node.runtime.wire, decisions in node.core.

    One method per RPC of service Peer, made from the .proto: a new mode's RPCs need no code here.
    """

    def __init__(self, transport: PeerTransport) -> None:
        self.transport = transport


def _peer_rpc(rpc: str) -> Callable[..., Any]:
    async def handle(self: PeerServicer, request: pb.PeerMessage, context: grpc.aio.ServicerContext) -> pb.PeerReply:
        return await self.transport.handle(rpc, request, context)

    handle.__name__ = rpc
    return handle


async def _heartbeats(
    self: PeerServicer, requests: AsyncIterator[pb.PeerMessage], context: grpc.aio.ServicerContext
) -> AsyncIterator[pb.PeerReply]:
    """Peer/Heartbeats: each message handled as a unary Heartbeat is, in order; a refusal ends the
    stream with the status the unary call would end with (abort). Only nodes may open one (each message
    is checked again for the node it claims to be from), and a stopping node ends them, so its server's
    grace is not spent waiting on streams that never end on their own."""
    transport = self.transport
    await require(context, transport.node.settings.tls is not None, ("node",), "Peer/Heartbeats")
    async for req in requests:
        if transport.closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"node {transport.node.id} is stopping")
        yield await transport.handle("Heartbeat", req, context)


for _method in pb.DESCRIPTOR.services_by_name["Peer"].methods:
    if not _method.client_streaming:  # Heartbeats: a transport for Heartbeat, below
        setattr(PeerServicer, _method.name, _peer_rpc(_method.name))
PeerServicer.Heartbeats = _heartbeats  # type: ignore[method-assign]
