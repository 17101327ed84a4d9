"""The one vocabulary of faults, and the interface every world that can suffer them implements.

Two worlds break a cluster: the deterministic simulator (node/sim: time in ticks, links in memory)
and real processes wired through Toxiproxy (chaos/harness.py ChaosCluster). Both speak this
vocabulary. Each fault kind is one `FaultKind` in `FAULTS`: its name, its parameters (the unit last
in each name: `latency_ms`), a one-line description, the history event it records, and the worlds
that can do it. Everything that offers faults asks this registry:

* the chaos CLI (`bullyproof chaos NAME ...`, its arguments, defaults and help: chaos/cli.py),
* the page's buttons and what they send (dashboard/actions.py, served to dashboard/static/app.js),
* the simulator's schedule language (`Spelling`: the words of node/sim/schedule.py scripts, in
  ticks, and the swarm that draws them),
* the scenarios (chaos/scenarios.py), written once against `ScenarioWorld` and run in either world.

`FaultTarget` is the interface: a method per fault kind that both worlds can do, in the registry's
own units (milliseconds, node ids, directed links). The simulator's backend is node/sim/target.py
(SimTarget, over a Network), the real one ChaosCluster. `ScenarioWorld` adds what a scenario needs to aim
and to wait: the members, the leader, the timing, and time passing (asleep, or simulated).

Adding a fault kind: an entry here, a method in each world that can do it (and in FaultTarget if
both can), its spelling in schedules (if the simulator has one, with its recipe in node/sim/swarm.py
if the explorer should draw it with more care than the generic one). The CLI, the page and the
scenario descriptions follow from the entry.

Pure: no grpc, no asyncio, no clock, so that node/sim, chaos/ and dashboard/ can all import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

SIM = "sim"  # the deterministic simulator (node/sim)
REAL = "real"  # real processes through Toxiproxy (chaos/harness.py)
WORLDS = (SIM, REAL)

# What a fault acts on: the links between nodes, the node processes, or the cluster as an operator.
NETWORK, PROCESS, OPERATOR = "network", "process", "operator"

# Parameter types (Param.type): how a value is written on a command line, and what it is.
PARAM_TYPES = {
    "node": "a node id",
    "groups": "groups of node ids: 1,2 / 3,4,5 (nodes not named form a group of their own)",
    "links": "directed links: 3->1 one, 3->* out of 3, *->3 into 3, * every peer link",
    "nodes": "node ids, comma-separated",
    "ms": "a duration: 200ms or 1.5s",
    "int": "a whole number",
    "probability": "a probability in [0, 1)",
    "allowed": "for each node, the peers it may still reach",
    "name": "the name a fault was started under",
    "action": "add or remove",
}


@dataclass(frozen=True)
class Param:
    """One parameter of a fault kind, named with its unit last (`latency_ms`, `rate_kbps`)."""

    name: str
    type: str  # a key of PARAM_TYPES
    help: str
    default: Any = None  # None: required
    example: Any = None  # what a form offers first for a required one (the page's latency: 200 ms)

    @property
    def required(self) -> bool:
        return self.default is None

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"parameter {self.name}: unknown type {self.type!r}; one of {', '.join(PARAM_TYPES)}")


@dataclass(frozen=True)
class Spelling:
    """How the simulator's schedule scripts (node/sim/schedule.py) write a fault kind: a command word
    and the kinds of its words, in ticks. Scripts are saved and replayed, so these never change:
    a kind whose script words differ from its name (blackhole is `isolate`) keeps them."""

    command: str
    args: tuple[str, ...]  # node, who, ticks, p, groups, kind, count, instant, action (schedule.PARSE)
    what: str  # what this spelling does, in the kind's terms


@dataclass(frozen=True)
class FaultKind:
    name: str
    target: str  # NETWORK, PROCESS or OPERATOR
    params: tuple[Param, ...]
    description: str  # one line, for help texts, the page and scenario descriptions
    records: str  # the history event it records (node.history's schema)
    worlds: frozenset[str]
    spellings: tuple[Spelling, ...] = ()  # in the simulator's schedule scripts
    cli: bool = True  # a `bullyproof chaos` command (where the real world can do it)
    page: str = ""  # a button on the dashboard, with these words
    example: str = ""  # the arguments of an example command line

    def in_world(self, world: str) -> bool:
        return world in self.worlds

    @property
    def is_command(self) -> bool:
        """Whether `bullyproof chaos NAME` exists: a network fault the real world can do, one shot."""
        return self.cli and REAL in self.worlds

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params if not p.required}

    def help(self) -> str:
        example = f": bullyproof chaos {self.name} {self.example}" if self.example else ""
        return self.description + example


_NODE = Param("node", "node", "the node's id")
_LINKS = Param("links", "links", "which directed links")


def _kinds(*kinds: FaultKind) -> dict[str, FaultKind]:
    out: dict[str, FaultKind] = {}
    for kind in kinds:
        if kind.name in out:
            raise ValueError(f"fault kind {kind.name} twice")
        out[kind.name] = kind
    return out


FAULTS: dict[str, FaultKind] = _kinds(
    # ---- the links ----------------------------------------------------------------------------------
    FaultKind(
        "partition",
        NETWORK,
        (Param("groups", "groups", "groups of ids separated by /"),),
        "split the cluster: every link between the groups drops",
        "fault",
        frozenset(WORLDS),
        (Spelling("partition", ("groups",), "groups separated by |; they must cover every member"),),
        page="Partition chosen from the rest",
        example="1,2 / 3,4,5",
    ),
    FaultKind(
        "cut",
        NETWORK,
        (Param("links", "links", "the directed links to drop"),),
        "drop one direction only, silently",
        "fault",
        frozenset(WORLDS),
        (Spelling("cut", ("node", "node"), "drop everything on one directed link"),),
        page="Cut this direction",
        example="'5->1'",
    ),
    FaultKind(
        "one-way",
        NETWORK,
        (_NODE, Param("to", "nodes", "the peers it can no longer reach", ())),
        "a node's outgoing links drop; it still hears everyone",
        "fault",
        frozenset(WORLDS),
        example="3",
    ),
    FaultKind(
        "blackhole",
        NETWORK,
        (_NODE,),
        "silently drop every link to and from a node",
        "fault",
        frozenset(WORLDS),
        (Spelling("isolate", ("node",), "drop every link to and from the node"),),
        example="3",
    ),
    FaultKind(
        "reachability",
        NETWORK,
        (Param("allowed", "allowed", "for each node, the peers it may still reach"),),
        "every node reaches only the peers it is allowed (a bridge, a ring of majorities)",
        "fault",
        frozenset(WORLDS),
        cli=False,
    ),
    FaultKind(
        "refuse",
        NETWORK,
        (_NODE,),
        "refuse connections into a node (proxies disabled)",
        "fault",
        frozenset({REAL}),
        example="3",
    ),
    FaultKind(
        "latency",
        NETWORK,
        (
            _LINKS,
            Param("latency_ms", "ms", "the delay added", example=200),
            Param("jitter_ms", "ms", "up to this much more or less", 0),
        ),
        "add latency",
        "fault",
        frozenset(WORLDS),
        (
            Spelling("delay", ("ticks", "ticks"), "every link delays each message by MIN..MAX ticks"),
            Spelling("delay_link", ("node", "node", "ticks", "ticks"), "one directed link delays by MIN..MAX ticks"),
        ),
        page="Add latency",
        example="'3->1' 200ms --jitter 50ms",
    ),
    FaultKind(
        "bandwidth",
        NETWORK,
        (_LINKS, Param("rate_kbps", "int", "the rate in KB/s")),
        "limit bandwidth in KB/s",
        "fault",
        frozenset({REAL}),
        example="'*' 5",
    ),
    FaultKind(
        "slicer",
        NETWORK,
        (_LINKS,),
        "slice data into small delayed chunks",
        "fault",
        frozenset({REAL}),
        example="'*'",
    ),
    FaultKind(
        "reset-peer",
        NETWORK,
        (_LINKS,),
        "reset connections (TCP RST)",
        "fault",
        frozenset({REAL}),
        example="'3->*'",
    ),
    FaultKind(
        "drop",
        NETWORK,
        (_LINKS, Param("probability", "probability", "the chance each message is lost")),
        "lose each message with a probability",
        "fault",
        frozenset({SIM}),
        (
            Spelling("drop", ("p",), "every link loses each message with probability P"),
            Spelling("drop_link", ("node", "node", "p"), "one directed link loses each message with probability P"),
        ),
    ),
    FaultKind(
        "duplicate",
        NETWORK,
        (_LINKS, Param("probability", "probability", "the chance each message arrives twice")),
        "deliver each message a second time with a probability",
        "fault",
        frozenset({SIM}),
        (
            Spelling("duplicate", ("p",), "every link duplicates each message with probability P"),
            Spelling("duplicate_link", ("node", "node", "p"), "one directed link duplicates with probability P"),
        ),
    ),
    FaultKind(
        "hold",
        NETWORK,
        (),
        "keep matching messages back until a protocol instant is reached",
        "fault",
        frozenset({SIM}),
        (
            Spelling(
                "hold",
                ("who", "who", "kind", "count", "instant", "ticks"),
                "hold SRC DST KIND COUNT until INSTANT, at most TICKS",
            ),
        ),
    ),
    FaultKind(
        "clear",
        NETWORK,
        (Param("fault", "name", "the name the fault was started under"),),
        "lift one fault, the others stay",
        "fault",
        frozenset(WORLDS),
        cli=False,  # the faults a process started are its own: a CLI call would know none
    ),
    FaultKind(
        "heal-link",
        NETWORK,
        (),
        "restore one directed link",
        "fault",
        frozenset({SIM}),
        (Spelling("heal_link", ("node", "node"), "no cut, drop, duplicate or hold, one-tick delay on one link"),),
    ),
    FaultKind(
        "heal",
        NETWORK,
        (),
        "remove every network fault",
        "heal",
        frozenset(WORLDS),
        (Spelling("heal", (), "every link healthy again; processes and clocks stay"),),
        page="Heal all",
    ),
    # ---- the processes ------------------------------------------------------------------------------
    FaultKind(
        "kill",
        PROCESS,
        (_NODE,),
        "SIGKILL a node",
        "process",
        frozenset(WORLDS),
        (Spelling("crash", ("node",), "SIGKILL the node"),),
        cli=False,
    ),
    FaultKind(
        "restart",
        PROCESS,
        (_NODE,),
        "start a node again from what it persisted (SIGKILL first if it runs)",
        "process",
        frozenset(WORLDS),
        (
            Spelling("restart", ("node",), "start a crashed node from its persisted promise"),
            Spelling("crash_restart", ("node",), "SIGKILL and restart within one tick"),
        ),
        cli=False,
    ),
    FaultKind(
        "restart-all",
        PROCESS,
        (),
        "every node SIGKILLed and restarted at once (a power cut)",
        "process",
        frozenset({SIM}),
        (Spelling("restart_all", (), "every node SIGKILLed and restarted at once"),),
    ),
    FaultKind(
        "pause",
        PROCESS,
        (_NODE,),
        "SIGSTOP a node (until it is resumed)",
        "process",
        frozenset(WORLDS),
        (Spelling("pause", ("node", "ticks"), "SIGSTOP the node for TICKS"),),
        cli=False,
    ),
    FaultKind(
        "resume",
        PROCESS,
        (_NODE,),
        "SIGCONT a paused node",
        "process",
        frozenset(WORLDS),
        cli=False,
    ),
    FaultKind(
        "retime",
        PROCESS,
        (_NODE, Param("election_timeout_ms", "ms", "its new election timeout")),
        "restart a node with another election timeout (one step of a rolling change)",
        "process",
        frozenset(WORLDS),
        (Spelling("retime", ("node", "ticks"), "restart the node with an election timeout of TICKS"),),
        cli=False,
    ),
    FaultKind(
        "stale",
        PROCESS,
        (_NODE,),
        "restart a node with the member list it was first started with (a stale --peers)",
        "process",
        frozenset({SIM}),
        (Spelling("stale", ("node",), "restart the node with its start-up member list"),),
    ),
    # ---- what an operator does ----------------------------------------------------------------------
    FaultKind(
        "resign",
        OPERATOR,
        (_NODE,),
        "the leader resigns (names no successor)",
        "view",
        frozenset({SIM}),
        (Spelling("resign", ("node",), "the node resigns, if it leads"),),
    ),
    FaultKind(
        "transfer",
        OPERATOR,
        (Param("target", "node", "the node to hand leadership to"),),
        "the leader hands leadership to another node",
        "transfer",
        frozenset(WORLDS),
        (Spelling("transfer", ("node", "node"), "the first node, if it leads, hands over to the second"),),
        cli=False,
    ),
    FaultKind(
        "member",
        OPERATOR,
        (Param("action", "action", "add or remove"), Param("target", "node", "the node added or removed")),
        "the leader adds a node (as a learner) or removes one, one voter per change",
        "membership",
        frozenset(WORLDS),
        (Spelling("member", ("action", "node"), "the leader adds or removes the node"),),
        cli=False,
    ),
)


def spelled(command: str) -> tuple[FaultKind, Spelling]:
    """The fault kind a schedule command spells, and how."""
    for kind in FAULTS.values():
        for spelling in kind.spellings:
            if spelling.command == command:
                return kind, spelling
    raise KeyError(command)


def schedule_spellings() -> dict[str, Spelling]:
    """Every schedule command that is a fault, in the registry's order: command -> spelling."""
    out: dict[str, Spelling] = {}
    for kind in FAULTS.values():
        for spelling in kind.spellings:
            if spelling.command in out:
                raise ValueError(f"schedule command {spelling.command} spells two fault kinds")
            out[spelling.command] = spelling
    return out


def cli_commands() -> list[FaultKind]:
    """The `bullyproof chaos` fault commands: network faults the real world does in one shot."""
    return [k for k in FAULTS.values() if k.target == NETWORK and k.is_command]


def page_faults() -> list[FaultKind]:
    """The network faults the dashboard offers as buttons."""
    return [k for k in FAULTS.values() if k.page and REAL in k.worlds]


def describe(kind: str) -> str:
    return FAULTS[kind].description


def catalogue(kinds: Iterable[FaultKind]) -> list[dict[str, Any]]:
    """The kinds as plain data (the page builds its controls from it)."""
    return [
        {
            "name": k.name,
            "description": k.description,
            "records": k.records,
            "params": [
                {
                    "name": p.name,
                    "type": p.type,
                    "help": p.help,
                    "default": p.default,
                    "example": p.example,
                    "required": p.required,
                }
                for p in k.params
            ],
        }
        for k in kinds
    ]


# ---- the interface both worlds implement ----------------------------------------------------------------

Link = tuple[int, int]


class DroppedLinks:
    """The faults that silently drop directed links, written once for both worlds: each says which
    links and what to record, and the world's own `_drop(fault, links, detail)` cuts them (Toxiproxy's
    timeout toxic, the simulator's dropped links). Needs `ids`, the members."""

    ids: Sequence[int]

    def _drop(self, fault: str, links: list[Link], detail: Mapping[str, object]) -> None:
        raise NotImplementedError

    def cut(self, links: Iterable[Link], fault: str = "cut") -> None:
        links = list(links)
        self._drop(fault, links, {"links": [f"{a}->{b}" for a, b in links]})

    def partition(self, groups: list[list[int]], fault: str = "partition") -> None:
        pairs = [(a, b) for g in groups for h in groups if g is not h for a in g for b in h]
        self._drop(fault, pairs, {"groups": groups})

    def one_way(self, src: int, dsts: Iterable[int], fault: str = "one-way") -> None:
        dsts = list(dsts)
        self._drop(fault, [(src, d) for d in dsts], {"from": src, "to": dsts})

    def blackhole(self, node: int, fault: str = "blackhole") -> None:
        others = [n for n in self.ids if n != node]
        self._drop(fault, [(node, o) for o in others] + [(o, node) for o in others], {"node": node})

    def reachability(self, allowed: Mapping[int, set[int]], fault: str = "reachability") -> None:
        """Cut every directed link a->b where b is not in allowed[a] (bridge, ring)."""
        pairs = [(a, b) for a in self.ids for b in self.ids if a != b and b not in allowed[a]]
        self._drop(fault, pairs, {"allowed": {str(k): sorted(v) for k, v in allowed.items()}})


@runtime_checkable
class FaultTarget(Protocol):
    """The faults both worlds can do (FAULTS kinds whose worlds are both), in the registry's units.
    Each network fault is recorded in the world's history as a `fault` start named `fault` (default:
    the kind's name) with what it did in `detail`; `clear(fault)` ends one, `heal()` all of them.
    Process faults record `process` events, as a real harness does."""

    def partition(self, groups: list[list[int]], fault: str = "partition") -> None: ...

    def cut(self, links: Iterable[Link], fault: str = "cut") -> None: ...

    def one_way(self, src: int, dsts: Iterable[int], fault: str = "one-way") -> None: ...

    def blackhole(self, node: int, fault: str = "blackhole") -> None: ...

    def reachability(self, allowed: Mapping[int, set[int]], fault: str) -> None: ...

    def latency(self, links: Iterable[Link], latency_ms: int, jitter_ms: int = 0, fault: str = "latency") -> None: ...

    def clear(self, fault: str) -> None: ...

    def heal(self) -> None: ...

    def kill(self, node: int) -> None: ...

    def restart(self, node: int) -> None: ...

    def pause(self, node: int) -> None: ...

    def resume(self, node: int) -> None: ...

    def retime(self, node: int, election_timeout_ms: int) -> None: ...

    def transfer(self, target: int) -> Any: ...

    def change_membership(self, action: str, target: int) -> Any: ...


@runtime_checkable
class ScenarioWorld(FaultTarget, Protocol):
    """A cluster a scenario can break, aim at and wait on: the FaultTarget, plus the members, the
    leader, the timing and time passing (a real sleep, or simulated ticks)."""

    heartbeat_interval_ms: int
    election_timeout_ms: int

    @property
    def ids(self) -> list[int]: ...

    @property
    def joining(self) -> tuple[int, ...]: ...

    def leader(self) -> tuple[int, int] | None:
        """(node, epoch) every member agrees on, or None."""
        ...

    def current_leader(self) -> int | None:
        """The node claiming leadership with the highest epoch right now (maybe unagreed)."""
        ...

    def wait_for_leader(self, timeout_s: float = 15.0, exclude: Iterable[int] = ()) -> tuple[int, int]:
        """Until every node but `exclude` agrees on a leader; TimeoutError if not within timeout_s."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let time pass: really, or simulated."""
        ...

    def all_peer_links(self) -> list[Link]: ...


def all_links(ids: Sequence[int]) -> list[Link]:
    return [(a, b) for a in ids for b in ids if a != b]


@dataclass
class ActiveFaults:
    """Which links each named fault acts on (a world that lifts one fault by name needs to know)."""

    links: dict[str, list[Link]] = field(default_factory=dict)

    def add(self, fault: str, links: Iterable[Link]) -> None:
        self.links.setdefault(fault, []).extend(links)

    def pop(self, fault: str) -> list[Link]:
        return self.links.pop(fault, [])

    def clear(self) -> list[str]:
        names = list(self.links)
        self.links.clear()
        return names
