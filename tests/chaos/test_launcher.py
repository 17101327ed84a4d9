"""README's main job: `bullyproof cluster up` in the foreground, a failover, then Ctrl-C stops all."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading

import pytest

from bench.versus import AGREED_LINE
from node.launcher.cluster import pid_alive, process_fault, read_cluster_file, wait_for

pytestmark = pytest.mark.chaos


def test_cluster_up_prints_leadership_changes_and_ctrl_c_stops_everything(tmp_path):
    directory = tmp_path / "local"
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "cluster", "up", "--nodes", "5", "--dir", str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()

    def next_line_with(words: str, timeout_s: float = 20) -> str:
        while True:
            line = lines.get(timeout=timeout_s)
            if words in line:
                return line

    pids: list[int] = []
    try:
        assert "every link through Toxiproxy" in next_line_with("cluster up:")
        # The highest id is preferred, but on a busy machine an early proposal may time out, so neither
        # the first leader nor its epoch is fixed: read both, kill that leader, and see another take over.
        agreed = AGREED_LINE.search(next_line_with("agreed:"))
        assert agreed, "no agreement line"
        first, epoch = agreed.group(1), int(agreed.group(2))
        data = read_cluster_file(directory)
        pids = [n["pid"] for n in data["nodes"]] + [data["store"]["pid"], data["toxiproxy_pid"]]
        process_fault(directory, first, "kill")
        while True:
            change = re.search(r"node (\d+) leads  epoch (\d+)", next_line_with("leads  epoch"))
            if change and change.group(1) != first and int(change.group(2)) > epoch:
                break
        # The launcher installs its own SIGINT handler, so this works when pytest runs with SIGINT
        # ignored (a background job, nohup) and its children inherit that (test_cluster_stop.py).
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        wait_for(lambda: not any(pid_alive(p) for p in pids), 10, what="every process to stop")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
