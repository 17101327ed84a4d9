"""A leader's app for test_leadership_on_a_cluster.py, run as its own process beside one node.

While its node leads it writes a row to PostgreSQL through `token.fenced(PostgresFence(url))`, then
runs one more job for each line on stdin (the test's "next tick"). One JSON line per event on stdout.
Its Leadership confirms only every 60 s: an app that has not noticed it lost leadership (a long GC
pause, a slow network to its node) is the case fencing exists for, so the test makes that certain
instead of racing the app's own loss detection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from node.client import FencingRefused, Leadership, LeaseToken
from node.client.fencing import PostgresFence


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def main(args: argparse.Namespace) -> None:
    fence = PostgresFence(args.url)
    loop = asyncio.get_running_loop()

    async def job(token: LeaseToken) -> None:
        try:
            async with token.fenced(fence).transaction(args.resource) as conn:
                await conn.execute("INSERT INTO runs (epoch, node) VALUES (%s, %s)", (token.epoch, token.node_id))
        except FencingRefused as exc:
            emit(
                "refused",
                node=token.node_id,
                epoch=token.epoch,
                type=type(exc).__name__,
                highest_epoch=exc.highest_epoch,
                owner=exc.owner_id,
            )
        else:
            emit("wrote", node=token.node_id, epoch=token.epoch)

    async def work(token: LeaseToken) -> None:
        await job(token)
        while await loop.run_in_executor(None, sys.stdin.readline):
            await job(token)

    try:
        await Leadership(args.node, args.node_id, insecure=True, confirm_interval_s=30, confirm_timeout_s=60).run(work)
    finally:
        await fence.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--node", required=True)
    parser.add_argument("--node-id", required=True, type=int)
    parser.add_argument("--url", required=True)
    parser.add_argument("--resource", default="runs")
    asyncio.run(main(parser.parse_args()))
