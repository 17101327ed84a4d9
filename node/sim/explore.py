"""The explorer's engine: run schedules by the thousand, judge them in order, shrink what fails.

Two sources of schedules, interleaved: swarm schedules (node.sim.swarm), each made from the run's
seed and its index alone, and guided ones: mutations of earlier schedules that reached something
new (a protocol instant, or a combination of the nodes' phases, no earlier schedule reached), so a
rare state, once reached, is revisited with variations instead of waited for by chance.

Deterministic under any load and with any number of workers: schedules run in generations of
GENERATION schedules; the guided ones of a generation mutate only what earlier generations found, and
results are judged in index order. A budget in schedules explores the same schedules on any machine;
a budget in seconds explores as many as the machine manages. The command line is node/sim/cli.py.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import queue
import random
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from node.core import Mode, mode_info
from node.sim.schedule import ARGS, Command, Outcome, Schedule, run_schedule
from node.sim.swarm import FAULT_KINDS, SwarmSettings, commands_for, swarm_schedule, trigger_for

GENERATION = 64  # schedules per generation (guided ones mutate what earlier generations found)
GUIDED_SHARE = 0.5  # of each generation after the first


# ---- shrinking ---------------------------------------------------------------------------------------


def shrink(outcome: Outcome, budget_s: float = 20.0) -> Outcome:
    """A smaller schedule that still breaks a property with the same id (P1, P3, P3g...).

    Greedy and deterministic: drop one command at a time (last first), then halve waits, until
    nothing smaller fails or the budget is spent.
    """
    want = {v.split(":", 1)[0] for v in outcome.violations}
    best = outcome
    deadline = time.monotonic() + budget_s

    def fails(commands: Sequence[Command]) -> Outcome | None:
        o = run_schedule(replace(best.schedule, commands=tuple(commands)))
        return o if {v.split(":", 1)[0] for v in o.violations} & want else None

    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        cmds = list(best.schedule.commands)
        for i in reversed(range(len(cmds))):
            if time.monotonic() >= deadline:
                break
            if i >= len(cmds):
                continue
            trial = fails(cmds[:i] + cmds[i + 1 :])
            if trial is not None:
                best, cmds, improved = trial, list(trial.schedule.commands), True
        for i, c in enumerate(cmds):
            if time.monotonic() >= deadline:
                break
            if c[0] in ("run", "until", "pause") and int(c[-1]) > 1:
                smaller = (*c[:-1], str(int(c[-1]) // 2))
                trial = fails(cmds[:i] + [smaller] + cmds[i + 1 :])
                if trial is not None:
                    best, cmds, improved = trial, list(trial.schedule.commands), True
    if len(set(best.schedule.clock_rates)) > 1 and time.monotonic() < deadline:
        trial = run_schedule(replace(best.schedule, clock_rates=()))
        if {v.split(":", 1)[0] for v in trial.violations} & want:
            best = trial
    return best


# ---- what a schedule reached --------------------------------------------------------------------------


def features(outcome: Outcome) -> frozenset[str]:
    """What a run reached, as coverage: each protocol instant ("i:NAME"), and each combination of the
    nodes' phases at one tick ("c:idle,leading,proposing"), by membership size."""
    net = outcome.net
    found = {f"i:{name}" for name in net.coverage}
    found |= {f"c{len(combo)}:" + ",".join(combo) for combo in net.phase_combos}
    return frozenset(found)


# ---- guided schedules: mutations of those that reached something new -----------------------------------


def rare_instant(mode: Mode, rng: random.Random, seen: Counter[str] | None) -> str:
    """An instant of `mode`, the rarer (in schedules that reached it so far) the likelier: one never
    reached weighs 1, one reached in a hundred schedules about 0.1. Waiting for a rare instant is how
    a fault lands in a state the swarm seldom visits."""
    names = sorted(mode_info(mode).instants)
    if not seen:
        return rng.choice(names)
    return rng.choices(names, [1.0 / math.sqrt(1 + seen[f"i:{name}"]) for name in names])[0]


def mutate(
    parent: Schedule, rng: random.Random, donor: Schedule | None = None, seen: Counter[str] | None = None
) -> Schedule:
    """A variation of `parent`: one to three edits (a wait longer or shorter, another instant to wait
    for or to hold messages until, rare instants preferred by `seen`; another target, a command
    dropped, a fault inserted, or the tail of `donor` spliced on)."""
    commands = list(parent.commands)
    et, lease = parent.timing.election_timeout_ticks, parent.timing.leader_lease_ticks
    for _ in range(rng.randint(1, 3)):
        edit = rng.choice(["wait", "wait", "instant", "target", "drop", "insert", "insert", "splice"])
        at = rng.randrange(len(commands)) if commands else 0
        c = list(commands[at]) if commands else []
        if edit == "wait" and c and c[0] in ("run", "until", "pause"):
            c[-1] = str(
                max(0 if c[0] == "run" else 1, rng.choice([int(c[-1]) // 2, int(c[-1]) * 2, rng.randint(0, 2 * et)]))
            )
            commands[at] = tuple(c)
        elif edit == "instant" and c and c[0] in ("until", "hold"):
            c[1 if c[0] == "until" else 5] = rare_instant(parent.mode, rng, seen)
            commands[at] = tuple(c)
        elif edit == "target" and c:
            spots = [k for k, kind in enumerate(ARGS[c[0]], start=1) if kind in ("node", "who")]
            if spots:
                c[rng.choice(spots)] = rng.choice(["L", "F", "T", "*", str(rng.randint(1, parent.n))])
                commands[at] = tuple(c)
        elif edit == "drop" and len(commands) > 1:
            del commands[at]
        elif edit == "insert":
            kind = rng.choice([k for k in FAULT_KINDS if k != "skew"])
            # Half the triggers as the swarm aims them, half at instants the corpus has rarely reached.
            trigger = (
                trigger_for(kind, rng, et, parent.mode)
                if rng.random() < 0.5
                else ("until", rare_instant(parent.mode, rng, seen), "*", str(rng.choice([et, 2 * et, 4 * et])))
            )
            block = [trigger] if rng.random() < 0.6 else []
            block += commands_for(kind, rng, parent.n, et, lease, parent.mode)
            commands[at:at] = block
        elif edit == "splice" and donor is not None and donor.n == parent.n and donor.mode == parent.mode:
            cut = rng.randrange(len(donor.commands) + 1)
            commands = commands[: at + 1] + list(donor.commands[cut:])
    return replace(parent, commands=tuple(commands))


# ---- the search ----------------------------------------------------------------------------------------


def schedule_seed(seed: int, index: int) -> int:
    """The seed of schedule `index` of a run with `seed`: the same on any machine and with any workers."""
    return seed * 1_000_000 + index


@dataclass(frozen=True)
class Tried:
    """What the search keeps of one schedule it ran (small, so a worker process can send it back)."""

    index: int
    n: int
    ticks: int
    kinds: frozenset[str]
    violations: tuple[str, ...]
    features: frozenset[str] = frozenset()
    guided: bool = False


def _try(index: int, schedule: Schedule, guided: bool) -> Tried:
    outcome = run_schedule(schedule)
    return Tried(
        index,
        outcome.schedule.n,
        outcome.net.now,
        frozenset(outcome.kinds),
        tuple(outcome.violations),
        features(outcome),
        guided,
    )


class Corpus:
    """The schedules that reached something no earlier one did, in index order, and what was reached."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()  # feature -> schedules that reached it
        self.entries: list[tuple[int, Schedule, frozenset[str]]] = []

    def add(self, tried: Tried, schedule: Schedule) -> None:
        new = tried.features - self.seen.keys()
        self.seen.update(tried.features)
        if new and not tried.violations:
            self.entries.append((tried.index, schedule, new))

    def frozen(self) -> Corpus:
        """A copy that later additions do not change."""
        copy = Corpus()
        copy.seen, copy.entries = Counter(self.seen), list(self.entries)
        return copy

    def pick(self, rng: random.Random) -> Schedule:
        """A parent: entries holding rare features are preferred (their rarest feature's count)."""
        weights = [1.0 / min(self.seen[f] for f in new) for _, _, new in self.entries]
        return rng.choices(self.entries, weights)[0][1]


class Plan:
    """Which schedule runs at each index: swarm, or a mutation of the corpus as it stood when the
    index's generation began."""

    def __init__(self, seed: int, settings: SwarmSettings, guided: bool) -> None:
        self.seed, self.settings, self.guided = seed, settings, guided
        self.corpus = Corpus()
        self.made: dict[int, tuple[Schedule, bool]] = {}
        self._generation, self._parents = -1, Corpus()  # the corpus as this generation began

    def schedule(self, index: int) -> tuple[Schedule, bool]:
        """(the schedule, whether it is guided). Only for an index whose generation may begin:
        every earlier generation was judged (`judged`)."""
        if index in self.made:
            return self.made[index]
        generation = index // GENERATION
        if generation != self._generation:  # the first index of a generation: the one before is judged
            self._generation, self._parents = generation, self.corpus.frozen()
        rng = random.Random(f"{self.seed}:{index}:guide")
        if self.guided and generation > 0 and self._parents.entries and rng.random() < GUIDED_SHARE:
            parent = self._parents.pick(rng)
            donor = self._parents.pick(rng) if rng.random() < 0.3 else None
            made = (replace(mutate(parent, rng, donor, self._parents.seen), seed=schedule_seed(self.seed, index)), True)
        else:
            made = (swarm_schedule(schedule_seed(self.seed, index), self.settings), False)
        self.made[index] = made
        return made

    def judged(self, tried: Tried) -> Schedule:
        schedule, _ = self.made.pop(tried.index)
        self.corpus.add(tried, schedule)
        return schedule


def _generation_end(index: int, limit: int | None) -> int:
    end = (index // GENERATION + 1) * GENERATION
    return end if limit is None else min(end, limit)


def _tried_in_process(plan: Plan, limit: int | None, deadline: float) -> Iterator[Tried]:
    index = 0
    while limit is None or index < limit:
        if time.monotonic() >= deadline:
            return
        schedule, guided = plan.schedule(index)
        yield _try(index, schedule, guided)
        index += 1


def _worker(tasks, results) -> None:
    """A worker process: run each (index, schedule, guided) it is given, send back what it did."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it ends the workers
    try:
        while (task := tasks.get()) is not None:
            results.put(_try(*task))
    except BaseException:
        results.put(traceback.format_exc())


def _tried_in_workers(plan: Plan, limit: int | None, deadline: float, workers: int) -> Iterator[Tried]:
    """Schedules 0, 1, 2, ... run by `workers` processes, yielded in index order (whatever finished first):
    the caller sees exactly what an in-process run would, up to the deadline. A generation's schedules
    are handed out once the one before was judged (the caller judges each as it is yielded)."""
    # Not fork: the parent may hold threads (pytest, gRPC). forkserver imports the simulator once.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["node.sim.explore"])
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(tasks, results), daemon=True, name=f"explore-worker-{i}")
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    waiting: dict[int, Tried] = {}  # finished ahead of a lower index still running
    handed = 0  # indices below this were given to the workers
    index = 0
    try:
        while limit is None or index < limit:
            if handed <= index:  # the previous generation is judged: hand out the next one
                for i in range(handed, _generation_end(index, limit)):
                    tasks.put((i, *plan.schedule(i)))
                handed = _generation_end(index, limit)
            if index in waiting:
                yield waiting.pop(index)
                index += 1
                continue
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:  # killed from outside: the index it held would never come
                raise RuntimeError(f"explorer worker {dead[0].name} died (exit code {dead[0].exitcode})")
            try:
                got = results.get(timeout=min(remaining_s, 1.0))
            except queue.Empty:
                continue
            if isinstance(got, str):
                raise RuntimeError(f"an explorer worker failed:\n{got}")
            waiting[got.index] = got
    finally:
        # Whatever the workers run past this point is not reported: stop them now, by their pids.
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
        tasks.close()
        results.close()


@dataclass
class Finding:
    seed: int  # regenerates the unshrunk schedule: `bullyproof sim run --seed S` with the same settings
    after_s: float
    violations: list[str]
    schedule: Schedule  # minimal
    original_commands: int
    index: int = 0  # which schedule of the run: `sim explore --seed SEED --schedules INDEX+1` reaches it
    guided: bool = False  # a mutation of earlier schedules: `sim run --seed` does not make it, its script does

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "seed": self.seed,
            "after_s": round(self.after_s, 3),
            "violations": self.violations[:5],
            "commands": len(self.schedule.commands),
            "original_commands": self.original_commands,
            "script": self.schedule.to_script(),
            "guided": self.guided,
        }


# What ended a search (ExploreReport.ended_by), in words.
ENDED_BY = {
    "schedules": "the schedule budget was spent",
    "time": "the time budget was spent",
    "findings": "it stopped at what it found",
}


@dataclass
class ExploreReport:
    settings: SwarmSettings
    seed: int
    budget_s: float | None
    max_schedules: int | None = None
    workers: int = 1
    elapsed_s: float = 0.0
    schedules: int = 0  # schedules 0 .. schedules-1 of the seed, every one of them
    ticks: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    sizes: Counter[int] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    ended_by: str = ""  # a key of ENDED_BY
    guided: bool = True
    guided_schedules: int = 0
    instants: Counter[str] = field(default_factory=Counter)  # instant -> schedules that reached it
    combos: int = 0  # distinct combinations of phases reached
    corpus: int = 0  # schedules kept for reaching something new

    def unreached(self) -> list[str]:
        """The mode's instants no schedule reached."""
        return sorted(set(mode_info(self.settings.mode).instants) - set(self.instants))

    @property
    def schedules_per_s(self) -> float:
        return self.schedules / self.elapsed_s if self.elapsed_s else 0.0

    def to_dict(self) -> dict:
        return {
            "mode": self.settings.mode.value,
            "nodes": self.settings.nodes,
            "drift": self.settings.drift,
            "bugs": sorted(b.value for b in self.settings.planted_bugs),
            "mode_options": None if self.settings.mode_options is None else sorted(self.settings.mode_options),
            "seed": self.seed,
            "guided": self.guided,
            "guided_schedules": self.guided_schedules,
            "budget_s": self.budget_s,
            "max_schedules": self.max_schedules,
            "workers": self.workers,
            "ended_by": self.ended_by,
            "elapsed_s": round(self.elapsed_s, 2),
            "schedules": self.schedules,
            "schedules_per_s": round(self.schedules_per_s, 1),
            "ticks": self.ticks,
            "kinds_covered": dict(sorted(self.kinds.items())),
            "sizes": dict(sorted(self.sizes.items())),
            "kinds_missing": sorted(set(FAULT_KINDS) - set(self.kinds)),
            "instants": dict(sorted(self.instants.items())),
            "instants_unreached": self.unreached(),
            "phase_combinations": self.combos,
            "corpus": self.corpus,
            "violations": [f.to_dict() for f in self.findings],
        }


def explore(
    budget_s: float | None = None,
    settings: SwarmSettings = SwarmSettings(),
    seed: int = 0,
    stop_at_first: bool = False,
    max_findings: int = 3,
    shrink_budget_s: float = 20.0,
    max_schedules: int | None = None,
    progress: Callable[[Finding], None] | None = None,
    workers: int = 1,
    guided: bool = True,
) -> ExploreReport:
    """Run schedules 0, 1, 2, ... of `seed` (swarm, and with `guided` mutations of those that reached
    something new) until the time budget or max_schedules is spent (the first of them); shrink and
    keep the first few that fail.

    With workers > 1 the schedules run in that many processes and are judged here in index order, so
    the report (schedules, coverage, findings) is the one a single process gives for the same count.
    Shrinking runs in this process.
    """
    if budget_s is None and max_schedules is None:
        raise ValueError("explore needs a budget: budget_s, max_schedules or both")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    report = ExploreReport(settings, seed, budget_s, max_schedules, workers, guided=guided)
    started = time.monotonic()
    deadline = math.inf if budget_s is None else started + budget_s
    plan = Plan(seed, settings, guided)
    tried = (
        _tried_in_process(plan, max_schedules, deadline)
        if workers == 1
        else _tried_in_workers(plan, max_schedules, deadline, workers)
    )
    seen: set[str] = set()
    combos: set[str] = set()
    with contextlib.closing(tried):
        for t in tried:
            schedule = plan.judged(t)
            report.schedules += 1
            report.guided_schedules += t.guided
            report.ticks += t.ticks
            report.kinds.update(t.kinds)
            report.sizes[t.n] += 1
            report.instants.update(f[2:] for f in t.features if f.startswith("i:"))
            combos.update(f for f in t.features if not f.startswith("i:"))
            if not t.violations:
                continue
            ids = "|".join(sorted({v.split(":", 1)[0] for v in t.violations}))
            if ids in seen and not stop_at_first:
                continue
            seen.add(ids)
            found_after = time.monotonic() - started
            # Run it again here (a schedule replays exactly) to have the whole outcome to shrink.
            outcome = run_schedule(schedule)
            small = shrink(outcome, shrink_budget_s)
            finding = Finding(
                schedule_seed(seed, t.index),
                found_after,
                small.violations,
                small.schedule,
                len(outcome.schedule.commands),
                t.index,
                t.guided,
            )
            report.findings.append(finding)
            if progress:
                progress(finding)
            if stop_at_first or len(report.findings) >= max_findings:
                report.ended_by = "findings"
                break
    report.combos, report.corpus = len(combos), len(plan.corpus.entries)
    if not report.ended_by:
        report.ended_by = "schedules" if report.schedules == max_schedules else "time"
    report.elapsed_s = time.monotonic() - started
    return report
