"""What a follower may tell a client about who leads: shared by the modes that hold leases."""

from __future__ import annotations

from dataclasses import dataclass

from .types import CLOCK_DRIFT_BOUND, Message

# A lease announced in ticks of the leader's clock is counted down on the follower's: shortened by the
# worst ratio of two clock rates inside the drift bound ((1-d)/(1+d) >= 1-2d), it never outlasts the
# leader's own count.
_RATE_FLOOR = 1 - 2 * CLOCK_DRIFT_BOUND


@dataclass
class KnownLeader:
    """The leader a follower names to clients (GetLeader, WatchLeader, its history view).

    Acknowledging a Coordinator or granting a vote is no evidence that the candidate won: it may never
    reach a majority. A leader's heartbeat is: a leader sends one only after a majority backed it, and
    it carries how much longer the leader's lease runs. So a follower names a leader only from its
    heartbeat of that epoch, and only while the lease the heartbeat announced may still run. An answer
    can then trail the truth only by the time that heartbeat spent between the leader and the follower
    (network delay, a paused follower); it never names a node that did not win.
    """

    leader_id: int | None = None
    epoch: int = 0
    until: int = 0  # tick (follower's clock) after which the announced lease may have ended

    def heard(self, now: int, heartbeat: Message, longest_ticks: int) -> None:
        """A leader's (non-resigning) heartbeat passed validation: it leads `heartbeat.epoch`.
        No lease lasts longer than `longest_ticks` (an election timeout): a larger announcement is
        not believed past it."""
        if heartbeat.epoch < self.epoch:
            return  # an older leader's late heartbeat: never name backwards
        self.leader_id, self.epoch = heartbeat.src, heartbeat.epoch
        self.until = now + int(min(heartbeat.lease_remaining, longest_ticks) * _RATE_FLOOR)

    def released(self, leader_id: int, epoch: int) -> None:
        """The leader resigned (its resigning heartbeat): name it no longer."""
        if (leader_id, epoch) == (self.leader_id, self.epoch):
            self.until = 0

    def named(self, now: int) -> tuple[int, int] | None:
        """(leader, epoch) if a heartbeat still vouches for it at `now`."""
        if self.leader_id is None or now >= self.until:
            return None
        return self.leader_id, self.epoch
