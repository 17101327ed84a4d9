"""The dashboard in a real browser, on a real cluster: watch it elect, crash the leader, inspect the
election, cut the leader into a minority, see a split brain in classic mode, run a scenario.

Each state is saved as a screenshot under test-artifacts/dashboard/ (the paths are printed; `pytest -s`
shows them). The time from a crash click to the new leader on the page is measured and printed, never
asserted on (tests do not judge speed).
"""

from __future__ import annotations

import json
import statistics

import pytest

from dashboard.server import TOKEN_HEADER
from node.launcher.cluster import read_cluster_file

pytestmark = [pytest.mark.chaos, pytest.mark.browser]

AGREED = "document.getElementById('agreed').dataset.leader"

# Installed before each crash: the time of the click, and of the first moment the page shows an agreed
# leader other than `old`, both on the page's own clock (no test-only code in the page).
MEASURE = """old => {
  const agreed = document.getElementById('agreed');
  window.__crash = {};
  document.addEventListener('click', e => {
    const crash = e.target.dataset && e.target.dataset.act === 'crash';
    if (crash && window.__crash.click === undefined) window.__crash.click = performance.now();
  }, {capture: true, once: true});
  const watcher = new MutationObserver(() => {
    const now = agreed.dataset.leader;
    if (window.__crash.click !== undefined && now && now !== old) {
      window.__crash.leader = Number(now);
      window.__crash.ms = performance.now() - window.__crash.click;
      // From the new leader's latest streamed view (its node's clock) to the agreement shown here (same host).
      const tile = document.querySelector(`.tile[data-node='${now}']`);
      window.__crash.push_ms = Date.now() - Number(tile.dataset.viewUnixMs);
      watcher.disconnect();
    }
  });
  watcher.observe(agreed, {attributes: true, childList: true, characterData: true, subtree: true});
}"""


def agreed_leader(page) -> int:
    page.wait_for_function(f"{AGREED} !== ''", timeout=20_000)
    return int(page.evaluate(AGREED))


def tile(page, node: int):
    return page.locator(f".tile[data-node='{node}']")


def crash_and_measure(page, leader: int, keyboard: bool = False) -> tuple[int, float, float]:
    page.evaluate(MEASURE, str(leader))
    if keyboard:
        tile(page, leader).focus()
        page.keyboard.press("k")
    else:
        tile(page, leader).locator("button[data-act=crash]").click()
    page.wait_for_function("window.__crash.ms !== undefined", timeout=20_000)
    result = page.evaluate("window.__crash")
    return result["leader"], result["ms"], result["push_ms"]


def test_crash_the_leader_inspect_the_election_partition_it_into_a_minority(dashboard_cluster, open_page, artifacts):
    cluster = dashboard_cluster(nodes=5, mode="quorum")
    p = open_page(cluster.url)
    page = p.page
    # The tiles come with the page's first state push, which a busy machine may deliver after load.
    page.wait_for_function("document.querySelectorAll('.tile').length >= 5")
    assert page.locator(".tile").count() == 5
    leader = agreed_leader(page)
    assert tile(page, leader).get_attribute("data-role") == "leader"
    page.wait_for_selector(f"#log li:has-text('node {leader} is the new LEADER')")
    p.shot("1-agreed-leader")

    # Crash the leader from the page: a new leader, and the log line; three times (the last with the
    # keyboard), recovering the crashed node in between (the highest id takes over again after its
    # hold-down; recovered with the keyboard).
    timings, pushes = [], []
    for round_ in range(3):
        new, ms, push_ms = crash_and_measure(page, leader, keyboard=round_ == 2)
        timings.append(ms)
        pushes.append(push_ms)
        assert new != leader
        page.wait_for_selector(f"#log li:has-text('node {new} is the new LEADER')")
        page.wait_for_selector(f"#log li:has-text('crash node {leader}')")
        page.wait_for_function(f"document.querySelector(\".tile[data-node='{leader}']\").dataset.role === 'crashed'")
        if round_ == 0:
            p.shot("2-leader-crashed")
        tile(page, leader).focus()
        page.keyboard.press("r")
        page.wait_for_selector(f"#log li:has-text('restart node {leader}')")
        page.wait_for_function(f"{AGREED} === '{leader}'", timeout=20_000)
    report = {
        "crash_click_to_new_leader_on_page_ms": [round(t, 1) for t in timings],
        "median_ms": round(statistics.median(timings), 1),
        "worst_ms": round(max(timings), 1),
        "new_leader_view_to_agreement_on_page_ms": pushes,
    }
    (artifacts / "crash-to-new-leader.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"crash click -> new leader on the page: {report} ({artifacts / 'crash-to-new-leader.json'})")

    # Inspect the election that made the current leader: who asked whom, granted or refused, why.
    page.locator("#log li", has_text=f"node {leader} is the new LEADER").first.locator(
        "button", has_text="messages"
    ).click()
    page.wait_for_selector("#inspector:not([hidden]) #messages tbody tr")
    rows = page.locator("#messages tbody tr").all_inner_texts()
    assert any("coordinator" in r and "granted" in r for r in rows), rows
    assert any(f"node {leader}" in r for r in rows), rows
    p.shot("3-election-messages")
    page.keyboard.press("Escape")

    # Partition the leader and one other node (a minority of 5) from the rest: from the keyboard, choose
    # both tiles (c) and press x. The leader's lease runs out and it steps down; the majority elects.
    data = read_cluster_file(cluster.directory)
    other = next(n["id"] for n in data["nodes"] if n["id"] not in (leader,))
    for node in (leader, other):
        tile(page, node).focus()
        page.keyboard.press("c")
    page.locator("body").press("x")
    page.wait_for_selector("#log li:has-text('fault partition started')")
    page.wait_for_function(
        f"document.querySelector(\".tile[data-node='{leader}']\").dataset.role !== 'leader'", timeout=20_000
    )
    page.wait_for_selector(f"#log li:has-text('node {leader} stepped down')")
    majority = [n["id"] for n in data["nodes"] if n["id"] not in (leader, other)]
    page.wait_for_function(
        "ids => ids.some(id => document.querySelector(`.tile[data-node='${id}']`).dataset.role === 'leader')",
        arg=majority,
        timeout=20_000,
    )
    assert page.locator("#splitbrain").is_hidden()  # quorum: never two leaders
    p.shot("4-leader-partitioned-into-minority")

    page.locator("#heal").click()
    page.wait_for_selector("#log li:has-text('heal: every network fault removed')")
    agreed_leader(page)
    p.shot("5-healed")

    # The API says what is wrong in one line (and the page survives it).
    admin = {TOKEN_HEADER: cluster.token}
    bad = page.request.post(cluster.base + "api/action", data={"action": "explode"}, headers=admin)
    assert bad.status == 400 and "unknown action 'explode'" in bad.json()["error"]
    # Faults are for the admin: without the token (or with a wrong one) nothing happens.
    assert cluster.token, "a TLS cluster's dashboard URL carries the admin token"
    leader_now = agreed_leader(page)
    for headers in ({}, {TOKEN_HEADER: "0" * 32}):
        refused = page.request.post(
            cluster.base + "api/action", data={"action": "crash", "node": leader_now}, headers=headers
        )
        assert refused.status == 403 and "admin" in refused.json()["error"]
        refused = page.request.post(cluster.base + "api/scenario", data={"name": "partition"}, headers=headers)
        assert refused.status == 403
    assert agreed_leader(page) == leader_now


def test_a_classic_split_brain_is_marked_on_the_page(dashboard_cluster, open_page):
    cluster = dashboard_cluster(nodes=3, mode="classic")
    p = open_page(cluster.url)
    page = p.page
    leader = agreed_leader(page)
    tile(page, leader).locator("input.choose").check()
    page.locator("#partition").click()
    # Textbook Bully: the majority elects its own leader while the old one leads on, cut off.
    page.wait_for_selector("#splitbrain:not([hidden])", timeout=20_000)
    assert "both lead" in page.locator("#splitbrain").inner_text()
    page.wait_for_selector("#timeline rect.split-brain", timeout=10_000)
    page.wait_for_selector("#log li:has-text('SPLIT BRAIN')")
    p.shot("1-split-brain")
    page.locator("#heal").click()
    page.wait_for_selector("#splitbrain[hidden]", state="attached", timeout=20_000)


def test_a_scenario_runs_from_the_page_and_shows_its_verdicts(dashboard_cluster, open_page):
    cluster = dashboard_cluster(nodes=3, mode="quorum")
    p = open_page(cluster.url)
    page = p.page
    agreed_leader(page)
    page.select_option("#scenario-name", "leader-pause")
    page.select_option("#scenario-mode", "quorum")
    page.locator("#scenario-run").click()
    # While it runs, the page watches the run's own cluster.
    page.wait_for_selector("#scenario-banner:not([hidden])", timeout=30_000)
    page.wait_for_function("document.getElementById('source').textContent.includes('scenario leader-pause')")
    p.shot("1-watching-the-run")
    # Verdicts, or a failed run (then its status line says what it died of).
    page.wait_for_function(
        "document.querySelector('#verdicts:not([hidden]) tbody tr') !== null"
        " || document.getElementById('scenario-status').className === 'error-text'",
        timeout=90_000,
    )
    assert page.locator("#scenario-status").get_attribute("class") != "error-text", page.locator(
        "#scenario-status"
    ).inner_text()
    verdicts = dict(
        zip(
            page.locator("#verdicts tbody tr td:first-child").all_inner_texts(),
            page.locator("#verdicts tbody tr td:nth-child(2)").all_inner_texts(),
        )
    )
    assert {k.split()[0] for k in verdicts} >= {"P1", "P2", "P3", "P3g", "P4", "P5"}
    assert set(verdicts.values()) == {"PASS"}, verdicts
    page.wait_for_selector("#scenario-timeline:not([hidden])")
    page.wait_for_function("document.getElementById('scenario-timeline').naturalWidth > 0")
    p.shot("2-verdicts")
    page.locator("#back-to-cluster").click()
    page.wait_for_selector("#scenario-banner[hidden]", state="attached")
    agreed_leader(page)
