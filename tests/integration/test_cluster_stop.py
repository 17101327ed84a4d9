"""`bullyproof cluster up` stops cleanly at every instant of its start-up, and `cluster down` cleans
up after a launcher that was killed outright.

Which processes a launcher started is found without trusting its records: each launcher runs with a
variable of this test's own in its environment, which every process it starts inherits (nodes and the
store run in sessions of their own, so the launcher's process group or session would not find them).
The run directory's cluster.json, when there is one, adds its pids; every pid either way must be gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from node.launcher.cluster import pid_alive, signal_pid, wait_for

pytestmark = pytest.mark.integration

# Starts the rest of its command line with SIGINT ignored, as a shell without job control starts a
# background job: the launcher must still stop on SIGINT (node/launcher/stopping.py says why).
TAG = "BULLYPROOF_STOP_TEST"  # in each launcher's environment, a value of its own
SIGINT_IGNORED = [
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
]


@dataclass
class Launch:
    directory: Path
    proc: subprocess.Popen
    out: Path
    tag: str
    seen: set[int] = field(default_factory=set)  # every pid of this launch ever found

    def output(self) -> str:
        return self.out.read_text()

    def started(self) -> list[int]:
        """The live processes this launch started: its tagged descendants and cluster.json's pids."""
        found = set(tagged(self.tag)) - {self.proc.pid}
        try:
            data = json.loads((self.directory / "cluster.json").read_text())
        except (OSError, ValueError):
            data = {}
        found |= {n["pid"] for n in data.get("nodes", [])}
        found |= {p for p in (data.get("store", {}).get("pid"), data.get("toxiproxy_pid")) if p}
        self.seen |= found
        return sorted(p for p in self.seen if pid_alive(p))

    def wait(self, condition: Callable[[], object], what: str) -> None:
        """Poll `condition` closely (the instants are short) until it holds; the launcher must not exit first."""
        deadline = time.monotonic() + 60
        while not condition():
            assert self.proc.poll() is None, (
                f"cluster up exited ({self.proc.returncode}) before {what}:\n{self.output()}"
            )
            assert time.monotonic() < deadline, f"no {what} within 60 s:\n{self.output()}"
            time.sleep(0.002)


def tagged(tag: str) -> list[int]:
    """Live processes with `tag` in their environment (/proc)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    if tag.encode() in f.read().split(b"\0") and pid_alive(int(entry.name)):
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def launch(
    tmp_path: Path, *flags: str, sigint_ignored: bool = False, command: tuple[str, ...] = ("cluster", "up")
) -> Launch:
    directory = tmp_path / "run"
    value = uuid.uuid4().hex
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        proc = subprocess.Popen(
            [
                sys.executable,
                *(SIGINT_IGNORED if sigint_ignored else []),
                "-m",
                "node.cli",
                *command,
                "--nodes",
                "5",
                "--dir",
                str(directory),
                *flags,
            ],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, TAG: value},
        )
    return Launch(directory, proc, out, f"{TAG}={value}")


# Instants of the start-up: the run directory exists (certificates, Toxiproxy); node 2 is about to be
# spawned (the store and node 1 run, cluster.json is not written); cluster.json was written 0.3 s or
# 1 s ago (waiting for a leader, or just agreed); the cluster is up.
def until(instant: str) -> Callable[[Launch], None]:
    def wait(run: Launch) -> None:
        if instant == "dir":
            run.wait(run.directory.exists, "run directory")
        elif instant == "node-2":
            run.wait((run.directory / "node-2" / "node.log").exists, "node 2's log")
        elif instant.startswith("cluster.json+"):
            run.wait((run.directory / "cluster.json").exists, "cluster.json")
            time.sleep(float(instant.removeprefix("cluster.json+").removesuffix("s")))
        else:
            run.wait(lambda: "agreed:" in run.output(), "agreement")

    return wait


def stop_leftovers(run: Launch) -> None:
    if run.proc.poll() is None:
        run.proc.kill()
        run.proc.wait()
    for pid in run.started():
        signal_pid(pid, signal.SIGCONT)
        signal_pid(pid, signal.SIGKILL)


def assert_all_gone(run: Launch, how: str) -> None:
    try:
        wait_for(lambda: not run.started(), 10, what="every process it started to exit")
    except TimeoutError:
        pytest.fail(f"{how}: still running {run.started()} of {sorted(run.seen)}:\n{run.output()}")


INSTANTS = ["dir", "node-2", "cluster.json+0.3s", "cluster.json+1s", "agreed"]
CASES = [
    *[
        pytest.param(sig, instant, ["--direct"], id=f"SIG{sig}-{instant}-direct")
        for instant in INSTANTS
        for sig in ("INT", "TERM")
    ],
    pytest.param("INT", "node-2", [], id="SIGINT-node-2-toxiproxy", marks=pytest.mark.chaos),
    pytest.param("TERM", "cluster.json+0.3s", [], id="SIGTERM-cluster.json+0.3s-toxiproxy", marks=pytest.mark.chaos),
]


@pytest.mark.parametrize("sig, instant, flags", CASES)
def test_a_stop_signal_at_any_instant_of_the_start_up_stops_everything(tmp_path, sig, instant, flags):
    run = launch(tmp_path, *flags)
    try:
        until(instant)(run)
        before = run.started()
        assert before or instant == "dir", f"nothing was running at {instant}"
        run.proc.send_signal(getattr(signal, f"SIG{sig}"))
        status = run.proc.wait(timeout=60)
        assert_all_gone(run, f"SIG{sig} at {instant}")
        out = run.output()
        assert "Traceback" not in out, out
        last = out.strip().splitlines()[-1]
        if "agreed:" in out:  # the cluster was up: stopping it is the normal end
            assert (status, last) == (0, "stopped"), out
        else:
            assert instant != "agreed"
            assert status == 128 + getattr(signal, f"SIG{sig}"), out
            assert (
                last == f"bullyproof: SIG{sig} before the cluster was up: "
                f"stopped everything it had started in {run.directory}"
            )
    finally:
        stop_leftovers(run)


def test_sigint_stops_a_launcher_that_inherited_it_ignored(tmp_path):
    """A supervisor or script started as a shell's background job hands its children SIGINT ignored;
    `cluster up` still stops on it rather than leave its cluster to a SIGKILL."""
    run = launch(tmp_path, "--direct", sigint_ignored=True)
    try:
        until("cluster.json+0.3s")(run)
        assert run.started()
        run.proc.send_signal(signal.SIGINT)
        status = run.proc.wait(timeout=60)
        assert_all_gone(run, "SIGINT, inherited ignored")
        assert status in (0, 130), run.output()
    finally:
        stop_leftovers(run)


@pytest.mark.chaos
def test_chaos_run_stops_its_cluster_on_sigint_inherited_ignored(tmp_path):
    """The dashboard cancels a scenario run with SIGINT; a run started with SIGINT ignored stops too."""
    run = launch(tmp_path, sigint_ignored=True, command=("chaos", "run", "leader-blackholed"))
    try:
        until("cluster.json+0.3s")(run)
        assert run.started()
        run.proc.send_signal(signal.SIGINT)
        # Ended by it (KeyboardInterrupt), not by finishing the scenario with SIGINT ignored.
        assert run.proc.wait(timeout=60) == -signal.SIGINT, run.output()
        assert_all_gone(run, "SIGINT to chaos run, inherited ignored")
    finally:
        stop_leftovers(run)


@pytest.mark.parametrize(
    "instant, flags",
    [
        pytest.param("node-2", ["--direct"], id="node-2-direct"),
        pytest.param("cluster.json+0.3s", ["--direct"], id="cluster.json+0.3s-direct"),
        pytest.param("node-2", [], marks=pytest.mark.chaos, id="node-2-toxiproxy"),
    ],
)
def test_cluster_down_stops_what_a_killed_launcher_left(tmp_path, instant, flags):
    run = launch(tmp_path, *flags)
    try:
        until(instant)(run)
        run.proc.kill()
        run.proc.wait()
        assert run.started(), f"nothing was left running at {instant}"
        down = subprocess.run(
            [sys.executable, "-m", "node.cli", "cluster", "down", "--dir", str(run.directory)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert down.returncode == 0 and down.stdout.startswith(f"stopped cluster in {run.directory}"), (
            down.stdout + down.stderr
        )
        assert_all_gone(run, f"SIGKILL at {instant}, then cluster down")
    finally:
        stop_leftovers(run)


def test_cluster_down_with_nothing_to_stop_says_so(tmp_path):
    down = subprocess.run(
        [sys.executable, "-m", "node.cli", "cluster", "down", "--dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 2 and "no cluster at" in down.stderr, down.stderr


def test_a_refused_second_start_leaves_the_running_cluster_alone(tmp_path):
    directory = tmp_path / "run"
    cli = [sys.executable, "-m", "node.cli", "cluster"]
    up = subprocess.run(
        [*cli, "up", "--detach", "--direct", "--insecure", "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        assert up.returncode == 0, up.stderr
        pids = [n["pid"] for n in json.loads((directory / "cluster.json").read_text())["nodes"]]
        again = subprocess.run(
            [*cli, "up", "--detach", "--direct", "--dir", str(directory)], capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 2 and "already running" in again.stderr, again.stderr
        assert all(pid_alive(p) for p in pids), "the refused start stopped the running cluster"
    finally:
        assert subprocess.run([*cli, "down", "--dir", str(directory)], capture_output=True, timeout=60).returncode == 0
