"""Generating schedules: swarm testing, aimed at the dangerous instants.

Each schedule enables a random subset of fault kinds with random weights, a random membership size
(1..7, even sizes included), hold-down on, short or off, the mode's options on or off, the runtime's
timing or another that node.config accepts (down to the tightest lease/promise margin it accepts),
and maybe skewed clocks. Some schedules run members on different election timeouts, and some change
one node's timeout on the way (a rolling change: `retime`). Faults are aimed: most wait for a
protocol instant first (`until`), any instant the mode names, and some hold messages back until one.
The fault commands are the fault registry's spellings (node.faults).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, replace
from fractions import Fraction

from node.core import CLOCK_DRIFT_BOUND, Mode, PlantedBug, Timing, mode_info
from node.faults import schedule_spellings
from node.sim.schedule import Command, Schedule, retimed_timing
from node.sim.world import HOLD_KINDS
from node.timing import DEFAULT_TIMING

BEYOND_DRIFT = 0.25  # `--drift beyond`: far outside the bound, to show that the checker sees it

# Hold-down preemption in ticks (10 ms each): the runtime default (3000 ms), shorter, and off
# (spelled out: the draw is part of every seed's schedule).
HOLD_DOWN_CHOICES_TICKS = (300, 300, 60, 20, 0, 0)
SIZE_CHOICES = (1, 2, 3, 3, 4, 4, 5, 5, 6, 7)

# The order the swarm draws fault kinds in is part of every seed's schedule, so it is kept: the
# schedule commands of the fault registry (node.faults) in the order they were added, with two
# recipes of its own (a delay longer than the lease, skewed clocks). A command the registry gains
# later is drawn after these (generically, unless commands_for has a recipe for it); retime, member
# and stale have generators of their own (mixed_timings, membership_changes).
RECIPES = ("long_delay", "skew")
OWN_GENERATORS = ("retime", "member", "stale")
DRAW_ORDER = (
    "crash",
    "restart",
    "crash_restart",
    "restart_all",
    "pause",
    "cut",
    "partition",
    "isolate",
    "heal",
    "delay",
    "long_delay",
    "drop",
    "duplicate",
    "resign",
    "transfer",
    "skew",
    "delay_link",
    "drop_link",
    "duplicate_link",
    "heal_link",
    "hold",
)
FAULT_KINDS = DRAW_ORDER + tuple(
    command for command in schedule_spellings() if command not in DRAW_ORDER and command not in OWN_GENERATORS
)
# The instants most faults wait for; any other instant of the mode is drawn too, less often.
COMMON_TRIGGERS = ("ack", "lease-end", "deadline", "leader", "candidate")
TICK_MS = DEFAULT_TIMING.tick_ms
# Mixed timings: how often a schedule has them, and the election timeouts drawn (times the schedule's).
MIXED_TIMINGS_SHARE = 0.3
TIMEOUT_FACTORS = (0.6, 0.8, 1.5, 2.0)
# Membership changes (modes that make them): how often a schedule has them.
MEMBERSHIP_SHARE = 0.3


def runtime_timing(hold_down_ticks: int = DEFAULT_TIMING.preempt_hold_down_ms // TICK_MS) -> Timing:
    """The runtime's defaults (node.timing.DEFAULT_TIMING: heartbeat, election timeout, hold-down), in
    the simulator's ticks, which are the runtime's default tick."""
    return Timing.from_ms(
        DEFAULT_TIMING.heartbeat_interval_ms, DEFAULT_TIMING.election_timeout_ms, TICK_MS, hold_down_ticks * TICK_MS
    )


@functools.cache
def accepted_timings() -> tuple[Timing, ...]:
    """Every timing node.config.check_timings accepts with election timeouts of 9..80 ticks, the
    tightest lease/promise margins first."""
    from node.config import ConfigError, check_timings

    found = []
    for et in range(9, 81):
        for hb in range(1, et // 3 + 1):
            try:
                found.append(check_timings(hb * TICK_MS, et * TICK_MS, TICK_MS))
            except ConfigError:
                continue
    return tuple(
        sorted(set(found), key=lambda t: (t.drift_margin, t.election_timeout_ticks, t.heartbeat_interval_ticks))
    )


def accepted_timing(rng: random.Random, hold_down_ticks: int) -> Timing:
    """Some other timing a node accepts: half the time one of those with the tightest margin (where
    ticks round the lease and the promise closest together), else any."""
    timings = accepted_timings()
    tightest = [t for t in timings if t.drift_margin == timings[0].drift_margin]
    t = rng.choice(tightest) if rng.random() < 0.5 else rng.choice(timings)
    return replace(t, preempt_hold_down_ticks=hold_down_ticks)


@dataclass(frozen=True)
class SwarmSettings:
    nodes: int | None = None  # None: a random size 1..7 per schedule
    mode: Mode = Mode.QUORUM
    drift: str = "within"  # within (the documented bound), beyond, or none
    planted_bugs: frozenset[PlantedBug] = frozenset()
    hold_down_ticks: int | None = None  # None: random, mostly the runtime default
    mode_options: frozenset[str] | None = None  # None: each of the mode's options on in a third of the schedules


def swarm_schedule(seed: int, settings: SwarmSettings = SwarmSettings()) -> Schedule:
    """One random schedule. Its fault kinds (and their weights) are themselves drawn at random, so
    that some schedules do many crashes and nothing else, others only resigns and pauses, and so on."""
    rng = random.Random(f"{seed}:swarm")
    n = settings.nodes or rng.choice(SIZE_CHOICES)
    hold = settings.hold_down_ticks if settings.hold_down_ticks is not None else rng.choice(HOLD_DOWN_CHOICES_TICKS)
    # Mostly the runtime's defaults; sometimes another accepted timing with less room between the
    # lease and the promise (an outside review found the margin shrinks there).
    timing = runtime_timing(hold) if rng.random() < 0.7 else accepted_timing(rng, hold)
    options = settings.mode_options
    if options is None:
        options = frozenset(o for o in sorted(mode_info(settings.mode).options) if rng.random() < 1 / 3)
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
            commands.append(trigger_for(kind, rng, et, settings.mode))
        commands += commands_for(kind, rng, n, et, lease, settings.mode)
        commands.append(("run", str(rng.choice([0, 1, 3, 8, 15, 30, 60, 120]))))
    retimed, commands = mixed_timings(seed, n, timing, commands)
    joining, commands = membership_changes(seed, n, settings.mode, et, commands)
    return Schedule(
        seed,
        n + len(joining),
        settings.mode,
        timing,
        tuple(commands),
        rates,
        settings.planted_bugs,
        mode_options=options,
        retimed=retimed,
        joining=joining,
    )


def membership_changes(
    seed: int, n: int, mode: Mode, et: int, commands: list[Command]
) -> tuple[tuple[int, ...], list[Command]]:
    """In some schedules of modes that change membership: nodes that start outside the configuration
    (ids after n), and operators' changes among the other commands: add one, remove a voter (the
    leader too: it must hand over first, so that is refused), restart a node with its stale start-up
    list. Drawn from a generator of their own, so the rest of every schedule is what it would be
    without them."""
    rng = random.Random(f"{seed}:members")
    if not mode_info(mode).membership_changes or rng.random() >= MEMBERSHIP_SHARE:
        return (), commands
    joining = tuple(range(n + 1, n + 1 + rng.choice((0, 1, 1, 2))))
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.45 and joining:
            op: list[Command] = [("member", "add", str(rng.choice(joining)))]
        elif roll < 0.8:
            op = [("member", "remove", rng.choice(["F", "F", "L", str(rng.randint(1, n + len(joining)))]))]
        else:
            op = [("stale", rng.choice(["*", "F", "L"]))]
        if rng.random() < 0.5:
            op.insert(0, trigger_for("member", rng, et, mode))
        at = rng.randint(1, len(commands))
        commands = [*commands[:at], *op, ("run", str(rng.choice([0, 5, 20, 60]))), *commands[at:]]
    return joining, commands


def mixed_timings(
    seed: int, n: int, timing: Timing, commands: list[Command]
) -> tuple[tuple[tuple[int, int], ...], list[Command]]:
    """In some schedules, members that start on other election timeouts, and a rolling change of one
    node's timeout somewhere among the commands. Drawn from a generator of their own, so the rest of
    every schedule is what it would be without them."""
    rng = random.Random(f"{seed}:timings")
    if n < 2 or rng.random() >= MIXED_TIMINGS_SHARE:
        return (), commands
    et = timing.election_timeout_ticks

    def other_timeout() -> int | None:
        candidate = round(et * rng.choice(TIMEOUT_FACTORS))
        try:
            retimed_timing(timing, candidate)
        except ValueError:
            return None  # node.config would refuse it
        return candidate

    retimed = tuple((node, t) for node in range(1, n + 1) if rng.random() < 0.5 and (t := other_timeout()) is not None)
    if rng.random() < 0.5 and (t := other_timeout()) is not None:
        at = rng.randint(1, len(commands))
        commands = [*commands[:at], ("retime", rng.choice(["F", "L", "T", "*"]), str(t)), *commands[at:]]
    return retimed, commands


def _any_instant(rng: random.Random, mode: Mode) -> str:
    return rng.choice(sorted(mode_info(mode).instants))


def trigger_for(kind: str, rng: random.Random, et: int, mode: Mode) -> Command:
    """The instant to act at: just after an ack, just before a lease ends or a node times out, or
    any other instant the mode names (a reassert in flight, a failed proposal, a boot window...)."""
    known = mode_info(mode).instants
    if rng.random() < 0.4:
        event = _any_instant(rng, mode)
    elif kind in ("resign", "transfer"):
        event = rng.choice(["leader", "candidate", "ack"])
    elif kind in ("crash", "crash_restart", "restart_all", "pause"):
        event = rng.choice(["ack", "ack", "lease-end", "deadline", "candidate"])
    else:
        event = rng.choice(COMMON_TRIGGERS)
    if event not in known:  # a mode without leases or timeouts (classic, ring)
        event = rng.choice([t for t in COMMON_TRIGGERS if t in known])
    return ("until", event, "*", str(rng.choice([et, 2 * et, 4 * et])))


def commands_for(kind: str, rng: random.Random, n: int, et: int, lease: int, mode: Mode) -> list[Command]:
    def who() -> str:
        return rng.choice(["T", "T", "L", "F", "*", str(rng.randint(1, n))])

    def other() -> str:
        return rng.choice(["F", "T", "*", str(rng.randint(1, n))])

    if kind in ("delay_link", "drop_link", "duplicate_link", "heal_link"):
        # One direction of one link, often both ways between the leader and one other node.
        a, b = who(), other()
        links = [(a, b), (b, a)] if rng.random() < 0.3 else [(a, b)]
        if kind == "delay_link":
            low = rng.randint(1, 4)
            high = low + rng.choice([rng.randint(0, 15), rng.randint(lease, 3 * et)])
            return [("delay_link", x, y, str(low), str(high)) for x, y in links]
        if kind == "drop_link":
            p = rng.choice(["0.2", "0.5", "0.9"])
            return [("drop_link", x, y, p) for x, y in links]
        if kind == "duplicate_link":
            p = rng.choice(["0.3", "0.6", "0.9"])
            return [("duplicate_link", x, y, p) for x, y in links]
        return [("heal_link", x, y) for x, y in links]
    if kind == "hold":
        # Hold back one message, or one round's replies, until an instant: the acks of a round until
        # the leader's lease ends, a Coordinator until its sender gives up, ...
        src, dst = rng.choice([("*", "L"), ("L", "*"), (who(), other()), ("*", "*")])
        what = rng.choice(["reply", "reply", "any", rng.choice(HOLD_KINDS)])
        count = rng.choice(["0", "1", "1", "2", str(n)])
        return [("hold", src, dst, what, count, _any_instant(rng, mode), str(rng.choice([et, 2 * et, 4 * et])))]
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
        return [("cut", who(), other()) for _ in range(rng.randint(1, 3))]
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
    return [generic_command(kind, rng, n, et)]


def generic_command(command: str, rng: random.Random, n: int, et: int) -> Command:
    """A fault command without a recipe of its own, its words drawn by their kinds (node.faults's
    spelling of it): a node, a wait, a probability..."""
    try:
        args = schedule_spellings()[command].args
    except KeyError:
        raise ValueError(command) from None
    draw = {
        "node": lambda: rng.choice(["T", "L", "F", "*", str(rng.randint(1, n))]),
        "who": lambda: rng.choice(["L", "*", str(rng.randint(1, n))]),
        "ticks": lambda: str(rng.randint(1, 3 * et)),
        "count": lambda: rng.choice(["0", "1", str(n)]),
        "p": lambda: rng.choice(["0.1", "0.3", "0.6"]),
        "kind": lambda: rng.choice(HOLD_KINDS),
        "instant": lambda: rng.choice(COMMON_TRIGGERS),
        "action": lambda: rng.choice(["add", "remove"]),
    }
    if any(a not in draw for a in args):
        raise ValueError(f"{command}: no way to draw {', '.join(a for a in args if a not in draw)}")
    return (command, *(draw[a]() for a in args))
