"""The dashboard on a cluster named by its client addresses (`bullyproof dashboard --nodes`), in
chromium: nothing read from the cluster's run directory but its certificates, everything over the
client ports (WatchLeader, GetStatus, WatchEvents). A read-only page: no buttons; a kill done outside
it shows as the new leader and an unreachable node."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import urllib.request

import pytest

from node.launcher.cluster import process_fault

pytestmark = [pytest.mark.integration, pytest.mark.browser]

AGREED = "document.getElementById('agreed').dataset.leader"


def start_dashboard(*args: str) -> tuple[subprocess.Popen, str, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "dashboard", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line)
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        while not (line := lines.get(timeout=30)).startswith("dashboard: "):
            pass
    except queue.Empty:
        proc.kill()
        raise AssertionError(f"no dashboard URL in 30 s: {''.join(seen)}") from None
    return proc, line.split()[1], seen


def test_a_dashboard_by_addresses_shows_the_leader_and_a_kill_done_elsewhere(make_cluster, open_page):
    cluster = make_cluster(3, secure=True)
    leader, epoch = cluster.wait_for_agreement(timeout_s=15)
    nodes = ",".join(n.client_address for n in cluster.spec.nodes)
    proc, url, lines = start_dashboard("--nodes", nodes, "--certs", str(cluster.dir / "certs"))
    try:
        assert "#token=" not in url and "read-only" in lines[-1]
        p = open_page(url)
        page = p.page
        page.wait_for_function(f"{AGREED} === '{leader}'", timeout=20_000)
        assert "Read-only" in page.locator("#readonly-banner").inner_text()
        assert (
            page.locator("button[data-act=crash]").count() == 0
            or not page.locator("button[data-act=crash]").first.is_visible()
        )
        assert not page.locator("section[aria-labelledby='break-h']").is_visible()
        # The history over WatchEvents: the leader's own view, from the node, not from a file.
        page.wait_for_selector(f"#log li:has-text('node {leader} is the new LEADER')", timeout=20_000)
        p.shot("1-remote-agreed")
        # The page refuses faults outright (no admin, no processes here).
        req = urllib.request.Request(
            url.partition("#")[0] + "api/action",
            data=json.dumps({"action": "crash", "node": leader}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=5)
        assert info.value.code == 403 and "Read-only" in json.loads(info.value.read())["error"]

        process_fault(cluster.dir, str(leader), "kill")  # outside the page
        page.wait_for_function(f"{AGREED} !== '' && {AGREED} !== '{leader}'", timeout=20_000)
        new = int(page.evaluate(AGREED))
        page.wait_for_function(
            f"document.querySelector(\".tile[data-node='{leader}']\").dataset.role === 'unreachable'",
            timeout=10_000,
        )
        page.wait_for_selector(f"#log li:has-text('node {new} is the new LEADER')", timeout=20_000)
        p.shot("2-remote-after-kill")
        page.goto("about:blank")  # leave the page before its server goes (a broken stream is an error)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
