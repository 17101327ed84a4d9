"""node.guard.DecodeGuard: undecodable request bytes get INVALID_ARGUMENT on every kind of
method (unary and streaming, async and sync handlers), decodable ones reach the handler unchanged;
without the guard gRPC answers UNKNOWN (the bug it fixes)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import MAX_RECEIVE_BYTES
from node.guard import DecodeGuard

BAD_BODIES = [
    b"\x1a\x02\xff\xfe",  # field 3 (a string in WriteRequest and HealthCheckRequest's field 1 is too) not UTF-8
    b"\x0a\x02\xff\xfe",  # field 1 as a string that is not UTF-8
    b"\x1a\x05ab",  # length runs past the end
    b"\x08",  # a tag with no value
    b"\x0f",  # wire type 7 does not exist
    b"\xff" * 11,  # a varint longer than ten bytes
]


def _parses(cls, body: bytes) -> bool:
    try:
        cls.FromString(body)
    except Exception:  # noqa: BLE001
        return False
    return True


class Store(pb_grpc.FencedStoreServicer):
    async def Write(self, request, context):
        return pb.WriteReply(accepted=True, reason=request.key)


class Leadership(pb_grpc.LeadershipServicer):
    async def GetLeader(self, request, context):
        return pb.LeaderInfo(known=True, leader_id=7)

    async def WatchLeader(self, request, context):
        yield pb.LeaderInfo(known=True, leader_id=7)


async def _serve(guarded: bool):
    interceptors = [DecodeGuard()] if guarded else []
    server = grpc.aio.server(
        interceptors=interceptors, options=[("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
    )
    pb_grpc.add_FencedStoreServicer_to_server(Store(), server)
    pb_grpc.add_LeadershipServicer_to_server(Leadership(), server)
    sync_health = health.HealthServicer()  # the node's: sync handlers, run in the server's threads
    sync_health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(sync_health, server)
    reflection.enable_server_reflection([reflection.SERVICE_NAME], server)  # stream-stream, async
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def _statuses(address: str) -> dict[tuple[str, bytes], str]:
    out: dict[tuple[str, bytes], str] = {}
    async with grpc.aio.insecure_channel(address) as ch:
        calls = {
            "/bullyproof.v1.FencedStore/Write": ch.unary_unary("/bullyproof.v1.FencedStore/Write"),
            "/grpc.health.v1.Health/Check": ch.unary_unary("/grpc.health.v1.Health/Check"),
        }
        for name, call in calls.items():
            for body in BAD_BODIES:
                try:
                    await call(body, timeout=5)
                    out[name, body] = "OK"
                except grpc.aio.AioRpcError as exc:
                    out[name, body] = exc.code().name
        streams = {
            "/bullyproof.v1.Leadership/WatchLeader": ch.unary_stream("/bullyproof.v1.Leadership/WatchLeader"),
            "/grpc.health.v1.Health/Watch": ch.unary_stream("/grpc.health.v1.Health/Watch"),
        }
        for name, call in streams.items():
            for body in BAD_BODIES:
                if name.startswith("/grpc.health") and _parses(health_pb2.HealthCheckRequest, body):
                    continue  # grpc_health's sync Watch would block a thread until a status change
                stream = call(body, timeout=5)
                try:
                    await stream.read()
                    out[name, body] = "OK"
                except grpc.aio.AioRpcError as exc:
                    out[name, body] = exc.code().name
                stream.cancel()
        bidi = ch.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        for body in BAD_BODIES:
            good = reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()
            stream = bidi(iter([good, body]), timeout=5)
            try:
                async for _ in stream:
                    pass
                out["reflection", body] = "OK"
            except grpc.aio.AioRpcError as exc:
                out["reflection", body] = exc.code().name
    return out


async def _good_requests_still_work(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as ch:
        reply = await pb_grpc.FencedStoreStub(ch).Write(pb.WriteRequest(writer_id=1, epoch=1, key="k€y"), timeout=5)
        assert reply.reason == "k€y"
        check = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        watch = pb_grpc.LeadershipStub(ch).WatchLeader(pb.WatchLeaderRequest(), timeout=5)
        assert (await watch.read()).leader_id == 7
        watch.cancel()
        info = pb_grpc.LeadershipStub(ch).GetLeader(pb.GetLeaderRequest(), timeout=5)
        assert (await info).leader_id == 7
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await ch.unary_unary("/bullyproof.v1.FencedStore/Nope")(b"", timeout=5)
        assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.aio.AioRpcError) as big:
            await ch.unary_unary("/bullyproof.v1.FencedStore/Write")(
                b"\x22" + b"\xff\xff\x07" + b"v" * 120_000, timeout=5
            )
        assert big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _run(guarded: bool) -> dict[tuple[str, bytes], str]:
    async def main():
        server, address = await _serve(guarded)
        try:
            statuses = await _statuses(address)
            if guarded:
                await _good_requests_still_work(address)
            return statuses
        finally:
            await server.stop(0)

    return asyncio.run(main())


def test_undecodable_requests_get_invalid_argument_with_the_guard():
    statuses = _run(guarded=True)
    wrong = {k: v for k, v in statuses.items() if v not in ("INVALID_ARGUMENT", "OK")}
    assert not wrong, wrong
    # every body above is malformed for every one of these methods except where it happens to parse
    assert sum(v == "INVALID_ARGUMENT" for v in statuses.values()) >= len(statuses) - 4, statuses


def test_without_the_guard_grpc_answers_unknown():
    """The bug: gRPC's own status for a request it cannot parse is UNKNOWN (and a logged traceback)."""
    statuses = _run(guarded=False)
    assert "UNKNOWN" in statuses.values(), statuses
