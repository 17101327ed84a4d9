"""Experiments on the simulator (and their plots): how the algorithms compare.

* `figure16`: the randomized-timeout experiment of the Raft paper (Ongaro and Ousterhout, 2014,
  section 9.3, figure 16): 5 nodes, broadcast time about 15 ms, heartbeat half the minimum election
  timeout, the leader crashed at a uniformly random point of its heartbeat interval; the time
  without a leader, per range of election timeouts.
* `messages`: messages per election after a leader failure, per mode and membership size, beside
  the textbook figures (Bully: n-2 coordinator messages in the best case, O(n^2) in the worst; ring:
  2n for one initiator, O(n log n) on average and O(n^2) at worst for Chang-Roberts).

    bullyproof sim figure16 [--trials 1000] [--json] [--out DIR]
    bullyproof sim messages [--sizes 3,5,9,15,25] [--json] [--out DIR]

The same two measures on real node processes are in bench.real (`--what figure16`,
`--what messages`); they draw their plots with the functions here, beside the simulator's lines.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from node.core import BecameLeader, MsgType, Timing, mode_info, mode_names
from node.core.raft import RaftElector
from node.sim.network import Network

# Figure 16's lines: election timeouts drawn uniformly from [low, high] ms.
FIGURE16_RANGES_MS = ((150, 150), (150, 151), (150, 155), (150, 175), (150, 200), (150, 300))
# The paper's broadcast time is about 15 ms (send to all and hear back): one way, 5..10 ms here.
ONE_WAY_DELAY_MS = (5, 10)
HEARTBEATS = (MsgType.HEARTBEAT, MsgType.HEARTBEAT_ACK)


@dataclass(frozen=True)
class Line:
    low_ms: int
    high_ms: int
    samples_ms: tuple[int, ...]  # time without a leader, one per trial (None-free: trials that elected)
    failed: int  # trials with no new leader within the limit

    def to_dict(self) -> dict:
        s = sorted(self.samples_ms)
        return {
            "range_ms": f"{self.low_ms}-{self.high_ms}",
            "trials": len(s) + self.failed,
            "failed": self.failed,
            "median_ms": round(statistics.median(s), 1) if s else None,
            "p90_ms": s[int(0.9 * (len(s) - 1))] if s else None,
            "worst_ms": s[-1] if s else None,
        }


def figure16_line(
    low_ms: int,
    high_ms: int,
    trials: int,
    seed: int = 0,
    limit_ms: int = 10_000,
    heartbeat_ms: int | None = None,
    one_way_delay_ms: tuple[int, int] = ONE_WAY_DELAY_MS,
) -> Line:
    """Time from the leader's crash to the next leader, over `trials` seeded runs (1 tick = 1 ms).

    The heartbeat is half the minimum timeout, as in the paper, unless `heartbeat_ms` says otherwise.
    """
    timing = Timing.from_ms(heartbeat_interval_ms=heartbeat_ms or low_ms // 2, election_timeout_ms=low_ms, tick_ms=1)
    factory = functools.partial(RaftElector, timeout_spread_ticks=high_ms - low_ms)
    samples, failed = [], 0
    for trial in range(trials):
        net = Network(seed * 1_000_003 + trial, 5, "raft", timing, elector_factory=factory)
        net.set_delay(*one_way_delay_ms)
        if net.run_until_agreed(limit_ms) is None:
            failed += 1
            continue
        leader = net.agreed_leader()[0]
        # Crash it at a uniformly random point of its heartbeat interval.
        net.run(net.rng.randrange(timing.heartbeat_interval_ticks))
        net.crash(leader)
        crashed_at = net.now
        for _ in range(limit_ms):
            net.tick()
            if any(e.tick > crashed_at and isinstance(e.event, BecameLeader) for e in net.events[-10:]):
                break
        else:
            failed += 1
            continue
        samples.append(net.now - crashed_at)
    return Line(low_ms, high_ms, tuple(samples), failed)


def figure16(trials: int = 1000, seed: int = 0) -> list[Line]:
    return [figure16_line(low, high, trials, seed) for low, high in FIGURE16_RANGES_MS]


def plot_figure16(lines: list[Line], path: Path, real: dict[str, Line] | None = None) -> None:
    """The CDF per line; `real` (label -> line, from real processes) drawn dashed on the same axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    styles = [(f"{line.low_ms}-{line.high_ms} ms", line, "-", f"C{i}") for i, line in enumerate(lines)]
    styles += [
        (label, line, "--", ("black", "grey", "C9")[i % 3]) for i, (label, line) in enumerate((real or {}).items())
    ]
    for label, line, linestyle, colour in styles:
        s = sorted(line.samples_ms)
        if s:
            ax.step(
                s,
                [(i + 1) / len(s) for i in range(len(s))],
                where="post",
                label=label,
                linestyle=linestyle,
                color=colour,
            )
    ax.set_xscale("log")
    ax.set_xlabel("time without leader (ms)")
    ax.set_ylabel("cumulative fraction of trials")
    ax.set_title(
        "Raft figure 16: simulator"
        + (" (solid) and real processes (dashed)" if real else "")
        + ", 5 nodes, leader crashed",
        fontsize=10,
    )
    ax.legend(title="election timeout", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- messages per election -----------------------------------------------------------------------


def election_messages(mode: str, n: int, seed: int = 0, simultaneous: bool = False) -> int | None:
    """Messages (every type but heartbeats and their acks) from the leader's crash to agreement.

    simultaneous: every node times out at once (no rank stagger, no jitter): the worst case for Bully.
    """
    base = Timing()
    timing = Timing(rank_stagger_ticks=0, jitter_ticks=0) if simultaneous else base
    net = Network(seed, n, mode, timing)
    if net.run_until_agreed(20 * timing.election_timeout_ticks) is None:
        return None
    leader = net.agreed_leader()[0]
    before = sum(c for t, c in net.sent.items() if t not in HEARTBEATS)
    net.crash(leader)
    if net.run_until_agreed(40 * timing.election_timeout_ticks) is None:
        return None
    return sum(c for t, c in net.sent.items() if t not in HEARTBEATS) - before


def textbook(mode: str, n: int) -> str:
    return {
        "classic": f"best n-2 = {n - 2} coordinators; worst O(n^2) ~ {n * n}",
        "quorum": f"Bully order plus majority acks: ~{2 * (n - 1)}",
        "ring": f"one initiator 2n = {2 * n} passes (each acked here); Chang-Roberts O(n log n) average, O(n^2) worst",
        "raft": f"one candidate: pre-vote + vote rounds ~{4 * (n - 1)}",
    }.get(mode, "")


def messages_table(sizes: tuple[int, ...] = (3, 5, 9, 15, 25), seeds: int = 3) -> list[dict]:
    rows = []
    for mode in mode_names():
        for n in sizes:
            typical = [m for s in range(seeds) if (m := election_messages(mode, n, s)) is not None]
            worst = [m for s in range(seeds) if (m := election_messages(mode, n, s, simultaneous=True)) is not None]
            rows.append(
                {
                    "mode": mode,
                    "n": n,
                    "median": statistics.median(typical) if typical else None,
                    "all_at_once": max(worst) if worst else None,
                    "textbook": textbook(mode, n),
                    "promises": mode_info(mode).promises,
                }
            )
    return rows


def plot_messages(rows: list[dict], path: Path, real: list[dict] | None = None) -> None:
    """Per mode against n: the simulator's typical and all-at-once counts; or, given `real` rows
    (mode, n, median from real processes), the simulator's typical beside the real medians (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, mode in enumerate(mode_names()):
        colour = f"C{i}"
        mine = [r for r in rows if r["mode"] == mode and r["median"] is not None]
        ax.plot(
            [r["n"] for r in mine],
            [r["median"] for r in mine],
            marker="o",
            color=colour,
            label=f"{mode} (simulator, typical)" if real is not None else f"{mode} (typical)",
        )
        if real is None:
            ax.plot(
                [r["n"] for r in mine],
                [r["all_at_once"] for r in mine],
                linestyle="--",
                alpha=0.6,
                color=colour,
                label=f"{mode} (all time out at once)",
            )
            continue
        theirs = [r for r in real if r["mode"] == mode and r["median"] is not None]
        ax.plot(
            [r["n"] for r in theirs],
            [r["median"] for r in theirs],
            marker="s",
            linestyle="--",
            color=colour,
            label=f"{mode} (real processes)",
        )
    # The published formulas, for the eye: Bully's best case (n-2 coordinators, the second-highest
    # detects) and worst order (n^2, the lowest detects), Chang-Roberts' n log n average.
    ns = sorted({r["n"] for r in rows})
    for label, f, style in [
        ("textbook: Bully best, n-2", lambda n: max(n - 2, 1), ":"),
        ("textbook: Bully worst, n^2", lambda n: n * n, "-."),
        ("textbook: ring average, n log2 n", lambda n: n * math.log2(n), (0, (1, 3))),
    ]:
        ax.plot(ns, [f(n) for n in ns], color="grey", linestyle=style, linewidth=1, label=label)
    ax.set_xlabel("membership size n")
    ax.set_ylabel("messages per election (no heartbeats)")
    ax.set_yscale("log")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["HEARTBEATS", "Line", "figure16", "figure16_line", "plot_figure16", "messages_table", "plot_messages"]
