"""Fenced leadership work on a real cluster, with real PostgreSQL: the old leader's host (its node and
the app holding the term's handle) is paused with SIGSTOP, a new leader's app writes, the old app is
resumed and writes with its old term, and PostgreSQL refuses that write. Nothing in the old app
noticed the loss: the database did."""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from node.launcher.cluster import LocalCluster, local_spec, process_fault, stop_pids

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
AGREE_TIMEOUT_S = 20.0
EVENT_TIMEOUT_S = 20.0


class App:
    """fenced_app.py beside one node, as its own process; its events are JSON lines on stdout."""

    def __init__(self, node_address: str, node_id: int, url: str, log_dir: Path) -> None:
        self.node_id = node_id
        self.stderr = log_dir / f"app-{node_id}.stderr"
        with open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "fenced_app.py"),
                    "--node",
                    node_address,
                    "--node-id",
                    str(node_id),
                    "--url",
                    url,
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self.events: list[dict[str, Any]] = []
        self._buffer = b""

    def wait(self, predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + EVENT_TIMEOUT_S
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0 or self.proc.poll() is not None:
                raise AssertionError(
                    f"app {self.node_id}: no {what}; events {self.events}; stderr: {self.stderr.read_text()[-1500:]}"
                )
            if select.select([self.proc.stdout], [], [], min(remaining_s, 0.2))[0]:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                self._buffer += chunk
                *lines, self._buffer = self._buffer.split(b"\n")
                self.events += [json.loads(line) for line in lines if line.strip()]

    def next_job(self) -> None:
        self.proc.stdin.write(b"tick\n")
        self.proc.stdin.flush()


def test_a_paused_leaders_late_write_is_refused_by_postgresql(postgres_url: str, tmp_path: Path):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (epoch BIGINT NOT NULL, node INT NOT NULL)")
    # No preemption: a higher id taking over mid-test would end the terms this test follows.
    cluster = LocalCluster(
        dataclasses.replace(local_spec(3), preempt_hold_down_ms=0), tmp_path / "cluster", env=dict(os.environ)
    )
    apps: dict[int, App] = {}
    try:
        cluster.start()
        old_id, old_epoch = cluster.wait_for_agreement(AGREE_TIMEOUT_S)
        apps.update({n: App(address, n, postgres_url, tmp_path) for n, address in cluster.client_addresses().items()})
        apps[old_id].wait(lambda e: e["event"] == "wrote" and e["epoch"] == old_epoch, "write in its first term")

        # The old leader's host stands still: its node and its app.
        process_fault(cluster.dir, str(old_id), "pause")
        os.kill(apps[old_id].proc.pid, signal.SIGSTOP)
        new_id, new_epoch = cluster.wait_for_agreement(
            AGREE_TIMEOUT_S, exclude={old_id}, differs_from=(old_id, old_epoch)
        )
        assert new_epoch > old_epoch
        apps[new_id].wait(lambda e: e["event"] == "wrote" and e["epoch"] == new_epoch, "write as the new leader")

        # The old app wakes up (its node still paused, so nothing tells it) and runs its next job.
        apps[old_id].next_job()
        os.kill(apps[old_id].proc.pid, signal.SIGCONT)
        refused = apps[old_id].wait(lambda e: e["event"] == "refused", "refusal of its late write")
        assert refused == {
            "event": "refused",
            "node": old_id,
            "epoch": old_epoch,
            "type": "StaleEpoch",
            "highest_epoch": new_epoch,
            "owner": new_id,
        }
        with psycopg.connect(postgres_url) as conn:
            rows = conn.execute("SELECT epoch, node FROM runs ORDER BY epoch").fetchall()
            fence = conn.execute("SELECT epoch, writer FROM bullyproof_fence WHERE resource = 'runs'").fetchone()
        assert rows == [(old_epoch, old_id), (new_epoch, new_id)]
        assert fence == (new_epoch, new_id)
    finally:
        stop_pids([app.proc.pid for app in apps.values()])  # SIGCONT first: a paused process cannot exit
        for app in apps.values():
            app.proc.wait(5)
            app.proc.stdin.close()
            app.proc.stdout.close()
        cluster.stop()  # by the pids it recorded, the paused node too
