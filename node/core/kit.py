"""The elector kit: the machinery every election algorithm shares, written once.

An algorithm (classic and quorum Bully, ring, raft) is a subclass of `ElectorKit` that names its
phases and adds its own rules; the `Elector` Protocol (node/core/elector.py) is what the runtime and
the simulator see. The kit gives every subclass:

* **Entry points.** `tick`, `step`, `send_failed`, `resign` and `change_membership` each start a
  batch, let time catch up (`_advance`: a node that was paused re-checks its lease before it acts),
  run the algorithm's handler and hand back the frozen batch: persist this, then send these.
* **One `step`.** The configuration check (`_admit`: nothing from another configuration is counted,
  its epochs included); the epoch check, once (`_check_epoch`); then a dispatch by role: a request
  goes to the handler every role shares (`REQUESTS`), a reply only to the role waiting for it
  (`REPLIES[phase]`). A reply that finds its role gone (a candidate that already lost, a leader
  that stepped down) is dropped there.
* **Timers.** `next_deadline` from the algorithm's `_timers()`.
* **The promise** (`_make_promise`): the only way anything reaches the disk; the configuration
  travels inside it.
* **Leases** (`LEASED`): the lease check in `_advance`; heartbeat rounds counted from when they were
  sent (`_open_round`, `_round_acked`).
* **Stepping down and resigning** (`_step_down`, `_resign`): resigning heartbeats release the
  followers, and the resigner abstains for an election timeout.
* **Configuration** (node.core.membership). Every elector counts majorities against its
  configuration's voters and talks to its audience. One that changes membership
  (`CHANGES_MEMBERSHIP`) sends its configuration on every message, compares the sender's once before
  any handler (`_admit`: adopt a later one, refuse an earlier or conflicting one), and as leader
  changes it one voter at a time, settles a joint one once agreed and promotes learners
  (`change_membership`, `_confirm`).
* **Refusals.** Every reply that refuses says why (`Message.refusal`, one of REFUSALS): the core
  knows which rule it applied; nobody guesses it afterwards.
"""

from __future__ import annotations

import random
from dataclasses import replace

from .elector import earliest_after
from .membership import CONFLICT, OUTSIDE, STALE, Membership, MembershipRefused, initial, joining
from .types import (
    REPLY_TYPE,
    Batch,
    Config,
    MembershipChanged,
    Message,
    MsgType,
    Output,
    PlantedBug,
    Promise,
    Reason,
    Stats,
    SteppedDown,
)
from .votes import has_majority

# ---- why a reply refused (Message.refusal) ------------------------------------------------------
EPOCH_STALE = "epoch-stale"  # the request's epoch is below the one the receiver has promised
EPOCH_PROMISED = "epoch-promised"  # the receiver promised that epoch to another node
LEADING = "leading"  # the receiver leads, with a live lease (or, without leases, at all)
PROMISE_LIVE = "promise-live"  # the receiver's promise to another node still runs
NOT_A_VOTER = "not-a-voter"  # the receiver is a learner: it neither votes nor backs a leader
LOWER_ID = "lower-id"  # classic Bully: a lower node claimed leadership; the receiver takes over
OTHER_LEADER = "other-leader"  # ring: the receiver follows or is a leader of a later (epoch, id)
# (and the configuration's own, from node.core.membership: STALE, CONFLICT, OUTSIDE)
CONFIGURATION_REFUSALS = frozenset({STALE, CONFLICT, OUTSIDE})
REFUSALS: dict[str, str] = {
    EPOCH_STALE: "its epoch is below the one promised",
    EPOCH_PROMISED: "that epoch is promised to another node",
    LEADING: "the receiver leads",
    PROMISE_LIVE: "the receiver's promise to another node still runs",
    NOT_A_VOTER: "the receiver is a learner: it does not vote",
    LOWER_ID: "a lower node claimed leadership: the receiver takes over (Bully)",
    OTHER_LEADER: "the receiver follows a later leader",
    STALE: "the sender runs an earlier configuration",
    CONFLICT: "the two run different configurations of the same order",
    OUTSIDE: "the receiver is in no configuration (removed, or still joining)",
}


class ElectorKit:
    """The shared part of every elector; see the module docstring. Subclasses set the class
    attributes below, `phase` (starting at FOLLOWING) and `election_deadline`, and define
    `_election_delay`, `_timers`, `_on_tick` and their handlers."""

    # Protocol instants (node.core.instants): states instants() reports, and moments sent as Reached.
    INSTANTS: dict[str, str] = {}
    FOLLOWING: str = "idle"  # the phase of a follower
    LEADING: str = "leading"  # the phase of a leader
    REQUESTS: dict[MsgType, str] = {}  # request type -> handler, in every role
    REPLIES: dict[str, dict[MsgType, str]] = {}  # phase -> reply type -> handler, for that role only
    LEASED = False  # leads on a lease renewed by a majority's acks, checked first at every entry
    CHANGES_MEMBERSHIP = False  # messages carry the configuration; the core compares it
    TRANSFERS = True  # resign() honours a successor (ModeInfo.transfers)

    def __init__(self, config: Config, promise: Promise, rng: random.Random, now: int) -> None:
        self.config = config
        self.timing = config.timing
        self.id = config.node_id
        self.rng = rng
        self.stats = Stats()
        self.promise = promise
        self.now = now
        # Whom we count and talk to. Modes that keep their start-up list never move off it.
        self.membership: Membership = promise.membership or (
            joining() if config.join and self.CHANGES_MEMBERSHIP else initial(config.members)
        )
        self.leader_id: int | None = None
        self.abstain_until = 0  # a node that resigned stands for nothing until then
        self.next_heartbeat = 0  # when a leader sends its next heartbeat round
        self.round = 0  # the leader's heartbeat rounds
        self.last_leader = 0  # the last leader this node followed or was (for the instant "won-again")
        if self.LEASED:
            self.lease_until = 0
            self.rounds: dict[int, tuple[int, set[int]]] = {}  # round -> (sent_at tick, granted by)
        if self.CHANGES_MEMBERSHIP:
            self.confirmed: set[int] = set()  # leading: who acknowledged our configuration in our epoch
            self.agreed_told = True  # whether MembershipChanged(committed=True) went out for it

    @classmethod
    def calls(cls) -> frozenset[MsgType]:
        """The message types this elector handles that arrive as calls of their own (not as the answer
        on the call that asked): what its peers may send it (the runtime's Peer RPCs per mode)."""
        handled = {*cls.REQUESTS, *(t for replies in cls.REPLIES.values() for t in replies)}
        return frozenset(handled - set(REPLY_TYPE.values()))

    @property
    def members(self) -> tuple[int, ...]:
        """The voters: the ids majorities are counted against."""
        return self.membership.voters

    @property
    def peers(self) -> tuple[int, ...]:
        """Everyone this node talks to: voters, learners, the voters before the last change and the
        nodes it took out (so that they hear it)."""
        return tuple(m for m in self.membership.audience if m != self.id)

    # ---- the entry points (the Elector Protocol) --------------------------------------------------

    def tick(self, now: int) -> Output:
        batch = Batch()
        self._advance(now, batch)
        self._on_tick(batch)
        return batch.freeze()

    def step(self, now: int, msg: Message) -> Output:
        """Handle a message that passed validation (sender is a member, receiver is us): the
        configuration check, the epoch check, then the handler of our role. The configuration comes
        first: an epoch from a node of another configuration (a conflicting start-up list, a node
        removed while it campaigned alone) must not depose anyone here."""
        batch = Batch()
        self._advance(now, batch, lease_check=PlantedBug.LEASE_CHECK_ON_TICK not in self.config.planted_bugs)
        if self._admit(msg, batch) and self._check_epoch(msg, batch):
            name = self.REQUESTS.get(msg.type) or self.REPLIES.get(self.phase, {}).get(msg.type)
            if name is not None:  # a reply for a role we left, or another mode's message: dropped
                getattr(self, name)(msg, batch)
        return batch.freeze()

    def send_failed(self, now: int, msg: Message) -> Output:
        """The transport could not deliver `msg` (refused, deadline exceeded). Optional input."""
        batch = Batch()
        self._advance(now, batch)
        self._on_send_failed(msg, batch)
        return batch.freeze()

    def resign(self, now: int, successor: int = 0) -> Output:
        """Step down on purpose and tell followers, so they elect without waiting out a timeout. With
        a successor (a transfer), followers let that node go first (modes with TRANSFERS)."""
        batch = Batch()
        self._advance(now, batch)
        if self.phase == self.LEADING:
            if not self.TRANSFERS:
                successor = 0
            if successor and (successor not in self.members or successor == self.id):
                raise ValueError(f"successor {successor} is not a voter of node {self.id}'s configuration")
            self._resign(batch, Reason.RESIGNED, successor)
        return batch.freeze()

    def next_deadline(self, now: int) -> int:
        return earliest_after(max(now, self.now), self._timers(), self.timing.election_timeout_ticks)

    # ---- hooks -------------------------------------------------------------------------------------

    def _on_tick(self, batch: Batch) -> None:
        raise NotImplementedError

    def _on_send_failed(self, msg: Message, batch: Batch) -> None:
        pass

    def _timers(self) -> list[int]:
        """Every tick a timer of this node compares `now` with (see tick, _advance and view)."""
        raise NotImplementedError

    def _election_delay(self) -> int:
        raise NotImplementedError

    def _check_epoch(self, msg: Message, batch: Batch) -> bool:
        """What `msg`'s epochs teach this node, before anything else; False drops the message."""
        return True

    # ---- time and leases -----------------------------------------------------------------------------

    def _advance(self, now: int, batch: Batch, lease_check: bool = True) -> None:
        """Let time catch up: a leader whose lease ran out while it was away steps down first."""
        self.now = max(self.now, now)
        self._catch_up(batch)
        if (
            lease_check
            and self.LEASED
            and self.phase == self.LEADING
            and self.now >= self.lease_until
            and PlantedBug.IGNORE_LEASE not in self.config.planted_bugs
        ):
            self._step_down(Reason.LEASE_EXPIRED, batch, lease_end_tick=self.lease_until)

    def _catch_up(self, batch: Batch) -> None:
        """Anything else due by now, before the lease check (a write-behind, for one planted bug)."""

    def _lease_valid(self, now: int) -> bool:
        return self.phase == self.LEADING and now < self.lease_until

    def _open_round(self, sent_at: int) -> int:
        """A heartbeat round sent at `sent_at`: numbered, remembered, and (alone in a cluster of one)
        a lease at once. Rounds older than a lease can no longer extend it. Returns the lease left."""
        lease = self.timing.leader_lease_ticks
        self.round += 1
        self.rounds[self.round] = (sent_at, {self.id})
        if self._has_majority({self.id}):  # a cluster of one: no ack will come
            self.lease_until = self.now + lease
        for r in [r for r, (sent, _) in self.rounds.items() if sent + lease <= self.now]:
            del self.rounds[r]
        return max(0, self.lease_until - self.now)

    def _round_acked(self, round_: int, node: int, sent_at: int | None = None, lease_ticks: int | None = None) -> None:
        """`node` acknowledged heartbeat round `round_`: once a majority has, the lease runs
        `lease_ticks` from the round's send (`sent_at` and `lease_ticks` differ only for planted bugs)."""
        sent, granted_by = self.rounds[round_]
        granted_by.add(node)
        end = (sent if sent_at is None else sent_at) + (lease_ticks or self.timing.leader_lease_ticks)
        if self._has_majority(granted_by) and end > self.lease_until:
            self.lease_until = end
            self.stats.lease_renewals += 1

    # ---- majorities, promises, messages --------------------------------------------------------------

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

    def _make_promise(self, promise: Promise, batch: Batch) -> None:
        """Make `promise` this node's, durable before anything in this batch reveals it."""
        if promise.membership is None and self.CHANGES_MEMBERSHIP:
            # Every promise carries the configuration, the start-up list included: once a node has
            # promised anything, a restart with another --peers list cannot change whom it counts.
            promise = replace(promise, membership=self.promise.membership or self.membership)
        if promise == self.promise:
            return
        bugs = self.config.planted_bugs
        # PlantedBug.PERSIST_NEW_LEADER_ONLY: a write only when we back someone else, as if the same
        # leader in a newer epoch were the promise already on disk.
        skip = PlantedBug.PERSIST_NEW_LEADER_ONLY in bugs and promise.leader_id == self.promise.leader_id
        self.promise = promise
        if PlantedBug.PERSIST_AFTER_REPLY in bugs:
            self._write_behind(promise)
        elif not skip:
            if PlantedBug.HOLD_NOT_PERSISTED in bugs:
                promise = replace(promise, hold_ticks=0)  # the longer window lives in memory only
            batch.persist = promise

    def _write_behind(self, promise: Promise) -> None:
        raise NotImplementedError(f"{PlantedBug.PERSIST_AFTER_REPLY.value} is not planted in {type(self).__name__}")

    def _send(self, batch: Batch, type_: MsgType, dst: int, **fields) -> None:
        fields.setdefault("epoch", self.epoch)
        if self.CHANGES_MEMBERSHIP:
            fields["membership"] = self.membership
        batch.messages.append(Message(type_, self.id, dst, **fields))

    def _reply(self, batch: Batch, request: Message, refusal: str = "", **fields) -> None:
        """Answer `request` on the same call: granted unless `refusal` (one of REFUSALS) says why not."""
        if refusal != "" and refusal not in REFUSALS:
            raise ValueError(f"a refusal must be one of REFUSALS, got {refusal!r}")
        fields.setdefault("promised_epoch", self.promise.epoch)
        self._send(
            batch,
            REPLY_TYPE[request.type],
            request.src,
            epoch=request.epoch,
            round=request.round,
            granted=not refusal,
            refusal=refusal,
            **fields,
        )

    # ---- stepping down and resigning ---------------------------------------------------------------

    def _step_down(self, reason: Reason, batch: Batch, lease_end_tick: int | None = None) -> None:
        self.stats.stepdowns += 1
        batch.events.append(SteppedDown(self.epoch, reason, lease_end_tick))
        self.phase = self.FOLLOWING
        self.leader_id = None
        self.election_deadline = self.now + self._election_delay()

    def _resign(self, batch: Batch, reason: Reason, successor: int = 0) -> None:
        """Stop leading and release the followers (resigning heartbeats, naming `successor` if any);
        then abstain for an election timeout, or we might simply win again."""
        epoch = self.epoch
        keep_leading = self._keep_leading_after_resign(reason, successor)
        if not keep_leading:
            self._step_down(reason, batch, lease_end_tick=self.now)
        transfer = bool(successor) and reason == Reason.RESIGNED  # an operator's choice, not preemption
        for peer in self.peers:
            self._send(
                batch, MsgType.HEARTBEAT, peer, epoch=epoch, resigning=True, successor=successor, transfer=transfer
            )
        if keep_leading:
            return
        self.abstain_until = self.now + self.timing.election_timeout_ticks
        self.election_deadline = self.abstain_until

    def _keep_leading_after_resign(self, reason: Reason, successor: int) -> bool:
        """Only PlantedBug.EARLY_RELEASE leads on after releasing its followers."""
        return False

    # ---- configuration (node.core.membership) ----------------------------------------------------------

    def _admit(self, msg: Message, batch: Batch) -> bool:
        """One check of the sender's configuration before any handler: a later one is adopted (durably,
        before the answer), an earlier or conflicting one is refused with the reason and ours."""
        theirs = msg.membership
        if theirs is None or not self.CHANGES_MEMBERSHIP:
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
            self._reply(batch, msg, refusal=verdict)
        return False

    def _adopt(self, new: Membership, batch: Batch) -> None:
        """Run a later configuration some other node made. A leader or candidate of the earlier one
        stops: its majority was counted against voters that are no longer the cluster's."""
        self._run(new, batch)
        if PlantedBug.NEW_CONFIGURATION_RELEASES in self.config.planted_bugs:
            self.promise_until = self.now  # as if the new configuration started afresh
        if self.phase == self.LEADING:
            self._step_down(Reason.CONFIGURATION, batch, lease_end_tick=self.now)
        else:
            self._configuration_moved_on(batch)

    def _configuration_moved_on(self, batch: Batch) -> None:
        """A candidate's campaign counted against the configuration before: it ends (per algorithm)."""

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
        if not self.CHANGES_MEMBERSHIP:
            raise MembershipRefused(f"{type(self).__name__} keeps its start-up list")
        if self.phase != self.LEADING or not self._lease_valid(self.now):
            raise MembershipRefused(f"node {self.id} is not the leader; changes go to the leader")
        if self.id not in voters:
            raise MembershipRefused(f"node {self.id} leads and cannot remove itself; transfer leadership first")
        if self.membership.joint or not self._agreed():
            raise MembershipRefused(
                f"{self.membership.describe()} is not yet agreed (acknowledged in epoch {self.epoch} by a "
                "majority of its voters); one change at a time, try again shortly"
            )
        self._make_own(self.membership.changed(tuple(voters), tuple(learners), self.epoch), batch)
        return batch.freeze()

    def _make_own(self, new: Membership, batch: Batch) -> None:
        """A change this leader makes in its epoch: run it, and tell everyone at once."""
        self._run(new, batch)
        self.confirmed = {self.id}
        self.agreed_told = False
        self.next_heartbeat = self.now
        self._heartbeat_now(batch)

    def _heartbeat_now(self, batch: Batch) -> None:
        """A leader's heartbeat round, due now (next_heartbeat is now)."""
        raise NotImplementedError

    def _won(self, granted_by: set[int]) -> None:
        """A campaign won with these grants: they acknowledged our configuration in our epoch."""
        if self.CHANGES_MEMBERSHIP:
            self.confirmed = set(granted_by)
            self.agreed_told = True

    def membership_agreed(self) -> bool:
        """Leading a settled configuration that _agreed (the next change may start)."""
        return self.CHANGES_MEMBERSHIP and self.phase == self.LEADING and not self.membership.joint and self._agreed()

    def _agreed(self) -> bool:
        """Our configuration was acknowledged in our epoch by a majority (of both groups while joint):
        no configuration it does not descend from can gather a majority any more."""
        return self._has_majority(self.confirmed)

    def _confirm(self, node: int, batch: Batch) -> None:
        """`node` acknowledged our configuration in our epoch: a joint one may settle, a learner be
        promoted."""
        if not self.CHANGES_MEMBERSHIP:
            return
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
            self._make_own(
                m.changed(m.voters + (ready[0],), tuple(x for x in m.learners if x != ready[0]), self.epoch), batch
            )
