"""Checkers for the properties of docs/design.md section 3 (P1..P6, P3g), judged from a recorded history alone.

The rules are node.history's: check_all builds one History of the run (nanoseconds) and calls its
judges (unique_leaders, store_monotonic, no_overlap, no_overlap_by_grants, agreement_after_heal,
no_lost_writes, true_answers), the same the simulator calls on its own runs in ticks. This module
turns their verdicts into CheckResults: the evidence in words (node.history.describe, times
relative to the first event) and the figures the reports read. Each check_* function also takes a
run's events on its own (any order; sorted here).

P3 is judged twice: from what leaders reported about themselves (views and lease ends), and, as
P3g, from what followers granted (their "grant" and "release" events), which does not trust the
leaders at all (docs/design.md section 7). P3g is enforced in modes whose acknowledgements are
promises; classic Bully makes none, so there it does not apply. Classic mode runs the same checks;
finding P1/P3 violations there is the expected demonstration, and the caller decides what is expected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from node.core import REGISTRY, mode_info
from node.history import (
    NS,
    STORE,
    AnswerTolerance,
    BackedTogether,
    DoublePromise,
    History,
    Interval,
    Span,
    StoreConflict,
    StoreEntry,
    Unbacked,
    Verdict,
    anchor_words,
    describe,
    intersect,
    late_writes,
    no_lost_writes,
    no_overlap,
    no_overlap_by_grants,
    recovery,
    recovery_lines,
    sort_events,
    store_monotonic,
    true_answers,
    unique_leaders,
    write_words,
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


def history_of(events: Events | History, mode: str | None = None) -> History:
    """The History of a recorded run (nanoseconds), or ``events`` itself if it is one already.

    ``mode`` says whether acknowledgements are promises (P3g applies, P6's horizon is the lease);
    without it, the meta event's mode says, and a history without one is judged as quorum's.
    """
    if isinstance(events, History):
        return events
    ordered = sort_events(events)
    if mode is not None:
        promises = mode_info(mode).promises
    else:
        meta_mode = next((e.get("mode") for e in ordered if e["kind"] == "meta"), None)
        promises = REGISTRY[meta_mode].promises if meta_mode in REGISTRY else True
    return History(ordered, NS, promises=promises)


def _rel(t_ns: int, origin_ns: int) -> str:
    return NS.at(t_ns, origin_ns)


def _origin_ns(ordered: Sequence[Mapping[str, Any]]) -> int:
    return ordered[0]["t_ns"] if ordered else 0


def _cap(lines: list[str]) -> list[str]:
    if len(lines) <= EVIDENCE_LIMIT:
        return lines
    return lines[:EVIDENCE_LIMIT] + [f"... and {len(lines) - EVIDENCE_LIMIT} more"]


def _words(verdict: Verdict, h: History) -> list[str]:
    return [describe(finding, h) for finding in verdict.findings]


def _ms(span: Span | Interval) -> float:
    return (span.end - span.start) / 1e6


# ---------------------------------------------------------------------------------------------------
# P1..P6


def check_unique_leader_per_epoch(events: Events | History) -> CheckResult:
    """P1: at most one node ever becomes leader of a given epoch."""
    return _p1(history_of(events))


def _p1(h: History) -> CheckResult:
    verdict = unique_leaders(h)
    return CheckResult(
        id="P1",
        name="unique leader per epoch",
        ok=verdict.ok,
        evidence=_cap(_words(verdict, h)),
        data={
            "epochs_led": len(h.leaders_by_epoch),
            "conflicts": [{"epoch": f.epoch, "nodes": [node for node, _ in f.leaders]} for f in verdict.findings],
        },
    )


def check_store_monotonic(events: Events | History) -> CheckResult:
    """P2: no fenced resource (the store, and each database whose log the history holds) accepts an
    epoch below one it accepted, nor one epoch from two writers."""
    return _p2(history_of(events))


def _p2(h: History) -> CheckResult:
    verdict = store_monotonic(h)
    accepted = [entry for entry in h.store if entry.accepted]

    def resource(finding: Any) -> str:
        return (finding.kept if isinstance(finding, StoreConflict) else finding.entry).resource

    def figures(name: str) -> dict[str, Any]:
        log = h.logs.get(name, [])
        taken = [entry for entry in log if entry.accepted]
        return {
            "records": len(log),
            "accepted": len(taken),
            "highest_epoch": max((entry.epoch for entry in taken), default=None),
            "violations": sum(1 for finding in verdict.findings if resource(finding) == name),
        }

    return CheckResult(
        id="P2",
        name="store epochs monotonic, one writer per epoch",
        ok=verdict.ok,
        evidence=_cap(_words(verdict, h)),
        data={
            "records": len(h.store),
            "accepted": len(accepted),
            "highest_epoch": max((entry.epoch for entry in accepted), default=None),
            # where databases were written through fencing adapters: every resource judged, the store's
            # figures again under "store"
            **({"resources": {name: figures(name) for name in h.resources}} if _adapters(h) else {}),
        },
    )


def _adapters(h: History) -> bool:
    """Whether the history has fenced resources besides the store (databases behind fencing adapters)."""
    return any(name != STORE for name in h.resources)


def overlaps(events: Events | History) -> list[Overlap]:
    """Every pair of leadership intervals of different nodes that overlap in time, by start."""
    return [Overlap(f.first, f.second, f.span.start, f.span.end) for f in no_overlap(history_of(events)).findings]


def check_no_overlap(events: Events | History) -> CheckResult:
    """P3: leadership intervals of different nodes never overlap in time."""
    return _p3(history_of(events))


def _p3(h: History) -> CheckResult:
    verdict = no_overlap(h)
    found = overlaps(h)
    durations_ms = [overlap.duration_ms for overlap in found]
    total_ms = sum(durations_ms)
    max_ms = max(durations_ms, default=0.0)
    if found:
        times = "1 time" if len(found) == 1 else f"{len(found)} times"
        summary = f"two leaders coexisted {times} for up to {max_ms:.1f} ms"
    else:
        summary = "two leaders never coexisted"
    return CheckResult(
        id="P3",
        name="no overlapping leadership",
        ok=verdict.ok,
        evidence=_cap([summary] + _words(verdict, h) if found else []),
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


def grant_backed_intervals(events: Events | History) -> dict[int, list[Span]]:
    """For each node, when a majority of the membership stood behind it by their own promises.

    At time t a node's support is its own vote (while its process exists and it holds no live
    promise to another node: ``node.history.own_votes``) plus every other node holding a live grant
    window to it. The membership is the meta event's node list (plus any node seen in the history).
    """
    return history_of(events).backed


def check_no_overlap_by_grants(events: Events | History, mode: str = "quorum") -> CheckResult:
    """P3g: leadership judged from the followers' promises, not from what leaders believed.

    (a) the grant-backed intervals of different nodes never overlap (in quorum mode that would need
    a follower to break its promise); (b) every self-reported leadership interval lies inside its
    node's grant-backed intervals (a leader acting without a majority's live promises is unsafe even
    if no second leader appeared), with the time outside reported per interval; (c) any
    disagreement with P3 (the leaders' own reports) is listed; (d) no member grants a node while its
    promise to another lives (rule 4 itself). (a), (b) and (d) fail the check; (c) is for the reader.
    No slack is allowed: a follower's promise (0.8 election timeouts from when it received the
    request, on its tick clock) outlasts the leader's lease (0.7 from when it sent it), so a correct
    run is inside its grants to the nanosecond. Classic mode: not applicable.
    """
    return _p3g(history_of(events, mode), mode)


def _p3g(h: History, mode: str) -> CheckResult:
    name = "no overlap by followers' grants"
    verdict = no_overlap_by_grants(h)
    if not verdict.applicable:
        return CheckResult(
            "P3g", name, True, [f"not applicable in {mode} mode: followers make no promises"], {"applicable": False}
        )
    backed = h.backed
    together = [f for f in verdict.findings if isinstance(f, BackedTogether)]
    unbacked = [f for f in verdict.findings if isinstance(f, Unbacked)]
    broken = [f for f in verdict.findings if isinstance(f, DoublePromise)]
    evidence = [describe(f, h) for f in together] + [describe(f, h) for f in unbacked]
    if unbacked and not h.grants:
        evidence.append("the history has no grant events at all: nodes recorded no promises")
    evidence += [describe(f, h) for f in broken]
    # (c) disagreement with the leaders' own reports
    disagreements = []
    for overlap in overlaps(h):
        a, b = overlap.first.node, overlap.second.node
        by_grants = intersect(intersect(backed.get(a, []), backed.get(b, [])), [Span(overlap.start_ns, overlap.end_ns)])
        if not by_grants:
            disagreements.append(
                f"P3 saw nodes {a} and {b} lead together from {h.at(overlap.start_ns)} "
                f"for {overlap.duration_ms:.1f} ms; the followers' grants back no such overlap"
            )
    for f in together:
        led_a = [Span(i.start, i.end) for i in h.intervals if i.node == f.a]
        led_b = [Span(i.start, i.end) for i in h.intervals if i.node == f.b]
        if not intersect(intersect(led_a, led_b), [f.span]):
            disagreements.append(
                f"the followers' grants backed nodes {f.a} and {f.b} together from "
                f"{h.at(f.span.start)} for {_ms(f.span):.1f} ms; their own reports "
                "show no overlap (P3 missed it)"
            )
    outside = [
        {
            "node": f.interval.node,
            "epoch": f.interval.epoch,
            "start_ns": f.interval.start,
            "end_ns": f.interval.end,
            "outside_ms": sum(_ms(gap) for gap in f.gaps),
            "gaps": [[gap.start, gap.end] for gap in f.gaps],
        }
        for f in unbacked
    ]
    summary = (
        f"{len(together)} overlaps by grants, {len(outside)} leadership intervals outside "
        f"their grants, {len(broken)} promises broken, {len(disagreements)} disagreements with P3 "
        f"({h.grants} grants recorded)"
    )
    return CheckResult(
        id="P3g",
        name=name,
        ok=verdict.ok,
        evidence=_cap(([summary] if not verdict.ok else []) + evidence + disagreements),
        data={
            "applicable": True,
            "summary": summary,
            "grants": h.grants,
            "overlaps": [
                {"nodes": [f.a, f.b], "start_ns": f.span.start, "end_ns": f.span.end, "duration_ms": _ms(f.span)}
                for f in together
            ],
            "max_overlap_ms": max((_ms(f.span) for f in together), default=0.0),
            "outside_grants": outside,
            "broken_promises": [
                {
                    "node": d.node,
                    "granted": d.leader,
                    "epoch": d.epoch,
                    "t_ns": d.at,
                    "promised": d.other,
                    "promised_epoch": d.other_epoch,
                    "until_ns": d.until,
                }
                for d in broken
            ],
            "max_outside_ms": max((item["outside_ms"] for item in outside), default=0.0),
            "disagreements_with_p3": disagreements,
            "grant_backed": {str(node): [[span.start, span.end] for span in spans] for node, spans in backed.items()},
        },
    )


def check_agreement_after_heal(events: Events | History, bound_ms: float) -> CheckResult:
    """P4: after the faults end, all live nodes agree on one leader within ``bound_ms``.

    The clock starts at the last heal; without a heal, at the last fault stop or process event (a
    kill counts too: the survivors must settle without the victim); without any, at the first event.
    Network faults still active at the end of the history make the check fail: nothing healed.
    """
    return _p4(history_of(events), bound_ms)


def _p4(h: History, bound_ms: float) -> CheckResult:
    found = recovery(h, round(bound_ms * 1_000_000))  # node.history.agreement_after_heal's account
    data: dict[str, Any] = {"bound_ms": bound_ms, "recovery_ms": None}
    if found.anchor is not None:
        data.update(anchor=anchor_words(found.anchor), anchor_t_ns=found.anchor["t_ns"])
    if found.agreed is not None and found.took is not None:
        data.update(recovery_ms=found.took / 1e6, leader=found.agreed[1].leader, epoch=found.agreed[1].epoch)
    return CheckResult("P4", "agreement after heal", found.ok, recovery_lines(found, h), data)


def answer_tolerance_ns(ordered: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """P6's tolerance for one recorded run: (transit, horizon) in ns (node.history.recorded_tolerance),
    with the horizon of the meta event's mode."""
    tolerance = history_of(ordered).tolerance
    return tolerance.transit, tolerance.horizon


def check_answers(events: Events | History) -> CheckResult:
    """P6: every answer a node gave a client that asked who leads (GetLeader, recorded by the
    harness's AnswerRecorder) named a node that led that epoch at that moment, within the tolerance
    of node.history.recorded_tolerance. A node that never led the epoch it was named for is never forgiven."""
    return _p6(history_of(events))


def _p6(h: History) -> CheckResult:
    verdict = true_answers(h)
    tolerance: AnswerTolerance = h.tolerance
    in_words = (
        f"tolerance {tolerance.transit / 1e6:.0f} ms of transit, {tolerance.horizon / 1e6:.0f} ms after "
        "a leadership ended early"
    )
    false = len(verdict.findings)
    return CheckResult(
        id="P6",
        name="answers name a leader that leads",
        ok=verdict.ok,
        evidence=_cap(
            [f"{false} of {len(h.answers)} answers that named a leader were false ({in_words})"] + _words(verdict, h)
        ),
        data={
            "answers": len(h.answers),
            "false": false,
            "transit_ms": tolerance.transit / 1e6,
            "horizon_ms": tolerance.horizon / 1e6,
        },
    )


def check_no_lost_writes(events: Events | History) -> CheckResult:
    """P5: every write acknowledged to its writer is in its resource's log (the store's, or the
    database's it was written to), accepted, as written.

    Writes without a reply (accepted null) have an unknown outcome: reported, never a loss.
    """
    return _p5(history_of(events))


def _p5(h: History) -> CheckResult:
    verdict = no_lost_writes(h)
    acknowledged = sum(1 for write in h.writes if write["accepted"])
    unknown = [
        f"unknown outcome (not a loss): {write_words(write, h)}, error {write['error']!r}"
        for write in h.writes
        if write["accepted"] is None
    ]
    by_resource: dict[str, dict[str, int]] = {
        name: {"acknowledged": 0, "lost": 0, "unknown_outcome": 0} for name in h.resources
    }
    for write in h.writes:
        counts = by_resource[write.get("resource", STORE)]
        counts["acknowledged"] += bool(write["accepted"])
        counts["unknown_outcome"] += write["accepted"] is None
    for finding in verdict.findings:
        by_resource[finding.write.get("resource", STORE)]["lost"] += 1
    log_notes = [
        f"the history has no {'store records' if name == STORE else f'{name} log'} at all"
        for name, counts in by_resource.items()
        if counts["acknowledged"] and not h.logs.get(name)
    ]
    return CheckResult(
        id="P5",
        name="no lost acknowledged writes",
        ok=verdict.ok,
        evidence=_cap(_words(verdict, h) + log_notes + unknown),
        data={
            "acknowledged": acknowledged,
            "lost": len(verdict.findings),
            "unknown_outcome": len(unknown),
            **({"resources": by_resource} if _adapters(h) else {}),
        },
    )


# ---------------------------------------------------------------------------------------------------
# Summaries


def fencing_summary(events: Events | History) -> dict[str, Any]:
    """What fencing did: store writes accepted and rejected, and the ones it could not stop.

    ``stale_rejected``: rejected with a reason containing "stale" or "owned". ``unfenced``: writes
    the store accepted (at its decision time) while two or more nodes led at once, from a writer that
    was not the highest-epoch leader among them: the store had not yet seen the newer epoch.

    ``after_lease_end``: writes the store accepted from an epoch whose leadership had already ended
    when the store decided (node.history.late_writes: the writer no longer led that epoch, nor a
    newer one of its own; the leadership intervals end at the stepdown view or at ``lease_end_ns``),
    with the worst lateness in ``after_lease_end_max_ms``. A leader checks its lease right before it
    sends a write, so such a write was sent inside the lease and reached the store late: held in the
    network, or the leader was paused between the check and the send. The bound in quorum mode: a
    write that reaches the store within one RPC deadline (0.5 s, or the heartbeat interval if
    longer) of being sent is late by less than that deadline; a later one is accepted only until the
    store accepts a newer epoch, and a successor's first store action is the claim of its epoch,
    made at once when it starts leading (which, by P3, is after the old lease ended). So lateness is
    at most max(RPC deadline, time from the old lease's end to the successor's claim reaching the
    store). ``accepted_unled``: accepted writes from a (writer, epoch) that never led by the history.

    ``resources``: the same for each database written through a fencing adapter (``resource_summary``).

    ``claims``: leadership intervals whose first store record (by that node and epoch) is its claim
    (key ``claim/<node>/<epoch>``), and ``claim_delay_max_ms``: the longest time from a node
    starting to lead an epoch to the store's decision on its claim. ``not_claimed_first`` lists the
    (node, epoch) whose first record was something else; ``unclaimed`` counts epochs led without
    any store record (store unreachable, say).
    """
    h = history_of(events)
    accepted = [entry for entry in h.store if entry.accepted]
    rejected = [entry for entry in h.store if not entry.accepted]
    stale = [entry for entry in rejected if "stale" in entry.reason.lower() or "owned" in entry.reason.lower()]
    unfenced = []
    for entry in accepted:
        leading = [i for i in h.intervals if i.start <= entry.at < i.end]
        if len({interval.node for interval in leading}) < 2:
            continue
        top_epoch = max(interval.epoch for interval in leading)
        top_nodes = {interval.node for interval in leading if interval.epoch == top_epoch}
        if entry.writer not in top_nodes:
            unfenced.append(
                {
                    "seq": entry.seq,
                    "writer": entry.writer,
                    "epoch": entry.epoch,
                    "key": entry.key,
                    "t_ns": entry.at,
                    "newest_leaders": sorted(top_nodes),
                    "newest_epoch": top_epoch,
                }
            )
    late, unled = late_writes(h)

    def item(entry: StoreEntry) -> dict[str, Any]:
        return {
            "seq": entry.seq,
            "writer": entry.writer,
            "epoch": entry.epoch,
            "key": entry.key,
            "t_ns": entry.at,
            "at": h.at(entry.at),
        }

    late_items = [{**item(w.entry), "lease_end_ns": w.lead_end, "late_ms": w.late / 1e6} for w in late]
    return {
        "resources": resource_summary(h),
        "accepted": len(accepted),
        "rejected": len(rejected),
        "stale_rejected": len(stale),
        "unfenced": len(unfenced),
        "unfenced_writes": unfenced,
        "after_lease_end": len(late_items),
        "after_lease_end_max_ms": max((w["late_ms"] for w in late_items), default=0.0),
        "after_lease_end_writes": late_items,
        "accepted_unled": len(unled),
        "accepted_unled_writes": [item(entry) for entry in unled],
        **_claims(h),
    }


def resource_summary(h: History) -> dict[str, dict[str, int]]:
    """Per fenced resource other than the store (a database behind a fencing adapter): its writers'
    writes and their outcomes (``acknowledged``, ``refused`` of which ``stale`` and ``taken``,
    ``unknown``), and ``logged``, the accepted writes its log holds. A writer records a refusal with
    the exception's name first in its error ("StaleEpoch: ...", "EpochTaken: ...")."""
    out: dict[str, dict[str, int]] = {}
    for name in h.resources:
        if name == STORE:
            continue
        writes = [w for w in h.writes if w.get("resource", STORE) == name]
        refused = [w for w in writes if w["accepted"] is False]
        out[name] = {
            "writes": len(writes),
            "acknowledged": sum(1 for w in writes if w["accepted"]),
            "refused": len(refused),
            "stale": sum(1 for w in refused if (w["error"] or "").startswith("StaleEpoch")),
            "taken": sum(1 for w in refused if (w["error"] or "").startswith("EpochTaken")),
            "unknown": sum(1 for w in writes if w["accepted"] is None),
            "logged": sum(1 for entry in h.logs.get(name, []) if entry.accepted),
        }
    return out


def _claims(h: History) -> dict[str, Any]:
    first_record: dict[tuple[int, int], StoreEntry] = {}
    for entry in h.store:  # in seq order: the store's decision order
        first_record.setdefault((entry.writer, entry.epoch), entry)
    started: dict[tuple[int, int], int] = {}
    for interval in h.intervals:
        started.setdefault((interval.node, interval.epoch), interval.start)
    claimed, not_first, delays = 0, [], []
    unclaimed = 0
    for (node, epoch), start_ns in sorted(started.items(), key=lambda item: item[1]):
        entry = first_record.get((node, epoch))
        if entry is None:
            unclaimed += 1
        elif entry.key.startswith(CLAIM_KEY_PREFIX):
            claimed += 1
            delays.append((entry.at - start_ns) / 1e6)
        else:
            not_first.append({"node": node, "epoch": epoch, "first_key": entry.key, "led_from": h.at(start_ns)})
    return {
        "claims": claimed,
        "claim_delay_max_ms": max(delays, default=None),
        "not_claimed_first": not_first,
        "unclaimed": unclaimed,
    }


def failover_times(events: Events | History) -> list[dict[str, Any]]:
    """For each disruption, how long until all live nodes agree on a new (leader, epoch).

    Disruptions: a kill or pause of a node that led at that moment, and every fault start. "New"
    means different from the agreement just before the disruption; ``failover_ms`` is None when no
    new agreement ever formed (e.g. a fault that did not disturb the leader).
    """
    h = history_of(events)
    found = []
    for event in h.events:
        t_ns = event["t_ns"]
        if event["kind"] == "fault" and event["action"] == "start":
            cause = f"fault {event['name']!r} started"
        elif (
            event["kind"] == "process"
            and event["action"] in ("kill", "pause")
            and any(i.node == event["node"] and i.start < t_ns <= i.end for i in h.intervals)
        ):
            cause = f"{event['action']} of leader node {event['node']}"
        else:
            continue
        before = h.timeline.at(t_ns - 1)
        after = h.timeline.first_from(t_ns, unlike=before)
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


def availability(events: Events | History) -> float:
    """The share of the history's time during which all live nodes agreed on one leader.

    The history's time runs from its first event to its last. Agreement is ``agreement_at``'s (every
    live node names the same leader and epoch, and that leader, live, says it leads that epoch),
    followed through the run by the same timeline P4 and the failover times use: a fault that left
    nodes disagreeing, a leaderless election, a node not yet reporting after a (re)start, and the
    cold start before the first agreement all count as unavailable. 0.0 for a history without time.
    """
    h = history_of(events)
    ordered = h.events
    if not ordered or ordered[-1]["t_ns"] <= ordered[0]["t_ns"]:
        return 0.0
    start_ns, end_ns = ordered[0]["t_ns"], ordered[-1]["t_ns"]
    timeline = h.timeline
    agreed_ns = 0
    for index, (t_ns, value) in enumerate(zip(timeline.times_ns, timeline.values)):
        until_ns = timeline.times_ns[index + 1] if index + 1 < len(timeline.times_ns) else end_ns
        if value is not None:
            agreed_ns += until_ns - t_ns
    return agreed_ns / (end_ns - start_ns)


def check_all(events: Events, mode: str, bound_ms: float) -> Report:
    """Run every check on one history, built once; ``bound_ms`` is P4's bound on agreement after the heal."""
    mode_info(mode)  # a clear error for an unknown mode
    h = history_of(events, mode)
    by_grants = _p3g(h, mode)
    results = [_p1(h), _p2(h), _p3(h), by_grants, _p4(h, bound_ms), _p5(h), _p6(h)]
    violations = [result.id for result in results if not result.ok]
    grant_split = by_grants.data.get("applicable", False) and bool(by_grants.data["overlaps"])
    fencing = fencing_summary(h)
    recovery_ms = next(result.data["recovery_ms"] for result in results if result.id == "P4")
    return Report(
        mode=mode,
        bound_ms=bound_ms,
        results=results,
        violations=violations,
        split_brain="P1" in violations or "P3" in violations or grant_split,
        stale_writes_rejected=fencing["stale_rejected"],
        fencing=fencing,
        failover=failover_times(h),
        recovery_ms=recovery_ms,
    )
