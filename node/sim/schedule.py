"""Fault schedules: a short script, one command per line, replayable exactly, and its runner.

    @nodes 3                          header: membership size, mode, seed, timing, clock rates, bugs
    @retimed 2=100                    node 2 starts with an election timeout of 100 ticks (mixed timings)
    run 120                           let time pass
    until ack * 40                    run until some node sends a granted ack (at most 40 ticks)...
    crash_restart T                   ...then SIGKILL and restart that node (T) at once
    cut L 1                           one-way cut from the current leader (L) to node 1
    hold * L reply 0 reassert-won 60  keep the acks to the leader back until it reasserts (60 ticks at most)
    heal_link L 1                     restore that one link
    retime F 25                       restart a follower with an election timeout of 25 ticks (a rolling change)
    @joining 4 5                      nodes 4 and 5 start outside the configuration, to be added
    member add 4                      the leader adds node 4 (a learner, promoted once it acknowledged)
    member remove F                   the leader removes a follower (one voter per change)
    stale 2                           restart node 2 with the start-up member list (an operator's stale --peers)

Targets may be symbolic: L (the leader with the highest epoch), F (a follower), T (the node at which
the last `until` fired), D (a crashed node), * (any live node; in `hold`, any node at all); the
runner records the concrete ids it chose, so a printed schedule names nodes. `until INSTANT WHO MAX`
waits for any protocol instant of the mode (node.core.instants: `bullyproof sim instants` lists
them), e.g. ack, lease-end, deadline, proposal-failed, reassert-in-flight, boot-window, won-again.
Link faults come for every link (delay, drop, duplicate) or for one directed link (delay_link,
drop_link, duplicate_link, cut, heal_link). After the last command every node is healed, resumed
and restarted, and the cluster must agree within `heal` ticks (P4).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from fractions import Fraction

from node.core import Mode, PlantedBug, Timing, check_mode_options, mode_info
from node.faults import schedule_spellings
from node.sim.network import Network
from node.sim.world import HOLD_KINDS

Command = tuple[str, ...]


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
    # Nodes that start with another election timeout (ticks): ((node, timeout), ...); the rest run `timing`.
    retimed: tuple[tuple[int, int], ...] = ()
    # Nodes that start outside the configuration, to be added by `member add` (membership changes).
    joining: tuple[int, ...] = ()

    @property
    def agree_within_ticks(self) -> int:
        # The longest election timeout a node may run: retime commands' too.
        timeouts = [
            self.timing.election_timeout_ticks,
            *(et for _, et in self.retimed),
            *(int(c[2]) for c in self.commands if c[0] == "retime"),
        ]
        return self.heal_ticks or 6 * max(timeouts) + self.timing.preempt_hold_down_ticks

    def timing_with(self, election_timeout_ticks: int) -> Timing:
        """This schedule's timing with another election timeout, every other duration derived as the
        runtime derives it (Timing.from_ms); ValueError if node.config would refuse it."""
        return retimed_timing(self.timing, election_timeout_ticks)

    def to_script(self) -> str:
        t = " ".join(f"{f.name}={getattr(self.timing, f.name)}" for f in fields(Timing))
        head = [f"@nodes {self.n}", f"@mode {self.mode.value}", f"@seed {self.seed}", f"@timing {t}"]
        if self.clock_rates:
            head.append("@rates " + " ".join(str(r) for r in self.clock_rates))
        head += [f"@bug {b.value}" for b in sorted(self.planted_bugs, key=lambda b: b.value)]
        head += [f"@option {o}" for o in sorted(self.mode_options)]
        if self.heal_ticks:
            head.append(f"@heal {self.heal_ticks}")
        if self.retimed:
            head.append("@retimed " + " ".join(f"{node}={et}" for node, et in self.retimed))
        if self.joining:
            head.append("@joining " + " ".join(map(str, self.joining)))
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
                seed=int(values["seed"][0]),
                n=int(values["nodes"][0]),
                mode=Mode(values["mode"][0]),
                timing=timing,
                commands=tuple(commands),
                clock_rates=tuple(Fraction(r) for r in values.get("rates", [])),
                planted_bugs=frozenset(bugs),
                heal_ticks=int(values.get("heal", ["0"])[0]),
                mode_options=frozenset(options),
                retimed=tuple((int(node), int(et)) for node, et in (kv.split("=") for kv in values.get("retimed", []))),
                joining=tuple(int(node) for node in values.get("joining", [])),
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


class Runner:
    """Carries out commands on a Network; picks symbolic targets with its own seeded generator."""

    def __init__(self, schedule: Schedule) -> None:
        self.s = schedule
        rates = {i + 1: r for i, r in enumerate(schedule.clock_rates)}
        timings = {node: schedule.timing_with(et) for node, et in schedule.retimed}
        self.net = Network(
            schedule.seed,
            schedule.n,
            schedule.mode,
            schedule.timing,
            schedule.planted_bugs,
            rates,
            mode_options=schedule.mode_options,
            timings=timings,
            joining=schedule.joining,
        )
        self.rng = random.Random(f"{schedule.seed}:targets")
        self.trigger_node: int | None = None
        self.kinds: set[str] = set()
        self.concrete: list[Command] = []
        known = mode_info(schedule.mode).instants
        for c in schedule.commands:
            name = c[1] if c[0] == "until" else c[5] if c[0] == "hold" and len(c) > 5 else None
            if name is not None and name not in known:
                raise ValueError(
                    f"{' '.join(c)}: mode {schedule.mode.value} has no instant {name!r}; "
                    f"known: {', '.join(sorted(known))}"
                )

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
            if kind == "who" and word == "*":  # any node
                concrete.append(word)
                values.append(0)
            elif kind in ("node", "who"):
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
        if verb in ("delay", "delay_link") and values[-1] > self.s.timing.leader_lease_ticks:
            self.kinds.add("long_delay")
        elif verb == "member":
            self.kinds.add(f"member_{values[0]}")
        elif verb not in ("run", "until"):
            self.kinds.add(verb)
        return (verb, *concrete)

    def until(self, instant: str, who: int, max_ticks: int) -> None:
        """Run until node `who` (0: any) reaches INSTANT, at most max_ticks; note which node did."""
        net = self.net
        for _ in range(max_ticks):
            net.tick()
            hit = next((node for node, name in net.reached if name == instant and who in (0, node)), None)
            if hit is not None:
                self.trigger_node = hit
                return
        self.trigger_node = None


def retimed_timing(base: Timing, election_timeout_ticks: int) -> Timing:
    """`base` with another election timeout, derived as the runtime derives every duration from its
    two knobs (ticks as milliseconds); ValueError if node.config would refuse the result."""
    from node.config import ConfigError, check_timings

    hb = base.heartbeat_interval_ticks
    try:
        check_timings(hb, election_timeout_ticks, 1)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return Timing.from_ms(hb, election_timeout_ticks, 1, base.preempt_hold_down_ticks)


def _retime(r: Runner, node: int, election_timeout_ticks: int) -> None:
    """One step of a rolling change: the node stops and starts again with another election timeout."""
    timing = r.s.timing_with(election_timeout_ticks)
    if not r.net.crashed(node):
        r.net.crash(node)
    r.net.restart(node, timing)


def _member(r: Runner, action: str, node: int) -> None:
    """An operator's membership change, sent to the leader: `add` (as a learner, promoted once it
    acknowledged) or `remove`. ValueError (MembershipRefused) if no leader may make it now."""
    leader = r.leader()
    if leader is None:
        raise ValueError("no leader to ask")
    m = r.net.membership(leader)
    if m is None:
        raise ValueError(f"mode {r.s.mode.value} keeps its list")
    if action == "add":
        r.net.change_membership(leader, m.voters, m.learners + (node,))
    elif action == "remove":
        r.net.change_membership(
            leader, tuple(v for v in m.voters if v != node), tuple(x for x in m.learners if x != node)
        )
    else:
        raise ValueError(f"member {action}: add or remove")


def _stale(r: Runner, node: int) -> None:
    """Restart `node` with the member list it was first started with (an operator's stale --peers):
    whatever configuration it made durable must win over it."""
    if not r.net.crashed(node):
        r.net.crash(node)
    r.net.restart(node, members=r.net.first_lists[node])


def _groups(text: str) -> list[list[int]]:
    return [[int(x) for x in g.split(",") if x] for g in text.split("|")]


def _distinct(a: int, b: int) -> tuple[int, int]:
    if a == b:
        raise ValueError("a node and itself")
    return a, b


# What each command takes, how its words parse, and what it does. The fault commands, and what
# their words are, come from the fault registry (node.faults: each kind's Spelling in schedules);
# `run` and `until` only let time pass.
ARGS: dict[str, tuple[str, ...]] = {
    "run": ("ticks",),
    "until": ("instant", "who", "ticks"),
    **{command: spelling.args for command, spelling in schedule_spellings().items()},
}


def _kind(word: str) -> str:
    if word not in HOLD_KINDS:
        raise ValueError(f"unknown message kind {word!r}; known: {', '.join(HOLD_KINDS)}")
    return word


PARSE: dict[str, Callable[[str], object]] = {
    "ticks": int,
    "count": int,
    "p": float,
    "groups": _groups,
    "instant": str,
    "who": str,
    "kind": _kind,
    "action": str,
}
COMMANDS: dict[str, Callable[..., object]] = {
    "run": lambda r, ticks: r.net.run(ticks),
    "until": lambda r, instant, who, ticks: r.until(instant, who, ticks),
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
    "delay_link": lambda r, a, b, low, high: r.net.set_delay(low, high, [_distinct(a, b)]),
    "drop_link": lambda r, a, b, p: r.net.set_drop(p, [_distinct(a, b)]),
    "duplicate_link": lambda r, a, b, p: r.net.set_duplicate(p, [_distinct(a, b)]),
    "heal_link": lambda r, a, b: r.net.heal_link(*_distinct(a, b)),
    "hold": lambda r, src, dst, kind, count, until, ticks: r.net.hold(src, dst, kind, count, until, ticks),
    "resign": lambda r, node: r.net.resign(node),
    "transfer": lambda r, a, b: r.net.transfer(*_distinct(a, b)),
    "retime": _retime,
    "member": _member,
    "stale": _stale,
}
if COMMANDS.keys() != ARGS.keys():  # a kind spelled in node.faults must be done here, and only those
    raise ImportError(
        f"schedule commands without a spelling or an implementation: {sorted(COMMANDS.keys() ^ ARGS.keys())}"
    )


def run_schedule(schedule: Schedule) -> Outcome:
    return Runner(schedule).run()
