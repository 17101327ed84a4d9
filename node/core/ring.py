"""Ring election (Chang-Roberts ordering, the list-collecting variant taught beside Bully), as a pure
state machine behind the Elector interface.

The textbook algorithm, made to run on an unreliable network and nothing more: no quorum, no lease,
no promises to others. Under a partition each side elects its own leader; it exists to be compared
with Bully (message counts) and shown failing (P1/P3), like ClassicBully.

* The ring: members ordered by id; a node's successor is the next higher member id, wrapping around.
* A node that hears no heartbeat for an election timeout (plus a rank stagger, higher ids first, and
  a seeded jitter) starts an election: RING_ELECTION(initiator=self, ids=(self,)) to its successor.
  Each node appends its id and forwards. When the token comes back to its initiator, the highest id
  in the list is the coordinator, for epoch max(epochs seen along the token) + 1, and the initiator
  sends RING_COORDINATOR (same list) once around the ring: each node follows max(ids) and forwards,
  until it is back at the initiator. The coordinator leads when it learns it (at once if it is the
  initiator), after persisting Promise(epoch, self), so a restarted node never reuses an epoch.
* Chang-Roberts suppression, by initiator id: a node remembers the highest initiator whose token it
  forwarded (or its own, if it initiated) for one election timeout, and swallows tokens from lower
  initiators meanwhile. A node that forwarded a token does not start its own election (the token
  pushes its election deadline back, as a heartbeat would), and a candidate that forwards a higher
  initiator's token gives up its own candidacy. So among concurrent initiators only the highest
  one's token comes back: the lower tokens die at the higher initiator at the latest. With one
  initiator an election costs one lap of tokens and one lap of coordinators, 2n passes (the
  textbook figure), plus one ack per pass.
* Skipping dead successors: every pass is acknowledged by RING_ACK (the reply on the same call,
  matched by `round`, a per-node pass number). If the ack does not come within alive_wait_ticks, or
  the send fails, the pass goes to the next member after the one that failed, and so on. A pass that
  wraps around to its sender is delivered to itself: an initiator's token has come back (alone: it
  wins); a forwarder finding nobody else starts its own election; a coordinator lap is over.
* A token that reaches a node already in its list went around without finding its initiator (it
  crashed, or was skipped): it is dropped; the election timeouts start a new one.
* The leader heartbeats every peer each interval (HEARTBEAT with round; HEARTBEAT_ACK). It never
  steps down on its own (textbook: no lease) but does when it sees a leader above it: a heartbeat or
  coordinator with a higher epoch (Reason.HIGHER_EPOCH), or the same epoch from a higher id
  (Reason.HIGHER_LEADER: only a split brain makes one epoch twice), or a refused heartbeat ack naming
  a higher epoch. Everyone orders leaders by (epoch, id) and follows the highest it hears, which is
  what reunites the sides after a partition heals.
* The leader takes part in tokens like any node (it is alive, so it is in the list); if the result
  names it again it leads the new, higher epoch.
* resign(): the leader steps down and sends resigning heartbeats; followers start an election after
  only the rank stagger and jitter. The resigning node abstains for an election timeout: it forwards
  tokens without adding its id and starts none, so the next highest wins. A successor hint is
  ignored (ModeInfo.transfers is False): the ring elects the highest id, not a chosen one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .kit import LEADING, OTHER_LEADER, ElectorKit
from .types import (
    REPLY_TYPE,
    Batch,
    BecameLeader,
    Config,
    ElectionStarted,
    Message,
    MsgType,
    Promise,
    Reason,
    Role,
    View,
)


@dataclass
class _Pass:
    """A ring message on its way to `dst`, waiting for its ack until `deadline`."""

    msg: Message
    dst: int
    deadline: int


class _Phase:
    IDLE = "idle"  # follower, with or without a known leader (maybe forwarding someone's token)
    ELECTING = "electing"  # our token is going around
    LEADING = "leading"


class RingElector(ElectorKit):
    """The Ring election on the elector kit; see the module docstring for the rules."""

    FOLLOWING = _Phase.IDLE
    LEADING = _Phase.LEADING
    # Every pass is acknowledged whatever the role; a heartbeat ack matters only to a leader.
    REQUESTS = {
        MsgType.RING_ELECTION: "_on_token",
        MsgType.RING_COORDINATOR: "_on_coordinator",
        MsgType.RING_ACK: "_on_ring_ack",
        MsgType.HEARTBEAT: "_on_heartbeat",
    }
    REPLIES = {_Phase.LEADING: {MsgType.HEARTBEAT_ACK: "_on_heartbeat_ack"}}
    TRANSFERS = False

    def __init__(self, config: Config, promise: Promise, rng: random.Random, now: int) -> None:
        super().__init__(config, promise, rng, now)  # promise: only ever Promise(e, self), the last epoch we led
        self.highest_seen_epoch = promise.epoch
        self.ring = self.members
        self.phase = _Phase.IDLE
        self.epoch = promise.epoch  # of the leader we follow or are
        self.election_deadline = now + self._election_delay()
        self.candidate_deadline = 0
        # Chang-Roberts suppression: the highest initiator whose token we forwarded (or our own id
        # when we initiated), and until when that holds back lower initiators' tokens.
        self.joined = 0
        self.joined_until = 0
        self.passes: dict[int, _Pass] = {}  # our pass number -> the pass awaiting its ack
        self.pass_seq = 0
        self.seen_before = promise.epoch  # the highest epoch seen before the message being handled
        self.last_result: tuple[int, int, tuple[int, ...]] | None = None  # the last coordinator lap we passed on

    # ---- hooks of the elector kit -----------------------------------------------------------

    def _on_tick(self, batch: Batch) -> None:
        for number, p in list(self.passes.items()):
            if self.now >= p.deadline and number in self.passes:
                del self.passes[number]
                self._pass_on(batch, p.msg, after=p.dst)  # no ack in time: skip that member
        if self.phase == _Phase.LEADING:
            if self.now >= self.next_heartbeat:
                self._heartbeat(batch)
        elif self.phase == _Phase.ELECTING:
            if self.now >= self.candidate_deadline:  # our token never came back: again
                self._start_election(batch)
        elif self.now >= self.election_deadline and self.now >= self.abstain_until:
            self._start_election(batch)

    def _check_epoch(self, msg: Message, batch: Batch) -> bool:
        self.seen_before = max(self.highest_seen_epoch, self.promise.epoch)  # before this message
        self.highest_seen_epoch = max(self.highest_seen_epoch, msg.epoch, msg.promised_epoch)
        return True

    def _on_send_failed(self, msg: Message, batch: Batch) -> None:
        p = self.passes.get(msg.round)
        if msg.type in (MsgType.RING_ELECTION, MsgType.RING_COORDINATOR) and p is not None and p.dst == msg.dst:
            del self.passes[msg.round]
            self._pass_on(batch, p.msg, after=msg.dst)  # refused: the next member, without waiting

    def _timers(self) -> list[int]:
        return [
            self.election_deadline,
            self.candidate_deadline,
            self.next_heartbeat,
            self.abstain_until,
            self.joined_until,
            *(p.deadline for p in self.passes.values()),
        ]

    INSTANTS: dict[str, str] = {}  # only the generic ones (node.core.instants)

    def instants(self, now: int) -> frozenset[str]:
        return frozenset()

    def view(self, now: int) -> View:
        role = {_Phase.LEADING: Role.LEADER, _Phase.ELECTING: Role.CANDIDATE}.get(self.phase, Role.FOLLOWER)
        return View(self.id, role, self.epoch, self.leader_id, self._lease_valid(now))

    def _lease_valid(self, now: int) -> bool:
        return self.phase == _Phase.LEADING  # no lease: a leader believes in itself until told otherwise

    # ---- time and sending ------------------------------------------------------------------------

    def _rank(self) -> int:
        return sum(1 for m in self.members if m > self.id)

    def _election_delay(self) -> int:
        t = self.timing
        return t.election_timeout_ticks + self._rank() * t.rank_stagger_ticks + self.rng.randint(0, t.jitter_ticks)

    def _quick_delay(self) -> int:
        """After a resignation: go soon, highest ids first."""
        t = self.timing
        return self._rank() * t.rank_stagger_ticks + self.rng.randint(0, t.jitter_ticks)

    def _ack(self, batch: Batch, request: Message) -> None:
        """Received (not agreed to anything): the sender may stop trying other successors."""
        self._send(batch, REPLY_TYPE[request.type], request.src, epoch=request.epoch, round=request.round, granted=True)

    def _successor(self, after: int) -> int:
        """The member after `after` in the ring (by id, wrapping around)."""
        return self.ring[(self.ring.index(after) + 1) % len(self.ring)]

    def _pass_on(self, batch: Batch, msg: Message, after: int) -> None:
        """Send a ring message to the first member after `after`; wrapped around to us: deliver it here."""
        dst = self._successor(after)
        if dst == self.id:
            self._came_back(batch, msg)
            return
        self.pass_seq += 1
        self.passes[self.pass_seq] = _Pass(msg, dst, self.now + self.timing.alive_wait_ticks)
        self._send(batch, msg.type, dst, epoch=msg.epoch, round=self.pass_seq, ids=msg.ids, initiator=msg.initiator)

    def _came_back(self, batch: Batch, msg: Message) -> None:
        """Every member after us failed to take the message, so it is back with us."""
        if msg.type == MsgType.RING_COORDINATOR:
            return  # the lap is over (or nobody else is left to tell)
        if msg.initiator == self.id:
            if self.phase == _Phase.ELECTING:
                self._complete(batch, msg)
            return
        # Someone else's token, and nobody else (its initiator included) takes it: elect ourselves.
        if self.phase == _Phase.IDLE:
            self.leader_id = None
            self.election_deadline = min(self.election_deadline, self.now)

    # ---- electing ------------------------------------------------------------------------------------

    def _abstaining(self) -> bool:
        return self.now < self.abstain_until

    def _start_election(self, batch: Batch) -> None:
        self.stats.elections_started += 1
        batch.events.append(ElectionStarted(self.highest_seen_epoch))
        self.phase = _Phase.ELECTING
        self.leader_id = None
        self.joined, self.joined_until = self.id, self.now + self.timing.election_timeout_ticks
        t = self.timing
        # Long enough for a lap in which every other member has to be skipped after a silent wait.
        self.candidate_deadline = self.now + t.election_timeout_ticks + len(self.ring) * t.alive_wait_ticks
        token = Message(
            MsgType.RING_ELECTION,
            self.id,
            self.id,
            max(self.highest_seen_epoch, self.promise.epoch),
            ids=(self.id,),
            initiator=self.id,
        )
        self._pass_on(batch, token, after=self.id)

    def _on_token(self, msg: Message, batch: Batch) -> None:
        self._ack(batch, msg)
        if msg.initiator == self.id:
            if self.phase == _Phase.ELECTING:  # our token is back: count it
                self._complete(batch, msg)
            return  # an old lap of ours, or we have since joined a higher initiator's election
        if self.id in msg.ids:
            return  # it went around once without reaching its initiator: let it die
        if self.now < self.joined_until and self.joined > msg.initiator:
            return  # Chang-Roberts: we already carry a higher initiator's election
        self.joined, self.joined_until = msg.initiator, self.now + self.timing.election_timeout_ticks
        if self.phase == _Phase.ELECTING:
            self.phase = _Phase.IDLE  # a higher initiator's token: ours will be swallowed, follow this one
        if self.phase == _Phase.IDLE:
            self.election_deadline = self.now + self._election_delay()  # an election is under way
        ids = msg.ids if self._abstaining() else (*msg.ids, self.id)
        epoch = max(msg.epoch, self.highest_seen_epoch, self.promise.epoch)
        self._pass_on(
            batch,
            Message(MsgType.RING_ELECTION, self.id, self.id, epoch, ids=ids, initiator=msg.initiator),
            after=self.id,
        )

    def _complete(self, batch: Batch, token: Message) -> None:
        """Our token came back: its highest id coordinates the next epoch; tell the ring once."""
        coordinator = max(token.ids)
        epoch = max(token.epoch, self.highest_seen_epoch, self.promise.epoch) + 1
        self.joined = self.joined_until = 0
        if coordinator == self.id:
            self._lead(batch, epoch)
        else:
            self._follow(coordinator, epoch)
        result = Message(MsgType.RING_COORDINATOR, self.id, self.id, self.epoch, ids=token.ids, initiator=self.id)
        self._pass_on(batch, result, after=self.id)

    def _on_coordinator(self, msg: Message, batch: Batch) -> None:
        self._ack(batch, msg)
        if msg.initiator == self.id:
            return  # back at its initiator: everyone has been told
        result = (msg.initiator, msg.epoch, msg.ids)
        if result == self.last_result:
            return  # a second copy (a duplicate, or a second lap past a vanished initiator): it stops here
        coordinator, epoch = max(msg.ids), msg.epoch
        current = (self.epoch, self.id if self.phase == _Phase.LEADING else self.leader_id or 0)
        if (epoch, coordinator) < current:
            return  # a stale result: we know a newer leader; the lap stops here
        self.last_result = result
        self.joined = self.joined_until = 0
        if (epoch, coordinator) == current:
            pass  # its heartbeat got here first
        elif coordinator == self.id:
            if epoch <= self.seen_before:
                # We led this epoch before a restart (never reuse it), or saw it (or a newer one) in
                # use since the token passed us: lead above everything we have seen instead.
                epoch = self.seen_before + 1
            self._lead(batch, epoch)
        else:
            if self.phase == _Phase.LEADING:
                self._step_down(Reason.HIGHER_EPOCH if epoch > self.epoch else Reason.HIGHER_LEADER, batch)
            self._follow(coordinator, epoch)
        self._pass_on(
            batch,
            Message(MsgType.RING_COORDINATOR, self.id, self.id, self.epoch, ids=msg.ids, initiator=msg.initiator),
            after=self.id,
        )

    def _on_ring_ack(self, msg: Message, batch: Batch) -> None:
        p = self.passes.get(msg.round)
        if p is not None and p.dst == msg.src:
            del self.passes[msg.round]

    # ---- leading and following -----------------------------------------------------------------------

    def _lead(self, batch: Batch, epoch: int) -> None:
        self.promise = Promise(epoch, self.id)
        batch.persist = self.promise  # durable before the heartbeats (in this batch) announce it
        self.highest_seen_epoch = max(self.highest_seen_epoch, epoch)
        self.phase = _Phase.LEADING
        self.epoch = epoch
        self.leader_id = self.id
        self.stats.elections_won += 1
        batch.events.append(BecameLeader(epoch))
        self._heartbeat(batch)

    def _heartbeat(self, batch: Batch) -> None:
        self.next_heartbeat = self.now + self.timing.heartbeat_interval_ticks
        self.round += 1
        for peer in self.peers:
            self._send(batch, MsgType.HEARTBEAT, peer, round=self.round)

    def _follow(self, leader: int, epoch: int) -> None:
        self.phase = _Phase.IDLE
        self.leader_id = leader
        self.epoch = epoch
        self.election_deadline = self.now + self._election_delay()

    def _on_heartbeat(self, msg: Message, batch: Batch) -> None:
        if msg.resigning:
            if self.leader_id == msg.src and self.phase == _Phase.IDLE:
                self.leader_id = None  # released: elect soon, highest ids first
                self.election_deadline = self.now + self._quick_delay()
            return
        if self.phase == _Phase.LEADING:
            if (msg.epoch, msg.src) > (self.epoch, self.id):
                self._step_down(Reason.HIGHER_EPOCH if msg.epoch > self.epoch else Reason.HIGHER_LEADER, batch)
            else:
                self._reply_heartbeat(batch, msg, LEADING)  # it learns of us from the refusal
                return
        if (msg.epoch, msg.src) >= (self.epoch, self.leader_id or 0):
            self.joined = self.joined_until = 0
            self._follow(msg.src, msg.epoch)  # also ends our candidacy: there is a leader
            self._reply_heartbeat(batch, msg)
        else:
            self._reply_heartbeat(batch, msg, OTHER_LEADER)

    def _reply_heartbeat(self, batch: Batch, msg: Message, refusal: str = "") -> None:
        # promised_epoch: the epoch of the leader we follow or are, so a stale leader learns it is stale.
        self._reply(batch, msg, refusal, promised_epoch=self.epoch)

    def _on_heartbeat_ack(self, msg: Message, batch: Batch) -> None:
        if self.phase == _Phase.LEADING and not msg.granted and msg.promised_epoch > self.epoch:
            self._step_down(Reason.HIGHER_EPOCH, batch)  # that node follows a newer leader
