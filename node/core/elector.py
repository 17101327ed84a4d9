"""The one interface every election algorithm implements (a Protocol, not a base class)."""

from __future__ import annotations

from typing import Protocol

from .types import Config, Message, Output, Promise, Stats, View


class Elector(Protocol):
    """A pure state machine: time in ticks and messages in, `Output` (persist, then send) out.

    Every entry point takes `now` (ticks on the node's own clock) and first lets time catch up, so a
    node that was paused re-checks its lease before it acts.
    """

    config: Config
    promise: Promise  # the durable part: what was promised, to whom (persisted before it is revealed)
    stats: Stats

    def tick(self, now: int) -> Output:
        """Timers: election timeouts, heartbeats, lease expiry."""

    def step(self, now: int, msg: Message) -> Output:
        """A message from a peer that passed validation (sender is a member, receiver is us)."""

    def send_failed(self, now: int, msg: Message) -> Output:
        """The transport could not deliver `msg` (refused, deadline exceeded)."""

    def resign(self, now: int, successor: int = 0) -> Output:
        """Step down on purpose (with a successor: a transfer); nothing happens unless leading.
        A mode without handovers (ModeInfo.transfers is False) just steps down."""

    def view(self, now: int) -> View:
        """Role, epoch, leader and whether a leader's lease is valid now."""

    def instants(self, now: int) -> frozenset[str]:
        """The named protocol states this node is in now (its class's INSTANTS lists them all, with
        what each means); the momentary ones come as Reached events. Only the simulator asks."""

    def next_deadline(self, now: int) -> int:
        """Asked right after `tick(now)`: the earliest later tick at which `tick` might act or `view`
        might change, as long as no message arrives meanwhile. The runtime sleeps until then instead
        of ticking every tick (and ticks at once after any message). Early is fine (any timer still
        ahead counts); late is not, and the simulator checks it (tests/unit/test_next_deadline.py)."""


def earliest_after(now: int, timers: list[int], horizon_ticks: int) -> int:
    """The first of `timers` after `now`, or `now + horizon_ticks` if none is. Right after a tick
    the timers that already passed have acted, or wait on one still ahead (then in the list)."""
    return min((t for t in timers if t > now), default=now + horizon_ticks)
