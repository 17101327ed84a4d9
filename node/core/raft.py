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

from .kit import EPOCH_PROMISED, EPOCH_STALE, LEADING, NOT_A_VOTER, PROMISE_LIVE, ElectorKit
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


class Phase(str, enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"  # asked PRE_VOTE(term + 1); the term is unchanged
    CANDIDATE = "candidate"  # voted for itself in `term`, asked REQUEST_VOTE
    LEADER = "leader"


class RaftElector(ElectorKit):
    """Raft election with PreVote, CheckQuorum leases and durable, windowed promises, on the elector kit."""

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
    FOLLOWING = Phase.FOLLOWER
    LEADING = Phase.LEADER
    REQUESTS = {
        MsgType.PRE_VOTE: "_on_pre_vote",
        MsgType.REQUEST_VOTE: "_on_request_vote",
        MsgType.HEARTBEAT: "_on_heartbeat",
    }
    REPLIES = {
        Phase.PRE_CANDIDATE: {MsgType.PRE_VOTE_ACK: "_on_pre_vote_ack"},
        Phase.CANDIDATE: {MsgType.VOTE: "_on_vote"},
        Phase.LEADER: {MsgType.HEARTBEAT_ACK: "_on_heartbeat_ack"},
    }
    LEASED = True
    CHANGES_MEMBERSHIP = True

    def __init__(
        self,
        config: Config,
        promise: Promise,
        rng: random.Random,
        now: int,
        pre_vote: bool = True,
        timeout_spread_ticks: int | None = None,
    ) -> None:
        super().__init__(config, promise, rng, now)
        self.pre_vote = pre_vote and "no-pre-vote" not in config.options
        # Election timeouts are drawn from [ET, ET + spread]; None: [ET, 2 ET), Raft's usual range.
        self.timeout_spread_ticks = timeout_spread_ticks
        self.term = promise.epoch
        self.voted_for = promise.leader_id  # whom this node backed in `term` (0: nobody yet)
        self.phase = Phase.FOLLOWER
        self.known = KnownLeader()  # whom we name to clients while following
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
        self.election_deadline = now + self._election_delay()
        # Campaign (pre-vote or vote) state.
        self.campaign_round = 0
        self.granted_by: set[int] = set()
        self.refused_by: set[int] = set()
        self.election_sent_at = 0

    @property
    def epoch(self) -> int:
        """The term: Raft's name for the epoch (and the fencing token)."""
        return self.term

    # ---- hooks of the elector kit -------------------------------------------------------------------

    def _on_tick(self, batch: Batch) -> None:
        if self.phase == Phase.LEADER:
            if self.now >= self.next_heartbeat:
                self._send_heartbeats(batch)
        elif self.now >= self.election_deadline:
            self._campaign(batch)

    def _check_epoch(self, msg: Message, batch: Batch) -> bool:
        """Raft's term rules, once. A reply's term (promised_epoch) is adopted: a leader or candidate of
        an older term steps down; a granted pre-vote promises nothing and teaches nothing. A request's
        term is adopted only from a node we could back: a leader with a live lease, or a node inside a
        promise window to another, ignores a higher term rather than help depose a live leader
        (PreVote and CheckQuorum). A release adopts its term in its handler, once it released."""
        if msg.type in (MsgType.PRE_VOTE_ACK, MsgType.VOTE, MsgType.HEARTBEAT_ACK):
            if not (msg.type == MsgType.PRE_VOTE_ACK and msg.granted):
                self._observe(msg.promised_epoch, batch)
        elif msg.epoch > self.term and not msg.resigning and not self._in_window(msg.src):
            if msg.type == MsgType.HEARTBEAT or (msg.type == MsgType.REQUEST_VOTE and self.phase != Phase.LEADER):
                self._observe(msg.epoch, batch)  # a leader of an older term steps down here
        return True

    def _on_send_failed(self, msg: Message, batch: Batch) -> None:
        """Undeliverable: count it as a refusal, so a hopeless campaign gives up early."""
        campaign = {MsgType.PRE_VOTE: Phase.PRE_CANDIDATE, MsgType.REQUEST_VOTE: Phase.CANDIDATE}.get(msg.type)
        if campaign == Phase.CANDIDATE:
            current = self.phase == campaign and msg.epoch == self.term
        else:
            current = self.phase == campaign and msg.epoch == self.term + 1 and msg.round == self.campaign_round
        if current:
            self.refused_by.add(msg.dst)
            self._count(batch)

    def _timers(self) -> list[int]:
        lease = self.timing.leader_lease_ticks
        return [
            self.election_deadline,
            self.next_heartbeat,
            self.lease_until,
            self.promise_until,
            self.abstain_until,
            self.election_sent_at + lease,
            self.known.until,
        ]

    def _heartbeat_now(self, batch: Batch) -> None:
        self._send_heartbeats(batch)

    def _configuration_moved_on(self, batch: Batch) -> None:
        if self.phase in (Phase.PRE_CANDIDATE, Phase.CANDIDATE):  # its (pre-)votes counted the list before
            self.phase = Phase.FOLLOWER
            self.election_deadline = self.now + self._election_delay()

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

    def _election_delay(self) -> int:
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
        self._make_promise(promise, batch)  # the caller persists before it sends this batch's messages

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
        until, durable = grant_window(
            self.timing, self.now, hold, self.promise_until, self.promise, again=node == self.promised_to
        )
        self.phase = Phase.FOLLOWER
        self.voted_for = node
        self._persist(batch, hold_ticks=durable)
        self.promised_to = node
        self.promise_until = until
        self.election_deadline = self.now + self._election_delay()

    # ---- campaigning -------------------------------------------------------------------------------

    def _campaign(self, batch: Batch, skip_pre_vote: bool = False) -> None:
        if self.id not in self.members:  # a learner, a node removed or still joining stands for nothing
            self.phase = Phase.FOLLOWER
            self.election_deadline = self.now + self._election_delay()
            return
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
            for peer in self.peers:
                self._send(batch, MsgType.PRE_VOTE, peer, epoch=self.term + 1, round=self.campaign_round)
            self._count(batch)
        else:
            self._start_election(batch)

    def _start_round(self) -> None:
        self.campaign_round += 1
        self.granted_by = {self.id}
        self.refused_by = set()
        self.election_deadline = self.now + self._election_delay()

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
        for peer in self.peers:
            # One RequestVote round per term; the lease a win brings counts from it.
            self._send(batch, MsgType.REQUEST_VOTE, peer, epoch=self.term, lease_ticks=self.timing.leader_lease_ticks)
        self._count(batch)

    def _count(self, batch: Batch) -> None:
        if self._has_majority(self.granted_by):
            if self.phase == Phase.PRE_CANDIDATE:
                batch.events.append(Reached("pre-vote-won"))
                self._start_election(batch)
            elif self.phase == Phase.CANDIDATE:
                self._become_leader(batch)
        elif self._majority_lost(self.refused_by):
            batch.events.append(Reached("campaign-failed"))
            self.phase = Phase.FOLLOWER
            self.election_deadline = self.now + self._election_delay()

    def _on_pre_vote_ack(self, msg: Message, batch: Batch) -> None:
        if msg.epoch != self.term + 1 or msg.round != self.campaign_round:
            return
        (self.granted_by if msg.granted else self.refused_by).add(msg.src)
        self._count(batch)

    def _on_vote(self, msg: Message, batch: Batch) -> None:
        if msg.epoch != self.term:
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

    def _reply(self, batch: Batch, request: Message, refusal: str = "", **fields) -> None:
        super()._reply(batch, request, refusal, promised_epoch=self.term)  # a stale asker learns our term

    def _campaign_refused(self, msg: Message) -> str:
        """Why `msg` (a PreVote or RequestVote) cannot have this node's (pre-)vote, by term and window
        alone ("" if it may): a leader with a live lease (_advance already dropped an expired one) or a
        node that owes another its promise backs no one else; nor does anyone a stale term. A learner
        votes for no one."""
        if self.id not in self.membership.electorate:
            return NOT_A_VOTER
        if self.phase == Phase.LEADER:
            return LEADING
        if self._in_window(msg.src):
            return PROMISE_LIVE
        return EPOCH_STALE if msg.epoch < self.term else ""

    def _on_pre_vote(self, msg: Message, batch: Batch) -> None:
        self._reply(batch, msg, self._campaign_refused(msg))  # nothing changes, nothing is persisted

    def _on_request_vote(self, msg: Message, batch: Batch) -> None:
        refusal = self._campaign_refused(msg)  # its term, if newer and we could back it, is ours already
        if not refusal:
            holder = self.voted_for
            if PlantedBug.VOTE_BY_WINDOW in self.config.planted_bugs:
                holder = self.promised_to  # whom we back now, not whom we voted for in this term
            if holder in (0, msg.src):
                self._back(msg, batch)
                if PlantedBug.VOTE_WINDOW_IS_LEASE in self.config.planted_bugs:
                    self.promise_until = self.now + self.timing.leader_lease_ticks
            else:
                refusal = EPOCH_PROMISED
        self._reply(batch, msg, refusal)

    def _on_heartbeat(self, msg: Message, batch: Batch) -> None:
        if msg.resigning:
            self.known.released(msg.src, msg.epoch)
            self._on_release(msg, batch)
            return
        # A newer term is ours already (_check_epoch): what is left is a stale or rival leader, or a
        # promise to another node that still runs.
        if msg.epoch < self.term:
            refusal = EPOCH_STALE
        elif self.phase == Phase.LEADER and msg.epoch == self.term:
            refusal = LEADING
        else:
            refusal = PROMISE_LIVE if self._in_window(msg.src) else ""
        if not refusal:
            self._back(msg, batch)
            self.leader_id = self.last_leader = msg.src
            self.known.heard(self.now, msg, self.timing)
        self._reply(batch, msg, refusal)

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
            self.election_deadline = self.now + self._election_delay()  # give the successor its turn
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
        self._won(self.granted_by)
        batch.events.append(BecameLeader(self.term))
        self._send_heartbeats(batch)

    def _send_heartbeats(self, batch: Batch) -> None:
        t = self.timing
        self.next_heartbeat = self.now + t.heartbeat_interval_ticks
        lease_remaining = self._open_round(self.now)
        for peer in self.peers:
            self._send(
                batch,
                MsgType.HEARTBEAT,
                peer,
                epoch=self.term,
                round=self.round,
                lease_remaining=lease_remaining,
                lease_ticks=t.leader_lease_ticks,
            )

    def _on_heartbeat_ack(self, msg: Message, batch: Batch) -> None:
        if not msg.granted or msg.epoch != self.term or msg.round not in self.rounds:
            return
        self._confirm(msg.src, batch)  # it runs our configuration: a joint one may settle, a learner rise
        if self.phase == Phase.LEADER and msg.round in self.rounds:
            self._round_acked(msg.round, msg.src)
