"""What the dashboard draws from the recorded history: the one module that imports the history contract.

The names below come from node.history (the history contract: leadership_intervals, the same the
simulator and the checkers judge by) and chaos.checkers (overlaps, P3's reading of them). Everything
here is pure: events in, a picture of who led when out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chaos.checkers import overlaps
from chaos.report import fault_spans
from node.history import leadership_intervals

# The kinds that shape the timeline: leadership, processes, faults (the rest is counted, not drawn).
TIMELINE_KINDS = frozenset({"meta", "view", "process", "fault", "heal"})
# How far back the timeline goes (the page shows at most 10 minutes).
TIMELINE_HORIZON_NS = 15 * 60 * 1_000_000_000


@dataclass(frozen=True)
class Picture:
    """The timeline at one instant, in milliseconds from the dashboard's origin."""

    intervals: list[dict[str, Any]]  # {node, epoch, start_ms, end_ms, open}
    overlaps: list[dict[str, Any]]  # two leaders at once: {nodes, epochs, start_ms, end_ms, open}
    faults: list[dict[str, Any]]  # network faults and process kills/pauses: {name, start_ms, end_ms, open}

    def to_json(self) -> dict[str, Any]:
        return {"intervals": self.intervals, "overlaps": self.overlaps, "faults": self.faults}


def picture(events: Iterable[Mapping[str, Any]], now_ns: int, origin_ns: int) -> Picture:
    """Leadership intervals (as the checkers compute them), the overlaps P3 would flag (a split brain),
    and the fault spans the chaos report shades, up to `now_ns`. Whatever is still going on at `now_ns`
    is marked open, so the page can draw it on to its own "now"."""
    # A marker at `now_ns`: the readings close whatever is still open at the history's last event.
    marked = [*events, {"t_ns": now_ns, "kind": "meta", "now": True}]
    marked.sort(key=lambda e: e["t_ns"])
    since = now_ns - TIMELINE_HORIZON_NS

    def ms(t_ns: int) -> float:
        return round((t_ns - origin_ns) / 1e6, 1)

    def recent(end_ns: int) -> bool:
        return end_ns >= since

    intervals = [
        {"node": iv.node, "epoch": iv.epoch, "start_ms": ms(iv.start), "end_ms": ms(iv.end), "open": iv.end == now_ns}
        for iv in leadership_intervals(marked)
        if recent(iv.end)
    ]
    two = [
        {
            "nodes": [o.first.node, o.second.node],
            "epochs": [o.first.epoch, o.second.epoch],
            "start_ms": ms(o.start_ns),
            "end_ms": ms(o.end_ns),
            "open": o.end_ns == now_ns,
        }
        for o in overlaps(marked)
        if recent(o.end_ns)
    ]
    faults = [
        {"name": name, "start_ms": ms(start), "end_ms": ms(end), "open": end == now_ns}
        for name, start, end in fault_spans(marked)
        if recent(end)
    ]
    return Picture(intervals, two, sorted(faults, key=lambda f: f["start_ms"]))
