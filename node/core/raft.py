"""Raft leader election (election only, no log) as a pure state machine, with the same safety
machinery as QuorumBully: majority-of-the-full-membership votes, durable one-vote-per-term promises,
leader leases counted from the sent round (CheckQuorum), and follower promise windows.

* Terms are the epochs (and the fencing tokens). The durable `Promise` is (current term, voted-for);
  a follower that acknowledges a leader's heartbeat records that leader as its "vote" in the term
  too, so the persisted promise always names the last node this one backed.
* Election timeouts are drawn uniformly from [ET, 2 ET) with the seeded rng (ET =
  Timing.election_timeout_ticks).
* PreVote (on by default; the mode option `no-pre-vote` turns it off): before it increments
  its term, a node asks PRE_VOTE(term + 1). A peer grants it only if it has no live promise to
  another node (it heard no live leader or candidate within its promise window), is not a leader
  with a live lease, and the asked term is >= its own. A pre-vote changes and persists nothing, so a
  node that was cut off and comes back cannot depose a healthy leader by its inflated term.
* RequestVote: one vote per term, persisted in the same Output as the VOTE that reveals it.
  A granted VOTE (and a granted HEARTBEAT_ACK) is a promise: for Timing.follower_promise_ticks the
  node grants nothing to any other node, and does not vote for itself either (no election starts
  inside the window). After a restart with any state on disk it honours a full window from boot
  (towards the node it last promised; towards everybody if it does not know whom).
* A node inside a promise window, or a leader with a live lease, ignores RequestVote from others
  (refuses without adopting their term), like etcd's CheckQuorum "in lease" rule.
* The leader: heartbeats every Timing.heartbeat_interval_ticks; the lease is counted from when it
  *sent* the majority-acknowledged round (or the RequestVote round that won) and lasts
  Timing.leader_lease_ticks; it steps down (Reason.LEASE_EXPIRED) when the lease runs out, checked
  at the top of every entry point.
* Every reply carries promised_epoch = the responder's current term: a stale leader or candidate
  learns of a newer term and steps down (Reason.HIGHER_EPOCH).
* resign(now, successor): resigning heartbeats release the followers' promises; the successor
  starts an election at once (no pre-vote), the resigner abstains for an election timeout.
"""

from __future__ import annotations

import enum
import random
from dataclasses import replace

from .types import (
    REPLY_TYPE,
    Batch,
    BecameLeader,
    Config,
    ElectionStarted,
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
)
from .elector import earliest_after
from .known import KnownLeader
from .votes import has_majority, majority_impossible


class Phase(str, enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"  # asked PRE_VOTE(term + 1); the term is unchanged
    CANDIDATE = "candidate"  # voted for itself in `term`, asked REQUEST_VOTE
    LEADER = "leader"


class RaftElector:
    """Raft election with PreVote, CheckQuorum leases and durable, windowed promises."""

    # Protocol instants (node.core.instants): states instants() reports, and moments sent as Reached.
    INSTANTS: dict[str, str] = {
        "deadline": "a follower or candidate within a tick of its election timeout",
        "boot-window": "restarted with a promise: backs nobody for a full window from boot",
        "inside-promise": "holds a live promise (a vote or an acked heartbeat) to another node",
        "lease-end": "a leader within 2 ticks of its lease's end",
        "pre-voting": "asked for pre-votes for the next term",
        "abstaining": "a node that resigned stays out of elections for a while",
        "self-vote-deferred": "wanted to campaign inside a promise window; waits for it to end",
        "pre-vote-won": "a majority granted its pre-votes: it starts a real election",
        "campaign-failed": "a majority refused its (pre-)votes",
        "late-majority-ignored": "a majority's votes came after the lease they would start was over",
        "successor-campaign": "named successor by a resigning leader: campaigns at once, no pre-vote",
        "won-again": "became leader again with no other leader known since it last led",
    }
    last_leader = 0  # the last leader this node followed or was (for the instant "won-again")

    def __init__(self, config: Config, promise: Promise, rng: random.Random, now: int, pre_vote: bool = True,
                 timeout_spread_ticks: int | None = None) -> None:
        self.config = config
        self.timing = config.timing
        self.id = config.node_id
        self.rng = rng
        self.pre_vote = pre_vote and "no-pre-vote" not in config.options
        # Election timeouts are drawn from [ET, ET + spread]; None: [ET, 2 ET), Raft's usual range.
        self.timeout_spread_ticks = timeout_spread_ticks
        self.stats = Stats()
        self.promise = promise
        self.term = promise.epoch
        self.voted_for = promise.leader_id  # whom this node backed in `term` (0: nobody yet)
        self.phase = Phase.FOLLOWER
        self.leader_id: int | None = None
        self.known = KnownLeader()  # whom we name to clients while following
        self.now = now
        # The live promise: the node we last granted (vote or heartbeat ack), and until when we back
        # no one else, ourselves included. 0 with a future promise_until blocks everybody.
        self.promised_to = 0
        self.promise_until = now
        if (promise.epoch or promise.leader_id) and promise.leader_id != self.id:
            # We may have granted just before a crash and cannot know when: a full window from boot.
            # (A persisted self-vote means no window to another was live when we cast it, and
            # every later grant would have overwritten it.)
            self.promised_to = promise.leader_id
            self.promise_until = now + promise.window_ticks(self.timing)
        self.boot_window_until = self.promise_until
        self.election_deadline = now + self._timeout()
        self.abstain_until = 0
        # Campaign (pre-vote or vote) state.
        self.campaign_round = 0
        self.granted_by: set[int] = set()
        self.refused_by: set[int] = set()
        self.election_sent_at = 0
        # Leader state.
        self.lease_until = 0
        self.round = 0
        self.next_heartbeat = 0
        self.rounds: dict[int, tuple[int, set[int]]] = {}  # round -> (sent_at tick, granted by)

    # ---- the Elector interface -----------------------------------------------------------------

    def tick(self, now: int) -> Output:
        batch = Batch()
        self._advance(now, batch)
        if self.phase == Phase.LEADER:
            if self.now >= self.next_heartbeat:
                self._send_heartbeats(batch)
        elif self.now >= self.election_deadline:
            self._campaign(batch)
        return batch.freeze()

    def step(self, now: int, msg: Message) -> Output:
        batch = Batch()
        if PlantedBug.LEASE_CHECK_ON_TICK in self.config.planted_bugs:
            self.now = max(self.now, now)
        else:
            self._advance(now, batch)
        {
            MsgType.PRE_VOTE: self._on_pre_vote,
            MsgType.PRE_VOTE_ACK: self._on_pre_vote_ack,
            MsgType.REQUEST_VOTE: self._on_request_vote,
            MsgType.VOTE: self._on_vote,
            MsgType.HEARTBEAT: self._on_heartbeat,
            MsgType.HEARTBEAT_ACK: self._on_heartbeat_ack,
        }[msg.type](msg, batch)
        return batch.freeze()

    def send_failed(self, now: int, msg: Message) -> Output:
        """Undeliverable: count it as a refusal, so a hopeless campaign gives up early."""
        batch = Batch()
        self._advance(now, batch)
        campaign = {MsgType.PRE_VOTE: Phase.PRE_CANDIDATE, MsgType.REQUEST_VOTE: Phase.CANDIDATE}.get(msg.type)
        if campaign == Phase.CANDIDATE:
            current = self.phase == campaign and msg.epoch == self.term
        else:
            current = self.phase == campaign and msg.epoch == self.term + 1 and msg.round == self.campaign_round
        if current:
            self.refused_by.add(msg.dst)
            self._count(batch)
        return batch.freeze()

    def resign(self, now: int, successor: int = 0) -> Output:
        batch = Batch()
        self._advance(now, batch)
        if self.phase == Phase.LEADER:
            if successor and successor not in self.config.peers:
                raise ValueError(f"successor {successor} is not a peer of node {self.id}")
            self._step_down(Reason.RESIGNED, batch, lease_end_tick=self.now)
            for peer in self.config.peers:
                self._send(batch, MsgType.HEARTBEAT, peer, epoch=self.term, resigning=True, successor=successor,
                           transfer=bool(successor))
            # Abstain for a while, or the resigner might simply win again.
            self.abstain_until = self.now + self.timing.election_timeout_ticks
            self.election_deadline = self.abstain_until
        return batch.freeze()

    def next_deadline(self, now: int) -> int:
        lease = self.timing.leader_lease_ticks
        timers = [self.election_deadline, self.next_heartbeat, self.lease_until, self.promise_until,
                  self.abstain_until, self.election_sent_at + lease, self.known.until]
        return earliest_after(max(now, self.now), timers, self.timing.election_timeout_ticks)

    def instants(self, now: int) -> frozenset[str]:
        found = set()
        if self.phase == Phase.LEADER:
            if 0 <= self.lease_until - now <= 2:
                found.add("lease-end")
        elif 0 <= self.election_deadline - now <= 1:
            found.add("deadline")
        if self.phase == Phase.PRE_CANDIDATE:
            found.add("pre-voting")
        if now < self.boot_window_until:
            found.add("boot-window")
        if now < self.promise_until and self.promised_to not in (0, self.id):
            found.add("inside-promise")
        if now < self.abstain_until:
            found.add("abstaining")
        return frozenset(found)

    def view(self, now: int) -> View:
        role = {
            Phase.LEADER: Role.LEADER,
            Phase.CANDIDATE: Role.CANDIDATE,
            Phase.PRE_CANDIDATE: Role.CANDIDATE,
        }.get(self.phase, Role.FOLLOWER)
        lease_valid = self.phase == Phase.LEADER and now < self.lease_until
        # A follower names only a leader whose heartbeat still vouches for it (its lease, as announced).
        return self.known.follower_view(View(self.id, role, self.term, self.leader_id, lease_valid), now)

    # ---- time ------------------------------------------------------------------------------------

    def _advance(self, now: int, batch: Batch) -> None:
        self.now = max(self.now, now)
        if self.phase == Phase.LEADER and self.now >= self.lease_until:
            self._step_down(Reason.LEASE_EXPIRED, batch, lease_end_tick=self.lease_until)

    def _timeout(self) -> int:
        et = self.timing.election_timeout_ticks
        if self.timeout_spread_ticks is None:
            return et + self.rng.randrange(et)
        return et + self.rng.randint(0, self.timeout_spread_ticks)

    def _in_window(self, other: int) -> bool:
        """A promise to a node other than `other` is live (ourselves: any promise)."""
        return self.now < self.promise_until and self.promised_to != other

    # ---- terms and promises ------------------------------------------------------------------------

    def _persist(self, batch: Batch, hold_ticks: int | None = None) -> None:
        # A grant brings its own window (hold_ticks); otherwise the last grant's goes with the write:
        # a newer term observed while that window is live must not shorten what a restart honours.
        hold = self.promise.hold_ticks if hold_ticks is None else hold_ticks
        promise = Promise(self.term, self.voted_for, hold)
        if PlantedBug.TERM_ONLY_PERSIST in self.config.planted_bugs and promise.epoch == self.promise.epoch:
            return
        if promise != self.promise:
            self.promise = promise
            if PlantedBug.HOLD_NOT_PERSISTED in self.config.planted_bugs:
                promise = replace(promise, hold_ticks=0)  # the longer window lives in memory only
            batch.persist = promise  # the caller persists before it sends this batch's messages

    def _observe(self, term: int, batch: Batch) -> None:
        """A newer term exists: follow it (without voting yet); a leader or candidate steps down."""
        if term <= self.term:
            return
        if self.phase == Phase.LEADER:
            self._step_down(Reason.HIGHER_EPOCH, batch)
        self.phase = Phase.FOLLOWER
        self.term = term
        self.voted_for = 0
        self.leader_id = None
        self._persist(batch)

    def _back(self, request: Message, batch: Batch) -> None:
        """Grant the sender of `request` (a vote, or an ack of its heartbeat): durable first, then a
        promise window long enough to outlast the lease the request announced."""
        node = request.src
        hold = self.timing.hold_ticks_for(request.lease_ticks)
        if PlantedBug.ANNOUNCED_LEASE_IGNORED in self.config.planted_bugs:
            hold = self.timing.promise_hold_ticks
        self.phase = Phase.FOLLOWER
        self.voted_for = node
        self._persist(batch, hold_ticks=hold if hold > self.timing.promise_hold_ticks else 0)
        self.promised_to = node
        self.promise_until = self.now + hold
        self.election_deadline = self.now + self._timeout()

    # ---- campaigning -------------------------------------------------------------------------------

    def _campaign(self, batch: Batch, skip_pre_vote: bool = False) -> None:
        if self.now < self.abstain_until:
            self.phase = Phase.FOLLOWER
            self.election_deadline = max(self.election_deadline, self.abstain_until)
            return
        if self._in_window(self.id):
            # Our vote for ourselves is a grant like any other: not while we owe another node.
            self.phase = Phase.FOLLOWER
            self.election_deadline = max(self.election_deadline, self.promise_until)
            batch.events.append(Reached("self-vote-deferred"))
            return
        self.stats.elections_started += 1
        batch.events.append(ElectionStarted(self.term))
        self.leader_id = None
        if self.pre_vote and not skip_pre_vote:
            self.phase = Phase.PRE_CANDIDATE
            self._start_round()
            for peer in self.config.peers:
                self._send(batch, MsgType.PRE_VOTE, peer, epoch=self.term + 1, round=self.campaign_round)
            self._count(batch)
        else:
            self._start_election(batch)

    def _start_round(self) -> None:
        self.campaign_round += 1
        self.granted_by = {self.id}
        self.refused_by = set()
        self.election_deadline = self.now + self._timeout()

    def _start_election(self, batch: Batch) -> None:
        if self._in_window(self.id):  # re-checked: a pre-vote round may have outlived a grant
            self.phase = Phase.FOLLOWER
            self.election_deadline = max(self.election_deadline, self.promise_until)
            return
        self.phase = Phase.CANDIDATE
        self.term += 1
        if PlantedBug.PERSIST_BEFORE_SELF_VOTE in self.config.planted_bugs:
            self._persist(batch)  # the new term, with the last term's vote still in voted_for
        self.voted_for = self.id
        if PlantedBug.PERSIST_BEFORE_SELF_VOTE not in self.config.planted_bugs:
            self._persist(batch)  # our own vote, durable before any RequestVote leaves
        self._start_round()
        self.election_sent_at = self.now
        for peer in self.config.peers:
            # One RequestVote round per term; the lease a win brings counts from it.
            self._send(batch, MsgType.REQUEST_VOTE, peer, epoch=self.term, lease_ticks=self.timing.leader_lease_ticks)
        self._count(batch)

    def _count(self, batch: Batch) -> None:
        n = len(self.config.members)
        if has_majority(self.granted_by, n):
            if self.phase == Phase.PRE_CANDIDATE:
                batch.events.append(Reached("pre-vote-won"))
                self._start_election(batch)
            elif self.phase == Phase.CANDIDATE:
                self._become_leader(batch)
        elif majority_impossible(self.refused_by, n):
            batch.events.append(Reached("campaign-failed"))
            self.phase = Phase.FOLLOWER
            self.election_deadline = self.now + self._timeout()

    def _on_pre_vote_ack(self, msg: Message, batch: Batch) -> None:
        if not msg.granted:
            self._observe(msg.promised_epoch, batch)
        if self.phase != Phase.PRE_CANDIDATE or msg.epoch != self.term + 1 or msg.round != self.campaign_round:
            return
        (self.granted_by if msg.granted else self.refused_by).add(msg.src)
        self._count(batch)

    def _on_vote(self, msg: Message, batch: Batch) -> None:
        self._observe(msg.promised_epoch, batch)
        if self.phase != Phase.CANDIDATE or msg.epoch != self.term:
            return
        late_at = self.election_sent_at + self.timing.leader_lease_ticks
        if PlantedBug.LATE_VOTE_UNTIL_DEADLINE in self.config.planted_bugs:
            late_at = self.election_deadline
        if self.now >= late_at:
            # a late majority (we were paused, the votes were held) brings a lease already over
            batch.events.append(Reached("late-majority-ignored"))
            return
        (self.granted_by if msg.granted else self.refused_by).add(msg.src)
        self._count(batch)

    # ---- answering ---------------------------------------------------------------------------------

    def _reply(self, batch: Batch, request: Message, granted: bool) -> None:
        self._send(batch, REPLY_TYPE[request.type], request.src, epoch=request.epoch, round=request.round,
                   granted=granted, promised_epoch=self.term)

    def _on_pre_vote(self, msg: Message, batch: Batch) -> None:
        granted = (
            self.phase != Phase.LEADER  # _advance already dropped an expired lease
            and not self._in_window(msg.src)
            and msg.epoch >= self.term
        )
        self._reply(batch, msg, granted)  # nothing changes, nothing is persisted

    def _on_request_vote(self, msg: Message, batch: Batch) -> None:
        granted = False
        # A leader with a live lease, or a node that owes another its promise, ignores the request
        # (without adopting its term): it must not help depose a live leader.
        if self.phase != Phase.LEADER and not self._in_window(msg.src) and msg.epoch >= self.term:
            self._observe(msg.epoch, batch)
            holder = self.voted_for
            if PlantedBug.VOTE_BY_WINDOW in self.config.planted_bugs:
                holder = self.promised_to  # whom we back now, not whom we voted for in this term
            if holder in (0, msg.src):
                self._back(msg, batch)
                granted = True
                if PlantedBug.VOTE_WINDOW_IS_LEASE in self.config.planted_bugs:
                    self.promise_until = self.now + self.timing.leader_lease_ticks
        self._reply(batch, msg, granted)

    def _on_heartbeat(self, msg: Message, batch: Batch) -> None:
        if msg.resigning:
            self.known.released(msg.src, msg.epoch)
            self._on_release(msg, batch)
            return
        granted = False
        stale_or_rival = msg.epoch < self.term or (self.phase == Phase.LEADER and msg.epoch == self.term)
        if not stale_or_rival and not self._in_window(msg.src):
            self._observe(msg.epoch, batch)  # a leader of an older term steps down here
            self._back(msg, batch)
            self.leader_id = self.last_leader = msg.src
            granted = True
            self.known.heard(self.now, msg, self.timing)
        self._reply(batch, msg, granted)

    def _on_release(self, msg: Message, batch: Batch) -> None:
        """A resigning heartbeat: the leader gives up its lease; elect soon, its successor first."""
        stale = msg.epoch < self.term
        if PlantedBug.RELEASE_ANY_TERM in self.config.planted_bugs:
            stale = False
        if self.promised_to != msg.src or stale:
            return
        self.promise_until = self.now
        self.promised_to = 0
        batch.events.append(PromiseReleased(msg.src, msg.epoch))
        self._observe(msg.epoch, batch)
        if self.leader_id == msg.src:
            self.leader_id = None
        if self.phase != Phase.FOLLOWER:
            return
        if msg.successor == self.id:
            batch.events.append(Reached("successor-campaign"))
            self._campaign(batch, skip_pre_vote=True)  # the old leader chose us: go at once
        elif msg.successor:
            self.election_deadline = self.now + self._timeout()  # give the successor its turn
        else:
            self.election_deadline = self.now + self.rng.randrange(self.timing.election_timeout_ticks // 2 + 1)

    # ---- leading -----------------------------------------------------------------------------------

    def _become_leader(self, batch: Batch) -> None:
        if self.last_leader == self.id:
            batch.events.append(Reached("won-again"))
        self.last_leader = self.id
        self.phase = Phase.LEADER
        self.leader_id = self.id
        self.stats.elections_won += 1
        self.known.led(self.id, self.term)
        # The RequestVote round counts as the first lease round: it was sent at election start.
        self.lease_until = self.election_sent_at + self.timing.leader_lease_ticks
        if PlantedBug.LEASE_FROM_WIN in self.config.planted_bugs:
            self.lease_until = self.now + self.timing.leader_lease_ticks
        self.rounds = {}
        batch.events.append(BecameLeader(self.term))
        self._send_heartbeats(batch)

    def _send_heartbeats(self, batch: Batch) -> None:
        t = self.timing
        self.next_heartbeat = self.now + t.heartbeat_interval_ticks
        self.round += 1
        self.rounds[self.round] = (self.now, {self.id})
        if has_majority({self.id}, len(self.config.members)):  # a cluster of one: no ack will come
            self.lease_until = self.now + t.leader_lease_ticks
        for r in [r for r, (sent, _) in self.rounds.items() if sent + t.leader_lease_ticks <= self.now]:
            del self.rounds[r]  # rounds older than a lease can no longer extend it
        lease_remaining = max(0, self.lease_until - self.now)
        for peer in self.config.peers:
            self._send(batch, MsgType.HEARTBEAT, peer, epoch=self.term, round=self.round, lease_remaining=lease_remaining,
                       lease_ticks=t.leader_lease_ticks)

    def _on_heartbeat_ack(self, msg: Message, batch: Batch) -> None:
        self._observe(msg.promised_epoch, batch)
        if self.phase != Phase.LEADER or not msg.granted or msg.epoch != self.term or msg.round not in self.rounds:
            return
        sent_at, granted_by = self.rounds[msg.round]
        granted_by.add(msg.src)
        lease_end = sent_at + self.timing.leader_lease_ticks
        if has_majority(granted_by, len(self.config.members)) and lease_end > self.lease_until:
            self.lease_until = lease_end
            self.stats.lease_renewals += 1

    def _step_down(self, reason: Reason, batch: Batch, lease_end_tick: int | None = None) -> None:
        self.stats.stepdowns += 1
        batch.events.append(SteppedDown(self.term, reason, lease_end_tick))
        self.phase = Phase.FOLLOWER
        self.leader_id = None
        self.election_deadline = self.now + self._timeout()

    def _send(self, batch: Batch, type_: MsgType, dst: int, **fields) -> None:
        batch.messages.append(Message(type_, self.id, dst, **fields))
