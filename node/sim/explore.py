"""The explorer: fault schedules for the simulator that aim at the dangerous instants, and a search over them.

A schedule is a short script, one command per line, replayable exactly:

    @nodes 3                          header: membership size, mode, seed, timing, clock rates, bugs
    run 120                           let time pass
    until ack * 40                    run until some node sends a granted ack (at most 40 ticks)...
    crash_restart T                   ...then SIGKILL and restart that node (T) at once
    cut L 1                           one-way cut from the current leader (L) to node 1

Targets may be symbolic: L (the leader with the highest epoch), F (a follower), T (the node whose
event fired the last `until`), D (a crashed node); the explorer records the concrete ids it chose,
so a printed schedule names nodes. Triggers (`until EVENT WHO MAX`): ack (sent a granted ack),
lease-end (a leader within 2 ticks of its lease end), deadline (a node about to time out), leader,
candidate. After the last command every node is healed, resumed and restarted, and the cluster must
agree within `heal` ticks (P4).

The search is swarm testing: each schedule enables a random subset of fault kinds with random weights,
a random membership size (1..7, even sizes included), hold-down on or off, and maybe skewed clocks.
A schedule that breaks a property is shrunk (commands removed, waits halved) to a minimal one.

Schedule k of a run is made from the run's seed and k alone, so a budget in schedules explores the same
schedules on any machine, under any load, with any number of worker processes; a budget in seconds
explores as many as the machine manages. The search stops at whichever budget is spent first.

    bullyproof sim explore [--budget-s 60] [--schedules N] [--workers W] [--nodes N] [--mode M] [--seed S]
                           [--bug B] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import queue
import random
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from pathlib import Path

from node.core import CLOCK_DRIFT_BOUND, DEFAULT_MODE, Mode, PlantedBug, Role, Timing, check_mode_options, mode_names
from node.history import Grant
from node.sim.network import Network, timeline

BEYOND_DRIFT = 0.25  # `--drift beyond`: far outside the bound, to show that the checker sees it

# Hold-down preemption in ticks (10 ms each): the runtime default (3000 ms), shorter, and off.
HOLD_DOWN_CHOICES_TICKS = (300, 300, 60, 20, 0)
SIZE_CHOICES = (1, 2, 3, 3, 4, 4, 5, 5, 6, 7)

FAULT_KINDS = (
    "crash", "restart", "crash_restart", "restart_all", "pause", "cut", "partition", "isolate", "heal", "delay",
    "long_delay", "drop", "duplicate", "resign", "transfer", "skew",
)
TRIGGERS = ("ack", "lease-end", "deadline", "leader", "candidate")

Command = tuple[str, ...]


def runtime_timing(hold_down_ticks: int = 300) -> Timing:
    """The runtime's defaults (heartbeat 100 ms, election timeout 500 ms, 10 ms ticks)."""
    return Timing.from_ms(100, 500, 10, hold_down_ticks * 10)


def accepted_timing(rng: random.Random, hold_down_ticks: int) -> Timing:
    """Some other timing a node accepts (node.config.check_timings), where ticks round the lease and
    the promise closest together: short election timeouts, few ticks per timeout."""
    from node.config import ConfigError, check_timings

    for _ in range(20):
        heartbeat_ms = rng.choice([30, 40, 50, 60, 100])
        election_timeout_ms = heartbeat_ms * rng.choice([3, 3, 4, 5, 6, 8])
        try:
            t = check_timings(heartbeat_ms, election_timeout_ms, 10)
        except ConfigError:
            continue
        return replace(t, preempt_hold_down_ticks=hold_down_ticks)
    return runtime_timing(hold_down_ticks)


@dataclass(frozen=True)
class Schedule:
    seed: int
    n: int
    mode: Mode
    timing: Timing
    commands: tuple[Command, ...]
    clock_rates: tuple[Fraction, ...] = ()  # node i+1 runs at clock_rates[i]; empty: all exact
    planted_bugs: frozenset[PlantedBug] = frozenset()
    heal_ticks: int = 0  # 0: 6 election timeouts plus the hold-down
    mode_options: frozenset[str] = frozenset()

    @property
    def agree_within_ticks(self) -> int:
        return self.heal_ticks or 6 * self.timing.election_timeout_ticks + self.timing.preempt_hold_down_ticks

    def to_script(self) -> str:
        t = " ".join(f"{f.name}={getattr(self.timing, f.name)}" for f in fields(Timing))
        head = [f"@nodes {self.n}", f"@mode {self.mode.value}", f"@seed {self.seed}", f"@timing {t}"]
        if self.clock_rates:
            head.append("@rates " + " ".join(str(r) for r in self.clock_rates))
        head += [f"@bug {b.value}" for b in sorted(self.planted_bugs, key=lambda b: b.value)]
        head += [f"@option {o}" for o in sorted(self.mode_options)]
        if self.heal_ticks:
            head.append(f"@heal {self.heal_ticks}")
        return "\n".join(head + [" ".join(map(str, c)) for c in self.commands]) + "\n"

    @classmethod
    def from_script(cls, text: str) -> Schedule:
        values: dict[str, list[str]] = {}
        bugs: list[PlantedBug] = []
        options: list[str] = []
        commands: list[Command] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if words[0].startswith("@"):
                if words[0] == "@bug":
                    bugs.append(PlantedBug(words[1]))
                elif words[0] == "@option":
                    if len(words) != 2:
                        raise ValueError(f"line {number}: @option takes one name, got {' '.join(words[1:]) or 'none'}")
                    options.append(words[1])
                else:
                    values[words[0][1:]] = words[1:]
            elif words[0] in COMMANDS:
                commands.append(tuple(words))
            else:
                raise ValueError(f"line {number}: unknown command {words[0]!r}; known: {', '.join(sorted(COMMANDS))}")
        try:
            check_mode_options(values["mode"][0], frozenset(options))
            timing = Timing(**{k: int(v) for k, v in (kv.split("=") for kv in values["timing"])})
            return cls(
                seed=int(values["seed"][0]), n=int(values["nodes"][0]), mode=Mode(values["mode"][0]), timing=timing,
                commands=tuple(commands), clock_rates=tuple(Fraction(r) for r in values.get("rates", [])),
                planted_bugs=frozenset(bugs), heal_ticks=int(values.get("heal", ["0"])[0]),
                mode_options=frozenset(options),
            )
        except KeyError as exc:
            raise ValueError(f"schedule script lacks the header line @{exc.args[0]}") from None


# ---- running a schedule ----------------------------------------------------------------------------


@dataclass
class Outcome:
    schedule: Schedule  # with every symbolic target replaced by the node it named
    net: Network
    violations: list[str]
    kinds: set[str]  # fault kinds that acted
    agreed_after_ticks: int | None

    @property
    def failed(self) -> bool:
        return bool(self.violations)


class _Runner:
    """Carries out commands on a Network; picks symbolic targets with its own seeded generator."""

    def __init__(self, schedule: Schedule) -> None:
        self.s = schedule
        rates = {i + 1: r for i, r in enumerate(schedule.clock_rates)}
        self.net = Network(schedule.seed, schedule.n, schedule.mode, schedule.timing, schedule.planted_bugs, rates,
                           mode_options=schedule.mode_options)
        self.rng = random.Random(f"{schedule.seed}:targets")
        self.trigger_node: int | None = None
        self.kinds: set[str] = set()
        self.concrete: list[Command] = []

    # -- targets ---------------------------------------------------------------------------------

    def leader(self) -> int | None:
        leaders = [(self.net.view(m).epoch, m) for m in self.net.leaders()]
        return max(leaders)[1] if leaders else None

    def resolve(self, word: str) -> int | None:
        net = self.net
        if word.isdigit():
            return int(word) if int(word) in net.members else None
        live = [m for m in net.members if not net.crashed(m)]
        if word == "L":
            return self.leader()
        if word == "T":
            return self.trigger_node
        if word == "F":
            leader = self.leader()
            followers = [m for m in live if m != leader]
            return self.rng.choice(followers) if followers else None
        if word == "D":
            down = [m for m in net.members if net.crashed(m)]
            return self.rng.choice(down) if down else None
        if word == "*":
            return self.rng.choice(live) if live else None
        raise ValueError(f"unknown node {word!r} (a number, L, F, T, D or *)")

    # -- commands --------------------------------------------------------------------------------

    def run(self) -> Outcome:
        if len(set(self.s.clock_rates)) > 1:
            self.kinds.add("skew")
        for command in self.s.commands:
            done = self.do(command)
            if done is not None:
                self.concrete.append(done)
        self.net.heal_all()
        agreed = self.net.run_until_agreed(self.s.agree_within_ticks)
        violations = self.net.violations()
        if agreed is None:
            violations.append(f"P4: no agreed leader {self.s.agree_within_ticks} ticks after the final heal")
        concrete = replace(self.s, commands=tuple(self.concrete))
        return Outcome(concrete, self.net, violations, self.kinds, agreed)

    def do(self, c: Command) -> Command | None:
        """Carry out one command; return it with concrete node ids, or None if it could not act."""
        verb, args = c[0], c[1:]
        kinds = ARGS[verb]
        if len(args) != len(kinds):
            raise ValueError(f"{' '.join(c)}: {verb} takes {len(kinds)} arguments ({', '.join(kinds) or 'none'})")
        concrete: list[str] = []
        values: list[object] = []
        for kind, word in zip(kinds, args):
            if kind == "node":
                node = self.resolve(word)
                if node is None:
                    return None  # no such node at this moment (no leader, nobody crashed)
                concrete.append(str(node))
                values.append(node)
            else:
                concrete.append(word)
                values.append(PARSE[kind](word))
        try:
            COMMANDS[verb](self, *values)
        except ValueError:  # e.g. crash a crashed node: the moment passed, nothing to do
            return None
        if verb == "delay" and values[1] > self.s.timing.leader_lease_ticks:
            self.kinds.add("long_delay")
        elif verb not in ("run", "until"):
            self.kinds.add(verb)
        return (verb, *concrete)

    def until(self, event: str, who: str, max_ticks: int) -> None:
        """Run until EVENT happens at WHO (a node, or * for any), at most max_ticks; note who fired it."""
        net = self.net
        want = None if who == "*" else int(who)
        for _ in range(max_ticks):
            promises_before = len(net.promises)
            net.tick()
            fired = self._fired(event, want, promises_before)
            if fired is not None:
                self.trigger_node = fired
                return
        self.trigger_node = None

    def _fired(self, event: str, want: int | None, promises_before: int) -> int | None:
        net = self.net
        candidates: list[int] = []
        if event == "ack":
            candidates = [g.node for g in net.promises[promises_before:] if isinstance(g, Grant)]
        else:
            for m in net.members:
                if not net.running(m):
                    continue
                e, v, now = net.elector(m), net.view(m), net.local(m)
                if event == "lease-end" and v.role == Role.LEADER and 0 <= getattr(e, "lease_until", now) - now <= 2:
                    candidates.append(m)
                elif event == "deadline" and v.role == Role.FOLLOWER and 0 <= getattr(e, "election_deadline", -9) - now <= 1:
                    candidates.append(m)
                elif event == "leader" and v.role == Role.LEADER:
                    candidates.append(m)
                elif event == "candidate" and v.role == Role.CANDIDATE:
                    candidates.append(m)
        hits = [m for m in candidates if want is None or m == want]
        return hits[0] if hits else None


def _groups(text: str) -> list[list[int]]:
    return [[int(x) for x in g.split(",") if x] for g in text.split("|")]


def _distinct(a: int, b: int) -> tuple[int, int]:
    if a == b:
        raise ValueError("a node and itself")
    return a, b


# What each command takes, how its words parse, and what it does.
ARGS: dict[str, tuple[str, ...]] = {
    "run": ("ticks",), "until": ("event", "who", "ticks"),
    "crash": ("node",), "restart": ("node",), "crash_restart": ("node",), "restart_all": (), "pause": ("node", "ticks"),
    "cut": ("node", "node"), "isolate": ("node",), "partition": ("groups",), "heal": (),
    "delay": ("ticks", "ticks"), "drop": ("p",), "duplicate": ("p",),
    "resign": ("node",), "transfer": ("node", "node"),
}
PARSE: dict[str, Callable[[str], object]] = {"ticks": int, "p": float, "groups": _groups, "event": str, "who": str}
COMMANDS: dict[str, Callable[..., object]] = {
    "run": lambda r, ticks: r.net.run(ticks),
    "until": lambda r, event, who, ticks: r.until(event, who, ticks),
    "crash": lambda r, node: r.net.crash(node),
    "restart": lambda r, node: r.net.restart(node),
    "crash_restart": lambda r, node: r.net.crash_restart(node),
    "restart_all": lambda r: r.net.restart_all(),
    "pause": lambda r, node, ticks: r.net.pause(node, ticks),
    "cut": lambda r, a, b: r.net.cut(*_distinct(a, b)),
    "isolate": lambda r, node: r.net.isolate(node),
    "partition": lambda r, groups: r.net.partition(groups),
    "heal": lambda r: r.net.heal(),
    "delay": lambda r, low, high: r.net.set_delay(low, high),
    "drop": lambda r, p: r.net.set_drop(p),
    "duplicate": lambda r, p: r.net.set_duplicate(p),
    "resign": lambda r, node: r.net.resign(node),
    "transfer": lambda r, a, b: r.net.transfer(*_distinct(a, b)),
}


def run_schedule(schedule: Schedule) -> Outcome:
    return _Runner(schedule).run()


# ---- generating schedules: swarm testing, aimed at the dangerous instants -----------------------------


@dataclass(frozen=True)
class SwarmSettings:
    nodes: int | None = None  # None: a random size 1..7 per schedule
    mode: Mode = Mode.QUORUM
    drift: str = "within"  # within (the documented bound), beyond, or none
    planted_bugs: frozenset[PlantedBug] = frozenset()
    hold_down_ticks: int | None = None  # None: random, mostly the runtime default
    mode_options: frozenset[str] = frozenset()


def swarm_schedule(seed: int, settings: SwarmSettings = SwarmSettings()) -> Schedule:
    """One random schedule. Its fault kinds (and their weights) are themselves drawn at random, so
    that some schedules do many crashes and nothing else, others only resigns and pauses, and so on."""
    rng = random.Random(f"{seed}:swarm")
    n = settings.nodes or rng.choice(SIZE_CHOICES)
    hold = settings.hold_down_ticks if settings.hold_down_ticks is not None else rng.choice(HOLD_DOWN_CHOICES_TICKS)
    # Mostly the runtime's defaults; sometimes another accepted timing with less room between the
    # lease and the promise (an outside review found the margin shrinks there).
    timing = runtime_timing(hold) if rng.random() < 0.7 else accepted_timing(rng, hold)
    enabled = [k for k in FAULT_KINDS if rng.random() < 0.5] or [rng.choice(FAULT_KINDS)]
    weights = [rng.uniform(0.2, 1.0) for _ in enabled]
    rates: tuple[Fraction, ...] = ()
    if "skew" in enabled and settings.drift != "none":
        bound = CLOCK_DRIFT_BOUND if settings.drift == "within" else BEYOND_DRIFT
        rates = tuple(Fraction(1) + Fraction(rng.uniform(-bound, bound)).limit_denominator(1000) for _ in range(n))
    et, lease = timing.election_timeout_ticks, timing.leader_lease_ticks
    commands: list[Command] = [("run", str(rng.choice([0, 20, 60, 2 * et, 2 * et, 3 * et])))]
    for _ in range(rng.randint(2, 10)):
        kind = rng.choices(enabled, weights)[0]
        if kind == "skew":
            continue
        if rng.random() < 0.6:  # aim: act right at a dangerous instant
            commands.append(_trigger_for(kind, rng, et))
        commands += _commands_for(kind, rng, n, et, lease)
        commands.append(("run", str(rng.choice([0, 1, 3, 8, 15, 30, 60, 120]))))
    return Schedule(seed, n, settings.mode, timing, tuple(commands), rates, settings.planted_bugs,
                    mode_options=settings.mode_options)


def _trigger_for(kind: str, rng: random.Random, et: int) -> Command:
    """The instant to act at: just after an ack, just before a lease ends or a node times out, ..."""
    if kind in ("resign", "transfer"):
        event = rng.choice(["leader", "candidate", "ack"])
    elif kind in ("crash", "crash_restart", "restart_all", "pause"):
        event = rng.choice(["ack", "ack", "lease-end", "deadline", "candidate"])
    else:
        event = rng.choice(TRIGGERS)
    return ("until", event, "*", str(rng.choice([et, 2 * et, 4 * et])))


def _commands_for(kind: str, rng: random.Random, n: int, et: int, lease: int) -> list[Command]:
    def who() -> str:
        return rng.choice(["T", "T", "L", "F", "*", str(rng.randint(1, n))])

    if kind == "crash":
        return [("crash", who())]
    if kind == "restart":
        return [("restart", "D")]
    if kind == "crash_restart":
        # At once, or after a while (a slow supervisor, or a node that stays down through an election).
        if rng.random() < 0.6:
            return [("crash_restart", who())]
        return [("crash", who()), ("run", str(rng.randint(1, 2 * et))), ("restart", "D")]
    if kind == "restart_all":
        return [("restart_all",)]
    if kind == "pause":
        ticks = rng.choice([rng.randint(1, lease), rng.randint(lease, 3 * et)])
        return [("pause", who(), str(ticks))]
    if kind == "cut":
        return [("cut", who(), rng.choice(["F", "T", "*", str(rng.randint(1, n))])) for _ in range(rng.randint(1, 3))]
    if kind == "isolate":
        return [("isolate", who())]
    if kind == "partition":
        members = list(range(1, n + 1))
        rng.shuffle(members)
        cut = rng.randint(1, max(1, n - 1))
        groups = [sorted(members[:cut]), sorted(members[cut:])]
        return [("partition", "|".join(",".join(map(str, g)) for g in groups if g))] if n > 1 else []
    if kind == "heal":
        return [("heal",)]
    if kind == "delay":
        low = rng.randint(1, 4)
        return [("delay", str(low), str(low + rng.randint(0, 15)))]
    if kind == "long_delay":  # longer than the lease: a message arrives after what it promised is over
        return [("delay", "1", str(rng.randint(lease + 1, 3 * et)))]
    if kind == "drop":
        return [("drop", rng.choice(["0.05", "0.2", "0.5"]))]
    if kind == "duplicate":
        return [("duplicate", rng.choice(["0.1", "0.3", "0.6"]))]
    if kind == "resign":
        return [("resign", "L")]
    if kind == "transfer":
        return [("transfer", "L", rng.choice(["F", "T", str(rng.randint(1, n))]))]
    raise ValueError(kind)


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


def _try(seed: int, settings: SwarmSettings, index: int) -> Tried:
    outcome = run_schedule(swarm_schedule(schedule_seed(seed, index), settings))
    return Tried(index, outcome.schedule.n, outcome.net.now, frozenset(outcome.kinds), tuple(outcome.violations))


def _tried_in_process(seed: int, settings: SwarmSettings, limit: int | None, deadline: float) -> Iterator[Tried]:
    for index in itertools.count() if limit is None else range(limit):
        if time.monotonic() >= deadline:
            return
        yield _try(seed, settings, index)


def _worker(seed: int, settings: SwarmSettings, limit: int | None, next_index, stop, results) -> None:
    """A worker process: take the next untried index from the shared counter, run it, send back what it did."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it ends the workers
    try:
        while not stop.is_set():
            with next_index.get_lock():
                index = next_index.value
                next_index.value += 1
            if limit is not None and index >= limit:
                return
            results.put(_try(seed, settings, index))
    except BaseException:
        results.put(traceback.format_exc())


def _tried_in_workers(seed: int, settings: SwarmSettings, limit: int | None, deadline: float,
                      workers: int) -> Iterator[Tried]:
    """Schedules 0, 1, 2, ... run by `workers` processes, yielded in index order (whatever finished first):
    the caller sees exactly what an in-process run would, up to the deadline."""
    # Not fork: the parent may hold threads (pytest, gRPC). forkserver imports the simulator once.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["node.sim.explore"])
    next_index = ctx.Value("q", 0)
    stop = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(seed, settings, limit, next_index, stop, results), daemon=True,
                         name=f"explore-worker-{i}") for i in range(workers)]
    for p in procs:
        p.start()
    waiting: dict[int, Tried] = {}  # finished ahead of a lower index still running
    index = 0
    try:
        while limit is None or index < limit:
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
        stop.set()
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
        results.close()


@dataclass
class Finding:
    seed: int  # regenerates the unshrunk schedule: `bullyproof sim run --seed S` with the same settings
    after_s: float
    violations: list[str]
    schedule: Schedule  # minimal
    original_commands: int
    index: int = 0  # which schedule of the run: `sim explore --seed SEED --schedules INDEX+1` reaches it

    def to_dict(self) -> dict:
        return {
            "index": self.index, "seed": self.seed, "after_s": round(self.after_s, 3),
            "violations": self.violations[:5], "commands": len(self.schedule.commands),
            "original_commands": self.original_commands, "script": self.schedule.to_script(),
        }


# What ended a search (ExploreReport.ended_by), in words.
ENDED_BY = {
    "schedules": "the schedule budget was spent", "time": "the time budget was spent",
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

    @property
    def schedules_per_s(self) -> float:
        return self.schedules / self.elapsed_s if self.elapsed_s else 0.0

    def to_dict(self) -> dict:
        return {
            "mode": self.settings.mode.value, "nodes": self.settings.nodes, "drift": self.settings.drift,
            "bugs": sorted(b.value for b in self.settings.planted_bugs),
            "mode_options": sorted(self.settings.mode_options), "seed": self.seed,
            "budget_s": self.budget_s, "max_schedules": self.max_schedules, "workers": self.workers,
            "ended_by": self.ended_by, "elapsed_s": round(self.elapsed_s, 2), "schedules": self.schedules,
            "schedules_per_s": round(self.schedules_per_s, 1), "ticks": self.ticks,
            "kinds_covered": dict(sorted(self.kinds.items())), "sizes": dict(sorted(self.sizes.items())),
            "kinds_missing": sorted(set(FAULT_KINDS) - set(self.kinds)),
            "violations": [f.to_dict() for f in self.findings],
        }


def explore(budget_s: float | None = None, settings: SwarmSettings = SwarmSettings(), seed: int = 0,
            stop_at_first: bool = False, max_findings: int = 3, shrink_budget_s: float = 20.0,
            max_schedules: int | None = None, progress: Callable[[Finding], None] | None = None,
            workers: int = 1) -> ExploreReport:
    """Run swarm schedules 0, 1, 2, ... of `seed` until the time budget or max_schedules is spent (the first
    of them); shrink and keep the first few that fail.

    With workers > 1 the schedules run in that many processes and are judged here in index order, so
    the report (schedules, coverage, findings) is the one a single process gives for the same count.
    Shrinking runs in this process.
    """
    if budget_s is None and max_schedules is None:
        raise ValueError("explore needs a budget: budget_s, max_schedules or both")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    report = ExploreReport(settings, seed, budget_s, max_schedules, workers)
    started = time.monotonic()
    deadline = math.inf if budget_s is None else started + budget_s
    tried = (_tried_in_process(seed, settings, max_schedules, deadline) if workers == 1
             else _tried_in_workers(seed, settings, max_schedules, deadline, workers))
    seen: set[str] = set()
    with contextlib.closing(tried):
        for t in tried:
            report.schedules += 1
            report.ticks += t.ticks
            report.kinds.update(t.kinds)
            report.sizes[t.n] += 1
            if not t.violations:
                continue
            ids = "|".join(sorted({v.split(":", 1)[0] for v in t.violations}))
            if ids in seen and not stop_at_first:
                continue
            seen.add(ids)
            found_after = time.monotonic() - started
            # Run it again here (a schedule replays exactly) to have the whole outcome to shrink.
            outcome = run_schedule(swarm_schedule(schedule_seed(seed, t.index), settings))
            small = shrink(outcome, shrink_budget_s)
            finding = Finding(schedule_seed(seed, t.index), found_after, small.violations, small.schedule,
                              len(outcome.schedule.commands), t.index)
            report.findings.append(finding)
            if progress:
                progress(finding)
            if stop_at_first or len(report.findings) >= max_findings:
                report.ended_by = "findings"
                break
    if not report.ended_by:
        report.ended_by = "schedules" if report.schedules == max_schedules else "time"
    report.elapsed_s = time.monotonic() - started
    return report


# ---- the command line -------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> SwarmSettings:
    return SwarmSettings(
        nodes=args.nodes, mode=Mode(args.mode), drift=args.drift,
        planted_bugs=frozenset(PlantedBug(b) for b in args.bug), hold_down_ticks=args.hold_down_ticks,
        mode_options=frozenset(args.mode_option),
    )


def _budgets(args: argparse.Namespace) -> tuple[float | None, int | None]:
    """--budget-s and --schedules as given; a minute if neither was."""
    if args.budget_s is None and args.schedules is None:
        return 60.0, None
    return args.budget_s, args.schedules


def _ended_by(report: ExploreReport) -> str:
    if report.ended_by == "schedules":
        return f"the schedule budget ({report.max_schedules}) was spent"
    if report.ended_by == "time":
        return f"the time budget ({report.budget_s:g} s) was spent"
    return ENDED_BY[report.ended_by]


def _print_finding(f: Finding, out=sys.stdout) -> None:
    print(f"\nVIOLATION in schedule {f.index} after {f.after_s:.1f} s (schedule seed {f.seed}: `bullyproof sim run "
          f"--seed {f.seed}` with the same options replays it unshrunk; shrunk from {f.original_commands} "
          f"to {len(f.schedule.commands)} commands):", file=out)
    for v in f.violations[:5]:
        print(f"  {v}", file=out)
    print("  minimal schedule (save it and run `bullyproof sim replay FILE`):", file=out)
    for line in f.schedule.to_script().splitlines():
        print(f"    {line}", file=out)


def cmd_explore(args: argparse.Namespace) -> int:
    settings = _settings(args)
    progress = None if args.json else _print_finding
    budget_s, max_schedules = _budgets(args)
    report = explore(budget_s, settings, args.seed, stop_at_first=args.first, progress=progress,
                     max_schedules=max_schedules, workers=args.workers)
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for f in report.findings:
            (args.save / f"violation-{f.seed}.sched").write_text(f.schedule.to_script())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        d = report.to_dict()
        print(f"\nexplored {report.schedules} schedules ({report.ticks} ticks) in {report.elapsed_s:.1f} s: "
              f"{report.schedules_per_s:.0f} schedules/s with {report.workers} worker(s); mode {settings.mode.value}, "
              f"drift {settings.drift}" + (f", planted {', '.join(d['bugs'])}" if d["bugs"] else ""))
        print(f"ended because {_ended_by(report)}")
        print("fault kinds covered: " + ", ".join(f"{k} {v}" for k, v in d["kinds_covered"].items()))
        if d["kinds_missing"]:
            print("fault kinds never exercised: " + ", ".join(d["kinds_missing"]))
        print("membership sizes: " + ", ".join(f"{k}: {v}" for k, v in d["sizes"].items()))
        print(f"{len(report.findings)} violation(s) found" if report.findings else "no property failed")
    return 1 if report.findings else 0


def cmd_replay(args: argparse.Namespace) -> int:
    try:
        schedule = Schedule.from_script(Path(args.file).read_text())
    except (OSError, ValueError) as exc:
        print(f"bullyproof sim replay: {args.file}: {exc}", file=sys.stderr)
        return 2
    return _show(run_schedule(schedule), args.views)


def cmd_run(args: argparse.Namespace) -> int:
    schedule = swarm_schedule(args.seed, _settings(args))
    return _show(run_schedule(schedule), args.views, print_script=True)


def _show(outcome: Outcome, views: bool, print_script: bool = False) -> int:
    if print_script:
        print(outcome.schedule.to_script())
    for line in timeline(outcome.net, views):
        print(line)
    net = outcome.net
    late = net.accepted_after_lease_end()
    print(f"messages sent: {sum(net.sent.values())}; dropped {net.dropped}, refused {net.refused}; "
          f"store: {sum(r.accepted for r in net.store_log)} accepted, "
          f"{sum(not r.accepted for r in net.store_log)} rejected, {len(late)} accepted after their lease ended")
    disagreement = net.disagreement()
    if disagreement:
        print(f"P3 checks disagree: {disagreement}")
    for v in outcome.violations:
        print(f"VIOLATION {v}")
    if outcome.agreed_after_ticks is not None:
        leader, epoch = net.agreed_leader() or (None, None)
        print(f"agreed on leader {leader} epoch {epoch} {outcome.agreed_after_ticks} ticks after the final heal")
    return 1 if outcome.violations else 0


def cmd_bugs(args: argparse.Namespace) -> int:
    """Harness power: how fast the explorer finds each planted bug."""
    rows = []
    core_bugs = [b for b in PlantedBug] if not args.bug else [PlantedBug(b) for b in args.bug]
    budget_s, max_schedules = _budgets(args)
    for bug in core_bugs:
        settings = replace(_settings(args), planted_bugs=frozenset({bug}))
        report = explore(budget_s, settings, args.seed, stop_at_first=True, max_schedules=max_schedules,
                         workers=args.workers)
        f = report.findings[0] if report.findings else None
        rows.append({
            "bug": bug.value, "found": f is not None, "after_s": None if f is None else round(f.after_s, 2),
            "schedules": report.schedules, "index": None if f is None else f.index, "ended_by": report.ended_by,
            "minimal_commands": None if f is None else len(f.schedule.commands),
            "property": None if f is None else f.violations[0].split(":", 1)[0],
            "script": None if f is None else f.schedule.to_script(),
        })
        if not args.json:
            when = f"{f.after_s:6.1f} s" if f else "  not found"
            print(f"{bug.value:22} {when}  {report.schedules:6d} schedules  "
                  + (f"minimal {len(f.schedule.commands):2d} commands  {rows[-1]['property']}" if f
                     else f"({_ended_by(report)})"), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0 if all(r["found"] for r in rows) else 1


def _write_out(args: argparse.Namespace, name: str, rows: list[dict], plot: Callable[[Path], None]) -> bool:
    """NAME.png and NAME.json into --out if given; the rows as JSON with --json (True: printed)."""
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        plot(args.out / f"{name}.png")
        (args.out / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    if args.json:
        print(json.dumps(rows, indent=2))
    return args.json


def cmd_figure16(args: argparse.Namespace) -> int:
    from node.sim.figures import figure16, plot_figure16

    lines = figure16(args.trials, args.seed)
    rows = [line.to_dict() for line in lines]
    if not _write_out(args, "figure16", rows, lambda path: plot_figure16(lines, path)):
        print("election timeout  trials  median  p90    worst  (ms without a leader; 5 raft nodes, leader crashed)")
        for r in rows:
            print(f"{r['range_ms']:>16}  {r['trials']:6d}  {r['median_ms']!s:>6}  {r['p90_ms']!s:>5}  {r['worst_ms']!s:>6}"
                  + (f"  ({r['failed']} without a leader)" if r["failed"] else ""))
    return 0


def cmd_messages(args: argparse.Namespace) -> int:
    from node.sim.figures import messages_table, plot_messages

    rows = messages_table(tuple(int(n) for n in args.sizes.split(",")))
    if not _write_out(args, "messages", rows, lambda path: plot_messages(rows, path)):
        print("mode      n  typical  all-at-once  textbook")
        for r in rows:
            print(f"{r['mode']:8} {r['n']:2d}  {r['median']!s:>7}  {r['all_at_once']!s:>11}  {r['textbook']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from node.cli import _positive

    parser = argparse.ArgumentParser(prog="bullyproof sim", description="The deterministic simulator and its explorer.")
    sub = parser.add_subparsers(dest="command", required=True)

    def swarm_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--nodes", type=int, choices=range(1, 8), metavar="N", help="membership size (default: random 1..7)")
        p.add_argument("--mode", choices=mode_names(), default=DEFAULT_MODE)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--drift", choices=["within", "beyond", "none"], default="within",
                       help=f"clock-rate skew: within the ±{CLOCK_DRIFT_BOUND * 100:.0f}%% bound (default), beyond it, or none")
        p.add_argument("--hold-down-ticks", type=int, default=None, help="preemption hold-down (default: random)")
        p.add_argument("--bug", action="append", default=[], choices=[b.value for b in PlantedBug],
                       help="plant a deliberate defect (to measure the explorer)")
        p.add_argument("--mode-option", action="append", default=[], metavar="NAME",
                       help="a switch of the mode (raft: no-pre-vote)")

    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    def budget_options(p: argparse.ArgumentParser, per: str) -> None:
        p.add_argument("--budget-s", type=seconds, default=None, metavar="S",
                       help=f"seconds{per} (default: 60 unless --schedules is given)")
        p.add_argument("--schedules", type=_positive, default=None, metavar="N",
                       help=f"run schedules 0..N-1 of the seed{per}, the same ones on any machine and under any "
                            "load; with --budget-s too, whichever is spent first ends the run")
        p.add_argument("--workers", type=_positive, default=os.cpu_count() or 1, metavar="W",
                       help="processes running schedules (default: every core; 1: in this process)")

    p = sub.add_parser("explore", help="search fault schedules for a budget; exit 1 if a property failed")
    swarm_options(p)
    budget_options(p, "")
    p.add_argument("--first", action="store_true", help="stop at the first violation")
    p.add_argument("--save", type=Path, help="write each minimal failing schedule into this folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("run", help="run the swarm schedule of one seed and print what happened")
    swarm_options(p)
    p.add_argument("--views", action="store_true", help="also print every view change")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("replay", help="run a schedule script (as printed by explore)")
    p.add_argument("file")
    p.add_argument("--views", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("bugs", help="time the explorer against every planted bug (harness power)")
    swarm_options(p)
    budget_options(p, " per bug")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bugs)

    p = sub.add_parser("figure16", help="Raft paper figure 16: time without a leader per election-timeout range")
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write figure16.png and figure16.json here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_figure16)

    p = sub.add_parser("messages", help="messages per election after a leader failure, every mode, against the textbook")
    p.add_argument("--sizes", default="3,5,9,15,25")
    p.add_argument("--out", type=Path, help="write messages.png and messages.json here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_messages)

    from node.sim.check import add_check_parser  # `sim check`: the exhaustive small-scope checker
    add_check_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "mode_option", None):
        try:
            check_mode_options(args.mode, frozenset(args.mode_option))
        except ValueError as exc:
            parser.error(f"--mode-option: {exc}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
