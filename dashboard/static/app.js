// The bullyproof dashboard page: plain JavaScript, no build step. State arrives as server-sent events
// (/api/stream); actions go out as JSON POSTs to /api/action, which calls the CLI's own functions.
"use strict";

const EPOCH_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
  "#393b79", "#637939"];
const ROLE_CLASS = (role) => "role-" + role.replace(/ /g, "-");
const SHORT = { heartbeat: "hb", heartbeat_ack: "hb_ack", coordinator: "coord", coordinator_ack: "coord_ack",
  election: "elect", alive: "alive", request_vote: "req_vote", vote: "vote", pre_vote: "pre_vote",
  pre_vote_ack: "pre_ack", ring_election: "ring_el", ring_coordinator: "ring_co", ring_ack: "ring_ack" };

const state = {
  generation: -1, main: true, nodes: [], tiles: new Map(), chosen: new Set(), lastNodes: null,
  elections: new Map(), electionRefs: new Map(), timeline: { intervals: [], overlaps: [], faults: [], rejected: [] },
  clockOffsetMs: 0, catalogue: null, inspected: null,
};

const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
const pageNowMs = () => performance.now() + state.clockOffsetMs;

// ---- the stream -----------------------------------------------------------------------------------

function connect() {
  const source = new EventSource("/api/stream");
  source.onopen = () => { $("conn").textContent = "live"; $("conn").classList.add("live"); };
  source.onerror = () => { $("conn").textContent = "reconnecting"; $("conn").classList.remove("live"); };
  const on = (name, fn) => source.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
  on("reset", onReset);
  on("nodes", onNodes);
  on("log", onLog);
  on("elections", onElections);
  on("timeline", (t) => { state.timeline = t; drawTimeline(); });
  on("scenario", onScenario);
}

function onReset(r) {
  state.generation = r.generation;
  state.main = r.main && !r.readonly;
  state.nodes = r.nodes;
  // A cluster watched by its addresses (--nodes): no buttons at all, and the page says why.
  document.body.classList.toggle("readonly", !!r.readonly);
  $("readonly-banner").hidden = !r.readonly;
  $("readonly-banner").textContent = r.readonly || "";
  state.chosen.clear();
  state.elections.clear();
  state.electionRefs.clear();
  state.timeline = { intervals: [], overlaps: [], faults: [], rejected: [] };
  $("source").textContent = r.source + (r.mode ? " · " + r.mode : "");
  $("log").replaceChildren();
  buildTiles();
  for (const id of ["link-from", "link-to"]) {
    const select = $(id);
    select.replaceChildren(...r.nodes.map((n) => el("option", { value: String(n), text: "node " + n })));
  }
  if (r.nodes.length > 1) $("link-to").value = String(r.nodes[1]);
  $("scenario-banner").hidden = r.main || !!r.readonly;
  $("scenario-banner-text").textContent = r.main ? "" : "Watching " + r.source + ": its own cluster, started by the run. Actions are off.";
  for (const b of document.querySelectorAll(".controls button.act, button.fault")) b.disabled = !state.main;
  updateChosen();
}

// ---- tiles ---------------------------------------------------------------------------------------

function buildTiles() {
  const box = $("tiles");
  box.replaceChildren();
  box.classList.toggle("many", state.nodes.length > 12);
  state.tiles.clear();
  for (const id of state.nodes) {
    const choose = el("input", { type: "checkbox", class: "choose", "aria-label": "choose node " + id + " for a partition" });
    choose.addEventListener("change", () => { toggleChosen(id, choose.checked); });
    const buttons = {};
    for (const [action, label, title] of [["crash", "Crash", "SIGKILL the process"], ["recover", "Recover", "start it again"],
      ["pause", "Pause", "SIGSTOP"], ["resume", "Resume", "SIGCONT"]]) {
      buttons[action] = el("button", { type: "button", class: "act", "data-act": action, title: title + " (node " + id + ")",
        "aria-label": label + " node " + id, text: label });
      buttons[action].addEventListener("click", () => act({ action, node: id }));
    }
    const parts = {
      role: el("span", { class: "role", text: "…" }), epoch: el("div", { class: "line" }), follows: el("div", { class: "line" }),
      lease: el("div", { class: "line" }), counters: el("div", { class: "counters" }),
    };
    const tile = el("div", { class: "tile", tabindex: "0", role: "listitem", "data-node": String(id) },
      el("div", { class: "head" }, el("span", { class: "name", text: "node " + id }), parts.role),
      parts.epoch, parts.follows, parts.lease, parts.counters,
      el("div", { class: "buttons" }, el("label", {}, choose, el("span", { class: "choose-text", text: " choose" })), ...Object.values(buttons)));
    tile.addEventListener("keydown", (ev) => tileKey(ev, id));
    box.append(tile);
    state.tiles.set(id, { tile, parts, buttons, choose });
  }
}

function counterText(map) {
  if (!map) return "";
  return Object.entries(map).sort((a, b) => b[1] - a[1]).map(([k, v]) => (SHORT[k] || k) + " " + v).join(" · ");
}

function onNodes(n) {
  state.lastNodes = n;
  state.clockOffsetMs = n.now_ms - performance.now();
  const agreed = $("agreed");
  if (n.agreed) {
    agreed.textContent = "Agreed leader: node " + n.agreed.leader + " · epoch " + n.agreed.epoch;
    agreed.dataset.leader = String(n.agreed.leader);
    agreed.dataset.epoch = String(n.agreed.epoch);
    agreed.classList.add("ok");
  } else {
    const claims = n.leaders.map((l) => "node " + l.node + " (epoch " + l.epoch + ")").join(", ");
    agreed.textContent = "No agreed leader" + (claims ? " · leading: " + claims : " · election under way?");
    agreed.dataset.leader = "";
    agreed.dataset.epoch = "";
    agreed.classList.remove("ok");
  }
  const split = $("splitbrain");
  split.hidden = !n.split_brain;
  split.textContent = n.split_brain ? "SPLIT BRAIN: " + n.leaders.map((l) => "node " + l.node + " (epoch " + l.epoch + ")").join(" and ") + " both lead" : "";
  const s = n.store || {};
  $("storeinfo").textContent = "store: " + (s.accepted || 0) + " writes accepted · " + (s.rejected || 0) + " fenced off · highest epoch " + (s.highest_epoch || 0)
    + (n.source_error ? " · " + n.source_error : "");
  for (const t of n.tiles) {
    const ref = state.tiles.get(t.id);
    if (!ref) continue;
    ref.tile.className = "tile " + ROLE_CLASS(t.role) + (state.chosen.has(t.id) ? " chosen" : "");
    ref.tile.dataset.role = t.role;
    if (t.view_unix_ms) ref.tile.dataset.viewUnixMs = String(t.view_unix_ms);
    ref.tile.setAttribute("aria-label", "node " + t.id + ", " + t.role + (t.epoch != null ? ", epoch " + t.epoch : ""));
    ref.parts.role.textContent = t.role;
    ref.parts.epoch.textContent = (t.epoch != null ? "epoch " + t.epoch : "epoch –") + (t.mode ? " · " + t.mode : "");
    ref.parts.follows.textContent = t.role === "crashed" ? "process gone" + (t.pid ? " (pid " + t.pid + ")" : "")
      : t.role === "paused" ? "stopped (SIGSTOP)" : t.role === "unreachable" ? "not answering" + (t.error ? ": " + t.error : "")
        : t.follows ? (t.follows === t.id ? "leads itself" : "follows node " + t.follows) : "follows nobody";
    ref.parts.lease.textContent = (t.lease || "") + (t.warning ? " · " + t.warning : "");
    ref.parts.lease.title = t.warning_detail || "";
    ref.parts.counters.textContent = t.sent ? "sent " + counterText(t.sent) + " | recv " + counterText(t.received) : "";
    ref.parts.counters.title = ref.parts.counters.textContent;
    const live = t.proc === "running" || t.proc === "unknown";
    ref.buttons.crash.disabled = !state.main || t.proc === "crashed";
    ref.buttons.recover.disabled = !state.main || t.proc !== "crashed";
    ref.buttons.pause.disabled = !state.main || !live;
    ref.buttons.resume.disabled = !state.main || t.proc !== "paused";
  }
}

function toggleChosen(id, on) {
  if (on) state.chosen.add(id); else state.chosen.delete(id);
  const ref = state.tiles.get(id);
  if (ref) { ref.choose.checked = on; ref.tile.classList.toggle("chosen", on); }
  updateChosen();
}

function updateChosen() {
  const ids = [...state.chosen].sort((a, b) => a - b);
  $("chosen").textContent = ids.length ? "chosen: " + ids.join(", ") + " (the rest form the other side)" : "none chosen";
}

function tileKey(ev, id) {
  if (ev.altKey || ev.ctrlKey || ev.metaKey || ev.target !== ev.currentTarget) return;
  const ref = state.tiles.get(id);
  const press = (name) => { if (!ref.buttons[name].disabled) ref.buttons[name].click(); };
  const k = ev.key.toLowerCase();
  if (k === "k") press("crash");
  else if (k === "r") press("recover");
  else if (k === "p") press(ref.buttons.resume.disabled ? "pause" : "resume");
  else if (k === "c" || k === " ") toggleChosen(id, !state.chosen.has(id));
  else if (["arrowright", "arrowdown", "arrowleft", "arrowup"].includes(k)) {
    const i = state.nodes.indexOf(id);
    const next = state.nodes[(i + (k === "arrowright" || k === "arrowdown" ? 1 : state.nodes.length - 1)) % state.nodes.length];
    state.tiles.get(next).tile.focus();
  } else return;
  ev.preventDefault();
  ev.stopPropagation();
}

document.addEventListener("keydown", (ev) => {
  if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
  const t = ev.target;
  if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement) return;
  const k = ev.key.toLowerCase();
  if (k === "x" && !$("partition").disabled) { $("partition").click(); ev.preventDefault(); }
  else if (k === "h" && !$("heal").disabled) { $("heal").click(); ev.preventDefault(); }
  else if (k === "escape" && !$("inspector").hidden) { closeInspector(); ev.preventDefault(); }
});

// ---- actions -------------------------------------------------------------------------------------

// The admin token arrives in the URL's fragment (#token=...): kept for this tab, then taken out of the
// address bar. Without it the server refuses faults (403) and the page is a read-only view.
const ADMIN_TOKEN = (() => {
  const found = new URLSearchParams(location.hash.slice(1)).get("token");
  if (found) {
    sessionStorage.setItem("bullyproof-token", found);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("bullyproof-token") || "";
})();

async function post(url, body) {
  const headers = { "Content-Type": "application/json", "X-Bullyproof-Token": ADMIN_TOKEN };
  const reply = await fetch(url, { method: "POST", headers, body: JSON.stringify(body || {}) });
  let data = {};
  try { data = await reply.json(); } catch (e) { data = { ok: false, error: "HTTP " + reply.status }; }
  return data;
}

async function act(body) {
  const status = $("action-status");
  const what = describeAction(body);
  status.className = "action-status";
  status.textContent = what + "…";
  const data = await post("/api/action", body);
  if (data.ok) {
    status.textContent = what + ": done";
  } else {
    status.className = "action-status error";
    status.textContent = what + " failed: " + data.error;
  }
}

function describeAction(b) {
  if (b.node != null) return b.action + " node " + b.node;
  if (b.action === "partition") return "partition " + b.nodes.join(",") + " from the rest";
  if (b.from != null) return b.action + " " + b.from + "->" + b.to;
  return b.action;
}

function fault(button) {
  const body = { action: button.dataset.fault };
  for (const p of JSON.parse(button.dataset.params)) {
    if (p.type === "groups") {
      if (!state.chosen.size) { $("action-status").className = "action-status error"; $("action-status").textContent = "choose the nodes to cut off first (tick 'choose' or press c on a tile)"; return; }
      body.nodes = [...state.chosen].sort((a, b) => a - b);
    } else if (p.type === "links") {
      body.from = Number($("link-from").value);
      body.to = Number($("link-to").value);
    } else {
      body[p.name] = Number($(p.name.replaceAll("_", "-")).value);
    }
  }
  act(body);
}

function wireControls() {
  // The network faults' buttons come from the fault registry (the server draws them): each sends its
  // parameters by type: a partition's groups are the chosen nodes, links the from/to choice, numbers its inputs.
  for (const b of document.querySelectorAll("button.fault")) b.addEventListener("click", () => fault(b));
  $("back-to-cluster").addEventListener("click", () => post("/api/watch/cluster"));
  $("inspector-close").addEventListener("click", closeInspector);
  $("window").addEventListener("change", drawTimeline);
  $("scenario-run").addEventListener("click", runScenario);
  $("scenario-cancel").addEventListener("click", () => post("/api/scenario/cancel"));
  $("scenario-name").addEventListener("change", describeScenario);
  window.addEventListener("resize", drawTimeline);
}

// ---- the log and the elections --------------------------------------------------------------------

// 1,2,3,5,7,8,9 -> "1–3,5,7–9"
function ranges(ids) {
  const out = [];
  for (let i = 0; i < ids.length; i++) {
    let j = i;
    while (j + 1 < ids.length && ids[j + 1] === ids[j] + 1) j++;
    out.push(j - i >= 2 ? ids[i] + "–" + ids[j] : ids.slice(i, j + 1).join(","));
    i = j;
  }
  return out.join(",");
}

function electionText(e) {
  if (!e) return "election";
  const parts = ["election #" + e.id, e.total + " message" + (e.total === 1 ? "" : "s")];
  if (e.nodes.length) parts.push("nodes " + ranges(e.nodes));
  if (e.epochs.length) parts.push("epoch" + (e.epochs.length > 1 ? "s " + e.epochs[0] + "→" + e.epochs[e.epochs.length - 1] : " " + e.epochs[0]));
  if (e.refused) parts.push(e.refused + " refused");
  if (e.failed) parts.push(e.failed + " undelivered");
  if (e.winners.length) parts.push(e.winners.map((w) => "node " + w.node + " won epoch " + w.epoch).join(", "));
  return parts.join(" · ");
}

function onLog(entries) {
  const log = $("log");
  for (const entry of entries) {
    const li = el("li", { class: "lvl-" + entry.level, "data-seq": String(entry.seq) }, el("time", { text: entry.wall }));
    if (entry.level === "election") {
      const b = el("button", { type: "button", class: "link", "data-election": String(entry.election), text: electionText(state.elections.get(entry.election)) });
      b.addEventListener("click", () => inspect(entry.election));
      li.append(b);
      if (!state.electionRefs.has(entry.election)) state.electionRefs.set(entry.election, []);
      state.electionRefs.get(entry.election).push(b);
    } else {
      li.append(entry.text);
      if (entry.election) {
        const b = el("button", { type: "button", class: "link", "data-election": String(entry.election), text: "messages", "aria-label": "messages of election " + entry.election });
        b.addEventListener("click", () => inspect(entry.election));
        li.append(" ", b);
      }
    }
    // Newest first, by when it happened (the store's log and the nodes' files arrive at their own pace).
    li.dataset.t = String(entry.t_ms);
    let before = log.firstElementChild;
    while (before && Number(before.dataset.t) > entry.t_ms) before = before.nextElementSibling;
    log.insertBefore(li, before);
  }
  while (log.children.length > 500) log.lastElementChild.remove();
}

function onElections(list) {
  for (const e of list) {
    state.elections.set(e.id, e);
    for (const b of state.electionRefs.get(e.id) || []) b.textContent = electionText(e);
    if (state.inspected === e.id) inspect(e.id);
  }
  drawTimeline();
}

async function inspect(id) {
  state.inspected = id;
  const reply = await fetch("/api/election/" + id);
  const e = await reply.json();
  const box = $("inspector");
  const opening = box.hidden;
  box.hidden = false;
  if (opening) box.scrollIntoView({ block: "nearest" });
  if (e.error) { $("inspector-summary").textContent = e.error; return; }
  $("inspector-h").textContent = "Election #" + e.id;
  $("inspector-summary").textContent = electionText(e) + (e.messages.length < e.total ? " (first " + e.messages.length + " shown)" : "");
  const rows = e.messages.map((m) => {
    const answer = m.error ? "not delivered: " + m.error : m.reply == null ? "—" : (m.granted ? "granted" : "refused") + " (" + m.reply + ")";
    const cls = m.error ? "failed" : m.granted === true ? "granted" : m.granted === false ? "refused" : "";
    const what = m.type + (m.resigning ? " (resigning" + (m.successor ? ", successor " + m.successor : "") + ")" : "") + (m.ids ? " [" + m.ids.join(",") + "]" : "");
    return el("tr", {}, el("td", { text: (m.t_ms - e.start_ms).toFixed(1) }), el("td", { text: "node " + m.src }), el("td", { text: "node " + m.dst }),
      el("td", { text: what }), el("td", { text: String(m.epoch) }), el("td", { class: cls, text: answer }),
      el("td", { text: (m.why || "") + (m.skipped ? " (" + m.skipped + " more not recorded)" : "") }));
  });
  $("messages").tBodies[0].replaceChildren(...rows);
}

function closeInspector() { $("inspector").hidden = true; state.inspected = null; }

// ---- the timeline --------------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text != null) e.textContent = text;
  return e;
}

// "since start": from the first thing on the timeline to now, at least 10 s, at most 10 minutes.
function fitSpan(now) {
  const t = state.timeline;
  const starts = [...t.intervals, ...t.faults].map((x) => x.start_ms);
  for (const e of state.elections.values()) starts.push(e.start_ms);
  const first = starts.length ? Math.min(...starts) : now;
  return Math.min(600000, Math.max(10000, (now - first) * 1.05));
}

function drawTimeline() {
  const box = $("timeline");
  const width = Math.max(300, box.clientWidth || box.parentElement.clientWidth - 24);
  const lanes = state.nodes.length;
  const laneH = lanes > 12 ? 15 : 22, top = 16, left = 48, right = 8;
  const height = top + lanes * laneH + 18;
  box.setAttribute("viewBox", "0 0 " + width + " " + height);
  box.setAttribute("height", String(height));
  const now = pageNowMs();
  const span = $("window").value === "fit" ? fitSpan(now) : Number($("window").value);
  const t0 = now - span;
  const x = (t) => left + Math.max(0, Math.min(1, (t - t0) / span)) * (width - left - right);
  const lane = new Map(state.nodes.map((n, i) => [n, i]));
  const y = (node) => top + lane.get(node) * laneH;
  const end = (item) => (item.open ? now : item.end_ms);
  const parts = [];
  for (const f of state.timeline.faults) {
    if (end(f) < t0) continue;
    parts.push(svg("rect", { x: x(f.start_ms), y: top, width: Math.max(1, x(end(f)) - x(f.start_ms)), height: lanes * laneH, fill: "#d9d9d9", opacity: 0.6 }));
    parts.push(svg("text", { x: x(f.start_ms) + 2, y: top - 4 }, f.name));
  }
  for (let i = 0; i < lanes; i++) {
    parts.push(svg("line", { x1: left, x2: width - right, y1: top + i * laneH + laneH / 2, y2: top + i * laneH + laneH / 2, stroke: "#eceff3" }));
    parts.push(svg("text", { x: 4, y: top + i * laneH + laneH / 2 + 3, class: "lane-label" }, "node " + state.nodes[i]));
  }
  for (const iv of state.timeline.intervals) {
    if (end(iv) < t0 || !lane.has(iv.node)) continue;
    const x1 = x(iv.start_ms), w = Math.max(2, x(end(iv)) - x1);
    const r = svg("rect", { x: x1, y: y(iv.node) + 2, width: w, height: laneH - 4, rx: 2, fill: EPOCH_COLOURS[iv.epoch % EPOCH_COLOURS.length], stroke: "#222", "stroke-width": 0.4, "data-node": iv.node, "data-epoch": iv.epoch, class: "lead" });
    r.append(svg("title", {}, "node " + iv.node + " leads epoch " + iv.epoch));
    parts.push(r);
    if (w > 22) parts.push(svg("text", { x: x1 + 3, y: y(iv.node) + laneH / 2 + 3, fill: "#fff", style: "fill:#fff" }, "e" + iv.epoch));
  }
  for (const o of state.timeline.overlaps) {
    if (end(o) < t0) continue;
    const x1 = x(o.start_ms), w = Math.max(3, x(end(o)) - x1);
    const r = svg("rect", { x: x1, y: top, width: w, height: lanes * laneH, fill: "#c0262d", opacity: 0.28, class: "split-brain" });
    r.append(svg("title", {}, "two leaders at once: nodes " + o.nodes.join(" and ")));
    parts.push(r);
    for (const n of o.nodes) if (lane.has(n)) parts.push(svg("rect", { x: x1, y: y(n) + 1, width: w, height: laneH - 2, fill: "none", stroke: "#c0262d", "stroke-width": 2 }));
    if (w > 60) parts.push(svg("text", { x: x1 + 3, y: top + 10, style: "fill:#c0262d;font-weight:700" }, "split brain"));
  }
  for (const r of state.timeline.rejected || []) {
    if (r.t_ms < t0 || !lane.has(r.node)) continue;
    parts.push(svg("text", { x: x(r.t_ms) - 3, y: y(r.node) + laneH / 2 + 4, style: "fill:#c0262d;font-weight:700" }, "×"));
  }
  for (const e of state.elections.values()) {
    if (e.end_ms < t0) continue;
    const tick = svg("path", { d: "M" + x(e.start_ms) + " " + (top - 1) + " l3 -5 h-6 z", fill: "#b26b00" });
    tick.append(svg("title", {}, electionText(e)));
    parts.push(tick);
  }
  const axisY = top + lanes * laneH;
  parts.push(svg("line", { x1: left, x2: width - right, y1: axisY, y2: axisY, stroke: "#999" }));
  const step = [1000, 2000, 5000, 10000, 30000, 60000, 120000].find((s) => span / s <= 8) || 120000;
  for (let back = 0; back <= span; back += step) {
    const tx = x(now - back);
    parts.push(svg("line", { x1: tx, x2: tx, y1: axisY, y2: axisY + 4, stroke: "#999" }));
    parts.push(svg("text", { x: tx - 10, y: axisY + 14 }, back === 0 ? "now" : "-" + back / 1000 + "s"));
  }
  parts.push(svg("line", { x1: x(now), x2: x(now), y1: top, y2: axisY, class: "now-line" }));
  box.replaceChildren(...parts);
}

// ---- scenarios -----------------------------------------------------------------------------------

async function loadCatalogue() {
  const reply = await fetch("/api/scenarios");
  state.catalogue = await reply.json();
  $("scenario-name").replaceChildren(...state.catalogue.scenarios.map((s) => el("option", { value: s.name, text: s.name })));
  $("scenario-mode").replaceChildren(...state.catalogue.modes.map((m) => el("option", { value: m, text: m })));
  $("scenario-mode").value = state.catalogue.default_mode;
  if (state.catalogue.scenarios.some((s) => s.name === "partition-leader-minority")) $("scenario-name").value = "partition-leader-minority";
  describeScenario();
}

function describeScenario() {
  const s = state.catalogue && state.catalogue.scenarios.find((x) => x.name === $("scenario-name").value);
  $("scenario-description").textContent = s ? s.description + " (" + s.timing + ")" : "";
}

async function runScenario() {
  const data = await post("/api/scenario", { name: $("scenario-name").value, mode: $("scenario-mode").value, seed: Number($("scenario-seed").value) });
  if (!data.ok) { $("scenario-status").textContent = "cannot run: " + data.error; $("scenario-status").className = "error-text"; }
}

function onScenario(run) {
  const status = $("scenario-status");
  const table = $("verdicts"), img = $("scenario-timeline"), report = $("scenario-report");
  if (!run) { status.textContent = ""; return; }
  const running = run.state === "starting" || run.state === "running";
  $("scenario-run").disabled = running;
  $("scenario-cancel").hidden = !running;
  status.className = run.state === "failed" ? "error-text" : "";
  status.textContent = run.name + " (" + run.mode + ", seed " + run.seed + "): " + run.state + " · " + run.elapsed_s + " s"
    + (run.error ? " · " + run.error : "") + (run.state === "done" ? (run.split_brain ? " · SPLIT BRAIN" : " · no split brain") : "");
  table.hidden = !run.verdicts;
  if (run.verdicts) {
    table.tBodies[0].replaceChildren(...run.verdicts.map((v) => el("tr", { "data-property": v.id },
      el("td", { text: v.id + " " + v.name }), el("td", { class: "verdict-" + v.verdict.replace("/", ""), text: v.verdict }),
      el("td", { text: v.evidence.join("; ") }))));
  }
  img.hidden = !run.has_timeline;
  if (run.has_timeline) img.src = "/api/scenario/timeline.png?run=" + encodeURIComponent(run.directory);
  report.hidden = !run.text;
  report.querySelector("pre").textContent = run.text || "";
}

// ---- start ---------------------------------------------------------------------------------------

wireControls();
loadCatalogue();
connect();
setInterval(drawTimeline, 250);
