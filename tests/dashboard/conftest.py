"""The dashboard on a real cluster, in Debian's chromium: fixtures.

`dashboard_cluster` starts `bullyproof cluster up --dashboard` (real node processes behind a real
Toxiproxy, the page served by the same process) and stops it the way a user does, with Ctrl-C; every
pid it recorded is killed afterwards if anything is left. `open_page` opens the page in chromium and
fails the test on any console error or uncaught exception. Screenshots go to test-artifacts/dashboard/.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from node.launcher.cluster import pid_alive, read_cluster_file

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a fixture can tell that its test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@dataclass
class RunningCluster:
    url: str  # the page, with the admin token in its fragment (#token=...), as cluster up prints it
    directory: Path
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        """The server's address, for API calls (the fragment never reaches a server)."""
        return self.url.partition("#")[0]

    @property
    def token(self) -> str:
        return self.url.partition("#token=")[2]

    def pids(self) -> list[int]:
        try:
            data = read_cluster_file(self.directory)
        except Exception:
            return []
        return (
            [n["pid"] for n in data["nodes"]]
            + [data["store"]["pid"]]
            + ([data["toxiproxy_pid"]] if data.get("toxiproxy_pid") else [])
        )


@pytest.fixture
def dashboard_cluster(tmp_path: Path) -> Iterator[Callable[..., RunningCluster]]:
    started: list[RunningCluster] = []
    seen_pids: set[int] = set()

    def start(nodes: int = 5, mode: str = "quorum") -> RunningCluster:
        directory = tmp_path / f"cluster-{len(started)}"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "node.cli",
                "cluster",
                "up",
                "--dashboard",
                "--dashboard-port",
                "0",
                "--nodes",
                str(nodes),
                "--mode",
                mode,
                "--dir",
                str(directory),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        running = RunningCluster("", directory, proc)
        started.append(running)

        def read() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                running.lines.append(line)
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        url = ""
        while True:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                raise AssertionError(f"cluster up printed no agreement in 30 s: {''.join(running.lines)}") from None
            if line.startswith("dashboard: "):
                url = line.split()[1]
            if "agreed:" in line:
                break
            if proc.poll() is not None:
                raise AssertionError(f"cluster up exited: {''.join(running.lines)}")
        assert url.startswith("http://127.0.0.1:"), running.lines  # loopback by default
        running.url = url
        seen_pids.update(running.pids())
        return running

    yield start
    exits = []
    for running in started:
        seen_pids.update(running.pids())  # restarts record new pids
        if running.proc.poll() is None:
            # What a user does: Ctrl-C stops the page and the cluster. cluster up installs its own SIGINT
            # handler, so this holds when pytest itself runs with SIGINT ignored (test_cluster_stop.py).
            running.proc.send_signal(signal.SIGINT)
            try:
                exits.append(running.proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                running.proc.kill()
                exits.append(running.proc.wait())
    left = [pid for pid in seen_pids if pid_alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGKILL)
    assert exits == [0] * len(exits) and not left, f"Ctrl-C did not stop everything: exit {exits}, pids left {left}"


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots and measurements go (gitignored); printed as they are written."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# Module scope, not session: Playwright's sync API keeps an asyncio loop running on the main thread
# until pw.stop(), so a session-wide browser made every later test in the same xdist worker that
# calls asyncio.run() fail with "cannot be called from a running event loop". pytest tears a module
# fixture down as soon as the next test is from another module.
@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium under Playwright, or a skip that says exactly why not."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: Debian's chromium is not installed (`make test` installs it: .ci/install-browser)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright for Python is not installed ({exc}); `make setup` installs it")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    except Exception as exc:
        pw.stop()
        pytest.skip(f"{CHROMIUM} does not start under Playwright: {str(exc).splitlines()[0]}")
    yield browser
    browser.close()
    pw.stop()


@dataclass
class Page:
    page: object
    errors: list[str]
    name: str

    def shot(self, label: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        print(f"screenshot: {path}")
        return path


@pytest.fixture
def open_page(chromium, request) -> Iterator[Callable[[str], Page]]:
    opened: list[tuple[object, Page]] = []

    def open_(url: str, width: int = 1400, height: int = 1000) -> Page:
        context = chromium.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        wrapped = Page(page, [], request.node.name.removeprefix("test_"))
        page.on(
            "console", lambda m: wrapped.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        )
        page.on("pageerror", lambda e: wrapped.errors.append(f"uncaught: {e}"))
        page.goto(url)
        opened.append((context, wrapped))
        return wrapped

    yield open_
    failed = getattr(request.node, "rep_call", None)
    for context, wrapped in opened:
        if failed is not None and failed.failed:
            wrapped.shot("FAILED")  # what the page showed when the test gave up
        context.close()  # type: ignore[attr-defined]
    for _, wrapped in opened:
        assert wrapped.errors == [], f"the page logged errors: {wrapped.errors}"
