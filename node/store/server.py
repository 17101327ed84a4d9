"""The fenced store process: FencedStore over gRPC, plus health and reflection (`bullyproof store`).

Stdout carries exactly one line, the listening event, so a launcher can learn the port it got.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from node import channels
from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.config import INSECURE_WARNING, ConfigError, add_tls_args, parse_address, parse_planted_bugs, tls_from_args
from node.core import PlantedBug
from node.store.db import DEFAULT_LIMIT, MAX_KEY_BYTES, MAX_VALUE_BYTES, FencedStoreDB, StoreInputError, StoreOpenError
from node.tls import Identity, Tls

DB_FILE = "store.sqlite3"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FencedStore"].full_name
STOP_GRACE_S = 1.0
# The largest valid write (a MAX_VALUE_BYTES value, a MAX_KEY_BYTES key) plus framing; anything
# larger is refused by gRPC before it is read into memory.
MAX_RECEIVE_BYTES = MAX_VALUE_BYTES + MAX_KEY_BYTES + 1024


class FencedStoreServicer(pb_grpc.FencedStoreServicer):
    """Thin: decode, call FencedStoreDB in a worker thread (SQLite blocks), encode."""

    def __init__(self, db: FencedStoreDB, secure: bool = False) -> None:
        self.db = db
        self.secure = secure  # mutual TLS: writes only from node certificates, each for its own id
        # One writer: writes are decided in arrival order and never park several threads on the DB.
        # (The DB's own lock keeps a decision atomic even if a cancelled RPC leaves its thread running.)
        self.write_lock = asyncio.Lock()

    async def Write(self, request: pb.WriteRequest, context: grpc.aio.ServicerContext) -> pb.WriteReply:
        await channels.require(
            context, self.secure, ("node",), "FencedStore/Write", claimed=("writer_id", request.writer_id)
        )
        try:
            async with self.write_lock:
                d = await asyncio.to_thread(self.db.write, request.writer_id, request.epoch, request.key, request.value)
        except StoreInputError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.WriteReply(accepted=d.accepted, highest_epoch=d.highest_epoch, seq=d.seq, reason=d.reason)

    async def ReadLog(self, request: pb.ReadLogRequest, context: grpc.aio.ServicerContext) -> pb.ReadLogReply:
        # The log holds every node's writes (keys and values): for members and operators only.
        await channels.require(context, self.secure, ("node", "admin"), "FencedStore/ReadLog")
        try:
            entries, highest_epoch, owner_id = await asyncio.to_thread(
                self.db.read_log, request.after_seq, request.limit or DEFAULT_LIMIT
            )
        except StoreInputError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.ReadLogReply(
            entries=[pb.LogEntry(**asdict(e)) for e in entries],
            highest_epoch=highest_epoch,
            highest_epoch_writer=owner_id,
        )


async def serve(
    listen: str,
    db_path: Path,
    ready: Callable[[int], None] | None = None,
    planted_bugs: frozenset[PlantedBug] = frozenset(),
    tls: Tls | None = None,
) -> None:
    """Serve the store on `listen` (HOST:PORT, port 0 = any free port) until SIGTERM/SIGINT or cancellation.

    `ready(port)` is called with the bound port once every service reports SERVING. With `tls`, mutual
    TLS: any certificate of the cluster CA may read the log, only nodes may write (None: plaintext).
    Raises ConfigError for a bad or unbindable address, StoreOpenError for an unusable database.
    """
    parse_address(listen, "--listen")
    db = FencedStoreDB(db_path, accept_stale=PlantedBug.STALE_STORE in planted_bugs)
    server = channels.server(MAX_RECEIVE_BYTES)
    health_servicer = health.aio.HealthServicer()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        pb_grpc.add_FencedStoreServicer_to_server(FencedStoreServicer(db, secure=tls is not None), server)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection([SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
        try:
            port = channels.listen(server, listen, tls)
        except RuntimeError:
            raise ConfigError(f"--listen {listen!r}: cannot bind (address in use, or host not local?)") from None
        await server.start()
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        if ready is not None:
            ready(port)
        await stopping.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await health_servicer.enter_graceful_shutdown()
        await server.stop(grace=STOP_GRACE_S)
        db.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bullyproof store", description="Run the fenced store: accepts a write only if its epoch is current."
    )
    parser.add_argument(
        "--listen",
        required=True,
        metavar="HOST:PORT",
        help="address for FencedStore, health and reflection (port 0: any free port)",
    )
    parser.add_argument(
        "--data-dir",
        required=True,
        type=Path,
        metavar="DIR",
        help=f"directory of the durable log, DIR/{DB_FILE} (created if missing)",
    )
    add_tls_args(parser, "store")
    parser.add_argument("--planted-bug", action="append", default=[], help=argparse.SUPPRESS)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)  # exits 2 with a usage line and a one-line error

    try:
        host, _ = parse_address(args.listen, "--listen")
        try:
            args.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--data-dir {str(args.data_dir)!r}: cannot create it ({exc.strerror})") from None

        def announce(port: int) -> None:
            print(json.dumps({"event": "listening", "address": f"{host}:{port}", "pid": os.getpid()}), flush=True)

        bugs = parse_planted_bugs(args.planted_bug)
        tls = tls_from_args(args, "store", Identity("store"))
        if tls is None:
            print(
                json.dumps({"event": "insecure", "level": "warning", "msg": INSECURE_WARNING}),
                file=sys.stderr,
                flush=True,
            )
        asyncio.run(serve(args.listen, args.data_dir / DB_FILE, announce, bugs, tls))
    except (ConfigError, StoreOpenError) as exc:
        print(f"bullyproof store: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
