"""A simulated node process: its elector and what the operating system does to it (SIGKILL, SIGSTOP).

A crash loses everything but the persisted promise, which the network keeps; a restart builds a new
elector from it, as a new incarnation (messages sent to an older one are never delivered: their
connection died). A paused process keeps its state; what arrives for it waits until it resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from node.core import Elector, Role


@dataclass
class Process:
    elector: Elector
    incarnation: int = 0
    crashed: bool = False
    paused_until_tick: int | None = None
    paused_since_tick: int = 0
    held: list[object] = field(default_factory=list)  # what arrived while paused
    last_view: tuple[Role | None, int, int | None] | None = None
    next_write_tick: int = 0
    wake_tick: int = 0  # local tick of the elector's next deadline (sleepy networks tick it only then)

    @property
    def running(self) -> bool:
        return not self.crashed and self.paused_until_tick is None

    def crash(self) -> None:
        self.crashed = True
        self.paused_until_tick = None
        self.held.clear()

    def pause(self, now: int, ticks: int) -> None:
        if ticks <= 0:
            raise ValueError(f"pause needs ticks > 0, got {ticks}")
        if self.paused_until_tick is None:
            self.paused_since_tick = now
        self.paused_until_tick = now + ticks

    def resume(self) -> list[object]:
        """Run again; returns what arrived meanwhile, to be delivered now in order."""
        self.paused_until_tick = None
        held, self.held = self.held, []
        return held
