"""Reports for people: a text summary and a timeline picture of who led when.

Both are drawn from the history, the checkers' Report and the scenario's Instant judged on it only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.history import leadership_intervals

from .checkers import Report

if TYPE_CHECKING:  # the report reads only the history and the judgements (no cluster code)
    from .scenarios import InstantResult


def _rel_s(t_ns: int, t0_ns: int) -> float:
    return (t_ns - t0_ns) / 1e9


def fault_spans(events: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    """(name, start_ns, end_ns) for network faults and process pauses/kills."""
    end_ns = events[-1]["t_ns"] if events else 0
    spans: list[tuple[str, int, int]] = []
    open_faults: dict[str, int] = {}
    down: dict[str, tuple[str, int]] = {}
    for e in events:
        if e["kind"] == "fault":
            if e["action"] == "start":
                open_faults[e["name"]] = e["t_ns"]
            elif e["name"] in open_faults:
                spans.append((e["name"], open_faults.pop(e["name"]), e["t_ns"]))
        elif e["kind"] == "heal":
            for name, start in open_faults.items():
                spans.append((name, start, e["t_ns"]))
            open_faults.clear()
        elif e["kind"] == "process" and "action" in e and e.get("harness", True):
            key = str(e["node"])
            if e["action"] in ("kill", "pause"):
                down.setdefault(key, (f"{e['action']} {key}", e["t_ns"]))
            elif e["action"] in ("resume", "restart") and key in down:
                label, start = down.pop(key)
                spans.append((label, start, e["t_ns"]))
    spans += [(name, start, end_ns) for name, start in open_faults.items()]
    spans += [(label, start, end_ns) for label, start in down.values()]
    return spans


def text_report(
    report: Report,
    events: list[dict[str, Any]],
    scenario: str,
    seed: int,
    instant: InstantResult | None = None,
    load_per_core: float | None = None,
) -> str:
    t0 = events[0]["t_ns"] if events else 0
    lines = [f"scenario {scenario}  mode {report.mode}  seed {seed}", ""]
    if instant is not None:
        lines.append(f"instant: {'REACHED' if instant.reached else 'NOT REACHED'}  ({instant.description})")
        lines.append(f"        {instant.evidence}")
        if not instant.reached:
            load = "" if load_per_core is None else f" (machine load {load_per_core:.2f} per core)"
            lines.append(
                f"        the checks below judged a milder run than this scenario exists for{load}; try the next seed"
            )
        lines.append("")
    lines.append("faults:")
    for name, start, end in sorted(fault_spans(events), key=lambda s: s[1]):
        lines.append(f"  {_rel_s(start, t0):7.3f}s .. {_rel_s(end, t0):7.3f}s  {name}")
    lines.append("")
    lines.append("leadership (node, epoch, from .. to):")
    for iv in leadership_intervals(events):
        lines.append(
            f"  node {iv.node}  epoch {iv.epoch:3d}  {_rel_s(iv.start, t0):7.3f}s .. {_rel_s(iv.end, t0):7.3f}s"
        )
    f = report.fencing
    lines.append("")
    lines.append(
        f"store: {f.get('accepted', 0)} writes accepted, {f.get('rejected', 0)} rejected "
        f"({f.get('stale_rejected', 0)} stale epochs fenced off, "
        f"{f.get('unfenced', 0)} written by a second leader that fencing could not stop)"
    )
    late = f.get("after_lease_end", 0)
    worst = f" (worst {f.get('after_lease_end_max_ms', 0.0):.1f} ms late)" if late else ""
    lines.append(f"       {late} accepted after the writer's lease had ended{worst}")
    delay = f.get("claim_delay_max_ms")
    delay_text = "" if delay is None else f", at most {delay:.1f} ms after it began to lead"
    not_first = len(f.get("not_claimed_first", []))
    lines.append(
        f"       {f.get('claims', 0)} epochs claimed by their leader's first store action{delay_text}"
        + (f"; {not_first} began with another write" if not_first else "")
        + (f"; {f.get('unclaimed', 0)} led without reaching the store" if f.get("unclaimed") else "")
    )
    for name, r in f.get("resources", {}).items():
        lines.append(
            f"{name}: {r['writes']} writes through its fencing adapter, {r['acknowledged']} acknowledged, "
            f"{r['refused']} refused ({r['stale']} stale, {r['taken']} taken), {r['unknown']} unknown; "
            f"its log holds {r['logged']} accepted"
        )
    lines.append("")
    lines.append("properties:")
    for r in report.results:
        verdict = "N/A " if r.data.get("applicable") is False else ("PASS" if r.ok else "FAIL")
        lines.append(f"  {verdict}  {r.id} {r.name}")
        for ev in r.evidence[:8]:
            lines.append(f"        {ev}")
    lines.append("")
    for fo in report.failover:
        ms = "never" if fo.get("failover_ms") is None else f"{fo['failover_ms']:.0f} ms"
        lines.append(f"failover after {fo['cause']}: {ms}")
    rec = "never" if report.recovery_ms is None else f"{report.recovery_ms:.0f} ms"
    lines.append(f"recovery after the last heal: {rec}")
    lines.append(f"split brain: {'YES' if report.split_brain else 'no'}")
    return "\n".join(lines) + "\n"


def timeline_png(events: list[dict[str, Any]], path: Path, title: str) -> Path:
    """One lane per node, leadership coloured by epoch, faults shaded, rejected writes marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = events[0]["t_ns"] if events else 0
    meta = next((e for e in events if e["kind"] == "meta"), {})
    nodes = sorted(meta.get("nodes") or {e["node"] for e in events if isinstance(e.get("node"), int)})
    lane = {n: i for i, n in enumerate(nodes)}
    intervals = leadership_intervals(events)
    epochs = sorted({iv.epoch for iv in intervals}) or [0]
    cmap = plt.get_cmap("tab10")
    color = {e: cmap(i % 10) for i, e in enumerate(epochs)}

    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.6 * len(nodes)))
    for name, start, end in fault_spans(events):
        ax.axvspan(_rel_s(start, t0), _rel_s(end, t0), color="0.85", zorder=0)
        ax.text(_rel_s(start, t0), len(nodes) - 0.45, name, fontsize=7, va="bottom", color="0.3")
    for iv in intervals:
        if iv.node in lane:
            ax.barh(
                lane[iv.node],
                _rel_s(iv.end, iv.start),
                left=_rel_s(iv.start, t0),
                height=0.6,
                color=color[iv.epoch],
                edgecolor="black",
                linewidth=0.3,
                zorder=2,
            )
            ax.text(_rel_s(iv.start, t0), lane[iv.node] + 0.33, f"e{iv.epoch}", fontsize=7, zorder=3)
    rejected = [e for e in events if e["kind"] == "store" and not e["accepted"] and e["writer"] in lane]
    if rejected:
        ax.scatter(
            [_rel_s(e["t_ns"], t0) for e in rejected],
            [lane[e["writer"]] for e in rejected],
            marker="x",
            color="red",
            s=30,
            zorder=4,
            label="write rejected by fencing",
        )
        ax.legend(loc="upper right", fontsize=8)
    ax.set_yticks(range(len(nodes)), [f"node {n}" for n in nodes])
    ax.set_ylim(-0.6, len(nodes) - 0.1)
    ax.set_xlabel("seconds since start (monotonic)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
