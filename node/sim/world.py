"""The simulated world around the electors: clocks, the queue of things in flight, and the links.

Time is counted in global ticks; each node's clock reads ``floor(global * rate)``. Every link is
directed (a->b) and has its own faults: a delay range, a drop and a duplicate probability, a cut,
and holds that keep matching messages back until a named protocol instant happens somewhere (see
``Hold``). Setting a fault without naming a link sets it on every link; ``heal_link`` restores one.
Node 0 stands for the fenced store (a leader's writes travel on the link writer->0).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Generic, TypeVar

from node.core import PROMISE_REPLY_TYPES, Message, MsgType

STORE = 0  # the fenced store's end of a writer->store link

Link = tuple[int, int]


class Clocks:
    """Each node's clock rate and the conversions between global ticks and its local ticks."""

    def __init__(self, members: Iterable[int], rates: dict[int, Fraction] | None = None) -> None:
        self.now = 0  # global ticks
        self.rates: dict[int, Fraction] = {m: Fraction(1) for m in members}
        for node, rate in (rates or {}).items():
            if not 0.5 <= rate <= 2:
                raise ValueError(f"clock rate of node {node} must be within 0.5..2, got {float(rate)}")
            self.rates[node] = Fraction(rate)
        self._skewed = {m for m, rate in self.rates.items() if rate != 1}
        self._local_now = {m: 0 for m in self.rates}  # what each clock reads now (asked very often)

    def advance(self) -> None:
        """One global tick passes."""
        self.now += 1
        for m in self._local_now:
            self._local_now[m] = self.now if m not in self._skewed else math.floor(self.now * self.rates[m])

    def local(self, node: int, tick: int | None = None) -> int:
        """What node's clock reads at global `tick` (default: now)."""
        if tick is None:
            return self._local_now[node]
        return tick if node not in self._skewed else math.floor(tick * self.rates[node])

    def global_tick(self, node: int, local_tick: int) -> int:
        """The first global tick at which node's clock reads at least `local_tick`."""
        return math.ceil(local_tick / self.rates[node])


@dataclass(frozen=True)
class LinkFaults:
    """What one directed link does to what it carries. The default is a healthy link."""

    min_delay_ticks: int = 1
    max_delay_ticks: int = 1
    drop_probability: float = 0.0
    duplicate_probability: float = 0.0
    cut: bool = False  # a blackhole: everything vanishes, the sender is not told

    def __post_init__(self) -> None:
        if not 1 <= self.min_delay_ticks <= self.max_delay_ticks:
            raise ValueError(f"need 1 <= min <= max delay, got {self.min_delay_ticks}, {self.max_delay_ticks}")
        for name in ("drop_probability", "duplicate_probability"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name.split('_')[0]} probability must be in [0, 1), got {p}")


HEALTHY = LinkFaults()

# What a hold matches: a message type's value, "reply" (any granted or refused reply that is a
# promise: the acks a leader counts), or "any".
HOLD_KINDS = ("any", "reply", *(t.value for t in MsgType))


@dataclass
class Hold:
    """Keep messages on src->dst (0 = any node) of `kind` back, at most `count` of them (0: all while
    the hold lasts), until the instant `until` is reached by any node or `max_ticks` pass; then they
    go on their way, each after the link's delay from then. One round's acks held until the leader
    reasserts, a Coordinator held until its sender's proposal failed, ..."""

    src: int
    dst: int
    kind: str
    count: int
    until: str
    expires_tick: int
    held: list[object] = field(default_factory=list)
    taken: int = 0

    def matches(self, msg: Message) -> bool:
        if self.count and self.taken >= self.count:
            return False
        if self.src and msg.src != self.src or self.dst and msg.dst != self.dst:
            return False
        if self.kind == "any":
            return True
        if self.kind == "reply":
            return msg.type in PROMISE_REPLY_TYPES
        return msg.type.value == self.kind


class Links:
    """The faults of every directed link, with `default` for links not set one by one."""

    def __init__(self) -> None:
        self.default = HEALTHY
        self.by_link: dict[Link, LinkFaults] = {}
        self.holds: list[Hold] = []

    def of(self, src: int, dst: int) -> LinkFaults:
        return self.by_link.get((src, dst), self.default)

    def change(self, links: Iterable[Link] | None, **faults: object) -> None:
        """Set these faults on `links`, or on every link (the default and each one set apart)."""
        if links is None:
            self.default = replace(self.default, **faults)
            self.by_link = {link: replace(f, **faults) for link, f in self.by_link.items()}
            return
        for link in links:
            self.by_link[link] = replace(self.of(*link), **faults)

    def heal(self, links: Iterable[Link] | None = None) -> list[Hold]:
        """Every link (or these) healthy again; returns the holds that ended, to release what they held."""
        if links is None:
            self.default, self.by_link = HEALTHY, {}
            ended, self.holds = self.holds, []
            return ended
        chosen = set(links)
        for link in chosen:
            self.by_link[link] = HEALTHY
        ended = [h for h in self.holds if (h.src, h.dst) in chosen]
        self.holds = [h for h in self.holds if h not in ended]
        return ended

    def cut_links(self) -> set[Link]:
        cut = {link for link, f in self.by_link.items() if f.cut}
        return cut

    def is_cut(self, src: int, dst: int) -> bool:
        return self.of(src, dst).cut

    def hold_for(self, msg: Message) -> Hold | None:
        return next((h for h in self.holds if h.matches(msg)), None)

    def holds_ending(self, instants: Iterable[str], now: int) -> list[Hold]:
        """Take out the holds whose instant was just reached, or whose time ran out."""
        reached = set(instants)
        ended = [h for h in self.holds if h.until in reached or h.expires_tick <= now]
        self.holds = [h for h in self.holds if h not in ended]
        return ended


T = TypeVar("T")


class Queue(Generic[T]):
    """What is in flight, by due tick; equal ticks keep the order they were put in."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, T]] = []
        self._seq = 0

    def put(self, due_tick: int, item: T) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due_tick, self._seq, item))

    def due(self, now: int) -> list[T]:
        """Take out everything due by `now`, in order. (Items put while these are handled wait.)"""
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def pop_due(self, now: int) -> T | None:
        if self._heap and self._heap[0][0] <= now:
            return heapq.heappop(self._heap)[2]
        return None

    def __len__(self) -> int:
        return len(self._heap)


def carry(rng: random.Random, faults: LinkFaults) -> list[int]:
    """The delays (in ticks) of the copies a link delivers of one message: none if lost, two if duplicated.
    The draws come in a fixed order, so a seed replays exactly."""
    if rng.random() < faults.drop_probability:
        return []
    copies = 2 if faults.duplicate_probability and rng.random() < faults.duplicate_probability else 1
    return [rng.randint(faults.min_delay_ticks, faults.max_delay_ticks) for _ in range(copies)]
