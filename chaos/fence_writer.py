"""One writer, or the reader, of `bullyproof fence check`: a process of its own, so the check can pause
it (SIGSTOP), resume it (SIGCONT) and kill it (SIGKILL) as a leader's process would be.

A writer takes commands on standard input, one JSON object a line, and runs them one at a time:

    {"n": 7, "write": {"resource": "r", "epoch": 12, "value": "7"}, "stop_at_check": false}
    {"exit": true}

With "stop_at_check" the write stops its own process (SIGSTOP) in the adapter's hook between the check
and the write (`_between_check_and_write`), after saying so on standard output; an adapter without
that hook, or that does not call it (the check and the write are one script), just writes.

The reader (--reader) reads the resources in a loop, and at once when asked ({"n": 9, "read": "r"}),
until {"final": true} (or the end of its input); then it reads each resource once more and exits.
Before anything it reads each resource once (they must be unwritten) and, for the fenced store, its
highest epoch (one for all keys), and reports them in its "ready" line.

Every operation is recorded in the process's own file (--record), one JSON line when it is called and
one when its outcome is known, each written whole with one write(2) before the process goes on, so a
kill loses nothing recorded: an operation with a call and no outcome is indeterminate ("unknown").
Times are time.monotonic_ns(), CLOCK_MONOTONIC, one clock for every process on the host.

Standard output carries the events the check steers by: {"ready": ...}, {"invoke": n}, {"hook": n},
{"done": n, "result": ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from node.client.fencing import EpochTaken, StaleEpoch, open_fence

# Schemes whose fences take the hidden options `_planted` and `_between_check_and_write`.
HOOKED_SCHEMES = ("postgresql", "postgres", "redis", "rediss", "unix", "sqlite")
STORE_SCHEME = "bullyproof-store"
CLOSE_TIMEOUT_S = 5.0
FINAL_READ_ATTEMPTS = 20


def emit(event: dict[str, Any]) -> None:
    """One line on standard output in one write(2) (atomic on a pipe), from any thread."""
    os.write(1, (json.dumps(event) + "\n").encode())


class Record:
    """The process's record of its operations: append-only, one write(2) per line."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def put(self, line: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(line) + "\n").encode())


def load_factory(spec: str | None) -> Callable[..., Any]:
    """`module:callable` (called with the URL and options), or open_fence for the built-in schemes."""
    if not spec:
        return open_fence
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--factory {spec!r}: want MODULE:CALLABLE")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target


def takes_hook(factory: Callable[..., Any], url: str) -> bool:
    if factory is open_fence:
        return urlsplit(url).scheme.lower() in HOOKED_SCHEMES
    try:
        return "_between_check_and_write" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, StaleEpoch):
        return "stale"
    if isinstance(exc, EpochTaken):
        return "taken"
    return "unknown"


def describe(exc: BaseException) -> str:
    """One line: the exception's type and the start of its message (gRPC's: its code and details)."""
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):
        with contextlib.suppress(Exception):
            return f"{type(exc).__name__}: {code().name}: {details()}"[:160]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:160] if text else type(exc).__name__


class Client:
    """One process's fence, replaced by a fresh one after an operation that failed or timed out (the
    old one may be stuck in that operation; it is closed once the operation ends)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.adapter
        self.client_id = args.client
        self.op_timeout_s = args.op_timeout
        self.factory = load_factory(args.factory)
        self.options: dict[str, Any] = {}
        if args.planted:
            self.options["_planted"] = list(args.planted)
        self.hooked = takes_hook(self.factory, self.url)
        if self.hooked and not args.reader:
            self.options["_between_check_and_write"] = self.hook
        self.fence: Any = None
        self.stop_at: int | None = None  # the command whose write stops in the hook
        self.current: int | None = None
        self.abandoned: set[asyncio.Task[Any]] = set()

    def open(self) -> Any:
        if self.fence is None:
            self.fence = self.factory(self.url, **self.options)
        return self.fence

    def hook(self, resource: str, writer_id: int, epoch: int) -> None:
        n = self.stop_at
        if n is not None and n == self.current:
            self.stop_at = None
            emit({"hook": n})
            # This thread's own signal, so this thread stops before its next instruction: a SIGSTOP to the
            # process is taken by the main thread, and a worker (SQLite's) would write on until it is.
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)

    async def call(self, make: Callable[[Any], Any]) -> tuple[str, Any, BaseException | None]:
        """Run one operation with the deadline: (outcome, its value, the exception if any)."""
        try:
            fence = self.open()
        except Exception as exc:  # a factory that connects at once, during a cut: nothing was sent
            return "unknown", None, exc
        task = asyncio.ensure_future(make(fence))
        done, _ = await asyncio.wait({task}, timeout=self.op_timeout_s)
        if not done:
            task.cancel()
            self.abandon(fence, task)
            return "unknown", None, TimeoutError(f"no answer within {self.op_timeout_s:g} s")
        exc = task.exception()
        outcome = outcome_of(exc)
        if outcome == "unknown":
            self.abandon(fence, task)
        return outcome, None if exc else task.result(), exc

    def abandon(self, fence: Any, task: asyncio.Task[Any]) -> None:
        self.fence = None

        async def close_when_done() -> None:
            with contextlib.suppress(BaseException):
                await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_S)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(fence.close(), CLOSE_TIMEOUT_S)

        closing = asyncio.ensure_future(close_when_done())
        self.abandoned.add(closing)
        closing.add_done_callback(self.abandoned.discard)

    async def close(self) -> None:
        if self.fence is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self.fence.close(), CLOSE_TIMEOUT_S)


def observed(state: Any) -> dict[str, Any]:
    """A FenceState as the history writes it: a never-written resource is (0, 0, "")."""
    epoch, writer, value = state
    return {"epoch": int(epoch), "writer": int(writer), "value": "" if value is None else bytes(value).decode()}


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run_writer(args: argparse.Namespace, client: Client, record: Record) -> None:
    commands = await stdin_lines()
    emit({"ready": os.getpid(), "hook": client.hooked})
    while line := await commands.readline():
        command = json.loads(line)
        if command.get("exit"):
            break
        n, write = command["n"], command["write"]
        resource, epoch, value = write["resource"], write["epoch"], write["value"]
        client.current = n
        client.stop_at = n if command.get("stop_at_check") else None
        call_ns = time.monotonic_ns()
        record.put(
            {
                "n": n,
                "client": args.client,
                "resource": resource,
                "kind": "write",
                "epoch": epoch,
                "value": value,
                "call_ns": call_ns,
            }
        )
        emit({"invoke": n})
        outcome, _, exc = await client.call(lambda fence: fence.write(resource, args.client, epoch, value.encode()))
        return_ns = time.monotonic_ns()
        client.current = client.stop_at = None
        if outcome != "unknown":
            record.put({"n": n, "return_ns": return_ns, "result": outcome})
        emit({"done": n, "result": outcome, **({"error": describe(exc)} if outcome == "unknown" and exc else {})})
    await client.close()


async def store_highest_epoch(url: str) -> int:
    """The fenced store's highest accepted epoch (one for all keys), from its log's reply."""
    from node.api import bullyproof_pb2 as pb
    from node.api import bullyproof_pb2_grpc as pb_grpc
    from node.channels import client_channel
    from node.tls import STORE_NAME, Tls

    parts = urlsplit(url)
    certs = parse_qs(parts.query).get("certs", [None])[-1]
    channel = client_channel(parts.netloc, None if certs is None else Tls.in_dir(certs, "admin"), STORE_NAME)
    try:
        reply = await pb_grpc.FencedStoreStub(channel).ReadLog(pb.ReadLogRequest(after_seq=0, limit=1), timeout=5.0)
        return int(reply.highest_epoch)
    finally:
        await channel.close()


async def run_reader(args: argparse.Namespace, client: Client, record: Record) -> None:
    resources: list[str] = args.resource
    rng = random.Random(args.seed)
    # The probe: each resource unwritten, and the store's epoch floor.
    start: dict[str, Any] = {}
    for resource in resources:
        outcome, state, exc = await client.call(lambda fence, r=resource: fence.read(r))
        if outcome != "ok":
            emit({"ready": os.getpid(), "error": f"reading {resource!r}: {describe(exc) if exc else outcome}"})
            return
        start[resource] = observed(state)
    floor = 0
    if urlsplit(args.adapter).scheme.lower() == STORE_SCHEME and not args.factory:
        floor = await store_highest_epoch(args.adapter)
    commands = await stdin_lines()
    emit({"ready": os.getpid(), "start": start, "epoch_floor": floor})
    asked: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def listen() -> None:
        while line := await commands.readline():
            await asked.put(json.loads(line))
        await asked.put({"final": True})

    listening = asyncio.ensure_future(listen())
    n = 0

    async def read(resource: str) -> str:
        nonlocal n
        n += 1
        call_ns = time.monotonic_ns()
        record.put({"n": n, "client": args.client, "resource": resource, "kind": "read", "call_ns": call_ns})
        outcome, state, _ = await client.call(lambda fence: fence.read(resource))
        return_ns = time.monotonic_ns()
        if outcome == "ok":
            record.put({"n": n, "return_ns": return_ns, "result": "ok", "observed": observed(state)})
        return outcome

    getting = asyncio.ensure_future(asked.get())
    while True:
        await asyncio.wait({getting}, timeout=rng.uniform(args.gap_ms[0], args.gap_ms[1]) / 1000)
        if not getting.done():
            await read(rng.choice(resources))
            continue
        command, getting = getting.result(), asyncio.ensure_future(asked.get())
        if command.get("final"):
            getting.cancel()
            break
        emit({"done": command["n"], "result": await read(command["read"])})  # a read the check asks for, now
    for resource in resources:  # after every writer: what the resources ended as
        for _ in range(FINAL_READ_ATTEMPTS):
            if await read(resource) == "ok":
                break
            await asyncio.sleep(0.1)
    listening.cancel()
    emit({"finished": n})
    await client.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chaos.fence_writer", description=__doc__.split("\n")[0])
    parser.add_argument("--adapter", required=True, help="the adapter's URL")
    parser.add_argument("--factory", help="MODULE:CALLABLE making the fence from the URL (default: open_fence)")
    parser.add_argument("--client", type=int, required=True, help="writer id (the reader: its client id)")
    parser.add_argument("--record", required=True, help="append the record of operations here")
    parser.add_argument("--op-timeout", type=float, default=5.0, help="seconds before an operation is unknown")
    parser.add_argument("--planted", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--reader", action="store_true", help="read in a loop instead of taking writes")
    parser.add_argument("--resource", action="append", default=[], help="the reader: a resource to read")
    parser.add_argument("--seed", type=int, default=0, help="the reader: its choices")
    parser.add_argument("--gap-ms", type=float, nargs=2, default=(10.0, 30.0), help="the reader: pause between reads")
    return parser


async def amain(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    record = Record(args.record)
    try:
        client = Client(args)
        client.open()
    except Exception as exc:  # a factory that cannot make a fence: say why, once
        emit({"ready": os.getpid(), "error": f"cannot make the fence: {describe(exc)}"})
        return 2
    await (run_reader if args.reader else run_writer)(args, client, record)
    return 0


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the check stops its processes itself, by pid
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
