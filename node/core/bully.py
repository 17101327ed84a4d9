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

from .types import (
    REPLY_TYPE,
    Batch,
    BecameLeader,
    Config,
    ElectionStarted,
    MembershipChanged,
    Message,
    MsgType,
    Output,
    PlantedBug,
    Promise,
    PromiseReleased,
    Reached,
    Reason,
    Role,
    Stats,
    SteppedDown,
    View,
    grant_window,
)
from .elector import earliest_after
from .membership import OUTSIDE, Membership, MembershipRefused, initial, joining
from .known import KnownLeader
from .votes import has_majority


class _Phase:
    IDLE = "idle"  # follower (with or without a known leader)
    ELECTING = "electing"  # sent Election to higher ids, waiting for Alive
    AWAITING = "awaiting"  # a higher id answered Alive; waiting for its Coordinator
    PROPOSING = "proposing"  # sent Coordinator(e), collecting acks (quorum only)
    LEADING = "leading"


_ROLE_OF_PHASE = {_Phase.LEADING: Role.LEADER, _Phase.ELECTING: Role.CANDIDATE, _Phase.PROPOSING: Role.CANDIDATE}


class BullyElector:
    """Shared Bully machinery. Subclasses decide what winning and following require."""

    # Protocol instants (node.core.instants): states instants() reports, and moments sent as Reached.
    INSTANTS: dict[str, str] = {
        "deadline": "a follower within a tick of its election timeout",
        "electing": "asked the higher ids, waiting for an Alive",
        "awaiting": "a higher id answered Alive; waiting for its Coordinator",
        "abstaining": "a node that resigned stays out of elections for a while",
        "won-again": "became leader again with no other leader known since it last led",
        "handover-won": "won the proposal a resigning leader handed it (a transfer or preemption)",
    }

    def __init__(self, config: Config, promise: Promise, rng: random.Random, now: int) -> None:
        self.config = config
        self.timing = config.timing
        self.id = config.node_id
        self.rng = rng
        self.stats = Stats()
        if PlantedBug.FORGET_PROMISE in config.planted_bugs:
            promise = Promise()
        self.promise = promise
        # Whom we count and talk to (node.core.membership). Modes that keep their start-up list
        # (CHANGES_MEMBERSHIP False) never move off initial(config.members).
        self.membership: Membership = promise.membership or (
            joining() if config.join and self.CHANGES_MEMBERSHIP else initial(config.members))
        self.highest_seen_epoch = promise.epoch
        self.phase = _Phase.IDLE
        self.epoch = promise.epoch  # epoch of the leader we follow or are
        self.leader_id: int | None = None
        self.election_deadline = now + self._election_delay()
        self.phase_deadline = 0
        self.pending_higher: set[int] = set()
        self.now = now

    CHANGES_MEMBERSHIP = False  # messages carry the configuration; the core compares it (node.core.membership)

    @property
    def members(self) -> tuple[int, ...]:
        """The voters: the ids majorities are counted against and Bully order ranks."""
        return self.membership.voters

    @property
    def peers(self) -> tuple[int, ...]:
        """Everyone this node talks to: voters, learners, the voters before the last change and the
        nodes it took out (so that they hear it)."""
        return tuple(m for m in self.membership.audience if m != self.id)

    # ---- the Elector interface -----------------------------------------------------------

    def tick(self, now: int) -> Output:
        batch = Batch()
        self._advance(now, batch)
        self._on_timers(batch)
        return batch.freeze()

    def step(self, now: int, msg: Message) -> Output:
        """Handle a message that passed validation (sender is a member, receiver is us)."""
        batch = Batch()
        self._advance(now, batch)
        self._see_epoch(max(msg.epoch, msg.promised_epoch))
        if not self._admit(msg, batch):
            return batch.freeze()
        handler = {
            MsgType.ELECTION: self._on_election,
            MsgType.ALIVE: self._on_alive,
            MsgType.COORDINATOR: self._on_coordinator,
            MsgType.COORDINATOR_ACK: self._on_coordinator_ack,
            MsgType.HEARTBEAT: self._on_heartbeat,
            MsgType.HEARTBEAT_ACK: self._on_heartbeat_ack,
        }[msg.type]
        handler(msg, batch)
        return batch.freeze()

    def send_failed(self, now: int, msg: Message) -> Output:
        """The transport could not deliver `msg` (refused, deadline exceeded). Optional input."""
        batch = Batch()
        self._advance(now, batch)
        if self.phase == _Phase.ELECTING and msg.type == MsgType.ELECTION:
            self.pending_higher.discard(msg.dst)
            if not self.pending_higher:
                self._propose(batch)
        return batch.freeze()

    def resign(self, now: int, successor: int = 0) -> Output:
        """Step down on purpose and tell followers, so they elect without waiting out a timeout.

        With a successor (a transfer), followers let that node go first and it proposes at once.
        """
        batch = Batch()
        self._advance(now, batch)
        if self.phase == _Phase.LEADING:
            if successor and (successor not in self.members or successor == self.id):
                raise ValueError(f"successor {successor} is not a voter of node {self.id}'s configuration")
            self._resign(batch, Reason.RESIGNED, successor)
        return batch.freeze()

    def _resign(self, batch: Batch, reason: Reason, successor: int = 0) -> None:
        epoch = self.epoch
        early = PlantedBug.EARLY_RELEASE in self.config.planted_bugs
        keep_leading = early and self.phase == _Phase.LEADING and self.release_pending is None
        if keep_leading:
            self.release_pending = (reason, successor, self.now)  # finished by _on_leader_timers
        else:
            self.release_pending = None
            self._step_down(reason, batch, lease_end_tick=self.now)
        transfer = bool(successor) and reason == Reason.RESIGNED  # an operator's choice, not preemption
        for peer in self.peers:
            self._send(batch, MsgType.HEARTBEAT, peer, epoch=epoch, resigning=True, successor=successor,
                       transfer=transfer)
        if keep_leading:
            return
        # Abstain for a while: otherwise, being the highest id, we would simply win again.
        self.abstain_until = self.now + self.timing.election_timeout_ticks
        self.election_deadline = self.abstain_until

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

    def next_deadline(self, now: int) -> int:
        return earliest_after(max(now, self.now), self._timers(), self.timing.election_timeout_ticks)

    def _timers(self) -> list[int]:
        """Every tick a timer of this node compares `now` with (see tick, _advance and view)."""
        timers = [self.election_deadline, self.abstain_until, self.phase_deadline, self.next_heartbeat]
        if self._unsaved is not None:
            timers.append(self._unsaved_since + self.timing.heartbeat_interval_ticks)
        return timers

    # ---- hooks for the two modes -----------------------------------------------------------

    abstain_until = 0
    next_heartbeat = 0  # when a leader sends its next heartbeat round

    def _lease_valid(self, now: int) -> bool:
        raise NotImplementedError

    def _propose(self, batch: Batch) -> None:
        raise NotImplementedError

    def _on_coordinator(self, msg: Message, batch: Batch) -> None:
        raise NotImplementedError

    def _on_heartbeat(self, msg: Message, batch: Batch) -> None:
        raise NotImplementedError

    def _on_coordinator_ack(self, msg: Message, batch: Batch) -> None:
        pass

    def _on_heartbeat_ack(self, msg: Message, batch: Batch) -> None:
        pass

    def _advance(self, now: int, batch: Batch) -> None:
        self.now = max(self.now, now)
        if self._unsaved is not None and self.now >= self._unsaved_since + self.timing.heartbeat_interval_ticks:
            batch.persist, self._unsaved = self._unsaved, None

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

    def _send(self, batch: Batch, type_: MsgType, dst: int, **fields) -> None:
        fields.setdefault("epoch", self.epoch)
        if self.CHANGES_MEMBERSHIP:
            fields["membership"] = self.membership
        batch.messages.append(Message(type_, self.id, dst, **fields))

    def _reply(self, batch: Batch, request: Message, granted: bool, refusal: str = "") -> None:
        self._send(
            batch,
            REPLY_TYPE[request.type],
            request.src,
            epoch=request.epoch,
            round=request.round,
            granted=granted,
            promised_epoch=self.promise.epoch,
            refusal=refusal,
        )

    def _admit(self, msg: Message, batch: Batch) -> bool:
        """Whether `msg` goes on to its handler (modes that change membership compare configurations)."""
        return True

    def _make_promise(self, promise: Promise, batch: Batch) -> None:
        if promise.membership is None and self.CHANGES_MEMBERSHIP:
            # Every promise carries the configuration, the start-up list included: once a node has
            # promised anything, a restart with another --peers list cannot change whom it counts.
            promise = replace(promise, membership=self.promise.membership or self.membership)
        if promise != self.promise:
            # PlantedBug.PERSIST_NEW_LEADER_ONLY: a write only when we back someone else, as if the
            # same leader in a newer epoch were the promise already on disk.
            skip = PlantedBug.PERSIST_NEW_LEADER_ONLY in self.config.planted_bugs and promise.leader_id == self.promise.leader_id
            self.promise = promise
            if PlantedBug.PERSIST_AFTER_REPLY in self.config.planted_bugs:
                # Write-behind: flushed a heartbeat interval later, long after the ack revealed it.
                self._unsaved_since = self.now if self._unsaved is None else self._unsaved_since
                self._unsaved = promise
            elif not skip:
                if PlantedBug.HOLD_NOT_PERSISTED in self.config.planted_bugs:
                    promise = replace(promise, hold_ticks=0)  # the longer window lives in memory only
                batch.persist = promise
        self._see_epoch(promise.epoch)

    _unsaved: Promise | None = None  # PlantedBug.PERSIST_AFTER_REPLY only
    _unsaved_since = 0

    def _on_timers(self, batch: Batch) -> None:
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
    last_leader = 0  # the last leader this node followed or was (for the instant "won-again")

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

    def _step_down(self, reason: Reason, batch: Batch, lease_end_tick: int | None = None) -> None:
        self.stats.stepdowns += 1
        batch.events.append(SteppedDown(self.epoch, reason, lease_end_tick))
        self.phase = _Phase.IDLE
        self.leader_id = None
        self.election_deadline = self.now + self._election_delay()

    def _on_election(self, msg: Message, batch: Batch) -> None:
        if msg.src > self.id or self.now < self.abstain_until:
            return  # Election goes only to higher ids; a resigning node stays out of the way
        self._send(batch, MsgType.ALIVE, msg.src)
        self._answer_election(msg, batch)

    def _answer_election(self, msg: Message, batch: Batch) -> None:
        if self.phase == _Phase.IDLE:
            self._start_election(batch)

    def _on_alive(self, msg: Message, batch: Batch) -> None:
        if self.phase == _Phase.ELECTING and msg.src > self.id:
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

    round = 0

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
        self._reply(batch, msg, granted=self.leader_id == msg.src)

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
        self._reply(batch, msg, granted=self.leader_id == msg.src)


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

    CHANGES_MEMBERSHIP = True

    def __init__(self, config: Config, promise: Promise, rng: random.Random, now: int) -> None:
        super().__init__(config, promise, rng, now)
        # Leading: who acknowledged our configuration in this epoch (_agreed).
        self.confirmed: set[int] = set()
        self.agreed_told = True  # whether MembershipChanged(committed=True) went out for our configuration
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
        self.lease_until = 0
        self.proposal_epoch = 0
        self.proposal_sent_at = 0
        self.grants: set[int] = set()
        self.refusals: set[int] = set()
        self.round = 0
        self.next_heartbeat = 0
        self.rounds: dict[int, tuple[int, set[int]]] = {}  # round -> (sent_at tick, granted by)
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

    def _lease_valid(self, now: int) -> bool:
        return self.phase == _Phase.LEADING and now < self.lease_until

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
        timers = super()._timers() + [self.lease_until, self.promise_until, self.known.until, self.reassert_retry_at,
                                      self.reassert_sent_at + lease, self.proposal_sent_at + lease]
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

    def _advance(self, now: int, batch: Batch) -> None:
        super()._advance(now, batch)
        if (
            self.phase == _Phase.LEADING
            and self.now >= self.lease_until
            and PlantedBug.IGNORE_LEASE not in self.config.planted_bugs
        ):
            self._step_down(Reason.LEASE_EXPIRED, batch, lease_end_tick=self.lease_until)

    # -- configuration (node.core.membership) --------------------------------------------------

    def _admit(self, msg: Message, batch: Batch) -> bool:
        """One check of the sender's configuration before any handler: a later one is adopted (durably,
        before the answer), an earlier or conflicting one is refused with the reason and ours."""
        theirs = msg.membership
        if theirs is None:
            return True
        verdict = self.membership.compare(theirs)
        if verdict and PlantedBug.ADOPTS_ANY_CONFIGURATION in self.config.planted_bugs:
            verdict = "later"  # whatever it hears is the cluster's now
        if verdict == "later":
            self._adopt(theirs, batch)
            verdict = ""
        if not verdict and self.id in self.membership.participants:
            return True
        verdict = verdict or OUTSIDE  # removed, or still joining: we back no one
        if msg.type in REPLY_TYPE and not msg.resigning:
            self._reply(batch, msg, granted=False, refusal=verdict)
        return False

    def _adopt(self, new: Membership, batch: Batch) -> None:
        """Run a later configuration some other node made. A leader or candidate of the earlier one
        stops: its majority was counted against voters that are no longer the cluster's."""
        self._run(new, batch)
        if PlantedBug.NEW_CONFIGURATION_RELEASES in self.config.planted_bugs:
            self.promise_until = self.now  # as if the new configuration started afresh
        if self.phase == _Phase.LEADING:
            self._step_down(Reason.CONFIGURATION, batch, lease_end_tick=self.now)
        elif self.phase == _Phase.PROPOSING:
            self._give_up(batch)
        elif self.phase in (_Phase.ELECTING, _Phase.AWAITING) and self.id not in new.voters:
            self.phase = _Phase.IDLE

    def _run(self, new: Membership, batch: Batch) -> None:
        self.membership = new
        durable = new
        if PlantedBug.MEMBERSHIP_NOT_PERSISTED in self.config.planted_bugs:
            # held in memory; the disk keeps the configuration before
            durable = self.promise.membership or initial(self.config.members)
        self._make_promise(replace(self.promise, membership=durable), batch)
        batch.events.append(MembershipChanged(new))

    def change_membership(self, now: int, voters: tuple[int, ...], learners: tuple[int, ...] = ()) -> Output:
        """As leader, move the cluster to the configuration (`voters`, `learners`): one voter added or
        removed at most, through a joint configuration that this leader settles once it is agreed.
        Learners are promoted, one change each, once they acknowledged a settled configuration that
        names them. MembershipRefused says why it cannot be now."""
        batch = Batch()
        self._advance(now, batch)
        if self.phase != _Phase.LEADING or not self._lease_valid(self.now):
            raise MembershipRefused(f"node {self.id} is not the leader; changes go to the leader")
        if self.id not in voters:
            raise MembershipRefused(f"node {self.id} leads and cannot remove itself; transfer leadership first")
        if self.membership.joint or not self._agreed():
            raise MembershipRefused(
                f"{self.membership.describe()} is not yet agreed (acknowledged in epoch {self.epoch} by a "
                "majority of its voters); one change at a time, try again shortly")
        self._make_own(self.membership.changed(tuple(voters), tuple(learners), self.epoch), batch)
        return batch.freeze()

    def _make_own(self, new: Membership, batch: Batch) -> None:
        """A change this leader makes in its epoch: run it, and tell everyone at once."""
        self._run(new, batch)
        self.confirmed = {self.id}
        self.agreed_told = False
        self.next_heartbeat = self.now
        self._on_leader_timers(batch)

    def membership_agreed(self) -> bool:
        """Leading a settled configuration that _agreed (the next change may start)."""
        return self.phase == _Phase.LEADING and not self.membership.joint and self._agreed()

    def _agreed(self) -> bool:
        """Our configuration was acknowledged in our epoch by a majority (of both groups while joint):
        no configuration it does not descend from can gather a majority any more."""
        return self._has_majority(self.confirmed)

    def _confirm(self, node: int, batch: Batch) -> None:
        """`node` acknowledged our configuration in our epoch: a joint one may settle, a learner be
        promoted."""
        self.confirmed.add(node)
        if not self._agreed():
            return
        m = self.membership
        if not self.agreed_told:
            self.agreed_told = True
            batch.events.append(MembershipChanged(m, committed=True))
        if m.joint:
            self._make_own(m.settled(self.epoch), batch)
            return
        ready = sorted(p for p in m.learners if p in self.confirmed)
        if ready:
            self._make_own(m.changed(m.voters + (ready[0],), tuple(x for x in m.learners if x != ready[0]),
                                     self.epoch), batch)

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

    def _on_coordinator_ack(self, msg: Message, batch: Batch) -> None:
        if self.phase == _Phase.LEADING and self.reassert_epoch and msg.epoch == self.reassert_epoch:
            self._on_reassert_ack(msg, batch)
            return
        if self.phase != _Phase.PROPOSING or msg.epoch != self.proposal_epoch:
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

    def _has_majority(self, granted_by: set[int]) -> bool:
        """A majority of the voters (and while joint, of the voters before too)."""
        m, bugs = self.membership, self.config.planted_bugs
        if not bugs & {PlantedBug.HALF_IS_MAJORITY, PlantedBug.REMOVED_STILL_COUNTED}:
            return m.majority(granted_by)
        groups = []
        for group in {m.voters, m.previous}:
            n = len(group)
            if PlantedBug.REMOVED_STILL_COUNTED in bugs:
                group = m.electorate  # a voter the change removed still counts among the new voters
            if PlantedBug.HALF_IS_MAJORITY in bugs and n % 2 == 0:
                n -= 1  # a majority of n-1 is exactly half of n
            groups.append(has_majority(granted_by & set(group), n))
        return all(groups)

    def _majority_lost(self, refused_by: set[int]) -> bool:
        return self.membership.majority_lost(refused_by)

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
            self.confirmed = set(self.grants)
            self.agreed_told = True
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
            p for p in self.members
            if p > self.id and p in self.last_ack and self.now - self.last_ack[p] <= fresh
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
        self.round += 1
        sent_at = self.now
        if PlantedBug.LEASE_FROM_NEXT_BEAT in self.config.planted_bugs:
            sent_at = self.next_heartbeat
        self.rounds[self.round] = (sent_at, {self.id})
        if self._has_majority({self.id}):  # a cluster of one: no ack will come
            self.lease_until = self.now + self.timing.leader_lease_ticks
        # Rounds older than a lease can no longer extend it.
        for r in [r for r, (sent, _) in self.rounds.items() if sent + self.timing.leader_lease_ticks <= self.now]:
            del self.rounds[r]
        lease_remaining = max(0, self.lease_until - self.now)
        for peer in self.peers:
            self._send(batch, MsgType.HEARTBEAT, peer, round=self.round, lease_remaining=lease_remaining,
                       lease_ticks=self.timing.leader_lease_ticks)

    def _on_heartbeat_ack(self, msg: Message, batch: Batch) -> None:
        if self.phase != _Phase.LEADING:
            return
        if not msg.granted:
            if msg.refusal:
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
        sent_at, granted_by = self.rounds[msg.round]
        granted_by.add(msg.src)
        if PlantedBug.LEASE_FROM_RECEIPT in bugs:
            sent_at = self.now
        lease = self.timing.leader_lease_ticks
        if PlantedBug.LEASE_AS_LONG_AS_PROMISE in bugs:
            lease = self.timing.follower_promise_ticks
        if self._has_majority(granted_by) and sent_at + lease > self.lease_until:
            self.lease_until = sent_at + lease
            self.stats.lease_renewals += 1

    # -- following -----------------------------------------------------------------------------

    def _inside_promise_window(self) -> bool:
        """True while our promise to another node may still be live (rule 4)."""
        return self.now < self.promise_until and self.promise.leader_id not in (0, self.id)

    def _may_acknowledge(self, leader: int, epoch: int) -> bool:
        """Rules 2 and 4: one leader per epoch, never below the promise, honour a live lease."""
        if PlantedBug.DOUBLE_ACK in self.config.planted_bugs:
            return epoch >= self.promise.epoch
        same = epoch == self.promise.epoch and leader == self.promise.leader_id
        if epoch < self.promise.epoch or (epoch == self.promise.epoch and not same):
            return False
        if same:
            return True
        if leader == self.promise.leader_id and epoch > self.promise.epoch and self.phase == _Phase.IDLE:
            return True  # the leader we follow moves to a fresh epoch (reassert): no second leader
        if self.phase == _Phase.LEADING:
            return False  # our own lease is live (_advance already dropped an expired one)
        # A live promise to another leader (or, after boot, to whoever we promised) blocks.
        return self.now >= self.promise_until

    def _acknowledge(self, msg: Message, batch: Batch) -> None:
        """Grant `msg` (a Coordinator or a leader's Heartbeat): durable first, then the promise window,
        long enough to outlast the lease its sender announced."""
        leader, epoch = msg.src, msg.epoch
        until, durable = grant_window(self.timing, self.now, self._promise_ticks(msg.lease_ticks), self.promise_until,
                                      self.promise, again=leader == self.promise.leader_id)
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
        granted = self.id in self.membership.electorate and self._may_acknowledge(msg.src, msg.epoch)
        if granted:
            self._acknowledge(msg, batch)
        self._reply(batch, msg, granted)

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
        granted = self._may_acknowledge(msg.src, msg.epoch)
        if granted:
            self._acknowledge(msg, batch)
            self.known.heard(self.now, msg, self.timing)
        self._reply(batch, msg, granted)

    def _answer_election(self, msg: Message, batch: Batch) -> None:
        if self.phase == _Phase.LEADING:
            # The asker cannot hear us: renew at once so it (and the lease) catch up.
            self.next_heartbeat = self.now
            self._on_leader_timers(batch)
        elif self.phase == _Phase.IDLE and (self.leader_id is None or self.now >= self.promise_until):
            self._start_election(batch)

