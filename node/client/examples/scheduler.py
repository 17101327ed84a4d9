"""A periodic job that runs only while the node beside it leads: `python -m node.client.examples.scheduler`.

Start one scheduler beside each node. Each run writes "tick N" to the fenced store under
`scheduler/<node-id>/<N>`, stamped with the leadership epoch, so a run from a deposed leader is refused
by the store instead of applied. Prints one JSON line per event. SIGTERM or SIGINT stops it; if it
leads, its node resigns so another scheduler takes over without waiting out a lease.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from node.client.sdk import Fenced, FencedWriter, Leadership, LeaseToken, NodeError, Tls, parse_addresses


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"ts": round(time.time(), 3), "event": event, **fields}), flush=True)


class Scheduler:
    """The job and its bookkeeping; Leadership decides when it runs."""

    def __init__(self, node_id: int, writer: FencedWriter, period_ms: int) -> None:
        self.node_id = node_id
        self.writer = writer
        self.period_s = period_ms / 1000
        self.runs = 0  # N in "tick N": counts runs of this process across terms

    async def work(self, token: LeaseToken) -> None:
        while True:
            self.runs += 1
            key = f"scheduler/{self.node_id}/{self.runs}"
            try:
                result = await self.writer.write(token, key, f"tick {self.runs}".encode())
            except Fenced as exc:
                emit("fenced", node=self.node_id, epoch=exc.epoch, highest_epoch=exc.highest_epoch, reason=exc.reason)
                return  # this epoch is over for good; the next term starts the job again
            except grpc.aio.AioRpcError as exc:
                emit("store_error", node=self.node_id, epoch=token.epoch, key=key, code=exc.code().name)
            else:
                emit("job", node=self.node_id, epoch=token.epoch, key=key, seq=result.seq)
            await asyncio.sleep(self.period_s)

    def started_leading(self, epoch: int) -> None:
        emit("started_leading", node=self.node_id, epoch=epoch)

    def stopped_leading(self) -> None:
        emit("stopped_leading", node=self.node_id)

    def new_leader(self, leader_id: int | None, epoch: int) -> None:
        emit("new_leader", node=self.node_id, leader=leader_id, epoch=epoch)


async def serve(node_address: str, node_id: int, store_address: str, period_ms: int, tls: Tls | None = None) -> None:
    """Run the scheduler until SIGTERM/SIGINT. With `tls` (node N's certificate: the scheduler acts
    as the node beside it) it writes to the store as node N and may resign N; None: plaintext."""
    async with FencedWriter(store_address, writer_id=node_id, tls=tls, insecure=tls is None) as writer:
        scheduler = Scheduler(node_id, writer, period_ms)
        leadership = Leadership(node_address, node_id, release_on_cancel=True, tls=tls, insecure=tls is None)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = asyncio.create_task(
            leadership.run(scheduler.work, scheduler.started_leading, scheduler.stopped_leading, scheduler.new_leader)
        )
        stopper = asyncio.create_task(stop.wait())
        emit("watching", node=node_id, node_address=node_address, store=store_address, period_ms=period_ms)
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        runner.cancel()  # release on cancel: a leading node resigns before run() returns
        await asyncio.wait({runner})
        if not runner.cancelled():
            runner.result()  # run() ended by itself: raise what ended it
        emit("exit", node=node_id)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m node.client.examples.scheduler",
        description="Run a periodic job only while the node beside it leads, fenced by its epoch.",
    )
    parser.add_argument(
        "--node", required=True, metavar="HOST:PORT", help="client address of the node beside this scheduler"
    )
    parser.add_argument("--node-id", required=True, type=int, help="that node's id (also the store writer id)")
    parser.add_argument("--store", required=True, metavar="HOST:PORT", help="the fenced store")
    parser.add_argument("--period-ms", type=int, default=200, help="time between job runs while leading (default 200)")
    security = parser.add_mutually_exclusive_group(required=True)
    security.add_argument(
        "--certs", metavar="DIR", help="the cluster's certificates (bullyproof certs init): uses node-N's"
    )
    security.add_argument("--insecure", action="store_true", help="plaintext, for a cluster started with --insecure")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        parse_addresses([args.node, args.store])
        if args.node_id <= 0 or args.period_ms <= 0:
            raise ValueError("--node-id and --period-ms must be positive")
    except ValueError as exc:
        parser.error(str(exc))
    try:
        tls = None if args.insecure else Tls.in_dir(Path(args.certs), f"node-{args.node_id}")
        if args.insecure:
            emit("warning", msg="--insecure: plaintext, neither the node nor the store is authenticated")
        asyncio.run(serve(args.node, args.node_id, args.store, args.period_ms, tls))
    except NodeError as exc:
        print(f"scheduler: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
