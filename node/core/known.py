"""What a follower may tell a client about who leads: shared by the modes that hold leases."""

from __future__ import annotations

from dataclasses import dataclass

from .types import CLOCK_DRIFT_BOUND, Message, PlantedBug, Role, Timing, View

# A lease announced in ticks of the leader's clock is counted down on the follower's: shortened by the
# worst ratio of two clock rates inside the drift bound ((1-d)/(1+d) >= 1-2d), it never outlasts the
# leader's own count.
_RATE_FLOOR = 1 - 2 * CLOCK_DRIFT_BOUND


@dataclass
class KnownLeader:
    """The leader a follower names to clients (GetLeader, WatchLeader, its history view).

    Acknowledging a Coordinator or granting a vote is no evidence that the candidate won: it may never
    reach a majority. A leader's heartbeat is: a leader sends one only after a majority backed it, and
    it carries how much longer the leader's lease runs. So a follower names a leader only from a
    heartbeat of that epoch that it acknowledged (one it refused names no one: it does not follow that
    leader, and agreement must not count it), for the lease the heartbeat announced plus one heartbeat
    interval. The interval is grace: a lease counts only rounds already acknowledged, so on a slow link
    the announced remainder is short, and without it the answer would flicker between heartbeats.

    An answer therefore trails the truth by at most the heartbeat's transit (network delay, a paused
    follower) plus one heartbeat interval; after a leader crashed or resigned without this follower
    hearing of it, by at most the lease it announced. It never names a node that did not win.
    """

    leader_id: int | None = None
    epoch: int = 0
    until: int = 0  # tick (follower's clock) after which the announced lease may have ended
    closed: bool = False  # (leader_id, epoch) is over for certain: it resigned, or we led since
    # Test-only (node.config): the planted bugs of the elector that holds this.
    planted_bugs: frozenset[PlantedBug] = frozenset()

    def heard(self, now: int, heartbeat: Message, timing: Timing) -> None:
        """We acknowledged a leader's (non-resigning) heartbeat: it leads `heartbeat.epoch`. No lease
        lasts longer than an election timeout: a larger announcement is not believed past it."""
        closed = heartbeat.epoch == self.epoch and self.closed
        if PlantedBug.LATE_BEAT_NAMES_RESIGNED in self.planted_bugs:
            closed = False  # only an older epoch is ignored
        if heartbeat.epoch < self.epoch or closed:
            return  # an older leader's late heartbeat, or a duplicate from one that resigned
        self.leader_id, self.epoch, self.closed = heartbeat.src, heartbeat.epoch, False
        lease = min(heartbeat.lease_remaining, timing.election_timeout_ticks)
        self.until = now + int(lease * _RATE_FLOOR) + timing.heartbeat_interval_ticks

    def released(self, leader_id: int, epoch: int) -> None:
        """A leader resigned (its resigning heartbeat): its epoch is over, whatever arrives late."""
        if epoch >= self.epoch:
            self.leader_id, self.epoch, self.until, self.closed = leader_id, epoch, 0, True

    def led(self, node_id: int, epoch: int) -> None:
        """This node won `epoch` itself: every older leadership is over."""
        if epoch >= self.epoch:
            self.leader_id, self.epoch, self.until, self.closed = node_id, epoch, 0, True

    def follower_view(self, view: View, now: int) -> View:
        """A follower's view names the leader (and its epoch) only as far as this evidence allows;
        any other role's view is the elector's own."""
        if view.role != Role.FOLLOWER:
            return view
        named = self.named(now)
        # Built directly rather than with dataclasses.replace: a view is made several times per tick
        # in the simulator, and replace was a sixth of its time.
        if named is None:
            return View(view.node_id, view.role, view.epoch, None, view.lease_valid)
        return View(view.node_id, view.role, named[1], named[0], view.lease_valid)

    def named(self, now: int) -> tuple[int, int] | None:
        """(leader, epoch) if a heartbeat still vouches for it at `now`."""
        if self.leader_id is None or self.closed or now >= self.until:
            return None
        return self.leader_id, self.epoch
