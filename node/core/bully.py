"""Bully election as a pure state machine, in two modes behind one Elector interface.

* ClassicBully — the textbook algorithm: highest reachable id wins, victory needs nobody's consent,
  a leader never doubts itself. Under a partition it makes two leaders; it exists to be shown failing.
* QuorumBully — Bully ordering, hardened (docs/design.md section 3): a leader of epoch e needs a majority
  of the full membership to acknowledge Coordinator(e); a node acknowledges at most one leader per
  epoch and persists that promise first; the leader holds a lease renewed by majority-acknowledged
  heartbeats and steps down when it runs out; a follower that heard a live leader refuses others.

Every entry point takes `now` in ticks and first lets time catch up (`_advance`): a node that was
paused re-checks its lease before it does anything else.
"""

from __future__ import annotations

import random
from dataclasses import replace

from .kit import (
    CONFIGURATION_REFUSALS,
    EPOCH_PROMISED,
    EPOCH_STALE,
    LEADING,
    LOWER_ID,
    NOT_A_VOTER,
    PROMISE_LIVE,
    ElectorKit,
)
from .known import KnownLeader
from .types import (
    Batch,
    BecameLeader,
    Config,
    ElectionStarted,
    Message,
    MsgType,
    PlantedBug,
    Promise,
    PromiseReleased,
    Reached,
    Reason,
    Role,
    View,
    grant_window,
)


class _Phase:
    IDLE = "idle"  # follower (with or without a known leader)
    ELECTING = "electing"  # sent Election to higher ids, waiting for Alive
    AWAITING = "awaiting"  # a higher id answered Alive; waiting for its Coordinator
    PROPOSING = "proposing"  # sent Coordinator(e), collecting acks (quorum only)
    LEADING = "leading"


_ROLE_OF_PHASE = {_Phase.LEADING: Role.LEADER, _Phase.ELECTING: Role.CANDIDATE, _Phase.PROPOSING: Role.CANDIDATE}


class BullyElector(ElectorKit):
    """Shared Bully machinery on the elector kit. Subclasses decide what winning and following require."""

    # Protocol instants (node.core.instants): states instants() reports, and moments sent as Reached.
    INSTANTS: dict[str, str] = {
        "deadline": "a follower within a tick of its election timeout",
        "electing": "asked the higher ids, waiting for an Alive",
        "awaiting": "a higher id answered Alive; waiting for its Coordinator",
        "abstaining": "a node that resigned stays out of elections for a while",
        "won-again": "became leader again with no other leader known since it last led",
        "handover-won": "won the proposal a resigning leader handed it (a transfer or preemption)",
    }
    FOLLOWING = _Phase.IDLE
    LEADING = _Phase.LEADING
    REQUESTS = {
        MsgType.ELECTION: "_on_election",
        MsgType.COORDINATOR: "_on_coordinator",
        MsgType.HEARTBEAT: "_on_heartbeat",
    }
    REPLIES = {_Phase.ELECTING: {MsgType.ALIVE: "_on_alive"}}

    def __init__(self, config: Config, promise: Promise, rng: random.Random, now: int) -> None:
        if PlantedBug.FORGET_PROMISE in config.planted_bugs:
            promise = Promise()
        super().__init__(config, promise, rng, now)
        self.highest_seen_epoch = promise.epoch
        self.phase = _Phase.IDLE
        self.epoch = promise.epoch  # epoch of the leader we follow or are
        self.election_deadline = now + self._election_delay()
        self.phase_deadline = 0
        self.pending_higher: set[int] = set()

    # ---- hooks of the elector kit ------------------------------------------------------------

    def _on_tick(self, batch: Batch) -> None:
        now = self.now
        if self.phase == _Phase.LEADING:
            self._on_leader_timers(batch)
        elif self.phase == _Phase.IDLE:
            if now >= self.election_deadline and now >= self.abstain_until:
                self._start_election(batch)
        elif self.phase == _Phase.ELECTING:
            if now >= self.phase_deadline:
                self._propose(batch)
        elif self.phase == _Phase.AWAITING:
            if now >= self.phase_deadline:  # the higher node never announced itself: try again
                self._start_election(batch)
        elif self.phase == _Phase.PROPOSING:
            if now >= self.phase_deadline:
                self._give_up(batch)

    def _check_epoch(self, msg: Message, batch: Batch) -> bool:
        self._see_epoch(max(msg.epoch, msg.promised_epoch))
        return True

    def _on_send_failed(self, msg: Message, batch: Batch) -> None:
        if self.phase == _Phase.ELECTING and msg.type == MsgType.ELECTION:
            self.pending_higher.discard(msg.dst)
            if not self.pending_higher:
                self._propose(batch)

    def _keep_leading_after_resign(self, reason: Reason, successor: int) -> bool:
        """PlantedBug.EARLY_RELEASE: the followers are released, and we lead one more interval
        (finished by _on_leader_timers)."""
        early = PlantedBug.EARLY_RELEASE in self.config.planted_bugs
        keep_leading = early and self.phase == _Phase.LEADING and self.release_pending is None
        self.release_pending = (reason, successor, self.now) if keep_leading else None
        return keep_leading

    def _heartbeat_now(self, batch: Batch) -> None:
        self._on_leader_timers(batch)

    def _catch_up(self, batch: Batch) -> None:
        if self._unsaved is not None and self.now >= self._unsaved_since + self.timing.heartbeat_interval_ticks:
            batch.persist, self._unsaved = self._unsaved, None

    def _write_behind(self, promise: Promise) -> None:
        """PlantedBug.PERSIST_AFTER_REPLY: flushed a heartbeat interval later, long after the ack revealed it."""
        self._unsaved_since = self.now if self._unsaved is None else self._unsaved_since
        self._unsaved = promise

    def _make_promise(self, promise: Promise, batch: Batch) -> None:
        super()._make_promise(promise, batch)
        self._see_epoch(promise.epoch)

    def _configuration_moved_on(self, batch: Batch) -> None:
        if self.phase == _Phase.PROPOSING:
            self._give_up(batch)
        elif self.phase in (_Phase.ELECTING, _Phase.AWAITING) and self.id not in self.membership.voters:
            self.phase = _Phase.IDLE

    def _released(self, msg: Message, batch: Batch) -> None:
        """Our leader resigned (msg is its resigning heartbeat): elect soon, successor first."""
        self.leader_id = None
        if msg.successor == self.id:
            # Counted as a handover, not an election, if it wins; kept against preemption if a transfer.
            self.handover = "transfer" if msg.transfer else "handover"
            self._propose(batch)  # skip Election: the old leader chose us, higher ids included
        elif msg.successor:
            self.election_deadline = self.now + self._election_delay()  # give the successor its turn
        else:
            self.election_deadline = self.now + self._quick_delay()

    def view(self, now: int) -> View:
        role = _ROLE_OF_PHASE.get(self.phase, Role.FOLLOWER)
        return View(self.id, role, self.epoch, self.leader_id, self._lease_valid(now))

    def instants(self, now: int) -> frozenset[str]:
        found = set()
        if self.phase == _Phase.IDLE and 0 <= self.election_deadline - now <= 1:
            found.add("deadline")
        if self.phase == _Phase.ELECTING:
            found.add("electing")
        elif self.phase == _Phase.AWAITING:
            found.add("awaiting")
        if now < self.abstain_until:
            found.add("abstaining")
        return frozenset(found)

    def _timers(self) -> list[int]:
        """Every tick a timer of this node compares `now` with (see tick, _advance and view)."""
        timers = [self.election_deadline, self.abstain_until, self.phase_deadline, self.next_heartbeat]
        if self._unsaved is not None:
            timers.append(self._unsaved_since + self.timing.heartbeat_interval_ticks)
        return timers

    # ---- hooks for the two modes -----------------------------------------------------------

    def _propose(self, batch: Batch) -> None:
        raise NotImplementedError

    def _on_coordinator(self, msg: Message, batch: Batch) -> None:
        raise NotImplementedError

    def _on_heartbeat(self, msg: Message, batch: Batch) -> None:
        raise NotImplementedError

    def _on_leader_timers(self, batch: Batch) -> None:
        raise NotImplementedError

    # ---- shared Bully machinery ----------------------------------------------------------------

    def _election_delay(self) -> int:
        rank = sum(1 for m in self.members if m > self.id)
        t = self.timing
        return t.election_timeout_ticks + rank * t.rank_stagger_ticks + self.rng.randint(0, t.jitter_ticks)

    def _silence_delay(self) -> int:
        """How long to wait for a leader just heard from before electing (quorum: shorter)."""
        return self._election_delay()

    def _quick_delay(self) -> int:
        """After a resignation: go soon, still in Bully order."""
        rank = sum(1 for m in self.members if m > self.id)
        t = self.timing
        return rank * t.rank_stagger_ticks + self.rng.randint(0, t.jitter_ticks)

    def _see_epoch(self, epoch: int) -> None:
        self.highest_seen_epoch = max(self.highest_seen_epoch, epoch)

    _unsaved: Promise | None = None  # PlantedBug.PERSIST_AFTER_REPLY only
    _unsaved_since = 0

    def _start_election(self, batch: Batch) -> None:
        if self.id not in self.members:  # a learner, a node removed or still joining stands for nothing
            self.phase = _Phase.IDLE
            self.election_deadline = self.now + self._election_delay()
            return
        self.stats.elections_started += 1
        self.handover = ""
        if self.leader_id is not None:
            self.leader_id = None
        higher = [m for m in self.members if m > self.id]
        batch.events.append(ElectionStarted(self.highest_seen_epoch))
        if not higher:
            self._propose(batch)
            return
        self.phase = _Phase.ELECTING
        self.pending_higher = set(higher)
        self.phase_deadline = self.now + self.timing.alive_wait_ticks
        for peer in higher:
            self._send(batch, MsgType.ELECTION, peer, epoch=self.highest_seen_epoch)

    def _give_up(self, batch: Batch) -> None:
        """A proposal failed: back to follower, retry after a randomized timeout."""
        batch.events.append(Reached("proposal-failed"))
        self.phase = _Phase.IDLE
        self.leader_id = None
        self.election_deadline = self.now + self._election_delay()

    def _follow(self, leader_id: int, epoch: int) -> None:
        self.phase = _Phase.IDLE
        self.leader_id = self.last_leader = leader_id
        self.epoch = epoch
        self.election_deadline = self.now + self._silence_delay()

    release_pending: tuple[Reason, int, int] | None = None  # PlantedBug.EARLY_RELEASE only
    # The proposal under way is a handover (a resigning leader named us successor: "handover", or
    # "transfer" when an operator chose us), not an election; "" otherwise.
    handover = ""

    def _become_leader(self, epoch: int, batch: Batch) -> None:
        if self.phase != _Phase.LEADING:  # classic re-proposing over a lower claimant wins nothing new
            if self.handover:
                self.stats.handovers_won += 1
                batch.events.append(Reached("handover-won"))
            else:
                self.stats.elections_won += 1
            if self.last_leader == self.id:
                batch.events.append(Reached("won-again"))
            self.last_leader = self.id
        self.release_pending = None
        self.phase = _Phase.LEADING
        self.leader_id = self.id
        self.epoch = epoch
        batch.events.append(BecameLeader(epoch))

    def _on_election(self, msg: Message, batch: Batch) -> None:
        if msg.src > self.id or self.now < self.abstain_until:
            return  # Election goes only to higher ids; a resigning node stays out of the way
        self._send(batch, MsgType.ALIVE, msg.src)
        self._answer_election(msg, batch)

    def _answer_election(self, msg: Message, batch: Batch) -> None:
        if self.phase == _Phase.IDLE:
            self._start_election(batch)

    def _on_alive(self, msg: Message, batch: Batch) -> None:  # electing only (REPLIES)
        if msg.src > self.id:
            self.phase = _Phase.AWAITING
            self.phase_deadline = self.now + self.timing.coordinator_wait_ticks


class ClassicBully(BullyElector):
    """The textbook Bully algorithm. No acks, no lease, no durable promise needed."""

    def _lease_valid(self, now: int) -> bool:
        return self.phase == _Phase.LEADING

    def _propose(self, batch: Batch) -> None:
        # Victory needs nobody's consent: announce to the lower ids (the textbook's n-2 messages
        # when the second-highest takes over).
        epoch = max(self.highest_seen_epoch, self.promise.epoch) + 1
        self._make_promise(Promise(epoch, self.id), batch)
        self._become_leader(epoch, batch)
        self.next_heartbeat = self.now + self.timing.heartbeat_interval_ticks
        for peer in self.peers:
            if peer < self.id:
                self._send(batch, MsgType.COORDINATOR, peer)

    def _on_leader_timers(self, batch: Batch) -> None:
        if self.now >= self.next_heartbeat:
            self.next_heartbeat = self.now + self.timing.heartbeat_interval_ticks
            self.round += 1  # classic needs no rounds, but the wire contract numbers every heartbeat
            for peer in self.peers:
                self._send(batch, MsgType.HEARTBEAT, peer, round=self.round)

    def _answer_election(self, msg: Message, batch: Batch) -> None:
        if self.phase == _Phase.IDLE:
            self._start_election(batch)
        elif self.phase == _Phase.LEADING:
            self._send(batch, MsgType.COORDINATOR, msg.src)  # textbook: re-announce

    def _accept_leader(self, msg: Message, batch: Batch) -> None:
        if msg.src < self.id and self.now >= self.abstain_until:
            # A lower node claims leadership: bully it (textbook: hold an election, which the
            # higher node wins at once, with a fresh epoch above everything seen).
            if self.phase == _Phase.LEADING:
                self._propose(batch)
            elif self.phase in (_Phase.IDLE, _Phase.AWAITING):
                self._start_election(batch)
            return
        if self.phase == _Phase.LEADING:
            self._step_down(Reason.HIGHER_LEADER, batch)
        self._make_promise(Promise(max(msg.epoch, self.promise.epoch), msg.src), batch)
        self._follow(msg.src, msg.epoch)

    def _on_coordinator(self, msg: Message, batch: Batch) -> None:
        self._accept_leader(msg, batch)
        self._reply(batch, msg, refusal="" if self.leader_id == msg.src else LOWER_ID)

    def _on_heartbeat(self, msg: Message, batch: Batch) -> None:
        if msg.resigning:
            if self.leader_id == msg.src:
                self._released(msg, batch)
            return
        if self.leader_id == msg.src and self.phase == _Phase.IDLE:
            self.epoch = msg.epoch
            self.election_deadline = self.now + self._election_delay()
        else:
            self._accept_leader(msg, batch)
        self._reply(batch, msg, refusal="" if self.leader_id == msg.src else LOWER_ID)


class QuorumBully(BullyElector):
    """Bully ordering with majority-acknowledged leadership, leases and durable promises."""

    INSTANTS = {
        **BullyElector.INSTANTS,
        "boot-window": "restarted with a promise: refuses everyone for a full window from boot",
        "inside-promise": "holds a live promise to another node",
        "lease-end": "a leader within 2 ticks of its lease's end",
        "proposing": "sent Coordinator, collecting a majority's acks",
        "reassert-in-flight": "a leader asked a majority for a fresh epoch and waits",
        "kept-by-transfer": "leads by an operator's transfer: the preferred-leader rule waits",
        "self-vote-deferred": "wanted to propose inside a promise window; waits for it to end",
        "proposal-failed": "a proposal ended without a majority (refused or timed out)",
        "late-majority-ignored": "a majority's acks came after the lease they would start was over",
        "reassert-won": "a majority accepted the leader's fresh epoch",
        "reassert-failed": "a majority refused the leader's fresh epoch",
    }

    REPLIES = {
        **BullyElector.REPLIES,
        _Phase.PROPOSING: {MsgType.COORDINATOR_ACK: "_on_proposal_ack"},
        _Phase.LEADING: {MsgType.COORDINATOR_ACK: "_on_reassert_ack", MsgType.HEARTBEAT_ACK: "_on_heartbeat_ack"},
    }
    LEASED = True
    CHANGES_MEMBERSHIP = True

    def __init__(self, config: Config, promise: Promise, rng: random.Random, now: int) -> None:
        super().__init__(config, promise, rng, now)
        # Whom we acknowledged last, and until when we refuse anyone else (rule 4).
        self.promise_until = now
        if promise.leader_id:
            # We may have acknowledged a leader just before a crash and forgotten when: honour a
            # full promise period after boot, as if we had just heard it (rule 4 across restarts).
            # The window is the one it was granted for (a leader may have asked for a longer one).
            self.promise_until = now + promise.window_ticks(self.timing)
            if PlantedBug.BOOT_WINDOW_FROM_ZERO in config.planted_bugs:
                self.promise_until = promise.window_ticks(self.timing)
        self.boot_window_until = self.promise_until
        self.proposal_epoch = 0
        self.proposal_sent_at = 0
        self.grants: set[int] = set()
        self.refusals: set[int] = set()
        self.reassert_epoch = 0  # a fresh epoch the leader is asking a majority to accept
        self.reassert_sent_at = 0
        self.reassert_retry_at = 0
        # Per peer: when its current unbroken run of granted heartbeat acks began, and its last ack.
        self.ack_streak_start: dict[int, int] = {}
        self.last_ack: dict[int, int] = {}
        self.known = KnownLeader(planted_bugs=config.planted_bugs)  # whom we name to clients while following
        # Leadership won through an operator's transfer is kept against the preferred-leader rule
        # (no preemption) until it ends; the next leader elected in Bully order preempts again.
        self.proposal_by_transfer = False
        self.keep_after_transfer = False

    def _silence_delay(self) -> int:
        """After hearing the leader, wait for its silence only as long as this node's own promise to
        it lasts (promise_hold_ticks), not a full election timeout: no successor can be backed before
        the promises to the old leader run out anyway (rule 4 decides that, not this timer), so the
        rest of the timeout was dead time. Other followers may have acked later heartbeats; a node
        that asks too early is refused and retries after a full timeout (_give_up)."""
        rank = sum(1 for m in self.members if m > self.id)
        t = self.timing
        return t.promise_hold_ticks + rank * t.rank_stagger_ticks + self.rng.randint(0, t.jitter_ticks)

    def _timers(self) -> list[int]:
        lease = self.timing.leader_lease_ticks
        timers = super()._timers() + [
            self.lease_until,
            self.promise_until,
            self.known.until,
            self.reassert_retry_at,
            self.reassert_sent_at + lease,
            self.proposal_sent_at + lease,
        ]
        if self.release_pending is not None:
            timers.append(self.release_pending[2] + self.timing.heartbeat_interval_ticks)
        return timers

    def instants(self, now: int) -> frozenset[str]:
        found = set(super().instants(now))
        if now < self.boot_window_until:
            found.add("boot-window")
        if now < self.promise_until and self.promise.leader_id not in (0, self.id):
            found.add("inside-promise")
        if self.phase == _Phase.LEADING:
            if 0 <= self.lease_until - now <= 2:
                found.add("lease-end")
            if self.reassert_epoch:
                found.add("reassert-in-flight")
            if self.keep_after_transfer:
                found.add("kept-by-transfer")
        elif self.phase == _Phase.PROPOSING:
            found.add("proposing")
        return frozenset(found)

    def view(self, now: int) -> View:
        # Acknowledging a Coordinator is no evidence that its sender won (it may never reach a
        # majority): a follower names only a leader whose heartbeat still vouches for it.
        return self.known.follower_view(super().view(now), now)

    # -- winning ---------------------------------------------------------------------------

    def _propose(self, batch: Batch) -> None:
        if self._inside_promise_window() and PlantedBug.BOOT_SELF_VOTE not in self.config.planted_bugs:
            # Our vote for ourselves is a grant like any other: while we may still owe another
            # leader our promise (rule 4; after a restart we cannot know we don't), we give it to
            # no one, ourselves included. Try again when the window ends.
            self.phase = _Phase.IDLE
            self.election_deadline = max(self.election_deadline, self.promise_until)
            batch.events.append(Reached("self-vote-deferred"))
            return
        epoch = max(self.highest_seen_epoch, self.promise.epoch) + 1
        self._make_promise(Promise(epoch, self.id), batch)  # we vote for ourselves, durably
        self.proposal_by_transfer = self.handover == "transfer"
        self.phase = _Phase.PROPOSING
        self.proposal_epoch = epoch
        self.proposal_sent_at = self.now
        self.phase_deadline = self.now + self.timing.coordinator_wait_ticks
        self.grants = {self.id}
        self.refusals = set()
        self.leader_id = None
        for peer in self.peers:
            self._send(batch, MsgType.COORDINATOR, peer, epoch=epoch, lease_ticks=self.timing.leader_lease_ticks)
        self._count_grants(batch)

    def _reassert(self, batch: Batch) -> None:
        # One at a time, and not on every refused heartbeat. A reassert whose every message was lost
        # gets no answer at all: once a lease has passed it can extend nothing, so it is over.
        pending = self.reassert_epoch and self.now < self.reassert_sent_at + self.timing.leader_lease_ticks
        if pending or self.now < self.reassert_retry_at:
            return
        epoch = max(self.highest_seen_epoch, self.promise.epoch) + 1
        self._make_promise(Promise(epoch, self.id), batch)
        self.reassert_epoch = epoch
        if PlantedBug.REASSERT_ADOPTS_EPOCH in self.config.planted_bugs:
            self.epoch = epoch  # we lead on in the fresh epoch while a majority is asked
        self.reassert_sent_at = self.now
        self.reassert_retry_at = self.now + self.timing.election_timeout_ticks
        if PlantedBug.REASSERT_KEEPS_GRANTS in self.config.planted_bugs:
            self.grants.add(self.id)  # the winning proposal's grants are still in the set
        else:
            self.grants = {self.id}
        self.refusals = set()
        for peer in self.peers:
            self._send(batch, MsgType.COORDINATOR, peer, epoch=epoch, lease_ticks=self.timing.leader_lease_ticks)

    def _on_reassert_ack(self, msg: Message, batch: Batch) -> None:
        if not self.reassert_epoch or msg.epoch != self.reassert_epoch:
            return  # an answer to the Coordinator that won (a late one), or to an older reassert
        if self.now >= self.reassert_sent_at + self.timing.leader_lease_ticks:
            self.reassert_epoch = 0  # too late to extend anything; a later refusal retries
            return
        (self.grants if msg.granted else self.refusals).add(msg.src)
        if self._has_majority(self.grants):
            self.epoch = self.reassert_epoch
            self.known.led(self.id, self.epoch)
            self.reassert_epoch = 0
            self.lease_until = max(self.lease_until, self.reassert_sent_at + self.timing.leader_lease_ticks)
            self.rounds = {}
            batch.events.append(Reached("reassert-won"))
            batch.events.append(BecameLeader(self.epoch))
        elif self._majority_lost(self.refusals):
            self.reassert_epoch = 0  # keep leading the old epoch while its lease lasts
            batch.events.append(Reached("reassert-failed"))

    def _on_proposal_ack(self, msg: Message, batch: Batch) -> None:
        if msg.epoch != self.proposal_epoch:
            return
        late_after = self.timing.leader_lease_ticks
        if PlantedBug.LATE_ACK_UNTIL_TIMEOUT in self.config.planted_bugs:
            late_after = self.timing.election_timeout_ticks
        if self.now >= self.proposal_sent_at + late_after:
            # a late majority (we were paused, the acks were held) brings a lease already over
            batch.events.append(Reached("late-majority-ignored"))
            return
        (self.grants if msg.granted else self.refusals).add(msg.src)
        self._count_grants(batch)

    def _count_grants(self, batch: Batch) -> None:
        if self._has_majority(self.grants):
            self._become_leader(self.proposal_epoch, batch)
            self.known.led(self.id, self.proposal_epoch)
            self.keep_after_transfer = self.proposal_by_transfer
            # The Coordinator round counts as the first lease round: it was sent at proposal time.
            self.lease_until = self.proposal_sent_at + self.timing.leader_lease_ticks
            self.round = 0
            self.rounds = {}
            self.reassert_epoch = self.reassert_retry_at = 0
            self.ack_streak_start, self.last_ack = {}, {}
            self._won(self.grants)
            self.next_heartbeat = self.now
            self._on_leader_timers(batch)
        elif self._majority_lost(self.refusals):
            self._give_up(batch)

    # -- leading -------------------------------------------------------------------------------

    def _preferred_successor(self) -> int | None:
        """A higher node that has acked every heartbeat for the whole hold-down, if any.

        Bully prefers the highest id, but preempting on every return would make a flapping node
        cause an election per flap; an unbroken run of acks as long as the hold-down must come first.
        """
        hold = self.timing.preempt_hold_down_ticks
        if not hold or self.keep_after_transfer:
            return None
        fresh = 2 * self.timing.heartbeat_interval_ticks
        ready = [
            p
            for p in self.members
            if p > self.id
            and p in self.last_ack
            and self.now - self.last_ack[p] <= fresh
            and self.now - self.ack_streak_start[p] >= hold
        ]
        return max(ready) if ready else None

    def _on_leader_timers(self, batch: Batch) -> None:
        if self.release_pending is not None:  # PlantedBug.EARLY_RELEASE: one more interval as leader
            reason, successor, released_at = self.release_pending
            if self.now >= released_at + self.timing.heartbeat_interval_ticks:
                self._resign(batch, reason, successor)
            return
        if self.now < self.next_heartbeat:
            return
        successor = self._preferred_successor()
        if successor is not None:
            self._resign(batch, Reason.PREEMPTED, successor)
            return
        self.next_heartbeat = self.now + self.timing.heartbeat_interval_ticks
        sent_at = self.now
        if PlantedBug.LEASE_FROM_NEXT_BEAT in self.config.planted_bugs:
            sent_at = self.next_heartbeat
        lease_remaining = self._open_round(sent_at)
        for peer in self.peers:
            self._send(
                batch,
                MsgType.HEARTBEAT,
                peer,
                round=self.round,
                lease_remaining=lease_remaining,
                lease_ticks=self.timing.leader_lease_ticks,
            )

    def _on_heartbeat_ack(self, msg: Message, batch: Batch) -> None:
        if not msg.granted:
            if msg.refusal in CONFIGURATION_REFUSALS:
                return  # a conflicting configuration: nothing an epoch could mend
            if msg.promised_epoch > self.epoch or msg.epoch == msg.promised_epoch == self.epoch:
                # This node promised a newer epoch (a candidate cut off from us, say), or promised
                # our own epoch to another candidate: it can never follow us in this epoch. Rather
                # than step down (and depose a healthy leader after every heal), move our
                # leadership to a fresh epoch with a majority's consent; our lease stands meanwhile.
                self._reassert(batch)
            return
        bugs = self.config.planted_bugs
        if PlantedBug.WRONG_ROUND_ACK in bugs and self.rounds and msg.epoch == self.epoch:
            msg = replace(msg, round=max(self.rounds))
        if PlantedBug.ROUND_WITHOUT_EPOCH in bugs:
            msg = replace(msg, epoch=self.epoch)
        if msg.epoch != self.epoch or msg.round not in self.rounds:
            return
        self._confirm(msg.src, batch)
        if self.phase != _Phase.LEADING or msg.round not in self.rounds:
            return
        last = self.last_ack.get(msg.src)
        if last is None or self.now - last > 2 * self.timing.heartbeat_interval_ticks:
            self.ack_streak_start[msg.src] = self.now  # a new unbroken run of acks begins
        self.last_ack[msg.src] = self.now
        self._round_acked(
            msg.round,
            msg.src,
            sent_at=self.now if PlantedBug.LEASE_FROM_RECEIPT in bugs else None,
            lease_ticks=self.timing.follower_promise_ticks if PlantedBug.LEASE_AS_LONG_AS_PROMISE in bugs else None,
        )

    # -- following -----------------------------------------------------------------------------

    def _inside_promise_window(self) -> bool:
        """True while our promise to another node may still be live (rule 4)."""
        return self.now < self.promise_until and self.promise.leader_id not in (0, self.id)

    def _acknowledgement_refused(self, leader: int, epoch: int) -> str:
        """Rules 2 and 4: one leader per epoch, never below the promise, honour a live lease. Why
        `leader` may not have our acknowledgement for `epoch` ("" if it may)."""
        if PlantedBug.DOUBLE_ACK in self.config.planted_bugs:
            return "" if epoch >= self.promise.epoch else EPOCH_STALE
        same = epoch == self.promise.epoch and leader == self.promise.leader_id
        if epoch < self.promise.epoch:
            return EPOCH_STALE
        if epoch == self.promise.epoch and not same:
            return EPOCH_PROMISED
        if same:
            return ""
        if leader == self.promise.leader_id and epoch > self.promise.epoch and self.phase == _Phase.IDLE:
            return ""  # the leader we follow moves to a fresh epoch (reassert): no second leader
        if self.phase == _Phase.LEADING:
            return LEADING  # our own lease is live (_advance already dropped an expired one)
        # A live promise to another leader (or, after boot, to whoever we promised) blocks.
        return "" if self.now >= self.promise_until else PROMISE_LIVE

    def _acknowledge(self, msg: Message, batch: Batch) -> None:
        """Grant `msg` (a Coordinator or a leader's Heartbeat): durable first, then the promise window,
        long enough to outlast the lease its sender announced."""
        leader, epoch = msg.src, msg.epoch
        until, durable = grant_window(
            self.timing,
            self.now,
            self._promise_ticks(msg.lease_ticks),
            self.promise_until,
            self.promise,
            again=leader == self.promise.leader_id,
        )
        self._make_promise(Promise(epoch, leader, durable), batch)
        if self.phase != _Phase.IDLE or self.leader_id != leader or self.epoch != epoch:
            self._follow(leader, epoch)
        else:
            self.election_deadline = self.now + self._silence_delay()
            if PlantedBug.ACK_KEEPS_WINDOW in self.config.planted_bugs:
                return
        self.promise_until = until

    def _promise_ticks(self, lease_ticks: int) -> int:
        bugs = self.config.planted_bugs
        if PlantedBug.SHORT_PROMISE in bugs:
            return self.timing.leader_lease_ticks // 2
        if PlantedBug.ANNOUNCED_LEASE_IGNORED in bugs:
            return self.timing.promise_hold_ticks
        return self.timing.hold_ticks_for(lease_ticks)

    def _on_coordinator(self, msg: Message, batch: Batch) -> None:
        refusal = (
            NOT_A_VOTER
            if self.id not in self.membership.electorate
            else self._acknowledgement_refused(msg.src, msg.epoch)
        )
        if not refusal:
            self._acknowledge(msg, batch)
        self._reply(batch, msg, refusal)

    def _on_heartbeat(self, msg: Message, batch: Batch) -> None:
        if msg.resigning:
            self.known.released(msg.src, msg.epoch)
            ours = self.epoch == msg.epoch
            if PlantedBug.OLD_RESIGN_RELEASES in self.config.planted_bugs:
                ours = msg.epoch <= self.epoch
            if self.leader_id == msg.src and ours:
                self.promise_until = self.now  # the leader released its lease
                batch.events.append(PromiseReleased(msg.src, msg.epoch))
                self._released(msg, batch)
            return
        refusal = self._acknowledgement_refused(msg.src, msg.epoch)
        if not refusal:
            self._acknowledge(msg, batch)
            self.known.heard(self.now, msg, self.timing)
        self._reply(batch, msg, refusal)

    def _answer_election(self, msg: Message, batch: Batch) -> None:
        if self.phase == _Phase.LEADING:
            # The asker cannot hear us: renew at once so it (and the lease) catch up.
            self.next_heartbeat = self.now
            self._on_leader_timers(batch)
        elif self.phase == _Phase.IDLE and (self.leader_id is None or self.now >= self.promise_until):
            self._start_election(batch)
