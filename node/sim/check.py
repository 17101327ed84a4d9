"""An exhaustive small-scope model checker over the real election core (stateright, TLC and DSLabs
are the models): breadth-first over every schedule of a few actions, so a violation it reports is a
shortest one.

    bullyproof sim check --nodes 3 [--mode quorum|raft] [--depth D] [--faults K] [--budget-s S] [--bug B] [--json]

A state is every node's elector (the real one from node/core, copied per successor), its persisted
Promise, whether it runs, the multiset of messages in flight, one global clock `now` in ticks (every
node's clock reads exactly `now`: no drift) and the history the properties need: which node led which
epoch (P1) and every promise window still live (P3g). From a state, each action makes one successor:

* deliver one message in flight (or a send_failed notice back to its sender); the receiver then ticks
  at once, as the runtime does after a message. Delivery order is free, so every delay and reordering
  is covered, down to the timer instants at which deliveries happen (below);
* advance time to the earliest next_deadline among running nodes and tick every node due then;
* crash a node (a fault): messages in flight to it come back to their senders as send_failed (the
  runtime's failed call; left undelivered they vanish, as in the simulator), and later sends to it too;
  restart a crashed node from its persisted promise (free);
* drop or duplicate one message in flight (a fault each).

Persist before send, as node/sim/network.py does: an Output's promise is persisted before its messages
go in flight, and a crash falls between two actions, never inside one.

Every state is checked as it is made: P1 (no epoch ever had two leaders), P3 (no two running nodes
leaders with a valid lease at `now`), and P3g with node.history's rules on the instant: no member
grants while its promise to another lives (its own vote included), no two nodes backed by majorities
of live promises at once, no leader without a majority's promises. While time passes without events
a lease only runs out and backing changes only where a promise ends, so checking after each action,
and at each promise's end while time advances, covers every instant.

Reductions: states are merged by a canonical fingerprint with times relative to `now` (a past time is
clamped where no comparison can tell it from an older one: at now for a deadline, a lease back for a
round's send), heartbeat and pre-vote rounds relative to each node's own counter, the in-flight
multiset sorted, and (raft only) node ids permuted to a canonical order. The electors' randomness comes
from a stateless generator that picks the low end of every range (`--jitter high`: the high end;
`--jitter both`: every combination of the two ends, one successor each), so no random state is hashed.

Speed: an elector is copied by a per-field plan (about 20 times cheaper than copy.deepcopy) and only
when an action steps it; what an elector object did at an instant with an input is remembered, so the
second of two commuting orders reuses the first's work; states are released once expanded.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import marshal
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from node.core import (
    PROMISE_REPLY_TYPES,
    BecameLeader,
    Config,
    Elector,
    Message,
    Mode,
    MsgType,
    Output,
    PlantedBug,
    Promise,
    PromiseReleased,
    QuorumBully,
    RaftElector,
    Role,
    Timing,
    check_mode_options,
    mode_info,
)
from node.core.known import KnownLeader
from node.core.membership import Membership
from node.core.types import Stats
from node.history import (
    Grant,
    GrantWindow,
    Interval,
    Span,
    backed_overlaps,
    backed_spans,
    double_promises,
    epochs_led,
    outside_backing,
    own_votes,
)
from node.sim.network import describe_event

CHECKED_MODES = ("quorum", "raft")
JITTER_CHOICES = ("low", "high", "both")
MEMO_ENTRIES = 20_000  # remembered elector reactions (cleared when full)
MAX_JITTER_CHOICES = 3  # with --jitter both, at most this many draws per action branch (2**3 successors)

# In-flight items: a message on its way to msg.dst; the same after its sender crashed (if its receiver
# crashes too it vanishes: nobody is left to be told); a send_failed notice on its way back to msg.src.
MESSAGE, ORPHAN, NOTICE = 0, 1, 2
Item = tuple  # (kind, type, src, dst, epoch, round, granted, promised_epoch, resigning, successor, ...)


# ---- the electors' randomness ---------------------------------------------------------------------


class ChoosingRng:
    """What the electors get instead of random.Random: every draw is the low or the high end of its
    range, as the checker says. Stateless between actions, so no generator state is part of a state."""

    def __init__(self, high: bool = False) -> None:
        self.high = high
        self.script: tuple[int, ...] = ()
        self.draws = 0  # draws with a real choice during the current action

    def start(self, script: tuple[int, ...] = ()) -> None:
        self.script, self.draws = script, 0

    def _pick(self, low: int, high: int) -> int:
        if low >= high:
            return low
        index, self.draws = self.draws, self.draws + 1
        pick_high = self.script[index] if index < len(self.script) else self.high
        return high if pick_high else low

    def randint(self, a: int, b: int) -> int:
        return self._pick(a, b)

    def randrange(self, start: int, stop: int | None = None) -> int:
        if stop is None:
            start, stop = 0, start
        return self._pick(start, stop - 1)

    def __deepcopy__(self, memo: dict) -> ChoosingRng:
        return self  # shared by every elector of a run


# ---- copying an elector -----------------------------------------------------------------------------

_SHARED_TYPES = (int, bool, str, type(None), Promise, Config, Timing, frozenset, ChoosingRng, tuple, Membership)
_plans: dict[tuple, tuple[tuple[str, Callable], ...]] = {}


def _copy_object(value):
    copied = object.__new__(type(value))
    copied.__dict__.update(value.__dict__)
    return copied


def _copy_dict(value: dict) -> dict:
    return {k: (v[0], v[1].copy()) if type(v) is tuple else v for k, v in value.items()}  # rounds: (sent, set)


def _plan(elector: Elector) -> tuple[tuple[str, Callable], ...]:
    """Which fields of this kind of elector need copying, and how (worked out once per field set)."""
    plan = []
    for name, value in elector.__dict__.items():
        kind = type(value)
        if kind is set:
            plan.append((name, set.copy))
        elif kind is dict:
            plan.append((name, _copy_dict))
        elif kind is KnownLeader or kind is Stats:
            plan.append((name, _copy_object))
        elif not isinstance(value, _SHARED_TYPES):
            raise TypeError(
                f"check.clone_elector does not know how to copy {type(elector).__name__}.{name} ({kind.__name__})"
            )
    return tuple(plan)


def clone_elector(elector: Elector) -> Elector:
    """A copy that shares nothing mutable with `elector`: its sets and dicts (and the sets inside
    `rounds`), KnownLeader and Stats are copied, the rest is immutable and shared. Several times
    faster than copy.deepcopy or a pickle round trip."""
    d = elector.__dict__
    key = (type(elector), *d)
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = _plan(elector)
    new = object.__new__(type(elector))
    d = d.copy()
    for name, copy in plan:
        d[name] = copy(d[name])
    new.__dict__ = d
    return new


# ---- canonical form ---------------------------------------------------------------------------------

# Fields every elector has that never change what it does next: its identity and settings, its
# counters, and its own idea of now (every entry point first moves it to the caller's now).
# (boot_window_until and last_leader only name protocol instants for the explorer: node.core.instants.)
_IGNORED = frozenset(
    {
        "config",
        "timing",
        "id",
        "rng",
        "stats",
        "now",
        "pre_vote",
        "timeout_spread_ticks",
        "boot_window_until",
        "last_leader",
    }
)
_QUORUM_FIELDS = _IGNORED | {
    "promise",
    "highest_seen_epoch",
    "phase",
    "epoch",
    "leader_id",
    "election_deadline",
    "phase_deadline",
    "pending_higher",
    "promise_until",
    "lease_until",
    "proposal_epoch",
    "proposal_sent_at",
    "grants",
    "refusals",
    "round",
    "next_heartbeat",
    "rounds",
    "reassert_epoch",
    "reassert_sent_at",
    "reassert_retry_at",
    "ack_streak_start",
    "last_ack",
    "known",
    "proposal_by_transfer",
    "keep_after_transfer",
    "abstain_until",
    "handover",
    "release_pending",
    "_unsaved",
    "_unsaved_since",
    "membership",
    "confirmed",
    "agreed_told",
}
_RAFT_FIELDS = _IGNORED | {
    "promise",
    "term",
    "voted_for",
    "phase",
    "leader_id",
    "known",
    "promised_to",
    "promise_until",
    "election_deadline",
    "abstain_until",
    "campaign_round",
    "granted_by",
    "refused_by",
    "election_sent_at",
    "lease_until",
    "round",
    "next_heartbeat",
    "rounds",
    "membership",
    "confirmed",
    "agreed_told",
}

# An elector's state as plain data, in absolute times and real ids, computed once per elector version:
# (plain values, ids, sets of ids, times, how far back each time can matter, (id, what, how far back,
# time) pairs, heartbeat rounds as (round - current round, sent, granted by)).
#
# How far back a time can matter: a time at or before now that the elector only compares with now
# (a deadline, the end of a lease or a promise) acts alike however far back it is (0). One that is
# added to a duration first matters until that duration has passed: a proposal's or a round's send
# (a lease), a pending release or write-behind (a heartbeat interval), an ack streak (the hold-down).
RawKey = tuple


def _check_fields(elector: Elector, known: frozenset[str]) -> None:
    unknown = elector.__dict__.keys() - known
    if unknown:
        raise TypeError(
            f"check.py's canonical form does not know {type(elector).__name__}."
            f"{', '.join(sorted(unknown))}: say whether it is a time (and how far back it "
            "matters), a round, an id or plain"
        )


def _rounds(e) -> tuple:
    return tuple(sorted((r - e.round, sent, tuple(sorted(by))) for r, (sent, by) in e.rounds.items()))


_quorum_horizons: dict[Timing, tuple[int, ...]] = {}


def quorum_key(e: QuorumBully) -> RawKey:
    _check_fields(e, _QUORUM_FIELDS)
    t = e.timing
    k, pending, unsaved = e.known, e.release_pending, e._unsaved
    plain = (
        e.phase,
        e.promise.epoch,
        e.highest_seen_epoch,
        e.epoch,
        e.proposal_epoch,
        e.reassert_epoch,
        e.proposal_by_transfer,
        e.keep_after_transfer,
        e.handover,
        k.epoch,
        k.closed,
        "" if pending is None else pending[0].value,
        -1 if unsaved is None else unsaved.epoch,
        e.membership.id,
        e.agreed_told,
    )
    ids = (
        e.promise.leader_id,
        e.leader_id or 0,
        k.leader_id or 0,
        0 if pending is None else pending[1],
        0 if unsaved is None else unsaved.leader_id,
    )
    id_sets = (
        tuple(sorted(e.pending_higher)),
        tuple(sorted(e.grants)),
        tuple(sorted(e.refusals)),
        tuple(sorted(e.confirmed)),
    )
    times = (
        e.election_deadline,
        e.phase_deadline,
        e.promise_until,
        e.lease_until,
        e.proposal_sent_at,
        e.next_heartbeat,
        e.reassert_sent_at,
        e.reassert_retry_at,
        k.until,
        e.abstain_until,
        0 if pending is None else pending[2],
        e._unsaved_since,
    )
    horizons = _quorum_horizons.get(t)
    if horizons is None:
        lease, hb = t.leader_lease_ticks, t.heartbeat_interval_ticks
        horizons = _quorum_horizons[t] = (0, 0, 0, 0, lease, 0, lease, 0, 0, 0, hb, hb)
    id_times = ()
    if t.preempt_hold_down_ticks:  # without a hold-down nothing reads the ack streaks
        fresh = 2 * t.heartbeat_interval_ticks + 1
        id_times = tuple(sorted((p, 0, t.preempt_hold_down_ticks, v) for p, v in e.ack_streak_start.items())) + tuple(
            sorted((p, 1, fresh, v) for p, v in e.last_ack.items())
        )
    return (plain, ids, id_sets, times, horizons, id_times, _rounds(e))


_raft_horizons: dict[Timing, tuple[int, ...]] = {}


def raft_key(e: RaftElector) -> RawKey:
    _check_fields(e, _RAFT_FIELDS)
    k = e.known
    plain = (e.phase.value, e.promise.epoch, e.term, k.epoch, k.closed, e.membership.id, e.agreed_told)
    ids = (e.promise.leader_id, e.voted_for, e.leader_id or 0, k.leader_id or 0, e.promised_to)
    id_sets = (tuple(sorted(e.granted_by)), tuple(sorted(e.refused_by)), tuple(sorted(e.confirmed)))
    times = (
        e.promise_until,
        e.election_deadline,
        e.abstain_until,
        e.election_sent_at,
        e.lease_until,
        e.next_heartbeat,
        k.until,
    )
    horizons = _raft_horizons.get(e.timing)
    if horizons is None:
        horizons = _raft_horizons[e.timing] = (0, 0, 0, e.timing.leader_lease_ticks, 0, 0, 0)
    return (plain, ids, id_sets, times, horizons, (), _rounds(e))


def render(raw: RawKey, now: int, lease: int) -> tuple:
    """A raw key with times relative to now, each clamped at how far back it can matter (a round's
    send time matters for a lease)."""
    plain, ids, id_sets, times, horizons, id_times, rounds = raw
    rel = tuple(t - now if t - now > -h else -h for t, h in zip(times, horizons))
    shown_rounds = tuple((r, t - now if t - now > -lease else -lease, by) for r, t, by in rounds)
    shown_id_times = tuple((p, w, t - now if t - now > -h else -h) for p, w, h, t in id_times)
    return (plain, ids, id_sets, rel, shown_id_times, shown_rounds)


def rename_shown(shown: tuple, r: Sequence[int]) -> tuple:
    """A rendered key with node ids renamed (r[old] = new)."""
    plain, ids, id_sets, rel, id_times, rounds = shown
    return (
        plain,
        tuple(r[i] for i in ids),
        tuple(tuple(sorted(r[i] for i in s)) for s in id_sets),
        rel,
        tuple(sorted((r[p], w, t) for p, w, t in id_times)),
        tuple(sorted((rn, t, tuple(sorted(r[i] for i in by))) for rn, t, by in rounds)),
    )


# In-flight items are plain tuples: (kind, type, src, dst, epoch, round, granted, promised_epoch, resigning,
# successor, transfer, lease_remaining); rounds of these types count on a node's own counter.
_ROUND_OWNER = {"heartbeat": (2, 0), "heartbeat_ack": (3, 0), "pre_vote": (2, 1), "pre_vote_ack": (3, 1)}
_messages: dict[tuple, Message] = {}


def item_of(kind: int, m: Message) -> Item:
    return (
        kind,
        m.type.value,
        m.src,
        m.dst,
        m.epoch,
        m.round,
        m.granted,
        m.promised_epoch,
        m.resigning,
        m.successor,
        m.transfer,
        m.lease_remaining,
    )


def message_of(item: Item) -> Message:
    key = item[1:]
    m = _messages.get(key)
    if m is None:
        t, src, dst, epoch, rnd, granted, promised, resigning, successor, transfer, lease = key
        m = _messages[key] = Message(
            MsgType(t), src, dst, epoch, rnd, granted, promised, resigning, successor, transfer, lease
        )
    return m


def render_flight(flight: Sequence[Item], offsets: Sequence[tuple[int, int]], rename: Sequence[int] | None) -> tuple:
    out = []
    for item in flight:
        owner = _ROUND_OWNER.get(item[1])
        if owner is not None and not item[8]:  # a resigning heartbeat's round is 0, on no counter
            item = item[:5] + (item[5] - offsets[item[owner[0]]][owner[1]],) + item[6:]
        if rename is not None:
            r = rename
            item = item[:2] + (r[item[2]], r[item[3]]) + item[4:9] + (r[item[9]],) + item[10:]
        out.append(item)
    out.sort()
    return tuple(out)


# ---- the state --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One action of a path (the data to replay it) and notes on what it made happen, put into words
    only when a path is shown."""

    action: tuple  # ("deliver"|"drop"|"duplicate", item) | ("advance",) | ("crash"|"restart", node)
    notes: tuple[tuple, ...] = ()

    @property
    def text(self) -> str:
        kind = self.action[0]
        if kind in ("deliver", "drop", "duplicate"):
            return f"{kind} {describe_item(self.action[1])}"
        if kind == "crash":
            return f"crash {self.action[1]}"
        ticks = []
        for note in self.notes:
            if note[0] == "restart":
                return f"restart {self.action[1]} from its promise (epoch {note[1]}, leader {note[2]})"
            if note[0] == "tick":
                due = note[2]
                ticks.append(f"tick at {note[1]} (node{'s' if len(due) > 1 else ''} {', '.join(map(str, due))})")
            if note[0] == "passes":
                ticks.append(f"time passes to {note[1]}")
        return ", then ".join(ticks) or kind

    @property
    def happened(self) -> list[str]:
        out = []
        for note in self.notes:
            if note[0] == "event":
                out.append(f"node {note[1]} {describe_event(note[2])}")
            elif note[0] == "grant":
                out.append(f"node {note[1]} promised node {note[2]} (epoch {note[3]}) until tick {note[4]}")
        return out


class Trace:
    """A path as a linked list from the last step back to the start: frontier states share prefixes."""

    __slots__ = ("step", "parent")

    def __init__(self, step: Step, parent: Trace | None) -> None:
        self.step, self.parent = step, parent

    def steps(self) -> list[Step]:
        out, node = [], self
        while node is not None:
            out.append(node.step)
            node = node.parent
        return out[::-1]


class State:
    """One state of the search. Immutable by convention: a successor copies what it changes (an
    elector is copied only by an action that steps it; the rest is shared with its parent)."""

    __slots__ = (
        "now",
        "electors",
        "keys",
        "roles",
        "persisted",
        "wakes",
        "flight",
        "led",
        "windows",
        "faults",
        "trace",
    )

    def __init__(self, now, electors, keys, roles, persisted, wakes, flight, led, windows, faults, trace) -> None:
        self.now: int = now
        self.electors: tuple[Elector | None, ...] = electors  # index node-1; None: crashed
        self.keys: tuple[RawKey | None, ...] = keys  # each elector's raw key
        self.roles: tuple[Role | None, ...] = roles  # each elector's role (no function of time)
        self.persisted: tuple[Promise, ...] = persisted
        self.wakes: tuple[int, ...] = wakes  # each running node's next deadline (0 if crashed)
        self.flight: tuple[Item, ...] = flight  # sorted, duplicates kept
        self.led: frozenset[tuple[int, int]] = led  # (epoch, node) of every BecameLeader ever
        self.windows: tuple[tuple[int, int, int, int], ...] = windows  # live promises (node, leader, epoch, until)
        self.faults: int = faults
        self.trace: Trace | None = trace


@dataclass
class Settings:
    nodes: int = 3
    mode: str = "quorum"
    depth: int = 12
    faults: int = 1
    budget_s: float | None = 60.0
    planted_bugs: frozenset[PlantedBug] = frozenset()
    mode_options: frozenset[str] = frozenset()
    timing: Timing = field(default_factory=Timing)
    symmetry: bool = True  # raft only: node ids are interchangeable there
    # One action may also let time pass over up to this many deadlines, ticking each (no message
    # moves meanwhile): long quiet stretches cost one action instead of one per timer.
    leap: int = 1
    max_rss_mb: float = 8000  # stop (ended by memory) before the breadth-first levels outgrow the machine
    jitter: str = "low"
    # Another elector (tests: a deliberately broken one), treated as the mode's, with the mode's raw key.
    elector_factory: Callable | None = None


@dataclass
class Violation:
    property: str  # P1, P3, P3g
    message: str
    path: list[Step]

    def lines(self) -> list[str]:
        out = []
        for index, step in enumerate(self.path, start=1):
            out.append(f"{index:4d}  {step.text}")
            out += [f"        {h}" for h in step.happened]
        return out

    @property
    def actions(self) -> list[tuple]:
        return [step.action for step in self.path]


@dataclass
class Report:
    settings: Settings
    states_explored: int = 0  # states whose successors were made
    distinct_states: int = 0
    transitions: int = 0  # successors made and checked, duplicates included
    depth_explored: int = 0  # every path of at most this many actions was checked
    ended_by: str = ""  # violation, bound (--depth), budget (--budget-s), memory, exhausted (nothing new)
    elapsed_s: float = 0.0
    violation: Violation | None = None
    frontier: int = 0  # states at the last level reached
    levels: list[dict] = field(default_factory=list)  # per depth: distinct states so far, seconds
    peak_rss_mb: float = 0.0  # of the whole process
    cpu_s: float = 0.0  # this process's CPU time: compare runs on a busy machine by this

    def to_dict(self) -> dict:
        s = self.settings
        return {
            "mode": s.mode,
            "nodes": s.nodes,
            "depth": s.depth,
            "faults": s.faults,
            "budget_s": s.budget_s,
            "bugs": sorted(b.value for b in s.planted_bugs),
            "mode_options": sorted(s.mode_options),
            "jitter": s.jitter,
            "leap": s.leap,
            "symmetry": s.symmetry and _symmetric(s),
            "clocks": "exact",
            "states_explored": self.states_explored,
            "distinct_states": self.distinct_states,
            "transitions": self.transitions,
            "depth_explored": self.depth_explored,
            "ended_by": self.ended_by,
            "elapsed_s": round(self.elapsed_s, 2),
            "cpu_s": round(self.cpu_s, 2),
            "peak_rss_mb": round(self.peak_rss_mb),
            "levels": self.levels,
            "violation": None
            if self.violation is None
            else {
                "property": self.violation.property,
                "message": self.violation.message,
                "length": len(self.violation.path),
                "path": self.violation.lines(),
            },
        }


def _symmetric(s: Settings) -> bool:
    """Raft never compares node ids; quorum's Bully order does (higher ids go first), so its ids are
    not interchangeable. A custom elector is trusted to be as symmetric as its mode."""
    return s.mode == "raft"


# ---- naming things for people ----------------------------------------------------------------------


def describe_message(m: Message) -> str:
    name = "".join(word.title() for word in m.type.value.split("_"))
    text = f"{name} {m.src}->{m.dst} epoch {m.epoch}"
    if m.round:
        text += f" round {m.round}"
    if m.type in (MsgType.COORDINATOR_ACK, MsgType.HEARTBEAT_ACK, MsgType.VOTE, MsgType.PRE_VOTE_ACK):
        text += " granted" if m.granted else f" refused (promised epoch {m.promised_epoch})"
    if m.resigning:
        text += " resigning" + (f" to {m.successor}" if m.successor else "")
    if m.lease_remaining:
        text += f" lease {m.lease_remaining}"
    return text


def describe_item(item: Item) -> str:
    m = message_of(item)
    if item[0] == NOTICE:
        return f"send_failed back to {m.src}: {describe_message(m)}"
    return describe_message(m)


# ---- the checker --------------------------------------------------------------------------------------


class Checker:
    def __init__(self, settings: Settings) -> None:
        if settings.mode not in CHECKED_MODES:
            raise ValueError(
                f"sim check covers the modes with promises ({', '.join(CHECKED_MODES)}), not {settings.mode}"
            )
        if settings.jitter not in JITTER_CHOICES:
            raise ValueError(f"jitter must be one of {', '.join(JITTER_CHOICES)}")
        if settings.nodes < 1 or settings.faults < 0 or settings.depth < 0 or settings.leap < 1:
            raise ValueError("need nodes >= 1, faults >= 0, depth >= 0 and leap >= 1")
        check_mode_options(settings.mode, settings.mode_options)
        self.s = settings
        self.n = settings.nodes
        self.members = tuple(range(1, self.n + 1))
        self.timing = t = settings.timing
        self.factory = settings.elector_factory or mode_info(Mode(settings.mode)).factory
        self.raw_key = raft_key if settings.mode == "raft" else quorum_key
        self.rng = ChoosingRng(high=settings.jitter == "high")
        self.configs = [Config(m, self.members, t, settings.planted_bugs, settings.mode_options) for m in self.members]
        self.symmetry = settings.symmetry and _symmetric(settings)
        self._backing_cache: dict[tuple, list[tuple[str, int, int]]] = {}
        self._rendered: dict[tuple[int, int], tuple[RawKey, tuple]] = {}
        # (elector, now, input) -> what it did; not with --jitter both (the draws differ per script).
        self.memo: dict[tuple, tuple] | None = None if settings.jitter == "both" else {}

    # -- the start ------------------------------------------------------------------------------

    def initial(self) -> State:
        n = self.n
        empty = State(
            0, (None,) * n, (None,) * n, (None,) * n, (Promise(),) * n, (0,) * n, (), frozenset(), (), 0, None
        )
        w = _Work(self, empty)
        for m in self.members:
            w.boot(m)
        w.check()
        return w.freeze(Step(("start",), "start"))

    # -- successors -----------------------------------------------------------------------------

    def actions(self, s: State) -> Iterator[tuple]:
        distinct = sorted(set(s.flight))
        for item in distinct:
            yield ("deliver", item)
        if any(e is not None for e in s.electors):
            yield ("advance",)
            for deadlines in range(2, self.s.leap + 1):
                yield ("advance", deadlines)
        spare = s.faults < self.s.faults
        for m in self.members:
            if s.electors[m - 1] is None:
                yield ("restart", m)
            elif spare:
                yield ("crash", m)
        if spare:
            for item in distinct:
                if item[0] != NOTICE:
                    yield ("drop", item)
                    yield ("duplicate", item)

    def successors(self, s: State) -> Iterator[State | Violation]:
        for action in self.actions(s):
            self.rng.start()
            first = self.apply(s, action)
            yield first
            if self.s.jitter == "both" and self.rng.draws and not isinstance(first, Violation):
                for script in itertools.product((0, 1), repeat=min(self.rng.draws, MAX_JITTER_CHOICES)):
                    if any(script):
                        self.rng.start(script)
                        yield self.apply(s, action)

    def apply(self, s: State, action: tuple) -> State | Violation:
        w = _Work(self, s)
        kind = action[0]
        if kind == "deliver":
            w.deliver(action[1])
        elif kind == "advance":
            for _ in range(action[1] if len(action) > 1 else 1):
                w.advance()
                if w.violation:
                    break
        elif kind == "crash":
            w.crash(action[1])
        elif kind == "restart":
            w.boot(action[1], restart=True)
        elif kind == "drop":
            w.flight.remove(action[1])
            w.faults += 1
        elif kind == "duplicate":
            w.flight.append(action[1])
            w.faults += 1
        else:
            raise ValueError(f"unknown action {action!r}")
        w.check()
        return w.freeze(Step(action, tuple(w.notes)))

    # -- fingerprints ---------------------------------------------------------------------------

    def canonical(self, s: State) -> bytes:
        """The state as bytes, equal for states that behave alike (see the module's doc)."""
        if not self.symmetry:
            return self._canonical(s, None)
        return min(self._canonical(s, rename) for rename in self._renamings(s))

    def fingerprint(self, s: State) -> int:
        return hash(self.canonical(s))

    def _shown(self, raw: RawKey, now: int) -> tuple:
        """render(raw, now), remembered: an elector no action touched was rendered at this now already."""
        cached = self._rendered.get((id(raw), now))
        if cached is None or cached[0] is not raw:
            if len(self._rendered) > 100_000:
                self._rendered.clear()
            cached = self._rendered[(id(raw), now)] = (raw, render(raw, now, self.timing.leader_lease_ticks))
        return cached[1]

    def _canonical(self, s: State, rename: Sequence[int] | None) -> bytes:
        now = s.now
        offsets = [(0, 0)]
        nodes = []
        for m in self.members:
            e = s.electors[m - 1]
            offsets.append((0, 0) if e is None else (e.round, getattr(e, "campaign_round", 0)))
        order = self.members if rename is None else sorted(self.members, key=rename.__getitem__)
        for m in order:
            p = s.persisted[m - 1]
            raw = s.keys[m - 1]
            leader = p.leader_id if rename is None else rename[p.leader_id]
            if raw is None:
                nodes.append((0, p.epoch, leader))
            else:
                shown = self._shown(raw, now)
                if rename is not None:
                    shown = rename_shown(shown, rename)
                nodes.append((1, p.epoch, leader, s.wakes[m - 1] - now, shown))
        flight = render_flight(s.flight, offsets, rename)
        if rename is None:
            led = tuple(sorted(s.led))
            windows = tuple(sorted((a, b, e, u - now) for a, b, e, u in s.windows))
        else:
            led = tuple(sorted((epoch, rename[node]) for epoch, node in s.led))
            windows = tuple(sorted((rename[a], rename[b], e, u - now) for a, b, e, u in s.windows))
        return marshal.dumps((tuple(nodes), flight, led, windows), 2)

    def _renamings(self, s: State) -> Iterator[list[int]]:
        """Every renaming that sorts the nodes by a signature that mentions no id; ties are tried
        every way round. Permuting a state permutes its signatures, so every state of one orbit
        meets the same set of renamed forms, and their minimum is the orbit's canonical form."""
        # What is in flight from and to each node, and the promises it gave and holds, ids erased.
        bags: dict[int, list[tuple]] = {m: [] for m in self.members}
        for item in s.flight:
            rest = item[:2] + item[4:9] + item[10:]
            bags[item[2]].append((0, rest))
            bags[item[3]].append((1, rest))
        for a, b, epoch, until in s.windows:
            bags[a].append((2, epoch, until))
            bags[b].append((3, epoch, until))
        signatures = {}
        for m in self.members:
            raw = s.keys[m - 1]
            p = s.persisted[m - 1]
            bag = tuple(sorted(bags[m]))
            if raw is None:
                signatures[m] = (0, p.epoch, bag)
            else:  # plain values, set sizes, times: all blind to ids
                shown = self._shown(raw, s.now)
                signatures[m] = (
                    1,
                    p.epoch,
                    s.wakes[m - 1] - s.now,
                    shown[0],
                    tuple(map(len, shown[2])),
                    shown[3],
                    tuple(t for _, t, _ in shown[5]),
                    bag,
                )
        ranked = sorted(self.members, key=signatures.__getitem__)
        groups = [list(g) for _, g in itertools.groupby(ranked, key=signatures.__getitem__)]
        for arrangement in itertools.product(*(itertools.permutations(g) for g in groups)):
            rename = [0] * (self.n + 1)
            for new_id, old_id in enumerate(itertools.chain.from_iterable(arrangement), start=1):
                rename[old_id] = new_id
            yield rename

    # -- P3g on one instant, with node.history's rules ---------------------------------------------

    def backing_problems(
        self, at: int, windows, up: tuple[int, ...], leaders: tuple[int, ...]
    ) -> list[tuple[str, int, int]]:
        """("overlap", a, b): two nodes backed by majorities at `at`; ("unbacked", leader, 0): a
        leader no majority's promises back at `at`. Judged by node.history on the span [at, at+1)."""
        live = frozenset([(w[0], w[1]) for w in windows if w[3] > at])
        key = (live, up, leaders)
        found = self._backing_cache.get(key)
        if found is None:
            spans = [GrantWindow(a, b, 0, at, at + 1) for a, b in sorted(live)]
            alive = {m: [Span(at, at + 1)] if m in up else [] for m in self.members}
            backed = backed_spans(self.members, spans, own_votes(alive, spans))
            found = [("overlap", a, b) for a, b, _ in backed_overlaps(backed)]
            found += [
                ("unbacked", i.node, 0)
                for i, _ in outside_backing([Interval(m, 0, at, at + 1) for m in leaders], backed)
            ]
            self._backing_cache[key] = found
        return found

    # -- the search ---------------------------------------------------------------------------------

    def run(self, progress: Callable[[Report], None] | None = None) -> Report:
        collecting = gc.isenabled()
        gc.disable()  # the search makes no reference cycles; collecting its millions of objects costs ~10%
        try:
            return self._run(progress)
        finally:
            if collecting:
                gc.enable()

    def _run(self, progress: Callable[[Report], None] | None) -> Report:
        report = Report(self.s)
        started, cpu_started = time.monotonic(), time.process_time()
        deadline = None if self.s.budget_s is None else started + self.s.budget_s
        start = self.initial()
        visited: dict[int, int] = {self.fingerprint(start): 0}
        frontier = [start]
        report.ended_by = "bound"
        while report.depth_explored < self.s.depth and not report.violation:
            successors: list[State] = []
            for index, state in enumerate(frontier):
                if index % 32 == 0:
                    if deadline is not None and time.monotonic() > deadline:
                        report.ended_by = "budget"
                        break
                    if index % 4096 == 0 and _peak_rss_mb() > self.s.max_rss_mb:
                        report.ended_by = "memory"
                        break
                frontier[index] = None  # expanded: its children hold what they share with it
                report.states_explored += 1
                for succ in self.successors(state):
                    report.transitions += 1
                    if isinstance(succ, Violation):
                        report.violation = succ
                        report.ended_by = "violation"
                        break
                    fp = hash(self.canonical(succ))
                    had = visited.get(fp)
                    if had is not None and had <= succ.faults:
                        continue
                    visited[fp] = succ.faults
                    successors.append(succ)
                if report.violation:
                    break
            else:
                frontier = successors
                report.depth_explored += 1
                report.frontier = len(frontier)
                report.distinct_states = len(visited)
                report.elapsed_s = time.monotonic() - started
                report.levels.append(
                    {
                        "depth": report.depth_explored,
                        "distinct_states": len(visited),
                        "frontier": len(frontier),
                        "elapsed_s": round(report.elapsed_s, 2),
                        "cpu_s": round(time.process_time() - cpu_started, 2),
                    }
                )
                if progress:
                    progress(report)
                if not frontier:
                    report.ended_by = "exhausted"
                    break
                continue
            break
        report.distinct_states = len(visited)
        report.elapsed_s = time.monotonic() - started
        report.cpu_s = time.process_time() - cpu_started
        report.peak_rss_mb = _peak_rss_mb()
        return report


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Work:
    """A successor under construction: what the action changes, copied from its state on first write."""

    def __init__(self, checker: Checker, s: State) -> None:
        self.c = checker
        self.s = s
        self.now = s.now
        self.electors = list(s.electors)
        self.persisted = list(s.persisted)
        self.wakes = list(s.wakes)
        self.flight = list(s.flight)
        self.led = s.led
        self.windows = list(s.windows)
        self.faults = s.faults
        self.owned: set[int] = set()  # electors this successor copied: its own to change
        self.changed: dict[int, tuple[RawKey, Role] | None] = {}  # electors changed (raw key and role if known)
        self.notes: list[tuple] = []
        self.violation: tuple[str, str] | None = None

    def elector(self, node: int) -> Elector:
        i = node - 1
        if i not in self.owned:
            self.electors[i] = clone_elector(self.electors[i])
            self.owned.add(i)
        self.changed[i] = None
        return self.electors[i]

    def fail(self, prop: str, message: str) -> None:
        if self.violation is None:
            self.violation = (prop, message)

    def freeze(self, step: Step) -> State | Violation:
        trace = Trace(step, self.s.trace)
        if self.violation is not None:
            return Violation(self.violation[0], self.violation[1], trace.steps()[1:])
        keys, roles = list(self.s.keys), self.roles
        for i, known in self.changed.items():
            e = self.electors[i]
            if e is not None:
                keys[i] = known[0] if known else self.c.raw_key(e)
        for i, e in enumerate(self.electors):
            if e is None:
                keys[i] = None
        self.flight.sort()
        return State(
            self.now,
            tuple(self.electors),
            tuple(keys),
            roles,
            tuple(self.persisted),
            tuple(self.wakes),
            tuple(self.flight),
            self.led,
            tuple(self.windows),
            self.faults,
            trace,
        )

    # -- actions ------------------------------------------------------------------------------------

    def boot(self, node: int, restart: bool = False) -> None:
        promise = self.persisted[node - 1]
        self.electors[node - 1] = self.c.factory(self.c.configs[node - 1], promise, self.c.rng, self.now)
        self.owned.add(node - 1)
        if restart:
            self.notes.append(("restart", promise.epoch, promise.leader_id))
        self.react(node)

    def deliver(self, item: Item) -> None:
        self.flight.remove(item)
        self.react(item[2] if item[0] == NOTICE else item[3], item)

    def react(self, node: int, item: Item | None = None) -> None:
        """Deliver `item` to `node` (None: nothing), then tick it at now: after a message the runtime
        ticks at once, as a message may have left a timer due. Memoized: the same elector object at
        the same instant with the same input does the same (commuting deliveries meet it again)."""
        i = node - 1
        before = self.electors[i]
        memo, key = self.c.memo, None
        if memo is not None and i not in self.owned:
            key = (id(before), self.now, item)
            hit = memo.get(key)
            if hit is not None and hit[0] is before:
                _, after, outputs, wake, raw, role = hit
                for out in outputs:
                    self.output(node, out)
                self.electors[i], self.wakes[i], self.changed[i] = after, wake, (raw, role)
                return
        e = self.elector(node)
        outputs = []
        if item is not None:
            msg = message_of(item)
            outputs.append(e.send_failed(self.now, msg) if item[0] == NOTICE else e.step(self.now, msg))
            self.output(node, outputs[-1])
        outputs.append(e.tick(self.now))
        self.output(node, outputs[-1])
        wake = self.wakes[i] = e.next_deadline(self.now)
        if key is not None:
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            raw, role = self.c.raw_key(e), e.view(self.now).role
            memo[key] = (before, e, tuple(outputs), wake, raw, role)
            self.owned.discard(i)  # shared from now on: a later change in this action copies it again
            self.changed[i] = (raw, role)

    def advance(self) -> None:
        running = [m for m in self.c.members if self.electors[m - 1] is not None]
        target = min(self.wakes[m - 1] for m in running)
        due = [m for m in running if self.wakes[m - 1] <= target]
        self.notes.append(("tick", target, tuple(due)))
        # Until the target nothing happens but promises running out: judge each instant one ends.
        ends = sorted({until for _, _, _, until in self.windows if self.now < until < target})
        if ends:
            up = tuple(running)
            roles = self.current_roles()
            leaders = tuple(m for m in running if roles[m - 1] == Role.LEADER)
            for end in ends:
                self.judge_backing(end, up, leaders)
                if self.violation:
                    self.now = end
                    self.notes[-1] = ("passes", end)
                    return
        self.now = target
        for m in due:
            self.react(m)

    def crash(self, node: int) -> None:
        self.electors[node - 1] = None
        self.wakes[node - 1] = 0
        self.faults += 1
        flight = []
        for item in self.flight:
            kind, src, dst = item[0], item[2], item[3]
            if kind == NOTICE:
                if src != node:
                    flight.append(item)
            elif dst == node:
                if kind == MESSAGE and self.electors[src - 1] is not None:
                    flight.append((NOTICE,) + item[1:])  # the call fails: its sender is told
            elif src == node:
                flight.append((ORPHAN,) + item[1:])  # it left before the crash and still arrives
            else:
                flight.append(item)
        self.flight = flight

    # -- what an Output does (as node/sim/network.py's _apply) ------------------------------------

    def output(self, node: int, out: Output) -> None:
        for event in out.events:
            if isinstance(event, PromiseReleased):
                self.windows = [
                    w for w in self.windows if not (w[0] == node and w[1] == event.leader and w[2] <= event.epoch)
                ]
        if out.persist is not None:  # persisted before any message of this output leaves
            self.persisted[node - 1] = out.persist
            if out.persist.leader_id == node:  # a vote for itself: a grant, as far as rule 4 goes
                self.grant(node, node, out.persist.epoch, self.now)
        for msg in out.messages:
            if msg.type in PROMISE_REPLY_TYPES and msg.granted:
                self.grant(node, msg.dst, msg.epoch, self.now + self.c.timing.promise_hold_ticks)
            self.flight.append(item_of(NOTICE if self.electors[msg.dst - 1] is None else MESSAGE, msg))
        for event in out.events:
            if isinstance(event, BecameLeader):
                self.became_leader(node, event.epoch)
            self.notes.append(("event", node, event))

    def grant(self, node: int, leader: int, epoch: int, until: int) -> None:
        live = [Grant(self.now, a, b, e, u) for a, b, e, u in self.windows if a == node]
        if live:
            for d in double_promises([*live, Grant(self.now, node, leader, epoch, until)]):
                who = "itself" if d.leader == d.node else f"node {d.leader}"
                self.fail(
                    "P3g",
                    f"node {d.node} granted {who} (epoch {d.epoch}) at tick {d.at} while its promise "
                    f"to node {d.other} (epoch {d.other_epoch}) lasted until tick {d.until}",
                )
        if leader == node:
            return
        self.notes.append(("grant", node, leader, epoch, until))
        for index, (a, b, e, u) in enumerate(self.windows):
            if (a, b, e) == (node, leader, epoch):
                self.windows[index] = (a, b, e, max(u, until))
                return
        self.windows.append((node, leader, epoch, until))

    def became_leader(self, node: int, epoch: int) -> None:
        led = epochs_led([(n, e, 0) for e, n in self.led if e == epoch] + [(node, epoch, 0)])
        if len(led[epoch]) > 1:
            self.fail("P1", f"epoch {epoch} has leaders {sorted(led[epoch])}")
        self.led = self.led | {(epoch, node)}

    # -- judging -----------------------------------------------------------------------------------

    def judge_backing(self, at: int, up: tuple[int, ...], leaders: tuple[int, ...]) -> None:
        for what, a, b in self.c.backing_problems(at, self.windows, up, leaders):
            if what == "overlap":
                self.fail("P3g", f"grants backed nodes {a} and {b} at once at tick {at}")
            else:
                self.fail("P3g", f"node {a} led at tick {at} but no majority's promises backed it")

    def check(self) -> None:
        """The properties at now (P1 and rule 4 were judged as leaders and grants appeared)."""
        if self.violation:
            return
        now = self.now
        self.windows = [w for w in self.windows if w[3] > now]
        self.roles = roles = self.current_roles()
        up = tuple(m for m in self.c.members if roles[m - 1] is not None)
        leaders = tuple(m for m in up if roles[m - 1] == Role.LEADER)
        if len(leaders) > 1:
            valid = [m for m in leaders if self.electors[m - 1].view(now).lease_valid]
            if len(valid) > 1:
                self.fail("P3", f"nodes {' and '.join(map(str, valid))} lead with valid leases at tick {now}")
        self.judge_backing(now, up, leaders)

    def current_roles(self) -> tuple[Role | None, ...]:
        """Each node's role (None: crashed); a role is no function of time, so an elector this
        action did not touch keeps the role its state recorded."""
        roles = list(self.s.roles)
        for i, known in self.changed.items():
            e = self.electors[i]
            if e is not None:
                roles[i] = known[1] if known else e.view(self.now).role
        for i, e in enumerate(self.electors):
            if e is None:
                roles[i] = None
        return tuple(roles)


# ---- replay (tests, and to show that a path is real) -------------------------------------------------


def replay(settings: Settings, actions: Sequence[tuple]) -> State | Violation:
    """Run `actions` from the start: the first violation, or the state reached."""
    checker = Checker(settings)
    state: State | Violation = checker.initial()
    for action in actions:
        if isinstance(state, Violation):
            return state
        if action[0] in ("deliver", "drop", "duplicate") and action[1] not in state.flight:
            raise ValueError(f"{action[0]}: {describe_item(action[1])} is not in flight")
        checker.rng.start()
        state = checker.apply(state, action)
    return state


def check(settings: Settings, progress: Callable[[Report], None] | None = None) -> Report:
    return Checker(settings).run(progress)


# ---- the command --------------------------------------------------------------------------------------


def _print_report(r: Report, out=None) -> None:
    out = out or sys.stdout
    s = r.settings
    bugs = f", bug {', '.join(sorted(b.value for b in s.planted_bugs))}" if s.planted_bugs else ""
    bugs += f", option {', '.join(sorted(s.mode_options))}" if s.mode_options else ""
    print(
        f"{s.mode}, {s.nodes} nodes, depth <= {s.depth}, faults <= {s.faults}, jitter {s.jitter}"
        f"{f', leap {s.leap}' if s.leap > 1 else ''}"
        f"{', symmetry' if s.symmetry and _symmetric(s) else ''}{bugs}; all clocks exact",
        file=out,
    )
    print(
        f"{r.states_explored:,} states explored, {r.distinct_states:,} distinct, {r.transitions:,} transitions, "
        f"depth {r.depth_explored} fully explored, ended by {r.ended_by}, {r.elapsed_s:.1f} s "
        f"({r.cpu_s:.1f} s CPU), {r.peak_rss_mb:,.0f} MB",
        file=out,
    )
    if r.violation is None:
        print(f"no violation of P1, P3 or P3g on any path of at most {r.depth_explored} actions", file=out)
        return
    v = r.violation
    print(f"VIOLATION {v.property}: {v.message}", file=out)
    print(f"shortest path ({len(v.path)} actions):", file=out)
    for line in v.lines():
        print(line, file=out)


def cmd_check(args: argparse.Namespace) -> int:
    settings = Settings(
        nodes=args.nodes,
        mode=args.mode,
        depth=args.depth,
        faults=args.faults,
        budget_s=args.budget_s,
        planted_bugs=frozenset(PlantedBug(b) for b in args.bug),
        mode_options=frozenset(args.mode_option),
        symmetry=not args.no_symmetry,
        jitter=args.jitter,
        leap=args.leap,
        max_rss_mb=args.max_rss_mb,
    )

    def progress(r: Report) -> None:
        if args.progress:
            print(
                f"  depth {r.depth_explored}: {r.distinct_states:,} distinct, frontier {r.frontier:,}, "
                f"{r.elapsed_s:.1f} s",
                file=sys.stderr,
                flush=True,
            )

    report = check(settings, progress)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    return 1 if report.violation else 0


def add_check_parser(sub) -> None:
    """`bullyproof sim check` (node/sim/cli.py's parser calls this)."""
    from node.argtypes import positive as _positive

    def count(text: str) -> int:
        value = int(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value

    p = sub.add_parser("check", help="exhaustive small-scope model check of the real core (shortest counterexample)")
    p.add_argument("--nodes", type=_positive, default=3, metavar="N")
    p.add_argument("--mode", choices=CHECKED_MODES, default="quorum")
    p.add_argument("--depth", type=_positive, default=12, metavar="D", help="actions on a path (default 12)")
    p.add_argument(
        "--faults", type=count, default=1, metavar="K", help="drops + duplicates + crashes on a path (default 1)"
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=60.0,
        metavar="S",
        help="wall-clock seconds; the report says which depth was fully explored (default 60)",
    )
    p.add_argument(
        "--bug",
        action="append",
        default=[],
        choices=[b.value for b in PlantedBug],
        help="plant a deliberate defect (to measure the checker)",
    )
    p.add_argument(
        "--mode-option", action="append", default=[], metavar="NAME", help="a switch of the mode (raft: no-pre-vote)"
    )
    p.add_argument(
        "--jitter",
        choices=JITTER_CHOICES,
        default="low",
        help="the electors' random draws: the low end, the high end, or both (one successor each)",
    )
    p.add_argument(
        "--leap",
        type=_positive,
        default=1,
        metavar="L",
        help="one action may let time pass over up to L deadlines (default 1: the next one only)",
    )
    p.add_argument(
        "--max-rss-mb",
        type=float,
        default=8000,
        metavar="MB",
        help="stop when the process has used this much memory (default 8000)",
    )
    p.add_argument("--no-symmetry", action="store_true", help="raft: do not merge states that differ by node ids only")
    p.add_argument("--progress", action="store_true", help="a line on stderr per depth")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)
