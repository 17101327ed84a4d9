"""Events in, events out: the vocabulary of the pure election core.

Nothing here touches a socket, a clock or a global random generator. Time is an integer count of
ticks supplied by the caller (the runtime maps its monotonic clock onto ticks; the simulator just
counts). Messages are frozen values; the caller moves them between nodes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from .membership import Membership, configuration_id  # noqa: F401  (configuration_id: re-exported)


class Role(str, enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


class MsgType(str, enum.Enum):
    ELECTION = "election"
    ALIVE = "alive"
    COORDINATOR = "coordinator"
    COORDINATOR_ACK = "coordinator_ack"
    HEARTBEAT = "heartbeat"
    HEARTBEAT_ACK = "heartbeat_ack"
    # ---- Ring (node/core/ring.py) ----
    RING_ELECTION = "ring_election"  # the token: ids collected so far, from `initiator`
    RING_COORDINATOR = "ring_coordinator"  # the result: max(ids) leads epoch `epoch`; circulates once
    RING_ACK = "ring_ack"  # a token pass was received (answers both, on the same call)
    # ---- end Ring ----

    # -- Raft (node/core/raft.py) --
    REQUEST_VOTE = "request_vote"  # a candidate asks for this node's one vote in term `epoch`
    VOTE = "vote"  # its answer; granted=True is a promise (see PROMISE_REPLY_TYPES)
    PRE_VOTE = "pre_vote"  # "would you vote for me in term `epoch`?" changes nothing, persists nothing
    PRE_VOTE_ACK = "pre_vote_ack"  # its answer; not a promise


# Acks answer a request on the same call (gRPC response); everything else is a call of its own.
REPLY_TYPE = {MsgType.COORDINATOR: MsgType.COORDINATOR_ACK, MsgType.HEARTBEAT: MsgType.HEARTBEAT_ACK}
# Replies whose granted=True is a promise (in modes that make promises): the follower backs no one
# else, itself included, for Timing.follower_promise_ticks unless the leader releases it first.
PROMISE_REPLY_TYPES = frozenset({MsgType.COORDINATOR_ACK, MsgType.HEARTBEAT_ACK})
# ---- Ring (node/core/ring.py): every pass of a ring message is acknowledged by the receiver; no
# promise in it (ring mode makes none). The pass is matched to its ack by `round`. ----
REPLY_TYPE.update({MsgType.RING_ELECTION: MsgType.RING_ACK, MsgType.RING_COORDINATOR: MsgType.RING_ACK})
# ---- end Ring ----

# -- Raft (node/core/raft.py): RequestVote and PreVote are answered on the same call; a granted vote
# is a promise (the voter backs no one else for a promise window), a granted pre-vote is not.
REPLY_TYPE |= {MsgType.REQUEST_VOTE: MsgType.VOTE, MsgType.PRE_VOTE: MsgType.PRE_VOTE_ACK}
PROMISE_REPLY_TYPES |= {MsgType.VOTE}


@dataclass(frozen=True)
class Message:
    type: MsgType
    src: int
    dst: int
    epoch: int
    round: int = 0
    granted: bool = False
    # On acks: the highest epoch the sender has promised (tells a stale leader it is stale).
    promised_epoch: int = 0
    # On heartbeats: the leader is resigning, followers may elect at once...
    resigning: bool = False
    # ...letting this node (a transfer target) go first; 0 = no one in particular.
    successor: int = 0
    # With a successor: an operator's transfer (the successor then keeps leadership against the
    # preferred-leader rule), not a preemption by that rule itself.
    transfer: bool = False
    # On a leader's (non-resigning) heartbeat: how much longer its lease runs, counted on its clock when
    # it sent the heartbeat. A follower names that leader to clients only within it (KnownLeader).
    lease_remaining: int = 0
    # On Coordinator, RequestVote and a leader's (non-resigning) Heartbeat: the lease its sender counts
    # from sending it, on its own clock (its leader_lease_ticks). Members may run different timings
    # (a rolling change of the election timeout): a follower holds the promise it grants long enough
    # to outlast this lease (Timing.hold_ticks_for). 0: not announced (the follower's own window).
    lease_ticks: int = 0
    # ---- Ring (node/core/ring.py) ----
    # RING_ELECTION: the ids collected so far (initiator first); RING_COORDINATOR: the same list, its
    # maximum is the coordinator.
    ids: tuple[int, ...] = ()
    # The node that started this election; a ring message stops when it comes back to it.
    initiator: int = 0
    # ---- end Ring ----
    # The sender's configuration (modes that change membership: node.core.membership); None: the mode
    # keeps its start-up list, which the transport compares.
    membership: Membership | None = None
    # On a reply with granted=False: why, in the core's words (one of node.core.kit.REFUSALS). A
    # refusal for the sender's configuration (membership.STALE, CONFLICT, OUTSIDE) carries the
    # refuser's configuration too.
    refusal: str = ""


@dataclass(frozen=True)
class Promise:
    """The durable part of a node: the highest epoch it has promised, and to whom (0 = nobody).

    It must reach stable storage before any message that reveals it leaves the node; otherwise a
    crash-restart could acknowledge two leaders for one epoch.
    """

    epoch: int = 0
    leader_id: int = 0
    # How long the promise is held, on this node's clock, when a leader's announced lease asked for
    # longer than the node's own window; 0: its own window (Timing.promise_hold_ticks). Durable with
    # the rest, so that after a crash the node honours at least this window from boot.
    hold_ticks: int = 0
    # The node's configuration once it has heard of a change (None: its start-up list). Durable
    # with the promise, in the same write, before any message that reveals it.
    membership: Membership | None = None

    @property
    def names(self) -> tuple[int, int]:
        """(epoch, leader_id): what was promised to whom, whatever window and configuration it carries."""
        return (self.epoch, self.leader_id)

    def window_ticks(self, timing: Timing) -> int:
        """The window this promise was granted for, by a node running `timing`."""
        return max(self.hold_ticks, timing.promise_hold_ticks)

    def restored(self, window_ticks: int, timing: Timing) -> Promise:
        """This promise as a node booting with `timing` must hold it, having granted it for a window
        of `window_ticks` (on the same clock), perhaps under other timings: the longer window stays."""
        return replace(self, hold_ticks=_beyond_own(window_ticks, timing))


def _beyond_own(window_ticks: int, timing: Timing) -> int:
    """Promise.hold_ticks for a window: the window where it is longer than the node's own, else 0."""
    return window_ticks if window_ticks > timing.promise_hold_ticks else 0


def grant_window(
    timing: Timing, now: int, hold_ticks: int, until: int, promise: Promise, again: bool
) -> tuple[int, int]:
    """A grant held `hold_ticks` from `now`: (when its window ends, the durable Promise.hold_ticks).

    `again`: the grant goes to the node the live window (ending at `until`, granted as `promise`) is
    already promised to. Then it never ends that window earlier: one granted under longer timings
    (the node's own before a restart, or a longer lease the same leader announced in an earlier
    incarnation) keeps running, and the durable window keeps covering it. A grant to another node
    comes only once the window ended (or was released), so it starts afresh."""
    if again and until > now + hold_ticks:
        return until, _beyond_own(promise.window_ticks(timing), timing)
    return now + hold_ticks, _beyond_own(hold_ticks, timing)


class PlantedBug(str, enum.Enum):
    """Deliberate defects for proving the checkers catch them. Test-only; see node.config."""

    DOUBLE_ACK = "double-ack"  # acknowledges any coordinator, even a second one in the same epoch
    IGNORE_LEASE = "ignore-lease"  # a leader never steps down when its lease runs out
    FORGET_PROMISE = "forget-promise"  # the promise is not kept across restarts
    STALE_STORE = "stale-store"  # the fenced store accepts any epoch (store side)
    BOOT_SELF_VOTE = "boot-self-vote"  # votes for itself inside the promise window it honours after boot
    PERSIST_AFTER_REPLY = (
        "persist-after-reply"  # a promise is written behind: on disk a heartbeat interval after the ack
    )
    WRONG_ROUND_ACK = "wrong-round-ack"  # a heartbeat ack is credited to the newest round, not its own
    EARLY_RELEASE = "early-release"  # a resigning leader releases its followers, then leads one more interval
    LEASE_FROM_RECEIPT = "lease-from-receipt"  # the lease is renewed from when the ack arrived, not when sent
    HALF_IS_MAJORITY = "half-is-majority"  # in an even-sized cluster, half the members count as a majority
    SHORT_PROMISE = "short-promise"  # a follower honours its promise for only half the leader's lease
    # independent
    OLD_RESIGN_RELEASES = (
        "old-resign-releases"  # quorum: an older epoch's resign from our leader ends the newer promise
    )
    REASSERT_KEEPS_GRANTS = "reassert-keeps-grants"  # quorum: a reassert counts the grants of the proposal that won
    ACK_KEEPS_WINDOW = "ack-keeps-window"  # quorum: re-acking the same leader and epoch does not extend the window
    ROUND_WITHOUT_EPOCH = "round-without-epoch"  # quorum: a heartbeat ack is matched to a round by number, not epoch
    BOOT_WINDOW_FROM_ZERO = "boot-window-from-zero"  # quorum: the window after a restart counts from clock zero
    LEASE_FROM_NEXT_BEAT = "lease-from-next-beat"  # quorum: a round is stamped with the time the next one is due
    LEASE_AS_LONG_AS_PROMISE = "lease-as-long-as-promise"  # quorum: a renewed lease lasts the followers' window
    LATE_ACK_UNTIL_TIMEOUT = (
        "late-ack-until-timeout"  # quorum: proposal acks count for an election timeout, not a lease
    )
    TERM_ONLY_PERSIST = "term-only-persist"  # raft: the promise is written only when the term changes
    VOTE_WINDOW_IS_LEASE = "vote-window-is-lease"  # raft: a granted vote promises for a lease, not the window
    LEASE_CHECK_ON_TICK = "lease-check-on-tick"  # raft: an expired lease is noticed on ticks only, not on messages
    LATE_VOTE_UNTIL_DEADLINE = "late-vote-until-deadline"  # raft: votes count until the campaign deadline, not a lease
    RELEASE_ANY_TERM = "release-any-term"  # raft: a resigning heartbeat releases its sender's promise in any term
    # independent, second batch
    # quorum: a heartbeat arriving after its leader's resignation names that leader again
    LATE_BEAT_NAMES_RESIGNED = "late-beat-names-resigned"
    # quorum: a promise is persisted only when it names another leader, not a newer epoch alone
    PERSIST_NEW_LEADER_ONLY = "persist-new-leader-only"
    # quorum: a leader takes its reassert's fresh epoch when it asks, not when a majority grants it
    REASSERT_ADOPTS_EPOCH = "reassert-adopts-epoch"
    # raft: a vote is checked against whom the node backs now (promised_to), not whom it voted for in the term
    VOTE_BY_WINDOW = "vote-by-window"
    LEASE_FROM_WIN = "lease-from-win"  # raft: a new leader's lease counts from its win, not from its RequestVote round
    PERSIST_BEFORE_SELF_VOTE = (
        "persist-before-self-vote"  # raft: a candidate persists its new term before it records its own vote
    )
    # configuration: members running different timings
    ANNOUNCED_LEASE_IGNORED = (
        "announced-lease-ignored"  # a follower holds its own window, whatever lease the leader announces
    )
    HOLD_NOT_PERSISTED = "hold-not-persisted"  # a window longer than the node's own is held but not made durable
    # configuration: membership changes
    NEW_CONFIGURATION_RELEASES = (
        "new-configuration-releases"  # quorum: adopting a later configuration ends the node's live promise
    )
    MEMBERSHIP_NOT_PERSISTED = "membership-not-persisted"  # quorum: an adopted configuration is held in memory only
    REMOVED_STILL_COUNTED = "removed-still-counted"  # quorum: a voter removed by the last change still counts
    ADOPTS_ANY_CONFIGURATION = (
        "adopts-any-configuration"  # quorum: a node adopts any other configuration it hears, even an earlier one
    )


# The clock-rate error the lease rule is promised to tolerate (and the explorer checks): every timing a
# node accepts leaves at least this margin (Timing.drift_margin; node.config checks it).
CLOCK_DRIFT_BOUND = 0.05
_DRIFT_PER = 20  # CLOCK_DRIFT_BOUND is 1/_DRIFT_PER (integer arithmetic, exact)


@dataclass(frozen=True)
class Timing:
    """All durations in ticks. Safety needs leader_lease < follower_promise <= election_timeout.

    The leader counts its lease from the moment it *sent* the acknowledged round; a follower counts
    its promise from the moment it *received* the message it acknowledged. Receipt is never before
    sending, so with follower_promise >= leader_lease the follower's promise outlasts the leader's
    belief, and two leases cannot overlap (given clocks that run at the same rate).
    """

    heartbeat_interval_ticks: int = 10
    election_timeout_ticks: int = 50
    leader_lease_ticks: int = 35
    follower_promise_ticks: int = 40
    alive_wait_ticks: int = 10
    coordinator_wait_ticks: int = 25
    # Lower ids wait longer before starting an election, so the highest live node usually goes
    # first and the election needs no contest (Bully order without its O(n^2) messages).
    rank_stagger_ticks: int = 2
    jitter_ticks: int = 5
    # Quorum: a higher node takes over from a lower leader only after acking every heartbeat this
    # long (0 = never preempt). Classic Bully preempts at once, which is its ping-pong problem.
    preempt_hold_down_ticks: int = 0

    def __post_init__(self) -> None:
        optional = ("rank_stagger_ticks", "jitter_ticks", "preempt_hold_down_ticks")
        positive = {k: v for k, v in self.__dict__.items() if k not in optional}
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.rank_stagger_ticks < 0 or self.jitter_ticks < 0 or self.preempt_hold_down_ticks < 0:
            raise ValueError("rank_stagger_ticks, jitter_ticks and preempt_hold_down_ticks must be >= 0")
        if not self.leader_lease_ticks < self.follower_promise_ticks <= self.election_timeout_ticks:
            raise ValueError(
                "need leader_lease_ticks < follower_promise_ticks <= election_timeout_ticks, got "
                f"{self.leader_lease_ticks}, {self.follower_promise_ticks}, {self.election_timeout_ticks}"
            )
        if self.heartbeat_interval_ticks >= self.leader_lease_ticks:
            raise ValueError("heartbeat_interval_ticks must be shorter than leader_lease_ticks")

    @property
    def promise_hold_ticks(self) -> int:
        """How long a follower holds a promise on its own tick clock: the window, plus one tick.

        The runtime floors its clock to ticks, so the tick a follower calls the receipt may be up to
        one tick earlier than the receipt; the extra tick keeps the promise from ending early.
        """
        return self.follower_promise_ticks + 1

    def window_ticks_for(self, lease_ticks: int) -> int:
        """The promise window this node grants a leader that announced a lease of `lease_ticks` (on its
        clock, from sending the message granted): its own (follower_promise_ticks), or longer if that
        lease needs it.

        A promise of P ticks from receipt, on a clock up to d fast, lasts at least P/(1+d) real ticks
        after the send; a lease of L ticks from the send, on a clock up to d slow, lasts at most
        L/(1-d). So P >= L(1+d)/(1-d). A lease no longer than this node's own is covered by its own
        window: node.config accepts only timings whose promise outlasts their lease by the drift margin."""
        if lease_ticks <= self.leader_lease_ticks:
            return self.follower_promise_ticks
        outlasting = -(-lease_ticks * (_DRIFT_PER + 1) // (_DRIFT_PER - 1))  # ceil(L(1+d)/(1-d))
        return max(self.follower_promise_ticks, outlasting)

    def hold_ticks_for(self, lease_ticks: int) -> int:
        """How long this node holds that grant on its tick clock: the window plus the tick a floored
        clock may lose (as promise_hold_ticks is to follower_promise_ticks)."""
        return self.window_ticks_for(lease_ticks) + 1

    @property
    def drift_margin(self) -> float:
        """The largest clock-rate error (per node, either way) under which a lease (L ticks from its
        send, on the leader's clock) still ends before the promises that back it (P ticks from their
        receipt, on the followers'): L/(1-d) <= P/(1+d), so d = (P-L)/(P+L)."""
        lease, promise = self.leader_lease_ticks, self.follower_promise_ticks
        return (promise - lease) / (promise + lease)

    @classmethod
    def from_ms(
        cls, heartbeat_interval_ms: int, election_timeout_ms: int, tick_ms: int, preempt_hold_down_ms: int = 0
    ) -> Timing:
        """Derive every duration from the two user-facing knobs."""
        if tick_ms <= 0:
            raise ValueError(f"tick_ms must be > 0, got {tick_ms}")
        hb = max(1, round(heartbeat_interval_ms / tick_ms))
        et = max(1, round(election_timeout_ms / tick_ms))
        return cls(
            heartbeat_interval_ticks=hb,
            election_timeout_ticks=et,
            leader_lease_ticks=max(hb + 1, et * 7 // 10),
            follower_promise_ticks=max(hb + 2, et * 8 // 10),
            alive_wait_ticks=hb,
            coordinator_wait_ticks=max(2 * hb, et // 2),
            rank_stagger_ticks=max(1, hb // 5),
            jitter_ticks=max(1, hb // 2),
            preempt_hold_down_ticks=-(-preempt_hold_down_ms // tick_ms),
        )


@dataclass(frozen=True)
class Config:
    node_id: int
    members: tuple[int, ...]
    timing: Timing = field(default_factory=Timing)
    planted_bugs: frozenset[PlantedBug] = frozenset()
    # Switches of the mode (ModeInfo.options lists the ones each mode takes), e.g. raft's "no-pre-vote".
    options: frozenset[str] = frozenset()
    # Started to join a running cluster (modes that change membership): the node stands for nothing
    # until a leader adds it and it hears the cluster's configuration.
    join: bool = False

    def __post_init__(self) -> None:
        if self.node_id <= 0:
            raise ValueError(f"node id must be a positive integer, got {self.node_id}")
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"duplicate ids in membership {self.members}")
        if self.node_id not in self.members:
            raise ValueError(f"node {self.node_id} is not in membership {self.members}")
        if any(m <= 0 for m in self.members):
            raise ValueError(f"member ids must be positive, got {self.members}")

    @property
    def peers(self) -> tuple[int, ...]:
        return tuple(m for m in self.members if m != self.node_id)

    @property
    def majority(self) -> int:
        return len(self.members) // 2 + 1


# ---- what comes out of a step --------------------------------------------------------------


@dataclass(frozen=True)
class ElectionStarted:
    epoch: int


@dataclass(frozen=True)
class BecameLeader:
    epoch: int


class Reason(str, enum.Enum):
    """Why a leader stepped down (also the label of the stepdowns metric)."""

    LEASE_EXPIRED = "lease_expired"  # its majority's acks stopped coming (quorum stepdown)
    HIGHER_EPOCH = "higher_epoch"  # it learned of a newer epoch
    HIGHER_LEADER = "higher_leader"  # classic Bully: a higher node claimed leadership
    RESIGNED = "resigned"  # asked to (Resign, TransferLeadership, shutdown)
    PREEMPTED = "preempted"  # handed over to a preferred higher node after the hold-down
    CONFIGURATION = "configuration"  # it learned of a later configuration than the one it leads

    def __str__(self) -> str:  # metrics labels and log lines want the bare name
        return self.value


@dataclass(frozen=True)
class SteppedDown:
    epoch: int
    reason: Reason
    # The tick at which the lease had run out (may be earlier than now after a pause), or None.
    lease_end_tick: int | None = None


@dataclass(frozen=True)
class MembershipChanged:
    """This node now runs `membership` (adopted from a message, or made as leader); persisted in the
    same write as the step's promise. `committed`: a leader saw it acknowledged by a majority of its
    voters and of the voters before it (then the next change may start)."""

    membership: Membership
    committed: bool = False


@dataclass(frozen=True)
class PromiseReleased:
    """A follower ended its promise to `leader` early: it honoured that leader's resigning heartbeat
    for `epoch`. Only modes whose acks are promises report it; a follower that did not release (the
    heartbeat was not from the leader it backs, or it honours a window from its boot) reports nothing."""

    leader: int
    epoch: int


@dataclass(frozen=True)
class Reached:
    """The elector passed a named protocol instant (see node.core.instants): a moment worth a
    fault, e.g. a proposal that just failed. Only the simulator's search reads it; the runtime
    ignores it."""

    instant: str


Event = ElectionStarted | BecameLeader | SteppedDown | PromiseReleased | Reached | MembershipChanged


@dataclass(frozen=True)
class Output:
    """Do these in order: persist the promise (fsync), then send the messages, then report events."""

    persist: Promise | None = None
    messages: tuple[Message, ...] = ()
    events: tuple[Event, ...] = ()


@dataclass
class Batch:
    """Collects one step's output while an elector works; `freeze()` hands it to the caller."""

    persist: Promise | None = None
    messages: list[Message] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def freeze(self) -> Output:
        return Output(self.persist, tuple(self.messages), tuple(self.events))


@dataclass(frozen=True)
class View:
    node_id: int
    role: Role
    epoch: int
    leader_id: int | None
    # Quorum: a leader whose lease is valid now. Classic: any leader (it has no lease).
    lease_valid: bool

    @property
    def answer(self) -> tuple[int, int] | None:
        """(leader, epoch) this node may tell a client, or None ("no leader known"). A leader names
        itself only while its lease is valid (between its lease's end and the tick that steps it down
        it names no one); a follower's leader_id is already only what its evidence allows."""
        if self.leader_id is None or (self.role == Role.LEADER and not self.lease_valid):
            return None
        return self.leader_id, self.epoch


@dataclass
class Stats:
    """What a node counts (GetStatus and /metrics show these; see NodeStatus in the .proto)."""

    elections_started: int = 0
    elections_won: int = 0  # became leader by an election; bully and raft: one it started
    handovers_won: int = 0  # became leader as the successor a leaving leader named, with no election of its own
    stepdowns: int = 0
    lease_renewals: int = 0  # quorum leader: a majority-acked heartbeat round extended the lease
