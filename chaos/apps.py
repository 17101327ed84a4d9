"""Apps beside the nodes, as a user runs one beside each: `Leadership.run` on its own node and, while
that node leads, a write every write period through each fencing adapter given
(`token.fenced(fence).write`), so PostgreSQL, Redis and SQLite fence a deposed leader's writes under
the same faults as the cluster's own store (docs/fencing-chaos.md).

One process, `python -m chaos.apps DIR` (DIR/apps.json says what to do), hosts the app of every node,
each with its own Leadership and its own connections; `Apps` starts it with the cluster and stops it
(by pid) before the history is collected. The apps themselves are never faulted: each talks to its
node on the node's unproxied client port (it runs beside it), and to each database through a
Toxiproxy proxy of its own ("3->postgres"), which no partition cuts, as no partition cuts a node's link
to the store: a deposed leader's writes reach the database, and the database must refuse them. SQLite
is a file in DIR (no network to cut).

Every write is recorded as the nodes' duty writes are, a "write" event (node.history.WriteEvent) with
the adapter's name as its `resource` and what it wrote as its `value`, in DIR/apps.jsonl. Each fence
keeps a log of the writes its database accepted (`log=True`), in a table or key of this run's own;
after the run `Apps.log_events` reads each log back as "store" events of that resource, and the one
judge (node.history) holds every database to P2 and P5 as it holds the store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.client.fencing import FenceBug, FencingRefused, open_fence
from node.config import ConfigError
from node.history import HistoryWriter
from node.launcher.cluster import link_name, read_cluster_file, spawn, stop_pids
from node.launcher.ports import free_port

from .fence_conformance import Adapter

APPS_CONFIG = "apps.json"
APPS_EVENTS = "apps.jsonl"  # chaos.harness.collect_history merges it
APPS_LOG = "apps.log"
FENCE_RESOURCE = "chaos/duty"  # the one fence resource every app writes: one register per database
WRITE_DEADLINE_S = 1.0  # a write not answered by then has an unknown outcome
RESTART_AFTER_S = 0.2  # an app whose Leadership ended (its node gone for good) starts again after this
STOP_GRACE_S = 5.0

log = logging.getLogger("chaos.apps")


# ---- the harness's side ----------------------------------------------------------------------------


def fence_options(url: str, tag: str) -> dict[str, Any]:
    """This run's own fence record and log in the database at `url` (the servers outlive a run)."""
    if Adapter(url).scheme in ("redis", "rediss", "unix"):
        return {"prefix": f"bullyproof_fence:{tag}:", "log": f"bullyproof_fence_log:{tag}"}
    return {"table": f"bullyproof_fence_{tag}", "log": f"bullyproof_fence_log_{tag}"}


def check_fences(fences: Mapping[str, str]) -> None:
    """ValueError unless each name is a plain word (not the store's) and each URL an adapter's."""
    for name, url in fences.items():
        if not name.isidentifier() or name == "store":
            raise ValueError(f"fence name {name!r}: want a plain word other than 'store' (postgres, redis, ...)")
        if Adapter(url).scheme not in ("postgresql", "postgres", "redis", "rediss", "unix", "sqlite"):
            raise ValueError(f"fence {name}: {url!r} is not a postgresql://, redis:// or sqlite:// URL")


def parse_fences(items: list[str]) -> dict[str, str]:
    """--fence NAME=URL, each name once."""
    fences: dict[str, str] = {}
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ConfigError(f"--fence {item!r}: want NAME=URL, e.g. postgres=postgresql://app@127.0.0.1/app_test")
        if name in fences:
            raise ConfigError(f"--fence {name} given twice")
        fences[name] = url
    try:
        check_fences(fences)
    except ValueError as exc:
        raise ConfigError(f"--fence: {exc}") from None
    return fences


def decode(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "backslashreplace")


@dataclass
class Apps:
    """The apps process of one chaos run: started once the cluster is up, stopped before the history
    is collected. `fences`: adapter name -> URL (postgresql://, redis://, sqlite://), each written by
    every app. `planted` and `pause_at_check_ms` are for tests: the adapters' planted bugs, and a pause
    of every write between the adapter's check and its write (the adapters' test hook)."""

    directory: Path
    fences: Mapping[str, str]
    write_period_ms: int = 100
    planted: frozenset[FenceBug] = frozenset()
    pause_at_check_ms: int = 0
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    pid: int | None = None

    def __post_init__(self) -> None:
        check_fences(self.fences)

    def start(self, api: Any) -> None:
        """Proxies in front of each networked database (one per node, `api`: the cluster's Toxiproxy),
        the config, and the process (tagged with the run directory, so the cluster's stop finds it too)."""
        data = read_cluster_file(self.directory)
        nodes = [{"id": n["id"], "client_address": n["client_address"]} for n in data["nodes"]]
        fences: dict[str, Any] = {}
        for name, url in self.fences.items():
            adapter, urls = Adapter(url), {}
            upstream = adapter.upstream()
            for node in nodes:
                if upstream is None:
                    urls[str(node["id"])] = url
                    continue
                listen = f"127.0.0.1:{free_port()}"
                api.create_proxy(link_name(node["id"], name), listen, f"{upstream[0]}:{upstream[1]}")
                urls[str(node["id"])] = adapter.through("127.0.0.1", int(listen.rpartition(":")[2]))
            fences[name] = {"urls": urls, "options": fence_options(url, self.tag)}
        config = {
            "nodes": nodes,
            "certs": data.get("certs"),
            "write_period_ms": self.write_period_ms,
            "fences": fences,
            "planted": sorted(b.value for b in self.planted),
            "pause_at_check_ms": self.pause_at_check_ms,
        }
        (self.directory / APPS_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        argv = [sys.executable, "-m", "chaos.apps", str(self.directory)]
        self.pid = spawn(argv, self.directory / APPS_LOG, run_dir=self.directory)

    def stop(self) -> None:
        if self.pid is not None:
            stop_pids([self.pid], grace_s=STOP_GRACE_S)
            self.pid = None

    def log_events(self) -> list[dict[str, Any]]:
        """Each database's log of accepted writes, read directly (not through a proxy), as "store"
        events of its resource at the database's decision time (its clock, the host's, made monotonic)."""
        events: list[dict[str, Any]] = []
        offset_ns = time.time_ns() - time.monotonic_ns()
        for name, url in self.fences.items():
            fence = open_fence(url, blocking=True, **fence_options(url, self.tag))
            try:
                after = 0
                while page := fence.read_log(after_seq=after, limit=1000):
                    for entry in page:
                        if entry.resource != FENCE_RESOURCE:
                            raise ValueError(f"{name}'s log has a write to {entry.resource!r}: not this run's")
                        events.append(
                            {
                                "t_ns": entry.unix_ns - offset_ns,
                                "kind": "store",
                                "resource": name,
                                "seq": entry.seq,
                                "writer": entry.writer_id,
                                "epoch": entry.epoch,
                                "key": entry.resource,
                                "accepted": True,
                                "reason": "",
                                "value": decode(entry.value),
                            }
                        )
                    after = page[-1].seq
            finally:
                fence.close()
        return events

    def describe(self) -> dict[str, Any]:
        return {
            "fences": dict(self.fences),
            "planted": sorted(b.value for b in self.planted),
            "pause_at_check_ms": self.pause_at_check_ms,
        }


# ---- the apps process -----------------------------------------------------------------------------


def _pause_hook(scheme: str, pause_s: float) -> Any:
    """The adapters' hook between check and write: SQLite calls it in its worker thread, the others
    await what it returns."""
    if scheme == "sqlite":
        return lambda *_: time.sleep(pause_s)
    return lambda *_: asyncio.sleep(pause_s)


class App:
    """One node's app: Leadership on the node, and while it leads, one writer per fence."""

    def __init__(self, node: Mapping[str, Any], config: Mapping[str, Any], history: HistoryWriter) -> None:
        from node.tls import Tls

        self.node_id: int = node["id"]
        self.address: str = node["client_address"]
        self.certs = config.get("certs")
        self.tls = None if self.certs is None else Tls.in_dir(Path(self.certs), "client")
        self.period_s = config["write_period_ms"] / 1000
        self.history = history
        self.fences: dict[str, Any] = {}
        planted = config.get("planted", [])
        pause_s = config.get("pause_at_check_ms", 0) / 1000
        for name, fence in config["fences"].items():
            url = fence["urls"][str(self.node_id)]
            options = dict(fence["options"])
            if planted:
                options["_planted"] = planted
            if pause_s:
                options["_between_check_and_write"] = _pause_hook(Adapter(url).scheme, pause_s)
            self.fences[name] = open_fence(url, **options)

    async def run(self) -> None:
        from node.client import Leadership

        leadership = Leadership(self.address, self.node_id, tls=self.tls, insecure=self.tls is None)
        try:
            while True:
                try:
                    await leadership.run(self.work)
                except Exception as exc:  # a node that can never serve us; try again, it may be restarted
                    log.warning("node %d: Leadership ended: %r", self.node_id, exc)
                await asyncio.sleep(RESTART_AFTER_S)
        finally:
            for fence in self.fences.values():
                with contextlib.suppress(Exception):
                    await fence.close()

    async def work(self, token: Any) -> None:
        async with asyncio.TaskGroup() as group:
            for name, fence in self.fences.items():
                group.create_task(self.writer(name, token.fenced(fence), token.epoch))

    async def writer(self, name: str, term: Any, epoch: int) -> None:
        """Write at once (the term's first write claims the epoch there), then one write every period,
        the next at once when one took longer (a slow database, a pause at the check)."""
        counter = 0
        loop = asyncio.get_running_loop()
        while True:
            counter += 1
            value = f"{self.node_id}/{epoch}/{counter}"
            next_at = loop.time() + self.period_s
            sent_ns = time.monotonic_ns()
            try:
                async with asyncio.timeout(WRITE_DEADLINE_S):
                    seq = await term.write(FENCE_RESOURCE, value.encode())
            except FencingRefused as exc:
                self.record(name, epoch, value, sent_ns, False, None, f"{type(exc).__name__}: {exc.reason}")
            except asyncio.CancelledError:
                self.record(name, epoch, value, sent_ns, None, None, "cancelled: the term ended")
                raise
            except Exception as exc:  # a timeout, a lost connection: the write may or may not have landed
                self.record(name, epoch, value, sent_ns, None, None, f"{type(exc).__name__}: {exc}"[:200])
            else:
                self.record(name, epoch, value, sent_ns, True, seq, None)
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def record(
        self, name: str, epoch: int, value: str, sent_ns: int, accepted: bool | None, seq: int | None, error: str | None
    ) -> None:
        self.history.write(
            {
                "kind": "write",
                "node": self.node_id,
                "epoch": epoch,
                "key": FENCE_RESOURCE,
                "resource": name,
                "value": value,
                "accepted": accepted,
                "seq": seq,
                "error": error,
                "sent_ns": sent_ns,
            }
        )


async def serve(directory: Path) -> None:
    config = json.loads((directory / APPS_CONFIG).read_text())
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    with HistoryWriter(directory / APPS_EVENTS) as history:
        apps = [App(node, config, history) for node in config["nodes"]]
        tasks = [asyncio.create_task(app.run()) for app in apps]
        await stopping.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.apps", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help=f"the chaos run's directory (its {APPS_CONFIG})")
    args = parser.parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(args.directory))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
