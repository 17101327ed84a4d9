"""Checkers for the properties of DESIGN.md section 3 (P1..P5), judged from a recorded history alone.

Every checker takes the events of one run (any order; they are sorted by t_ns here) and returns a
CheckResult whose evidence names nodes, epochs and times relative to the first event, so a failure
can be read without opening the history. Classic mode runs the same checks; finding P1/P3 violations
there is the expected demonstration, and the caller decides what is expected.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from chaos.history import (
    DEAD_OR_FRESH_ACTIONS,
    DOWN_ACTIONS,
    Interval,
    leadership_intervals,
    sort_events,
)

Events = Iterable[Mapping[str, Any]]

MODES = ("classic", "quorum")
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
class Agreement:
    """All live nodes follow ``leader`` at ``epoch``, and ``leader`` itself leads that epoch."""

    leader: int
    epoch: int


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
    split_brain: bool  # P1 or P3 failed
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


def _members(ordered: Sequence[Mapping[str, Any]]) -> set[int]:
    """The membership: the meta event's node list, plus any node that reported or was acted on."""
    members = {
        event["node"]
        for event in ordered
        if event["kind"] in ("view", "process") and isinstance(event["node"], int)
    }
    meta = next((event for event in ordered if event["kind"] == "meta"), None)
    if meta is not None:
        members.update(meta["nodes"])
    return members


class _ClusterState:
    """Latest view and liveness of every node, advanced one event at a time."""

    def __init__(self, members: set[int]) -> None:
        self.members = set(members)
        self.views: dict[int, Mapping[str, Any]] = {}
        self.down: dict[int, str] = {}  # node -> the action that took it down (kill, pause, stop)

    def apply(self, event: Mapping[str, Any]) -> None:
        if event["kind"] == "view":
            self.members.add(event["node"])
            self.views[event["node"]] = event
        elif event["kind"] == "process" and isinstance(event["node"], int):
            node, action = event["node"], event["action"]
            self.members.add(node)
            if action in DOWN_ACTIONS:
                self.down[node] = action
            else:
                self.down.pop(node, None)
            if action in DEAD_OR_FRESH_ACTIONS:
                self.views.pop(node, None)

    def live(self) -> list[int]:
        return sorted(self.members - self.down.keys())

    def agreement(self) -> Agreement | None:
        live = self.live()
        if not live or any(node not in self.views for node in live):
            return None
        named = {(self.views[node]["leader"], self.views[node]["epoch"]) for node in live}
        if len(named) != 1:
            return None
        leader, epoch = named.pop()
        if leader not in live:  # also covers "no leader" (None)
            return None
        own = self.views[leader]
        if own["role"] != "leader" or own["epoch"] != epoch:
            return None
        return Agreement(leader, epoch)

    def describe(self) -> str:
        parts = []
        for node in sorted(self.members):
            view = self.views.get(node)
            if node in self.down:
                parts.append(f"node {node} {'paused' if self.down[node] == 'pause' else 'down'}")
            elif view is None:
                parts.append(f"node {node} has reported no view since it started")
            elif view["role"] == "leader":
                parts.append(f"node {node} leads epoch {view['epoch']}")
            elif view["leader"] is None:
                parts.append(f"node {node} {view['role']} at epoch {view['epoch']} with no leader")
            else:
                parts.append(
                    f"node {node} {view['role']} of {view['leader']} at epoch {view['epoch']}"
                )
        return "; ".join(parts)


def _state_at(ordered: Sequence[Mapping[str, Any]], t_ns: int) -> _ClusterState:
    state = _ClusterState(_members(ordered))
    for event in ordered:
        if event["t_ns"] > t_ns:
            break
        state.apply(event)
    return state


def agreement_at(events: Events, t_ns: int) -> Agreement | None:
    """The agreement among live nodes once every event at or before ``t_ns`` happened, if any.

    Agreement: every live node (not killed/stopped without a later start/restart, not paused) has
    reported a view since its process started, all these latest views name the same leader L and
    epoch e, L is live and L's own latest view is role leader at epoch e.
    """
    return _state_at(sort_events(events), t_ns).agreement()


class _Timeline:
    """The agreement over a whole run: the value after each time it changed."""

    def __init__(self, ordered: Sequence[Mapping[str, Any]]) -> None:
        state = _ClusterState(_members(ordered))
        self.times_ns: list[int] = []
        self.values: list[Agreement | None] = []
        current: Agreement | None = None
        for index, event in enumerate(ordered):
            state.apply(event)
            if index + 1 < len(ordered) and ordered[index + 1]["t_ns"] == event["t_ns"]:
                continue  # judge only once every event at this instant happened
            agreement = state.agreement()
            if agreement != current:
                self.times_ns.append(event["t_ns"])
                self.values.append(agreement)
                current = agreement

    def at(self, t_ns: int) -> Agreement | None:
        index = bisect_right(self.times_ns, t_ns) - 1
        return self.values[index] if index >= 0 else None

    def first_from(
        self, t_ns: int, unlike: Agreement | None = None
    ) -> tuple[int, Agreement] | None:
        """The first moment at or after ``t_ns`` with an agreement other than ``unlike``."""
        current = self.at(t_ns)
        if current is not None and current != unlike:
            return t_ns, current
        for index in range(bisect_right(self.times_ns, t_ns), len(self.times_ns)):
            value = self.values[index]
            if value is not None and value != unlike:
                return self.times_ns[index], value
        return None


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
# P1..P5


def check_unique_leader_per_epoch(events: Events) -> CheckResult:
    """P1: at most one node ever becomes leader of a given epoch."""
    ordered = sort_events(events)
    origin_ns = _origin_ns(ordered)
    first_led_ns: dict[int, dict[int, int]] = {}  # epoch -> node -> first time it led that epoch
    for event in ordered:
        if event["kind"] == "view" and event["role"] == "leader":
            first_led_ns.setdefault(event["epoch"], {}).setdefault(event["node"], event["t_ns"])
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
    intervals = leadership_intervals(events)  # sorted by start
    found = []
    for index, first in enumerate(intervals):
        for second in intervals[index + 1 :]:
            if second.start_ns >= first.end_ns:
                break  # later intervals start even later
            if second.node != first.node:
                found.append(Overlap(first, second, second.start_ns, min(first.end_ns, second.end_ns)))
    return sorted(found, key=lambda overlap: (overlap.start_ns, overlap.first.node))


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

    first = _Timeline(ordered).first_from(anchor_ns)
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
    evidence.append(f"at {_rel(seen_ns, origin_ns)}: {_state_at(ordered, seen_ns).describe()}")
    return result(False, evidence)


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
    """
    ordered = sort_events(events)
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
        leading = [i for i in intervals if i.start_ns <= record["t_ns"] < i.end_ns]
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
    return {
        "accepted": len(accepted),
        "rejected": len(rejected),
        "stale_rejected": len(stale),
        "unfenced": len(unfenced),
        "unfenced_writes": unfenced,
    }


def failover_times(events: Events) -> list[dict[str, Any]]:
    """For each disruption, how long until all live nodes agree on a new (leader, epoch).

    Disruptions: a kill or pause of a node that led at that moment, and every fault start. "New"
    means different from the agreement just before the disruption; ``failover_ms`` is None when no
    new agreement ever formed (e.g. a fault that did not disturb the leader).
    """
    ordered = sort_events(events)
    intervals = leadership_intervals(ordered)
    timeline = _Timeline(ordered)
    found = []
    for event in ordered:
        t_ns = event["t_ns"]
        if event["kind"] == "fault" and event["action"] == "start":
            cause = f"fault {event['name']!r} started"
        elif (
            event["kind"] == "process"
            and event["action"] in ("kill", "pause")
            and any(i.node == event["node"] and i.start_ns < t_ns <= i.end_ns for i in intervals)
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


def check_all(events: Events, mode: str, bound_ms: float) -> Report:
    """Run every check on one history; ``bound_ms`` is P4's bound on agreement after the heal."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    ordered = sort_events(events)
    results = [
        check_unique_leader_per_epoch(ordered),
        check_store_monotonic(ordered),
        check_no_overlap(ordered),
        check_agreement_after_heal(ordered, bound_ms),
        check_no_lost_writes(ordered),
    ]
    violations = [result.id for result in results if not result.ok]
    fencing = fencing_summary(ordered)
    recovery_ms = next(result.data["recovery_ms"] for result in results if result.id == "P4")
    return Report(
        mode=mode,
        bound_ms=bound_ms,
        results=results,
        violations=violations,
        split_brain="P1" in violations or "P3" in violations,
        stale_writes_rejected=fencing["stale_rejected"],
        fencing=fencing,
        failover=failover_times(ordered),
        recovery_ms=recovery_ms,
    )
