"""Between protobuf and the core: validate what arrived, convert both ways.

Validation is a pure function so the servicer stays thin and the rules have one home. A request that
fails it changes nothing: it never reaches the elector.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from node.api import bullyproof_pb2 as pb
from node.core import REGISTRY, REPLY_TYPE, Membership, Message, MsgType, Role, configuration_id, mode_info
from node.core.kit import REFUSALS

# Epochs count elections; anything near 2**63 is corruption or an attack, not history.
MAX_EPOCH = 2**62
# The longest lease a peer may announce: a follower holds its promise at least that long, so a
# larger one (no timing node.config accepts comes near it) would stall elections for nothing.
MAX_LEASE_MS = 10 * 60 * 1000
LEASE_RPCS = frozenset({"Coordinator", "RequestVote", "Heartbeat"})  # the requests a grant answers


def rpc_name(type_: MsgType) -> str:
    """A request's RPC in service Peer is its message type in CamelCase (REQUEST_VOTE: RequestVote)."""
    return "".join(part.capitalize() for part in type_.name.split("_"))


# Every request type of every mode (replies travel back on the same call, or not at all).
RPC_TYPE = {rpc_name(t): t for t in MsgType if t not in set(REPLY_TYPE.values())}
RPC_NAME = {t: name for name, t in RPC_TYPE.items()}
# What each RPC may carry beyond sender, receiver and epoch (everything else must be unset).
EPOCH_REQUIRED = frozenset({"Coordinator", "Heartbeat", "PreVote", "RequestVote", "RingCoordinator"})
RING_RPCS = frozenset({"RingElection", "RingCoordinator"})
# Ring passes and Raft pre-votes carry a number (round) so that the ack matches its request.
ROUND_RPCS = frozenset({"Heartbeat", "PreVote", *RING_RPCS})

ROLE_PB = {Role.FOLLOWER: pb.ROLE_FOLLOWER, Role.CANDIDATE: pb.ROLE_CANDIDATE, Role.LEADER: pb.ROLE_LEADER}

# The peer RPCs each mode's elector handles, from its own dispatch table (ElectorKit.calls; the .proto's
# comment on service Peer lists them too). Any other RPC reaching a node is from a peer running another
# mode: refused before the elector sees it (UNIMPLEMENTED; it would only note the message's epoch).
MODE_RPCS: dict[str, frozenset[str]] = {
    name: frozenset(RPC_NAME[t] for t in info.factory.calls()) for name, info in REGISTRY.items()
}


@dataclass(frozen=True)
class Rejection:
    code: grpc.StatusCode
    detail: str
    member_list: bool = False  # refused only because the sender runs another member list


def check_peer_message(
    rpc: str,
    req: pb.PeerMessage,
    self_id: int,
    members: tuple[int, ...],
    mode: str | None = None,
    open_membership: bool = False,
) -> Rejection | None:
    """Why this request must be refused, or None. Order: who sent it, to whom, then its fields.

    With `mode` (as a node always calls it), an RPC of another mode is UNIMPLEMENTED. With
    `open_membership` (an address template: any node may be a member) every other node id may send;
    the configuration the message carries decides what counts (node.core.membership)."""
    known = (lambda node: node > 0) if open_membership else (lambda node: node in members)
    if not known(req.sender_id) or req.sender_id == self_id:
        return Rejection(
            grpc.StatusCode.PERMISSION_DENIED,
            f"sender {req.sender_id} is not a peer of node {self_id} (members: {', '.join(map(str, members))})",
        )
    if req.receiver_id != self_id:
        return Rejection(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"message addressed to node {req.receiver_id} reached node {self_id}; check the peer address map",
        )
    if req.epoch > MAX_EPOCH:
        return Rejection(grpc.StatusCode.INVALID_ARGUMENT, f"epoch {req.epoch} is impossible (max {MAX_EPOCH})")
    if rpc not in RPC_TYPE:
        return Rejection(grpc.StatusCode.UNIMPLEMENTED, f"no peer RPC {rpc!r}")
    if mode is not None and rpc not in MODE_RPCS[mode]:
        return Rejection(
            grpc.StatusCode.UNIMPLEMENTED,
            f"node {self_id} runs mode {mode}, which has no {rpc} (is the sender running another mode?)",
        )
    if rpc in EPOCH_REQUIRED and req.epoch == 0:
        return Rejection(grpc.StatusCode.INVALID_ARGUMENT, f"{rpc} needs an epoch >= 1, got 0")
    if req.successor_id and not (rpc == "Heartbeat" and req.resigning):
        return Rejection(grpc.StatusCode.INVALID_ARGUMENT, "successor_id is only meaningful on a resigning Heartbeat")
    if req.successor_id and not known(req.successor_id):
        return Rejection(grpc.StatusCode.INVALID_ARGUMENT, f"successor {req.successor_id} is not a member")
    if req.transfer and not req.successor_id:
        return Rejection(grpc.StatusCode.INVALID_ARGUMENT, "transfer is only meaningful with a successor_id")
    if req.lease_remaining_ms and not (rpc == "Heartbeat" and not req.resigning):
        return Rejection(
            grpc.StatusCode.INVALID_ARGUMENT,
            "lease_remaining_ms is only meaningful on a leader's (non-resigning) Heartbeat",
        )
    if req.lease_ms and (rpc not in LEASE_RPCS or req.resigning):
        return Rejection(
            grpc.StatusCode.INVALID_ARGUMENT,
            "lease_ms is only meaningful on Coordinator, RequestVote and a (non-resigning) Heartbeat",
        )
    if req.lease_ms > MAX_LEASE_MS:
        return Rejection(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"lease_ms {req.lease_ms} is longer than any lease a node may hold (max {MAX_LEASE_MS})",
        )
    if rpc == "Heartbeat":
        if req.round == 0 and not req.resigning:
            return Rejection(grpc.StatusCode.INVALID_ARGUMENT, "Heartbeat needs a round >= 1 (or resigning=true)")
    else:
        if req.round and rpc not in ROUND_RPCS:
            return Rejection(
                grpc.StatusCode.INVALID_ARGUMENT, f"round is only meaningful on Heartbeat, got {req.round} on {rpc}"
            )
        if req.resigning:
            return Rejection(grpc.StatusCode.INVALID_ARGUMENT, f"resigning is only meaningful on Heartbeat, not {rpc}")
    if rpc in RING_RPCS:
        if req.initiator_id not in members:
            return Rejection(grpc.StatusCode.INVALID_ARGUMENT, f"initiator {req.initiator_id} is not a member")
        if any(i not in members for i in req.ring_ids) or len(set(req.ring_ids)) != len(req.ring_ids):
            return Rejection(
                grpc.StatusCode.INVALID_ARGUMENT, f"ring_ids {list(req.ring_ids)} must be distinct members"
            )
        if not req.ring_ids:  # a token starts with its initiator's id; the coordinator is the highest
            return Rejection(grpc.StatusCode.INVALID_ARGUMENT, f"{rpc} needs ring_ids (at least the initiator's id)")
    elif req.ring_ids or req.initiator_id:
        return Rejection(
            grpc.StatusCode.INVALID_ARGUMENT, f"ring_ids and initiator_id are only meaningful on ring RPCs, not {rpc}"
        )
    if req.HasField("configuration"):
        if mode is not None and not mode_info(mode).membership_changes:
            return Rejection(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"configuration is only meaningful in modes that change membership, not {mode}",
            )
        problem, _ = checked_configuration(req.configuration, req.configuration_id)
        if problem:
            return Rejection(grpc.StatusCode.INVALID_ARGUMENT, problem)
        return None  # the core compares configurations, and answers with its refusal in the Ack
    if mode is not None and mode_info(mode).membership_changes:
        return Rejection(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"node {req.sender_id} sent no configuration (a version without membership changes?); "
            f"node {self_id} runs mode {mode}, whose every message carries one",
            member_list=True,
        )
    ours = configuration_id(members)
    if req.configuration_id != ours:
        return Rejection(
            grpc.StatusCode.FAILED_PRECONDITION,
            configuration_refusal(req.sender_id, req.configuration_id, self_id, members),
            member_list=True,
        )
    return None


MAX_MEMBERS = 255


def configuration_problem(c: pb.Configuration, fingerprint: int) -> str:
    """Why a configuration on the wire is malformed, or ''."""
    ids = [*c.voters, *c.learners]
    if any(len(group) > MAX_MEMBERS for group in (ids, c.previous, c.notify)):
        return f"a configuration lists at most {MAX_MEMBERS} nodes"
    if any(i == 0 for i in [*ids, *c.previous, *c.notify]):
        return "configuration ids must be >= 1"
    if any(len(set(group)) != len(group) for group in (ids, c.previous, c.notify)):
        return "a configuration lists a node twice (voters and learners are disjoint)"
    if c.term < -1 or c.term > MAX_EPOCH or c.index > MAX_EPOCH:
        return f"configuration term {c.term} or index {c.index} is impossible"
    if not c.voters and c.term >= 0:
        return "a configuration needs at least one voter"
    if fingerprint != membership_from_pb(c).id:
        return f"configuration_id {fingerprint:08x} does not match the configuration it travels with"
    return ""


def membership_from_pb(c: pb.Configuration) -> Membership:
    return Membership(tuple(c.voters), tuple(c.learners), c.index, c.term, tuple(c.previous), tuple(c.notify))


# Configurations on the wire already checked and found sound, with their Membership. In the modes
# that change membership every heartbeat and every ack carries the sender's configuration, nearly
# always the same one, and checking it (configuration_problem, then building the Membership again)
# took ~35 µs per message, a tenth of what an idle leader spends per acknowledgement. Only sound
# configurations are kept (their lists are at most MAX_MEMBERS long), at most _CHECKED_MAX of them
# (emptied when full): whatever peers send, it holds about a megabyte at most.
_CHECKED: dict[tuple, Membership] = {}
_CHECKED_MAX = 64


def checked_configuration(c: pb.Configuration, fingerprint: int) -> tuple[str, Membership | None]:
    """configuration_problem(c, fingerprint), and the Membership `c` describes when there is none."""
    if any(len(group) > MAX_MEMBERS for group in (c.voters, c.learners, c.previous, c.notify)):
        return configuration_problem(c, fingerprint), None  # (too long to be sound: never kept)
    key = (tuple(c.voters), tuple(c.learners), c.index, c.term, tuple(c.previous), tuple(c.notify), fingerprint)
    membership = _CHECKED.get(key)
    if membership is not None:
        return "", membership
    problem = configuration_problem(c, fingerprint)
    if problem:
        return problem, None
    if len(_CHECKED) >= _CHECKED_MAX:
        _CHECKED.clear()
    membership = _CHECKED[key] = membership_from_pb(c)
    return "", membership


def membership_to_pb(m: Membership) -> pb.Configuration:
    return pb.Configuration(
        voters=m.voters, learners=m.learners, index=m.index, term=m.term, previous=m.previous, notify=m.notify
    )


def configuration_refusal(sender: int, theirs: int, self_id: int, members: tuple[int, ...]) -> str:
    """Why node `self_id` refuses what `sender` sent: they run different member lists."""
    listed = ",".join(map(str, sorted(members)))
    what = "sent no member list" if not theirs else f"runs another member list (configuration {theirs:08x})"
    return (
        f"node {sender} {what}; node {self_id} runs members {listed} (configuration "
        f"{configuration_id(members):08x}): a node on another list is never counted"
    )


def message_from_pb(rpc: str, req: pb.PeerMessage, tick_ms: int) -> Message:
    """The core's message in whole ticks of ours: what is left of a lease floored (a follower names
    the leader no longer than it may lead), a lease's length rounded up (a promise that outlasts it
    never comes out shorter)."""
    return Message(
        RPC_TYPE[rpc],
        req.sender_id,
        req.receiver_id,
        req.epoch,
        round=req.round,
        resigning=req.resigning,
        successor=req.successor_id,
        transfer=req.transfer,
        lease_remaining=req.lease_remaining_ms // tick_ms,
        lease_ticks=-(-req.lease_ms // tick_ms),
        ids=tuple(req.ring_ids),
        initiator=req.initiator_id,
        membership=_membership(req.configuration, req.configuration_id) if req.HasField("configuration") else None,
    )


def _membership(c: pb.Configuration, fingerprint: int) -> Membership:
    """The Membership of a configuration check_peer_message accepted (checked again if it was not)."""
    _, membership = checked_configuration(c, fingerprint)
    return membership if membership is not None else membership_from_pb(c)


def message_to_pb(msg: Message, tick_ms: int, configuration: int) -> pb.PeerMessage:
    """`configuration`: the sender's member list (node.core.configuration_id); a message that carries
    its sender's configuration (msg.membership) travels with that one's instead."""
    extra = {} if msg.membership is None else {"configuration": membership_to_pb(msg.membership)}
    return pb.PeerMessage(
        sender_id=msg.src,
        receiver_id=msg.dst,
        epoch=msg.epoch,
        round=msg.round,
        resigning=msg.resigning,
        successor_id=msg.successor,
        transfer=msg.transfer,
        lease_remaining_ms=msg.lease_remaining * tick_ms,
        lease_ms=msg.lease_ticks * tick_ms,
        ring_ids=msg.ids,
        initiator_id=msg.initiator,
        configuration_id=configuration if msg.membership is None else msg.membership.id,
        **extra,
    )


def ack_to_pb(msg: Message, configuration: int) -> pb.Ack:
    extra = {} if msg.membership is None else {"configuration": membership_to_pb(msg.membership)}
    return pb.Ack(
        sender_id=msg.src,
        receiver_id=msg.dst,
        epoch=msg.epoch,
        round=msg.round,
        granted=msg.granted,
        promised_epoch=msg.promised_epoch,
        configuration_id=configuration if msg.membership is None else msg.membership.id,
        refusal=msg.refusal,
        **extra,
    )


def ack_from_pb(request: Message, ack: pb.Ack, configuration: int) -> Message | None:
    """The reply to `request` as a core message, or None if it does not answer that request (or
    comes from a node on another member list than ours, `configuration`). A reply that carries a
    configuration (modes that change membership) goes to the core, which compares it."""
    membership = None
    if request.membership is not None:
        if not ack.HasField("configuration"):
            return None
        problem, membership = checked_configuration(ack.configuration, ack.configuration_id)
        if problem:
            return None
    elif ack.configuration_id != configuration:
        return None
    if ack.sender_id != request.dst or ack.receiver_id != request.src or ack.epoch != request.epoch:
        return None
    if ack.round != request.round:  # an ack credits exactly the round it answers (never a newer one)
        return None
    if ack.promised_epoch > MAX_EPOCH:
        return None
    if ack.refusal and (ack.granted or ack.refusal not in REFUSALS):  # the core's reason, on a refusal only
        return None
    return Message(
        REPLY_TYPE[request.type],
        ack.sender_id,
        ack.receiver_id,
        ack.epoch,
        round=ack.round,
        granted=ack.granted,
        promised_epoch=ack.promised_epoch,
        membership=membership,
        refusal=ack.refusal,
    )
