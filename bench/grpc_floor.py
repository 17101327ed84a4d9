"""The floor under a node's idle cost: what Python's gRPC alone spends per message at heartbeat rates.

`bullyproof bench` measures this beside etcd in its idle part (bench.versus.bench_grpc_floor):
a bare grpc.aio echo server, with no bullyproof code in it, and one sender that sends a 40-byte
message once per heartbeat interval and waits for its echo; first as unary calls (how heartbeats
travel), then as messages on one open bidirectional stream. An idle follower receives one
heartbeat per interval and answers it, so the server's CPU is a lower bound for a follower,
whatever the election does; the sender's is what a leader pays per follower.

    python -m bench.grpc_floor serve                                  # prints "port N"
    python -m bench.grpc_floor send ADDRESS unary|stream INTERVAL_MS  # prints "ready"; on EOF
                                                                      # of stdin, "echoes N"
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import grpc

KINDS = ("unary", "stream")
SERVICE = "bullyproof.floor.Echo"
PAYLOAD = b"x" * 40  # about a PeerMessage heartbeat's size


async def serve() -> None:
    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def stream(requests, context: grpc.aio.ServicerContext):  # noqa: ANN001 - an async iterator of bytes
        async for request in requests:
            yield request

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.stream_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"port {port}", flush=True)
    await server.wait_for_termination()


async def send(address: str, kind: str, interval_ms: int) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        if kind == "unary":
            call = channel.unary_unary(f"/{SERVICE}/Unary")

            async def once() -> None:
                await call(PAYLOAD, timeout=10)
        else:
            open_stream = channel.stream_stream(f"/{SERVICE}/Stream")()

            async def once() -> None:
                await open_stream.write(PAYLOAD)
                await open_stream.read()

        await once()  # connected and warm before anyone measures
        print("ready", flush=True)
        done = asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # EOF: stop
        echoes, period_s = 0, interval_ms / 1000
        next_s = time.monotonic()
        while not done.done():
            next_s += period_s  # a fixed period, as heartbeats are sent, not one interval after the echo
            await once()
            echoes += 1
            await asyncio.wait([done], timeout=max(0.0, next_s - time.monotonic()))
        print(f"echoes {echoes}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.grpc_floor", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="a bare grpc.aio echo server on a free loopback port")
    s = sub.add_parser("send", help="one echo per interval until stdin closes")
    s.add_argument("address")
    s.add_argument("kind", choices=KINDS)
    s.add_argument("interval_ms", type=int)
    args = p.parse_args(argv)
    if args.command == "serve":
        asyncio.run(serve())
    else:
        asyncio.run(send(args.address, args.kind, args.interval_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
