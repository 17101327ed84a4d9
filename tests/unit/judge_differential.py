"""Old judge (the Recorder's own copies) vs new (node.history's History) on the same simulator runs.

Run from the repository: python tests/unit/judge_differential.py modes 600 | bugs 300 | MODE N
(one JSON line per mode or planted bug: runs, failed by each, schedules whose sets of violated ids differ).
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter

from node.core import Mode, PlantedBug
from node.sim.schedule import run_schedule
from node.sim.swarm import SwarmSettings, swarm_schedule
from node.sim.explore import schedule_seed


from node.history import Interval, late_writes


def merge(intervals):
    """Adjacent intervals of one node and epoch as one (the old recorder split a re-announcement)."""
    out = []
    for i in sorted(intervals, key=lambda i: (i.node, i.start)):
        if out and out[-1].node == i.node and out[-1].epoch == i.epoch and out[-1].end >= i.start:
            out[-1] = Interval(i.node, i.epoch, out[-1].start, max(out[-1].end, i.end))
        else:
            out.append(i)
    return sorted(out, key=lambda i: (i.start, i.node))


def ids(lines):
    return frozenset(v.split(":", 1)[0] for v in lines)


def compare(settings, count, seed=0, label=""):
    diffs, counts, late_diff = [], Counter(), 0
    old_t = new_t = 0.0
    for k in range(count):
        s = swarm_schedule(schedule_seed(seed, k), settings)
        outcome = run_schedule(s)
        rec = outcome.net.record
        t0 = time.perf_counter()
        rec._judged = None
        old = ids(rec.violations())
        t1 = time.perf_counter()
        rec._judged = None
        new = ids(rec.new_violations())
        t2 = time.perf_counter()
        old_t += t1 - t0
        new_t += t2 - t1
        counts["runs"] += 1
        counts["old_failed"] += bool(old)
        counts["new_failed"] += bool(new)
        if old != new:
            diffs.append((k, sorted(old), sorted(new)))
        h = rec.judged_history()
        if merge(rec.closed_intervals()) != merge(h.intervals):
            counts["intervals_differ"] += 1
            if counts["intervals_differ"] <= 3:
                print("intervals", label, k, merge(rec.closed_intervals()), merge(h.intervals), file=sys.stderr)
        if list(rec.promises) != list(h.promise_record):
            counts["promises_differ"] += 1
        if sorted(rec.all_answers(), key=repr) != sorted(h.answers, key=repr):
            counts["answers_differ"] += 1
        if rec.lease_expired - set(h.lease_ended) or set(h.lease_ended) - rec.lease_expired:
            counts["lease_ended_differ"] += 1
        if rec.backed() != {m: b for m, b in h.backed.items()}:
            counts["backed_differ"] += 1
        if len(rec.accepted_after_lease_end()) != len(late_writes(h)[0]):
            counts["late_writes_differ"] += 1
    print(json.dumps({"label": label, **counts, "differ": len(diffs), "old_judge_s": round(old_t, 2),
                      "new_judge_s": round(new_t, 2), "diffs": diffs[:20]}), flush=True)
    return diffs


if __name__ == "__main__":
    what = sys.argv[1]
    n = int(sys.argv[2])
    if what == "modes":
        for mode in (Mode.QUORUM, Mode.RAFT, Mode.CLASSIC):
            compare(SwarmSettings(mode=mode), n, label=mode.value)
    elif what == "bugs":
        for bug in PlantedBug:
            compare(SwarmSettings(planted_bugs=frozenset({bug})), n, label=bug.value)
    else:
        compare(SwarmSettings(mode=Mode(what)), n, label=what)
