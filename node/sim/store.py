"""The simulated fenced store: the real store's decision rule (node.store.db.decide) over an in-memory log."""

from __future__ import annotations

from dataclasses import dataclass

from node.core import PlantedBug
from node.store.db import decide


@dataclass(frozen=True)
class StoreWrite:
    """A leader's write on its way to the store."""

    writer: int
    epoch: int
    sent_tick: int


@dataclass(frozen=True)
class StoreRecord:
    tick: int  # when the store decided
    sent_tick: int
    writer: int
    epoch: int
    accepted: bool
    reason: str


class SimStore:
    def __init__(self, planted_bugs: frozenset[PlantedBug] = frozenset()) -> None:
        self.accepts_anything = PlantedBug.STALE_STORE in planted_bugs
        self.highest_epoch = 0
        self.owner = 0
        self.log: list[StoreRecord] = []

    def write(self, write: StoreWrite, now: int) -> StoreRecord:
        reason = None if self.accepts_anything else decide(self.highest_epoch, self.owner, write.writer, write.epoch)
        if reason is None and write.epoch >= self.highest_epoch:
            self.highest_epoch, self.owner = write.epoch, write.writer
        record = StoreRecord(now, write.sent_tick, write.writer, write.epoch, reason is None, reason or "")
        self.log.append(record)
        return record
