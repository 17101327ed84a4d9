"""Checkers for the properties of docs/design.md section 3 (P1..P6, P3g), judged from a recorded history alone.

P3 is judged twice: from what leaders reported about themselves (views and lease ends), and, as
P3g, from what followers granted (their "grant" and "release" events), which does not trust the
leaders at all (docs/design.md section 7). P3g is enforced in quorum mode; classic Bully makes no
promises, so there it does not apply.

Every checker takes the events of one run (any order; they are sorted by t_ns here) and returns a
CheckResult whose evidence names nodes, epochs and times relative to the first event, so a failure
can be read without opening the history. Classic mode runs the same checks; finding P1/P3 violations
there is the expected demonstration, and the caller decides what is expected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from node.core import mode_info

from node.history import (
    AgreementTimeline,
    Answer,
    Interval,
    Span,
    backed_overlaps,
    backed_spans,
    double_promises,
    epochs_led,
    false_answers,
    grant_windows,
    history_members,
    intersect,
    leadership_intervals,
    outside_backing,
    overlapping_pairs,
    own_votes,
    recorded_promises,
    sort_events,
    state_at,
    up_spans,
)
from node.store.db import CLAIM_KEY_PREFIX

Events = Iterable[Mapping[str, Any]]

# Longer evidence lists are cut, with a count of what was left out: a report must stay readable.
EVIDENCE_LIMIT = 50


@dataclass(frozen=True)
class CheckResult:
    id: str
    name: str
    ok: bool
    evidence: list[str]
    data: dict[str, Any]


@dataclass(frozen=True)
class Overlap:
    """Two different nodes both believed they led during [start_ns, end_ns)."""

    first: Interval
    second: Interval
    start_ns: int
    end_ns: int

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [self.first.node, self.second.node],
            "epochs": [self.first.epoch, self.second.epoch],
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "duration_ms": self.duration_ms,
        }


@dataclass(frozen=True)
class Report:
    mode: str
    bound_ms: float
    results: list[CheckResult]
    violations: list[str]  # ids of the failed checks
    split_brain: bool  # P1 or P3 failed, or (quorum) two nodes' grant-backed intervals overlapped
    stale_writes_rejected: int
    fencing: dict[str, Any]
    failover: list[dict[str, Any]]
    recovery_ms: float | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


# ---------------------------------------------------------------------------------------------------
# Shared helpers


def _rel(t_ns: int, origin_ns: int) -> str:
    return f"t={(t_ns - origin_ns) / 1e9:+.3f}s"


def _origin_ns(ordered: Sequence[Mapping[str, Any]]) -> int:
    return ordered[0]["t_ns"] if ordered else 0


def _cap(lines: list[str]) -> list[str]:
    if len(lines) <= EVIDENCE_LIMIT:
        return lines
    return lines[:EVIDENCE_LIMIT] + [f"... and {len(lines) - EVIDENCE_LIMIT} more"]


def _and(items: Sequence[object]) -> str:
    words = [str(item) for item in items]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _store_log(ordered: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The store's records in seq order, plus a complaint for each seq recorded twice differently.

    The store may dump its durable log more than once (e.g. around a store restart), so identical
    copies of a record are one record.
    """
    by_seq: dict[int, Mapping[str, Any]] = {}
    conflicts: list[str] = []
    for event in ordered:
        if event["kind"] != "store":
            continue
        kept = by_seq.setdefault(event["seq"], event)
        if _store_fields(kept) != _store_fields(event):
            conflicts.append(
                f"store seq {event['seq']} recorded twice with different contents: "
                f"{_describe_store(kept)} vs {_describe_store(event)}"
            )
    return [by_seq[seq] for seq in sorted(by_seq)], conflicts


def _store_fields(event: Mapping[str, Any]) -> tuple[Any, ...]:
    return (event["writer"], event["epoch"], event["key"], event["accepted"])


def _describe_store(event: Mapping[str, Any]) -> str:
    verdict = "accepted" if event["accepted"] else f"rejected ({event['reason']})"
    return f"node {event['writer']} epoch {event['epoch']} key {event['key']!r} {verdict}"


# ---------------------------------------------------------------------------------------------------
# P1..P6


def check_unique_leader_per_epoch(events: Events) -> CheckResult:
    """P1: at most one node ever becomes leader of a given epoch."""
    ordered = sort_events(events)
    origin_ns = _origin_ns(ordered)
    first_led_ns = epochs_led(
        (event["node"], event["epoch"], event["t_ns"])
        for event in ordered
        if event["kind"] == "view" and event["role"] == "leader"
    )
    evidence = []
    conflicts = []
    for epoch, leaders in sorted(first_led_ns.items()):
        if len(leaders) < 2:
            continue
        when = ", ".join(f"node {node} at {_rel(t_ns, origin_ns)}" for node, t_ns in leaders.items())
        evidence.append(f"epoch {epoch} led by nodes {_and(list(leaders))} ({when})")
        conflicts.append({"epoch": epoch, "nodes": list(leaders)})
    return CheckResult(
        id="P1",
        name="unique leader per epoch",
        ok=not conflicts,
        evidence=_cap(evidence),
        data={"epochs_led": len(first_led_ns), "conflicts": conflicts},
    )


def check_store_monotonic(events: Events) -> CheckResult:
    """P2: the store never accepts an epoch below one it accepted, nor one epoch from two writers."""
    ordered = sort_events(events)
    records, evidence = _store_log(ordered)
    highest: Mapping[str, Any] | None = None  # the accepted record with the highest epoch so far
    owner: dict[int, Mapping[str, Any]] = {}  # epoch -> first accepted record of that epoch
    accepted = 0
    for record in records:
        if not record["accepted"]:
            continue
        accepted += 1
        epoch, writer = record["epoch"], record["writer"]
        if highest is not None and epoch < highest["epoch"]:
            evidence.append(
                f"store seq {record['seq']} accepted epoch {epoch} from node {writer} after "
                f"accepting epoch {highest['epoch']} (seq {highest['seq']}, node {highest['writer']})"
            )
        if highest is None or epoch > highest["epoch"]:
            highest = record
        first = owner.setdefault(epoch, record)
        if first["writer"] != writer:
            evidence.append(
                f"epoch {epoch} accepted from nodes {first['writer']} and {writer} "
                f"(seq {first['seq']} node {first['writer']}, seq {record['seq']} node {writer})"
            )
    return CheckResult(
        id="P2",
        name="store epochs monotonic, one writer per epoch",
        ok=not evidence,
        evidence=_cap(evidence),
        data={
            "records": len(records),
            "accepted": accepted,
            "highest_epoch": None if highest is None else highest["epoch"],
        },
    )


def overlaps(events: Events) -> list[Overlap]:
    """Every pair of leadership intervals of different nodes that overlap in time, by start."""
    return [
        Overlap(first, second, second.start, min(first.end, second.end))
        for first, second in overlapping_pairs(leadership_intervals(events))
    ]


def check_no_overlap(events: Events) -> CheckResult:
    """P3: leadership intervals of different nodes never overlap in time."""
    ordered = sort_events(events)
    origin_ns = _origin_ns(ordered)
    found = overlaps(ordered)
    durations_ms = [overlap.duration_ms for overlap in found]
    total_ms = sum(durations_ms)
    max_ms = max(durations_ms, default=0.0)
    if found:
        times = "1 time" if len(found) == 1 else f"{len(found)} times"
        summary = f"two leaders coexisted {times} for up to {max_ms:.1f} ms"
    else:
        summary = "two leaders never coexisted"
    evidence = [
        f"node {o.first.node} (epoch {o.first.epoch}) and node {o.second.node} "
        f"(epoch {o.second.epoch}) both led from {_rel(o.start_ns, origin_ns)} for "
        f"{o.duration_ms:.1f} ms"
        for o in found
    ]
    return CheckResult(
        id="P3",
        name="no overlapping leadership",
        ok=not found,
        evidence=_cap([summary] + evidence if found else []),
        data={
            "summary": summary,
            "count": len(found),
            "total_overlap_ms": total_ms,
            "max_overlap_ms": max_ms,
            "overlaps": [overlap.to_dict() for overlap in found],
        },
    )


# ---------------------------------------------------------------------------------------------------
# P3g: overlap judged from what followers granted


def grant_backed_intervals(events: Events) -> dict[int, list[Span]]:
    """For each node, when a majority of the membership stood behind it by their own promises.

    At time t a node's support is its own vote (while its process exists and it holds no live
    promise to another node: ``node.history.own_votes``) plus every other node holding a live grant
    window to it. The membership is the meta event's node list (plus any node seen in the history).
    """
    ordered = sort_events(events)
    members = history_members(ordered)
    windows = grant_windows(recorded_promises(ordered))
    # A process not known to have died still votes for itself while the promises made to it last.
    horizon_ns = max([ordered[-1]["t_ns"] if ordered else 0] + [w.end for w in windows]) + 1
    return backed_spans(members, windows, own_votes(up_spans(ordered, members, horizon_ns), windows))


def _ms(span: Span | Interval) -> float:
    return (span.end - span.start) / 1e6


def check_no_overlap_by_grants(events: Events, mode: str = "quorum") -> CheckResult:
    """P3g: leadership judged from the followers' promises, not from what leaders believed.

    (a) the grant-backed intervals of different nodes never overlap (in quorum mode that would need
    a follower to break its promise); (b) every self-reported leadership interval lies inside its
    node's grant-backed intervals (a leader acting without a majority's live promises is unsafe even
    if no second leader appeared), with the time outside reported per interval; (c) any
    disagreement with P3 (the leaders' own reports) is listed; (d) no member grants a node while its
    promise to another lives (rule 4 itself). (a), (b) and (d) fail the check; (c) is for the reader. No slack is allowed: a follower's promise (0.8 election timeouts from when it
    received the request, on its tick clock) outlasts the leader's lease (0.7 from when it sent it),
    so a correct run is inside its grants to the nanosecond. Classic mode: not applicable.
    """
    ordered = sort_events(events)
    origin_ns = _origin_ns(ordered)
    name = "no overlap by followers' grants"
    if not mode_info(mode).promises:
        return CheckResult(
            "P3g", name, True, [f"not applicable in {mode} mode: followers make no promises"],
            {"applicable": False},
        )
    backed = grant_backed_intervals(ordered)
    grants = sum(1 for event in ordered if event["kind"] == "grant")
    # (a) grant-backed intervals of different nodes overlapping
    grant_overlaps = backed_overlaps(backed)
    evidence = [
        f"nodes {a} and {b} were both backed by a majority's live promises from "
        f"{_rel(span.start, origin_ns)} for {_ms(span):.1f} ms"
        for a, b, span in grant_overlaps
    ]
    # (b) self-reported leadership outside the node's grants
    self_reported = leadership_intervals(ordered)
    outside = []
    for interval, gaps in outside_backing(self_reported, backed):
        outside_ms = sum(_ms(gap) for gap in gaps)
        outside.append(
            {
                "node": interval.node,
                "epoch": interval.epoch,
                "start_ns": interval.start,
                "end_ns": interval.end,
                "outside_ms": outside_ms,
                "gaps": [[gap.start, gap.end] for gap in gaps],
            }
        )
        evidence.append(
            f"node {interval.node} led epoch {interval.epoch} ({_rel(interval.start, origin_ns)} "
            f"for {_ms(interval):.1f} ms) {outside_ms:.1f} ms outside a majority's live "
            f"promises, first from {_rel(gaps[0].start, origin_ns)} for {_ms(gaps[0]):.1f} ms"
        )
    if outside and not grants:
        evidence.append("the history has no grant events at all: nodes recorded no promises")
    # (d) rule 4 itself: a member granting while its promise to another node lived. Needed beside (a):
    # a promise broken to a killed leader backs no second majority (the dead node's vote is gone).
    broken = double_promises(recorded_promises(ordered))
    evidence += [
        f"node {d.node} granted node {d.leader} (epoch {d.epoch}) at {_rel(d.at, origin_ns)} while its promise "
        f"to node {d.other} (epoch {d.other_epoch}) lasted {(d.until - d.at) / 1e6:.1f} ms more"
        for d in broken
    ]
    # (c) disagreement with the leaders' own reports
    disagreements = []
    for overlap in overlaps(ordered):
        a, b = overlap.first.node, overlap.second.node
        by_grants = intersect(intersect(backed.get(a, []), backed.get(b, [])), [Span(overlap.start_ns, overlap.end_ns)])
        if not by_grants:
            disagreements.append(
                f"P3 saw nodes {a} and {b} lead together from {_rel(overlap.start_ns, origin_ns)} "
                f"for {overlap.duration_ms:.1f} ms; the followers' grants back no such overlap"
            )
    for a, b, span in grant_overlaps:
        led_a = [Span(i.start, i.end) for i in self_reported if i.node == a]
        led_b = [Span(i.start, i.end) for i in self_reported if i.node == b]
        if not intersect(intersect(led_a, led_b), [span]):
            disagreements.append(
                f"the followers' grants backed nodes {a} and {b} together from "
                f"{_rel(span.start, origin_ns)} for {_ms(span):.1f} ms; their own reports "
                "show no overlap (P3 missed it)"
            )
    ok = not grant_overlaps and not outside and not broken
    summary = (
        f"{len(grant_overlaps)} overlaps by grants, {len(outside)} leadership intervals outside "
        f"their grants, {len(broken)} promises broken, {len(disagreements)} disagreements with P3 "
        f"({grants} grants recorded)"
    )
    return CheckResult(
        id="P3g",
        name=name,
        ok=ok,
        evidence=_cap(([summary] if not ok else []) + evidence + disagreements),
        data={
            "applicable": True,
            "summary": summary,
            "grants": grants,
            "overlaps": [
                {"nodes": [a, b], "start_ns": span.start, "end_ns": span.end, "duration_ms": _ms(span)}
                for a, b, span in grant_overlaps
            ],
            "max_overlap_ms": max((_ms(span) for _, _, span in grant_overlaps), default=0.0),
            "outside_grants": outside,
            "broken_promises": [
                {"node": d.node, "granted": d.leader, "epoch": d.epoch, "t_ns": d.at, "promised": d.other,
                 "promised_epoch": d.other_epoch, "until_ns": d.until}
                for d in broken
            ],
            "max_outside_ms": max((item["outside_ms"] for item in outside), default=0.0),
            "disagreements_with_p3": disagreements,
            "grant_backed": {
                str(node): [[span.start, span.end] for span in spans] for node, spans in backed.items()
            },
        },
    )


def _active_faults(ordered: Sequence[Mapping[str, Any]]) -> list[str]:
    """Network faults still in place at the end of the history (a heal removes all of them)."""
    active: dict[str, None] = {}  # ordered set
    for event in ordered:
        if event["kind"] == "heal":
            active.clear()
        elif event["kind"] == "fault" and event["action"] == "start":
            active[event["name"]] = None
        elif event["kind"] == "fault":
            active.pop(event["name"], None)
    return list(active)


def _describe_anchor(event: Mapping[str, Any]) -> str:
    if event["kind"] == "heal":
        return "the last heal"
    if event["kind"] == "fault":
        return f"fault {event['name']!r} stopped"
    if event["kind"] == "process":
        return f"{event['action']} of {_process_name(event['node'])}"
    return "the start of the history"


def _process_name(node: int | str) -> str:
    return f"node {node}" if isinstance(node, int) else str(node)


def check_agreement_after_heal(events: Events, bound_ms: float) -> CheckResult:
    """P4: after the faults end, all live nodes agree on one leader within ``bound_ms``.

    The clock starts at the last heal; without a heal, at the last fault stop or process event (a
    kill counts too: the survivors must settle without the victim); without any, at the first event.
    Network faults still active at the end of the history make the check fail: nothing healed.
    """
    ordered = sort_events(events)
    origin_ns = _origin_ns(ordered)
    heals = [event for event in ordered if event["kind"] == "heal"]
    anchors = heals or [
        event
        for event in ordered
        if event["kind"] == "process" or (event["kind"] == "fault" and event["action"] == "stop")
    ]
    anchor = anchors[-1] if anchors else (ordered[0] if ordered else None)
    data: dict[str, Any] = {"bound_ms": bound_ms, "recovery_ms": None}

    def result(ok: bool, evidence: list[str]) -> CheckResult:
        return CheckResult("P4", "agreement after heal", ok, evidence, data)

    if anchor is None:
        return result(False, ["empty history"])
    anchor_ns = anchor["t_ns"]
    since = f"{_describe_anchor(anchor)} ({_rel(anchor_ns, origin_ns)})"
    data.update(anchor=_describe_anchor(anchor), anchor_t_ns=anchor_ns)

    active = _active_faults(ordered)
    if active:
        names = _and([repr(name) for name in active])
        evidence = [f"faults still active at the end of the history, never healed: {names}"]
        return result(False, evidence)

    first = AgreementTimeline(ordered).first_from(anchor_ns)
    if first is not None:
        agreed_ns, agreement = first
        recovery_ms = (agreed_ns - anchor_ns) / 1e6
        data.update(recovery_ms=recovery_ms, leader=agreement.leader, epoch=agreement.epoch)
        message = (
            f"all live nodes agreed on leader {agreement.leader} at epoch {agreement.epoch} at "
            f"{_rel(agreed_ns, origin_ns)}, {recovery_ms:.1f} ms after {since}"
        )
        if recovery_ms <= bound_ms:
            return result(True, [message])
        evidence = [f"{message}: later than the bound of {bound_ms:g} ms"]
    else:
        evidence = [f"live nodes never agreed on a leader after {since}"]
    bound_ns = anchor_ns + int(bound_ms * 1e6)
    end_ns = ordered[-1]["t_ns"]
    if end_ns < bound_ns:
        evidence.append(
            f"the history ends {(end_ns - anchor_ns) / 1e6:.1f} ms after {since}, "
            f"before the bound of {bound_ms:g} ms"
        )
    seen_ns = min(bound_ns, end_ns)
    evidence.append(f"at {_rel(seen_ns, origin_ns)}: {state_at(ordered, seen_ns).describe()}")
    return result(False, evidence)


def answer_tolerance_ns(ordered: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """P6's tolerance for one recorded run: (transit, horizon) in ns (see node.history.false_answers).

    Transit is how late a follower's evidence can be: the longest latency (with its jitter) injected on
    any link, plus the longest pause of any process (a paused follower counts from a heartbeat that
    waited in its socket), plus the follower's grace of one heartbeat interval, plus one election
    timeout for a busy machine's scheduling. The horizon is
    the lease (0.7 election timeouts) in modes with leases; in the others, how long a follower trusts
    a silent leader (about an election timeout; two are allowed)."""
    meta = next((e for e in ordered if e["kind"] == "meta"), {})
    et_ns = int(meta.get("election_timeout_ms", 500)) * 1_000_000
    latency_ms = max((int(e["detail"].get("latency", 0)) + int(e["detail"].get("jitter", 0))
                      for e in ordered if e["kind"] == "fault" and e["action"] == "start"
                      and e.get("detail", {}).get("type") == "latency"), default=0)
    paused_at: dict[Any, int] = {}
    longest_pause_ns = 0
    for e in ordered:
        if e["kind"] == "process" and e["action"] == "pause":
            paused_at[e["node"]] = e["t_ns"]
        elif e["kind"] == "process" and e["node"] in paused_at:
            longest_pause_ns = max(longest_pause_ns, e["t_ns"] - paused_at.pop(e["node"]))
    hb_ns = int(meta.get("heartbeat_interval_ms", 100)) * 1_000_000
    transit_ns = latency_ms * 1_000_000 + longest_pause_ns + hb_ns + et_ns
    promises = mode_info(meta["mode"]).promises if "mode" in meta else True
    horizon_ns = et_ns * 7 // 10 if promises else 2 * et_ns
    return transit_ns, horizon_ns


def check_answers(events: Events) -> CheckResult:
    """P6: every answer a node gave a client that asked who leads (GetLeader, recorded by the
    harness's AnswerRecorder) named a node that led that epoch at that moment, within the tolerance
    of answer_tolerance_ns. A node that never led the epoch it was named for is never forgiven."""
    ordered = sort_events(events)
    origin_ns = _origin_ns(ordered)
    answers = [Answer(e["node"], e["leader"], e["epoch"], e["t_ns"], e["end_ns"]) for e in ordered if e["kind"] == "answer"]
    intervals = leadership_intervals(ordered)
    # A leadership that ended as its lease ran out: its followers' evidence ran out with it.
    expired = {(e["node"], min(e["t_ns"], e.get("lease_end_ns", e["t_ns"])))
               for e in ordered if e["kind"] == "view" and e.get("reason") == "lease_expired"}
    transit_ns, horizon_ns = answer_tolerance_ns(ordered)
    false = false_answers(answers, intervals, transit_ns, horizon_ns, lambda i: (i.node, i.end) in expired)
    led = {(i.node, i.epoch) for i in intervals}
    evidence = [
        f"node {a.node} named node {a.leader} leader of epoch {a.epoch} at {_rel(a.start, origin_ns)}, "
        + ("a node that never led that epoch" if (a.leader, a.epoch) not in led else "when it no longer led it")
        for a in false
    ]
    tolerance = f"tolerance {transit_ns / 1e6:.0f} ms of transit, {horizon_ns / 1e6:.0f} ms after a leadership ended early"
    return CheckResult(
        id="P6",
        name="answers name a leader that leads",
        ok=not false,
        evidence=_cap([f"{len(false)} of {len(answers)} answers that named a leader were false ({tolerance})"] + evidence),
        data={"answers": len(answers), "false": len(false), "transit_ms": transit_ns / 1e6,
              "horizon_ms": horizon_ns / 1e6},
    )


def check_no_lost_writes(events: Events) -> CheckResult:
    """P5: every write acknowledged to its writer is in the store's log, accepted, as written.

    Writes without a reply (accepted null) have an unknown outcome: reported, never a loss.
    """
    ordered = sort_events(events)
    origin_ns = _origin_ns(ordered)
    records, _ = _store_log(ordered)  # conflicting copies are P2's to report
    by_seq = {record["seq"]: record for record in records}
    evidence = []
    unknown = []
    acknowledged = 0
    for event in ordered:
        if event["kind"] != "write":
            continue
        what = (
            f"write by node {event['node']} (epoch {event['epoch']}, key {event['key']!r}) "
            f"at {_rel(event['t_ns'], origin_ns)}"
        )
        if event["accepted"] is None:
            unknown.append(f"unknown outcome (not a loss): {what}, error {event['error']!r}")
            continue
        if not event["accepted"]:
            continue
        acknowledged += 1
        record = by_seq.get(event["seq"])
        if event["seq"] is None:
            evidence.append(f"{what} was acknowledged without a store seq")
        elif record is None:
            evidence.append(f"{what} acknowledged as seq {event['seq']} is missing from the store log")
        elif _store_fields(record) != (event["node"], event["epoch"], event["key"], True):
            evidence.append(
                f"{what} acknowledged as seq {event['seq']}, but the store log has seq "
                f"{event['seq']} as {_describe_store(record)}"
            )
    store_note = [] if records or not acknowledged else ["the history has no store records at all"]
    return CheckResult(
        id="P5",
        name="no lost acknowledged writes",
        ok=not evidence,
        evidence=_cap(evidence + store_note + unknown),
        data={"acknowledged": acknowledged, "lost": len(evidence), "unknown_outcome": len(unknown)},
    )


# ---------------------------------------------------------------------------------------------------
# Summaries


def fencing_summary(events: Events) -> dict[str, Any]:
    """What fencing did: store writes accepted and rejected, and the ones it could not stop.

    ``stale_rejected``: rejected with a reason containing "stale" or "owned". ``unfenced``: writes
    the store accepted (at its decision time) while two or more nodes led at once, from a writer that
    was not the highest-epoch leader among them: the store had not yet seen the newer epoch.

    ``after_lease_end``: writes the store accepted from an epoch whose leadership had already ended
    when the store decided (the writer no longer led that epoch, nor a newer one of its own; the
    leadership intervals end at the stepdown view or at ``lease_end_ns``), with the worst lateness
    in ``after_lease_end_max_ms``. A leader checks its lease right before it sends a write, so such a
    write was sent inside the lease and reached the store late: held in the network, or the leader
    was paused between the check and the send. The bound in quorum mode: a write that reaches the
    store within one RPC deadline (0.5 s, or the heartbeat interval if longer) of being sent is
    late by less than that deadline; a later one is accepted only until the store accepts a newer
    epoch, and a successor's first store action is the claim of its epoch, made at once when it
    starts leading (which, by P3, is after the old lease ended). So lateness is at most
    max(RPC deadline, time from the old lease's end to the successor's claim reaching the store).
    ``accepted_unled``: accepted writes from a (writer, epoch) that never led by the history.

    ``claims``: leadership intervals whose first store record (by that node and epoch) is its claim
    (key ``claim/<node>/<epoch>``), and ``claim_delay_max_ms``: the longest time from a node
    starting to lead an epoch to the store's decision on its claim. ``not_claimed_first`` lists the
    (node, epoch) whose first record was something else; ``unclaimed`` counts epochs led without
    any store record (store unreachable, say).
    """
    ordered = sort_events(events)
    origin_ns = _origin_ns(ordered)
    records, _ = _store_log(ordered)
    intervals = leadership_intervals(ordered)
    accepted = [record for record in records if record["accepted"]]
    rejected = [record for record in records if not record["accepted"]]
    stale = [
        record
        for record in rejected
        if "stale" in record["reason"].lower() or "owned" in record["reason"].lower()
    ]
    unfenced = []
    for record in accepted:
        leading = [i for i in intervals if i.start <= record["t_ns"] < i.end]
        if len({interval.node for interval in leading}) < 2:
            continue
        top_epoch = max(interval.epoch for interval in leading)
        top_nodes = {interval.node for interval in leading if interval.epoch == top_epoch}
        if record["writer"] not in top_nodes:
            unfenced.append(
                {
                    "seq": record["seq"],
                    "writer": record["writer"],
                    "epoch": record["epoch"],
                    "key": record["key"],
                    "t_ns": record["t_ns"],
                    "newest_leaders": sorted(top_nodes),
                    "newest_epoch": top_epoch,
                }
            )
    late, unled = _accepted_after_lease_end(accepted, intervals, origin_ns)
    claims = _claims(records, intervals, origin_ns)
    return {
        "accepted": len(accepted),
        "rejected": len(rejected),
        "stale_rejected": len(stale),
        "unfenced": len(unfenced),
        "unfenced_writes": unfenced,
        "after_lease_end": len(late),
        "after_lease_end_max_ms": max((item["late_ms"] for item in late), default=0.0),
        "after_lease_end_writes": late,
        "accepted_unled": len(unled),
        "accepted_unled_writes": unled,
        **claims,
    }


def _accepted_after_lease_end(
    accepted: Sequence[Mapping[str, Any]], intervals: Sequence[Interval], origin_ns: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    late, unled = [], []
    for record in accepted:
        t_ns, writer, epoch = record["t_ns"], record["writer"], record["epoch"]
        own = [i for i in intervals if i.node == writer and i.epoch >= epoch]
        if any(i.start <= t_ns <= i.end for i in own):
            continue  # it leads this epoch, or moved on to a newer epoch of its own (or ends right now)
        led = any(i.epoch == epoch and i.start <= t_ns for i in own)
        ended = [i.end for i in own if i.end < t_ns] if led else []
        item = {
            "seq": record["seq"],
            "writer": writer,
            "epoch": epoch,
            "key": record["key"],
            "t_ns": t_ns,
            "at": _rel(t_ns, origin_ns),
        }
        if ended:
            late.append({**item, "lease_end_ns": max(ended), "late_ms": (t_ns - max(ended)) / 1e6})
        else:
            unled.append(item)
    return late, unled


def _claims(records: Sequence[Mapping[str, Any]], intervals: Sequence[Interval], origin_ns: int) -> dict[str, Any]:
    first_record: dict[tuple[int, int], Mapping[str, Any]] = {}
    for record in records:  # in seq order: the store's decision order
        first_record.setdefault((record["writer"], record["epoch"]), record)
    started: dict[tuple[int, int], int] = {}
    for interval in intervals:
        started.setdefault((interval.node, interval.epoch), interval.start)
    claimed, not_first, delays = 0, [], []
    unclaimed = 0
    for (node, epoch), start_ns in sorted(started.items(), key=lambda item: item[1]):
        record = first_record.get((node, epoch))
        if record is None:
            unclaimed += 1
        elif record["key"].startswith(CLAIM_KEY_PREFIX):
            claimed += 1
            delays.append((record["t_ns"] - start_ns) / 1e6)
        else:
            not_first.append({"node": node, "epoch": epoch, "first_key": record["key"], "led_from": _rel(start_ns, origin_ns)})
    return {
        "claims": claimed,
        "claim_delay_max_ms": max(delays, default=None),
        "not_claimed_first": not_first,
        "unclaimed": unclaimed,
    }


def failover_times(events: Events) -> list[dict[str, Any]]:
    """For each disruption, how long until all live nodes agree on a new (leader, epoch).

    Disruptions: a kill or pause of a node that led at that moment, and every fault start. "New"
    means different from the agreement just before the disruption; ``failover_ms`` is None when no
    new agreement ever formed (e.g. a fault that did not disturb the leader).
    """
    ordered = sort_events(events)
    intervals = leadership_intervals(ordered)
    timeline = AgreementTimeline(ordered)
    found = []
    for event in ordered:
        t_ns = event["t_ns"]
        if event["kind"] == "fault" and event["action"] == "start":
            cause = f"fault {event['name']!r} started"
        elif (
            event["kind"] == "process"
            and event["action"] in ("kill", "pause")
            and any(i.node == event["node"] and i.start < t_ns <= i.end for i in intervals)
        ):
            cause = f"{event['action']} of leader node {event['node']}"
        else:
            continue
        before = timeline.at(t_ns - 1)
        after = timeline.first_from(t_ns, unlike=before)
        found.append(
            {
                "cause": cause,
                "t_ns": t_ns,
                "failover_ms": None if after is None else (after[0] - t_ns) / 1e6,
                "previous": None if before is None else asdict(before),
                "new": None if after is None else asdict(after[1]),
            }
        )
    return found


def availability(events: Events) -> float:
    """The share of the history's time during which all live nodes agreed on one leader.

    The history's time runs from its first event to its last. Agreement is ``agreement_at``'s (every
    live node names the same leader and epoch, and that leader, live, says it leads that epoch),
    followed through the run by the same timeline P4 and the failover times use: a fault that left
    nodes disagreeing, a leaderless election, a node not yet reporting after a (re)start, and the
    cold start before the first agreement all count as unavailable. 0.0 for a history without time.
    """
    ordered = sort_events(events)
    if not ordered or ordered[-1]["t_ns"] <= ordered[0]["t_ns"]:
        return 0.0
    start_ns, end_ns = ordered[0]["t_ns"], ordered[-1]["t_ns"]
    timeline = AgreementTimeline(ordered)
    agreed_ns = 0
    for index, (t_ns, value) in enumerate(zip(timeline.times_ns, timeline.values)):
        until_ns = timeline.times_ns[index + 1] if index + 1 < len(timeline.times_ns) else end_ns
        if value is not None:
            agreed_ns += until_ns - t_ns
    return agreed_ns / (end_ns - start_ns)


def check_all(events: Events, mode: str, bound_ms: float) -> Report:
    """Run every check on one history; ``bound_ms`` is P4's bound on agreement after the heal."""
    mode_info(mode)  # a clear error for an unknown mode
    ordered = sort_events(events)
    by_grants = check_no_overlap_by_grants(ordered, mode)
    results = [
        check_unique_leader_per_epoch(ordered),
        check_store_monotonic(ordered),
        check_no_overlap(ordered),
        by_grants,
        check_agreement_after_heal(ordered, bound_ms),
        check_no_lost_writes(ordered),
        check_answers(ordered),
    ]
    violations = [result.id for result in results if not result.ok]
    grant_split = by_grants.data.get("applicable", False) and bool(by_grants.data["overlaps"])
    fencing = fencing_summary(ordered)
    recovery_ms = next(result.data["recovery_ms"] for result in results if result.id == "P4")
    return Report(
        mode=mode,
        bound_ms=bound_ms,
        results=results,
        violations=violations,
        split_brain="P1" in violations or "P3" in violations or grant_split,
        stale_writes_rejected=fencing["stale_rejected"],
        fencing=fencing,
        failover=failover_times(ordered),
        recovery_ms=recovery_ms,
    )
