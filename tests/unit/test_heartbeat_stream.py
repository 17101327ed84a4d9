"""The sender's side of Peer/Heartbeats against in-process gRPC servers: an ack comes back on the
stream; a receiver that never answers (a blackhole) fails the heartbeat within the timeout and the
next one opens a new stream; a refusal ends the stream with the unary call's status; an older node
(UNIMPLEMENTED) gets a unary Heartbeat in the same heartbeat's time, and unary ones after."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import grpc
import pytest

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.runtime.peers import PeerState, PeerTransport, SendFailed

TIMEOUT_S = 0.2
MAX_UNANSWERED = 4  # 2 * ceil(TIMEOUT_S / rpc_timeout_s) + 2, as PeerTransport counts


def ack(req: pb.PeerMessage) -> pb.PeerReply:
    return pb.PeerReply(ack=pb.Ack(sender_id=req.receiver_id, receiver_id=req.sender_id, round=req.round))


class Receiver(pb_grpc.PeerServicer):
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.streams = 0
        self.unary = 0

    async def Heartbeat(self, request, context):  # noqa: N802 (the RPC's name)
        self.unary += 1
        return ack(request)

    async def Heartbeats(self, requests, context):  # noqa: N802
        self.streams += 1
        async for req in requests:
            if self.behaviour == "late" and req.round == 1:
                await asyncio.sleep(1.5 * TIMEOUT_S)
            if self.behaviour == "mute" and self.streams == 1 and req.round >= 1:
                await asyncio.sleep(3600)
            if self.behaviour == "refuse":
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "member list differs")
            yield ack(req)


class OldReceiver:
    """A node of a version without the stream: its server knows no Peer/Heartbeats (UNIMPLEMENTED)."""

    def register(self, server: grpc.aio.Server) -> None:
        async def heartbeat(request, context):
            return ack(request)

        handler = grpc.unary_unary_rpc_method_handler(
            heartbeat,
            request_deserializer=pb.PeerMessage.FromString,
            response_serializer=pb.PeerReply.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("bullyproof.v1.Peer", {"Heartbeat": handler})]
        )


async def with_server(servicer, body) -> None:
    server = grpc.aio.server()
    if isinstance(servicer, OldReceiver):
        servicer.register(server)
    else:
        pb_grpc.add_PeerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    peer = PeerState(f"127.0.0.1:{port}", channel, pb_grpc.PeerStub(channel))
    opened: list[int] = []  # the peers a stream was opened to (bullyproof_heartbeat_streams_opened_total)
    metrics = SimpleNamespace(heartbeat_stream_opened=opened.append)
    sender = SimpleNamespace(rpc_timeout_s=TIMEOUT_S, node=SimpleNamespace(metrics=metrics))  # lease = interval here
    peer.opened = opened
    sender._unary = lambda p, rpc, request, timeout_s: PeerTransport._unary(sender, p, rpc, request, timeout_s)

    async def beat(round_: int) -> pb.PeerReply:
        request = pb.PeerMessage(sender_id=1, receiver_id=2, round=round_)
        return await PeerTransport._stream_heartbeat(sender, peer, request, TIMEOUT_S)

    try:
        await body(peer, beat)
    finally:
        peer.close_heartbeats()
        await channel.close()
        await server.stop(None)


def test_acks_come_back_in_order_on_one_stream() -> None:
    receiver = Receiver("ok")

    async def body(peer, beat):
        for r in range(2, 12):
            assert (await beat(r)).ack.round == r
        assert receiver.streams == 1 and receiver.unary == 0
        assert peer.opened == [2]  # counted once, for the receiver

    asyncio.run(with_server(receiver, body))


def test_a_late_ack_fails_its_heartbeat_and_is_dropped_when_it_comes() -> None:
    receiver = Receiver("late")

    async def body(peer, beat):
        assert (await beat(0)).ack.round == 0
        t0 = time.monotonic()
        with pytest.raises(SendFailed) as failed:
            await beat(1)
        assert failed.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < TIMEOUT_S + 0.15
        assert (await beat(2)).ack.round == 2  # the late ack for 1 came first, and was dropped
        assert receiver.streams == 1

    asyncio.run(with_server(receiver, body))


def test_a_mute_receiver_fails_each_heartbeat_in_time_until_the_stream_is_replaced() -> None:
    receiver = Receiver("mute")

    async def body(peer, beat):
        assert (await beat(0)).ack.round == 0
        for r in range(1, MAX_UNANSWERED + 2):
            t0 = time.monotonic()
            with pytest.raises(SendFailed) as failed:
                await beat(r)  # never answered
            assert failed.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - t0 < TIMEOUT_S + 0.15
        assert (await beat(100)).ack.round == 100  # a new stream
        assert receiver.streams == 2 and peer.opened == [2, 2]

    asyncio.run(with_server(receiver, body))


def test_a_refusal_ends_the_stream_with_the_unary_status() -> None:
    receiver = Receiver("refuse")

    async def body(peer, beat):
        for r in range(3):
            with pytest.raises(SendFailed) as failed:
                await beat(r)
            assert failed.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert "member list" in failed.value.details
        assert receiver.streams == 3 and len(peer.opened) == 3

    asyncio.run(with_server(receiver, body))


def test_an_older_node_gets_unary_heartbeats() -> None:
    async def body(peer, beat):
        assert (await beat(5)).ack.round == 5  # UNIMPLEMENTED, then unary in the same heartbeat
        assert peer.unary_heartbeats

    old = OldReceiver()
    asyncio.run(with_server(old, body))


class _Skipper(Receiver):
    """Answers an empty reply to odd rounds (as handle() does for a resigning heartbeat), or skips
    round 1 altogether (a receiver out of step)."""

    async def Heartbeats(self, requests, context):  # noqa: N802 (the RPC's name)
        self.streams += 1
        async for req in requests:
            if self.behaviour == "empty" and req.round % 2:
                yield pb.PeerReply()
                continue
            if self.behaviour == "skip" and req.round == 1:
                continue
            yield ack(req)


def test_empty_replies_keep_acks_in_step() -> None:
    async def body(peer, beat):
        for r in range(6):
            reply = await beat(r)
            assert reply.HasField("ack") == (r % 2 == 0)
            if r % 2 == 0:
                assert reply.ack.round == r

    asyncio.run(with_server(_Skipper("empty"), body))


def test_an_ack_out_of_step_breaks_the_stream_and_the_next_heartbeat_opens_a_new_one() -> None:
    """Without the round check every later ack would land one heartbeat behind and be dropped, and the
    stream, never over its cap, would never be replaced: a leader that could not renew its lease."""
    receiver = _Skipper("skip")
    rounds: list[int | str] = []

    async def body(peer, beat):
        for r in range(6):
            try:
                rounds.append((await beat(r)).ack.round)
            except Exception as exc:  # noqa: BLE001 (what failed is the point)
                rounds.append(type(exc).__name__)

    asyncio.run(with_server(receiver, body))
    assert rounds[0] == 0 and rounds[1] == "SendFailed"  # skipped: no ack in time
    assert rounds[-1] == 5 and receiver.streams >= 2, (rounds, receiver.streams)
