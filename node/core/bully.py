"""Bully election as a pure state machine, in two modes behind one Elector interface.

* ClassicBully — the textbook algorithm: highest reachable id wins, victory needs nobody's consent,
  a leader never doubts itself. Under a partition it makes two leaders; it exists to be shown failing.
* QuorumBully — Bully ordering, hardened (DESIGN.md section 3): a leader of epoch e needs a majority
  of the full membership to acknowledge Coordinator(e); a node acknowledges at most one leader per
  epoch and persists that promise first; the leader holds a lease renewed by majority-acknowledged
  heartbeats and steps down when it runs out; a follower that heard a live leader refuses others.

Every entry point takes `now` in ticks and first lets time catch up (`_advance`): a node that was
paused re-checks its lease before it does anything else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .types import (
    REPLY_TYPE,
    BecameLeader,
    Config,
    ElectionStarted,
    Event,
    Message,
    Mode,
    MsgType,
    Output,
    PlantedBug,
    Promise,
    Role,
    Stats,
    SteppedDown,
    View,
)
from .votes import has_majority, majority_impossible


@dataclass
class _Batch:
    """Collects one step's output; `freeze()` hands it to the caller."""

    persist: Promise | None = None
    messages: list[Message] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def freeze(self) -> Output:
        return Output(self.persist, tuple(self.messages), tuple(self.events))


class _Phase:
    IDLE = "idle"  # follower (with or without a known leader)
    ELECTING = "electing"  # sent Election to higher ids, waiting for Alive
    AWAITING = "awaiting"  # a higher id answered Alive; waiting for its Coordinator
    PROPOSING = "proposing"  # sent Coordinator(e), collecting acks (quorum only)
    LEADING = "leading"


class BullyElector:
    """Shared Bully machinery. Subclasses decide what winning and following require."""

    mode: Mode

    def __init__(self, config: Config, promise: Promise, rng: random.Random, now: int) -> None:
        self.config = config
        self.timing = config.timing
        self.id = config.node_id
        self.rng = rng
        self.stats = Stats()
        if PlantedBug.FORGET_PROMISE in config.planted_bugs:
            promise = Promise()
        self.promise = promise
        self.highest_seen_epoch = promise.epoch
        self.phase = _Phase.IDLE
        self.epoch = promise.epoch  # epoch of the leader we follow or are
        self.leader_id: int | None = None
        self.election_deadline = now + self._election_delay()
        self.phase_deadline = 0
        self.pending_higher: set[int] = set()
        self.now = now

    # ---- the Elector interface -----------------------------------------------------------

    def tick(self, now: int) -> Output:
        batch = _Batch()
        self._advance(now, batch)
        self._on_timers(batch)
        return batch.freeze()

    def step(self, now: int, msg: Message) -> Output:
        """Handle a message that passed validation (sender is a member, receiver is us)."""
        batch = _Batch()
        self._advance(now, batch)
        self._see_epoch(max(msg.epoch, msg.promised_epoch))
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
        batch = _Batch()
        self._advance(now, batch)
        if self.phase == _Phase.ELECTING and msg.type == MsgType.ELECTION:
            self.pending_higher.discard(msg.dst)
            if not self.pending_higher:
                self._propose(batch)
        return batch.freeze()

    def resign(self, now: int) -> Output:
        """Step down on purpose and tell followers, so they elect without waiting out a timeout."""
        batch = _Batch()
        self._advance(now, batch)
        if self.phase == _Phase.LEADING:
            epoch = self.epoch
            self._step_down("resigned", batch)
            for peer in self.config.peers:
                self._send(batch, MsgType.HEARTBEAT, peer, epoch=epoch, resigning=True)
            # Abstain for a while: otherwise, being the highest id, we would simply win again.
            self.abstain_until = self.now + self.timing.election_timeout_ticks
            self.election_deadline = self.abstain_until
        return batch.freeze()

    def view(self, now: int) -> View:
        role = {
            _Phase.LEADING: Role.LEADER,
            _Phase.ELECTING: Role.CANDIDATE,
            _Phase.PROPOSING: Role.CANDIDATE,
        }.get(self.phase, Role.FOLLOWER)
        return View(self.id, role, self.epoch, self.leader_id, self._lease_valid(now))

    # ---- hooks for the two modes -----------------------------------------------------------

    abstain_until = 0

    def _lease_valid(self, now: int) -> bool:
        raise NotImplementedError

    def _propose(self, batch: _Batch) -> None:
        raise NotImplementedError

    def _on_coordinator(self, msg: Message, batch: _Batch) -> None:
        raise NotImplementedError

    def _on_heartbeat(self, msg: Message, batch: _Batch) -> None:
        raise NotImplementedError

    def _on_coordinator_ack(self, msg: Message, batch: _Batch) -> None:
        pass

    def _on_heartbeat_ack(self, msg: Message, batch: _Batch) -> None:
        pass

    def _advance(self, now: int, batch: _Batch) -> None:
        self.now = max(self.now, now)

    def _on_leader_timers(self, batch: _Batch) -> None:
        raise NotImplementedError

    # ---- shared Bully machinery ----------------------------------------------------------------

    def _election_delay(self) -> int:
        rank = sum(1 for m in self.config.members if m > self.id)
        t = self.timing
        return t.election_timeout_ticks + rank * t.rank_stagger_ticks + self.rng.randint(0, t.jitter_ticks)

    def _quick_delay(self) -> int:
        """After a resignation: go soon, still in Bully order."""
        rank = sum(1 for m in self.config.members if m > self.id)
        t = self.timing
        return rank * t.rank_stagger_ticks + self.rng.randint(0, t.jitter_ticks)

    def _see_epoch(self, epoch: int) -> None:
        self.highest_seen_epoch = max(self.highest_seen_epoch, epoch)

    def _send(self, batch: _Batch, type_: MsgType, dst: int, **fields) -> None:
        fields.setdefault("epoch", self.epoch)
        batch.messages.append(Message(type_, self.id, dst, **fields))

    def _reply(self, batch: _Batch, request: Message, granted: bool) -> None:
        self._send(
            batch,
            REPLY_TYPE[request.type],
            request.src,
            epoch=request.epoch,
            round=request.round,
            granted=granted,
            promised_epoch=self.promise.epoch,
        )

    def _make_promise(self, promise: Promise, batch: _Batch) -> None:
        if promise != self.promise:
            self.promise = promise
            batch.persist = promise
        self._see_epoch(promise.epoch)

    def _on_timers(self, batch: _Batch) -> None:
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

    def _start_election(self, batch: _Batch) -> None:
        self.stats.elections_started += 1
        if self.leader_id is not None:
            self.leader_id = None
        higher = [m for m in self.config.members if m > self.id]
        batch.events.append(ElectionStarted(self.highest_seen_epoch))
        if not higher:
            self._propose(batch)
            return
        self.phase = _Phase.ELECTING
        self.pending_higher = set(higher)
        self.phase_deadline = self.now + self.timing.alive_wait_ticks
        for peer in higher:
            self._send(batch, MsgType.ELECTION, peer, epoch=self.highest_seen_epoch)

    def _give_up(self, batch: _Batch) -> None:
        """A proposal failed: back to follower, retry after a randomized timeout."""
        self.phase = _Phase.IDLE
        self.leader_id = None
        self.election_deadline = self.now + self._election_delay()

    def _follow(self, leader_id: int, epoch: int) -> None:
        self.phase = _Phase.IDLE
        self.leader_id = leader_id
        self.epoch = epoch
        self.election_deadline = self.now + self._election_delay()

    def _become_leader(self, epoch: int, batch: _Batch) -> None:
        self.phase = _Phase.LEADING
        self.leader_id = self.id
        self.epoch = epoch
        self.stats.elections_won += 1
        batch.events.append(BecameLeader(epoch))

    def _step_down(self, reason: str, batch: _Batch, lease_end_tick: int | None = None) -> None:
        self.stats.stepdowns += 1
        batch.events.append(SteppedDown(self.epoch, reason, lease_end_tick))
        self.phase = _Phase.IDLE
        self.leader_id = None
        self.election_deadline = self.now + self._election_delay()

    def _on_election(self, msg: Message, batch: _Batch) -> None:
        if msg.src > self.id or self.now < self.abstain_until:
            return  # Election goes only to higher ids; a resigning node stays out of the way
        self._send(batch, MsgType.ALIVE, msg.src)
        self._answer_election(msg, batch)

    def _answer_election(self, msg: Message, batch: _Batch) -> None:
        if self.phase == _Phase.IDLE:
            self._start_election(batch)

    def _on_alive(self, msg: Message, batch: _Batch) -> None:
        if self.phase == _Phase.ELECTING and msg.src > self.id:
            self.phase = _Phase.AWAITING
            self.phase_deadline = self.now + self.timing.coordinator_wait_ticks


class ClassicBully(BullyElector):
    """The textbook Bully algorithm. No acks, no lease, no durable promise needed."""

    mode = Mode.CLASSIC

    def _lease_valid(self, now: int) -> bool:
        return self.phase == _Phase.LEADING

    def _propose(self, batch: _Batch) -> None:
        # Victory needs nobody's consent: announce to the lower ids (the textbook's n-2 messages
        # when the second-highest takes over).
        epoch = max(self.highest_seen_epoch, self.promise.epoch) + 1
        self._make_promise(Promise(epoch, self.id), batch)
        self._become_leader(epoch, batch)
        self.next_heartbeat = self.now + self.timing.heartbeat_interval_ticks
        for peer in self.config.peers:
            if peer < self.id:
                self._send(batch, MsgType.COORDINATOR, peer)

    def _on_leader_timers(self, batch: _Batch) -> None:
        if self.now >= self.next_heartbeat:
            self.next_heartbeat = self.now + self.timing.heartbeat_interval_ticks
            for peer in self.config.peers:
                self._send(batch, MsgType.HEARTBEAT, peer)

    def _answer_election(self, msg: Message, batch: _Batch) -> None:
        if self.phase == _Phase.IDLE:
            self._start_election(batch)
        elif self.phase == _Phase.LEADING:
            self._send(batch, MsgType.COORDINATOR, msg.src)  # textbook: re-announce

    def _accept_leader(self, msg: Message, batch: _Batch) -> None:
        if msg.src < self.id:
            # A lower node claims leadership: bully it (textbook: hold an election, which the
            # higher node wins at once, with a fresh epoch above everything seen).
            if self.phase == _Phase.LEADING:
                self._propose(batch)
            elif self.phase in (_Phase.IDLE, _Phase.AWAITING):
                self._start_election(batch)
            return
        if self.phase == _Phase.LEADING:
            self._step_down("higher_leader", batch)
        self._make_promise(Promise(max(msg.epoch, self.promise.epoch), msg.src), batch)
        self._follow(msg.src, msg.epoch)

    def _on_coordinator(self, msg: Message, batch: _Batch) -> None:
        self._accept_leader(msg, batch)
        self._reply(batch, msg, granted=self.leader_id == msg.src)

    def _on_heartbeat(self, msg: Message, batch: _Batch) -> None:
        if msg.resigning:
            if self.leader_id == msg.src:
                self.leader_id = None
                self.election_deadline = self.now + self._quick_delay()
            return
        if self.leader_id == msg.src and self.phase == _Phase.IDLE:
            self.epoch = msg.epoch
            self.election_deadline = self.now + self._election_delay()
        else:
            self._accept_leader(msg, batch)
        self._reply(batch, msg, granted=self.leader_id == msg.src)


class QuorumBully(BullyElector):
    """Bully ordering with majority-acknowledged leadership, leases and durable promises."""

    mode = Mode.QUORUM

    def __init__(self, config: Config, promise: Promise, rng: random.Random, now: int) -> None:
        super().__init__(config, promise, rng, now)
        # Whom we acknowledged last, and until when we refuse anyone else (rule 4).
        self.promise_until = now
        if promise.leader_id:
            # We may have acknowledged a leader just before a crash and forgotten when: honour a
            # full promise period after boot, as if we had just heard it (rule 4 across restarts).
            self.promise_until = now + self.timing.follower_promise_ticks
        self.lease_until = 0
        self.proposal_epoch = 0
        self.proposal_sent_at = 0
        self.grants: set[int] = set()
        self.refusals: set[int] = set()
        self.round = 0
        self.next_heartbeat = 0
        self.rounds: dict[int, tuple[int, set[int]]] = {}  # round -> (sent_at tick, granted by)

    def _lease_valid(self, now: int) -> bool:
        return self.phase == _Phase.LEADING and now < self.lease_until

    def _advance(self, now: int, batch: _Batch) -> None:
        super()._advance(now, batch)
        if (
            self.phase == _Phase.LEADING
            and self.now >= self.lease_until
            and PlantedBug.IGNORE_LEASE not in self.config.planted_bugs
        ):
            self._step_down("lease_expired", batch, lease_end_tick=self.lease_until)

    # -- winning ---------------------------------------------------------------------------

    def _propose(self, batch: _Batch) -> None:
        epoch = max(self.highest_seen_epoch, self.promise.epoch) + 1
        self._make_promise(Promise(epoch, self.id), batch)  # we vote for ourselves, durably
        self.phase = _Phase.PROPOSING
        self.proposal_epoch = epoch
        self.proposal_sent_at = self.now
        self.phase_deadline = self.now + self.timing.coordinator_wait_ticks
        self.grants = {self.id}
        self.refusals = set()
        self.leader_id = None
        for peer in self.config.peers:
            self._send(batch, MsgType.COORDINATOR, peer, epoch=epoch)
        self._count_grants(batch)

    def _on_coordinator_ack(self, msg: Message, batch: _Batch) -> None:
        if self.phase != _Phase.PROPOSING or msg.epoch != self.proposal_epoch:
            return
        if self.now >= self.proposal_sent_at + self.timing.leader_lease_ticks:
            return  # a late majority (we were paused, the acks were held) brings a lease already over
        (self.grants if msg.granted else self.refusals).add(msg.src)
        self._count_grants(batch)

    def _count_grants(self, batch: _Batch) -> None:
        n = len(self.config.members)
        if has_majority(self.grants, n):
            self._become_leader(self.proposal_epoch, batch)
            # The Coordinator round counts as the first lease round: it was sent at proposal time.
            self.lease_until = self.proposal_sent_at + self.timing.leader_lease_ticks
            self.round = 0
            self.rounds = {}
            self.next_heartbeat = self.now
            self._on_leader_timers(batch)
        elif majority_impossible(self.refusals, n):
            self._give_up(batch)

    # -- leading -------------------------------------------------------------------------------

    def _on_leader_timers(self, batch: _Batch) -> None:
        if self.now < self.next_heartbeat:
            return
        self.next_heartbeat = self.now + self.timing.heartbeat_interval_ticks
        self.round += 1
        self.rounds[self.round] = (self.now, {self.id})
        if has_majority({self.id}, len(self.config.members)):  # a cluster of one: no ack will come
            self.lease_until = self.now + self.timing.leader_lease_ticks
        # Rounds older than a lease can no longer extend it.
        for r in [r for r, (sent, _) in self.rounds.items() if sent + self.timing.leader_lease_ticks <= self.now]:
            del self.rounds[r]
        for peer in self.config.peers:
            self._send(batch, MsgType.HEARTBEAT, peer, round=self.round)

    def _on_heartbeat_ack(self, msg: Message, batch: _Batch) -> None:
        if self.phase != _Phase.LEADING:
            return
        if not msg.granted:
            if msg.promised_epoch > self.epoch or msg.epoch == msg.promised_epoch == self.epoch:
                # Someone promised a newer epoch: a successor may be forming. Leave now; staying
                # could only delay it (our lease would run out anyway). Or it refused our current
                # epoch having promised it to another candidate: it can never follow us in this
                # epoch, only in a new one.
                self._step_down("higher_epoch", batch, lease_end_tick=min(self.lease_until, self.now))
            return
        if msg.epoch != self.epoch or msg.round not in self.rounds:
            return
        sent_at, granted_by = self.rounds[msg.round]
        granted_by.add(msg.src)
        if has_majority(granted_by, len(self.config.members)):
            self.lease_until = max(self.lease_until, sent_at + self.timing.leader_lease_ticks)

    # -- following -----------------------------------------------------------------------------

    def _may_acknowledge(self, leader: int, epoch: int) -> bool:
        """Rules 2 and 4: one leader per epoch, never below the promise, honour a live lease."""
        if PlantedBug.DOUBLE_ACK in self.config.planted_bugs:
            return epoch >= self.promise.epoch
        same = epoch == self.promise.epoch and leader == self.promise.leader_id
        if epoch < self.promise.epoch or (epoch == self.promise.epoch and not same):
            return False
        if same:
            return True
        if self.phase == _Phase.LEADING:
            return False  # our own lease is live (_advance already dropped an expired one)
        # A live promise to another leader (or, after boot, to whoever we promised) blocks.
        return self.now >= self.promise_until

    def _acknowledge(self, leader: int, epoch: int, batch: _Batch) -> None:
        self._make_promise(Promise(epoch, leader), batch)
        if self.phase != _Phase.IDLE or self.leader_id != leader or self.epoch != epoch:
            self._follow(leader, epoch)
        else:
            self.election_deadline = self.now + self._election_delay()
        self.promise_until = self.now + self.timing.follower_promise_ticks

    def _on_coordinator(self, msg: Message, batch: _Batch) -> None:
        granted = self._may_acknowledge(msg.src, msg.epoch)
        if granted:
            self._acknowledge(msg.src, msg.epoch, batch)
        self._reply(batch, msg, granted)

    def _on_heartbeat(self, msg: Message, batch: _Batch) -> None:
        if msg.resigning:
            if self.leader_id == msg.src and self.epoch == msg.epoch:
                self.leader_id = None
                self.promise_until = self.now  # the leader released its lease
                self.election_deadline = self.now + self._quick_delay()
            return
        granted = self._may_acknowledge(msg.src, msg.epoch)
        if granted:
            self._acknowledge(msg.src, msg.epoch, batch)
        self._reply(batch, msg, granted)

    def _answer_election(self, msg: Message, batch: _Batch) -> None:
        if self.phase == _Phase.LEADING:
            # The asker cannot hear us: renew at once so it (and the lease) catch up.
            self.next_heartbeat = self.now
            self._on_leader_timers(batch)
        elif self.phase == _Phase.IDLE and (self.leader_id is None or self.now >= self.promise_until):
            self._start_election(batch)


def make_elector(mode: Mode | str, config: Config, promise: Promise, rng: random.Random, now: int) -> BullyElector:
    """The one factory the runtime and the simulator use; adding an algorithm means adding here."""
    cls = {Mode.CLASSIC: ClassicBully, Mode.QUORUM: QuorumBully}[Mode(mode)]
    return cls(config, promise, rng, now)
