"""Handing leadership over (Resign, TransferLeadership) and the Leadership service for other services."""

from __future__ import annotations

import asyncio
import time

import grpc

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import require
from node.core import Membership, MembershipRefused, Role, mode_info
from node.runtime.events import EVENT_KINDS, Event, SubscribeRefused
from node.runtime.port import LeadershipNode
from node.runtime.wire import membership_to_pb
from node.tls import ADMIN


class TransferError(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Handover:
    def __init__(self, node: LeadershipNode) -> None:
        self.node = node
        self.configuration_moved = asyncio.Event()  # set at every MembershipChanged; waiters clear it

    def membership_changed(self) -> None:
        self.configuration_moved.set()

    async def change_membership(self, action: int, target: int, timeout_ms: int) -> Membership:
        """Add `target` (a learner, then promoted) or remove it, at the leader; returns the configuration
        once the change is agreed. TransferError with the precise status otherwise."""
        node, s = self.node, self.node.settings
        if not mode_info(s.mode).membership_changes:
            raise TransferError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"mode {s.mode.value} keeps its start-up list; membership changes need quorum or raft mode",
            )
        if action not in (pb.MembershipRequest.ACTION_ADD, pb.MembershipRequest.ACTION_REMOVE):
            raise TransferError(grpc.StatusCode.INVALID_ARGUMENT, "action must be ACTION_ADD or ACTION_REMOVE")
        if target <= 0:
            raise TransferError(grpc.StatusCode.INVALID_ARGUMENT, f"node_id must be a positive node id, got {target}")
        elector = node.elector
        if elector.view(node.now()).role != Role.LEADER:
            raise TransferError(grpc.StatusCode.FAILED_PRECONDITION, self.not_leader_detail())
        m: Membership = elector.membership
        adding = action == pb.MembershipRequest.ACTION_ADD
        if adding:
            if target in m.voters:
                return m
            if node.transport.peer(target) is None:
                raise TransferError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"node {target} has no address in node {node.id}'s --peers; give every member its "
                    "address (restart them one at a time with it, or with --peer-address-template) "
                    "before adding it",
                )
            voters, learners = m.voters, tuple(sorted({*m.learners, target}))
        else:
            if target not in m.everyone:
                return m
            if target == node.id:
                raise TransferError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"node {node.id} leads and cannot remove itself: transfer leadership first "
                    "(`bullyproof member remove` does that for you)",
                )
            voters = tuple(v for v in m.voters if v != target)
            learners = tuple(x for x in m.learners if x != target)
        try:
            node.apply(elector.change_membership(node.now(), voters, learners))
        except MembershipRefused as exc:
            raise TransferError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None

        def done() -> bool:
            now_m = elector.membership
            there = target in now_m.voters if adding else target not in now_m.everyone
            return there and elector.membership_agreed()

        timeout_s = (timeout_ms or 4 * s.election_timeout_ms) / 1000
        try:
            async with asyncio.timeout(timeout_s):
                while not done():
                    if elector.view(node.now()).role != Role.LEADER:
                        raise TransferError(
                            grpc.StatusCode.ABORTED,
                            f"node {node.id} lost leadership during the change; it may or may not be "
                            "agreed: read the configuration (`bullyproof member list`) and try again",
                        )
                    self.configuration_moved.clear()
                    try:
                        async with asyncio.timeout(s.heartbeat_interval_ms / 1000):
                            await self.configuration_moved.wait()
                    except TimeoutError:
                        pass
        except TimeoutError:
            raise TransferError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the change was not agreed within {timeout_s:g} s (now {elector.membership.describe()}); "
                "it may still complete: read `bullyproof member list`",
            ) from None
        return elector.membership

    def not_leader_detail(self) -> str:
        node = self.node
        v = node.elector.view(node.now())
        leader = f"node {v.answer[0]} leads epoch {v.answer[1]}" if v.answer else "no leader is known"
        return f"node {node.id} is not the leader ({leader}); ask the leader"

    def resign(self, successor: int = 0) -> int | None:
        """Step down now (telling followers, and whom to let go first); the epoch given up, or None."""
        node = self.node
        v = node.elector.view(node.now())
        if v.role != Role.LEADER:
            return None
        node.apply(node.elector.resign(node.now(), successor))
        return v.epoch

    async def transfer(self, target: int, timeout_ms: int) -> tuple[int, int]:
        node, s = self.node, self.node.settings
        voters = getattr(node.elector, "members", s.members)  # the configuration's voters, where it can change
        peer = node.transport.peer(target) if target != node.id and target in voters and s.knows(target) else None
        if peer is None:
            others = [m for m in voters if m != node.id]
            raise TransferError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"target {target} must be another voter ({', '.join(map(str, others))})",
            )
        v = node.elector.view(node.now())
        if v.role != Role.LEADER:
            raise TransferError(grpc.StatusCode.FAILED_PRECONDITION, self.not_leader_detail())
        recent_ns = 2 * s.heartbeat_interval_ms * 1_000_000
        if not peer.reachable or time.monotonic_ns() - peer.last_heard_ns > recent_ns:
            # Checked before stepping down: an unreachable target leaves the current leader in place.
            raise TransferError(
                grpc.StatusCode.UNAVAILABLE,
                f"node {target} has not answered recently; node {node.id} keeps leading epoch {v.epoch}",
            )
        self.resign(successor=target)
        timeout_s = (timeout_ms or 4 * s.election_timeout_ms) / 1000
        try:
            async with asyncio.timeout(timeout_s):
                async for info in node.observe.watch():
                    if info.known and info.leader_id == target and info.epoch > v.epoch:
                        return info.leader_id, info.epoch
                    if info.known and info.leader_id != target:
                        break  # someone else won; report it
        except TimeoutError:
            pass
        answer = node.elector.view(node.now()).answer
        now = f"leader {answer[0]} epoch {answer[1]}" if answer else "no leader known"
        raise TransferError(grpc.StatusCode.ABORTED, f"node {target} did not take over (now: {now})")


class LeadershipServicer(pb_grpc.LeadershipServicer):
    """Thin: answers come from Observation, handovers from Handover. Any certificate of the cluster
    CA may read (the TLS handshake already refused every other); handovers need an admin's, or the
    node's own."""

    def __init__(self, node: LeadershipNode, handover: Handover) -> None:
        self.node = node
        self.handover = handover

    async def _refuse_if_failed(self, context) -> None:
        # After a fail-stop the view may show a promise the disk does not hold: answer nothing from it.
        if self.node.failed is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"node {self.node.id} is stopping: {self.node.failed}")

    async def GetLeader(self, request, context):
        await self._refuse_if_failed(context)
        return self.node.observe.leader_info()

    async def GetStatus(self, request, context):
        await self._refuse_if_failed(context)
        return self.node.observe.status()

    async def WatchLeader(self, request, context):
        await self._refuse_if_failed(context)
        async for info in self.node.observe.watch():
            yield info

    async def WatchEvents(self, request, context):
        """Read-only, as GetStatus: the TLS handshake already checked the caller's CA."""
        await self._refuse_if_failed(context)
        node = self.node
        unknown = sorted({k for k in request.kinds if k not in EVENT_KINDS})
        if unknown:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"kinds: {', '.join(repr(k) for k in unknown)} not a kind of event a node records "
                f"({', '.join(EVENT_KINDS)})",
            )
        if request.incarnation < 0:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"incarnation must be 0 or a node's start time in unix ns, got {request.incarnation}",
            )
        try:
            sub = node.events.subscribe(request.after_seq, request.kinds, request.incarnation)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except SubscribeRefused as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        incarnation = node.events.incarnation

        def message(event: Event, missed: int) -> pb.NodeEvent:
            return pb.NodeEvent(
                seq=event.seq,
                kind=event.kind,
                unix_ns=event.unix_ns,
                monotonic_ns=event.monotonic_ns,
                json=event.json,
                missed=missed,
                incarnation=incarnation,
            )

        try:
            while not node.stopping.is_set():
                batch = sub.take()
                if not batch:
                    await node.observe.until_changed_or_stopping(sub.ready)
                    continue
                for event, missed in batch:
                    yield message(event, missed)
        finally:
            node.events.unsubscribe(sub)

    async def _require_admin(self, context, rpc: str) -> None:
        """An admin, or the node's own certificate (the service beside node N acts as node N and may
        give up N's leadership): nobody else may move leadership."""
        node = self.node
        who = await require(context, node.settings.tls is not None, (*ADMIN, "node"), f"Leadership/{rpc}")
        if who is not None and who.kind == "node" and who.node_id != node.id:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Leadership/{rpc} needs an admin certificate or node {node.id}'s own; the caller has {who.uri}",
            )

    async def Resign(self, request, context):
        await self._require_admin(context, "Resign")
        await self._refuse_if_failed(context)
        epoch = self.handover.resign()
        if epoch is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, self.handover.not_leader_detail())
        return pb.ResignReply(epoch=epoch)

    async def TransferLeadership(self, request, context):
        await self._require_admin(context, "TransferLeadership")
        await self._refuse_if_failed(context)
        try:
            leader, epoch = await self.handover.transfer(request.target_id, request.timeout_ms)
        except TransferError as exc:
            await context.abort(exc.code, exc.detail)
        return pb.TransferReply(leader_id=leader, epoch=epoch)

    async def _require_admin_or_self(self, context, request) -> None:
        """ChangeMembership: an admin may change any member. Under --self-join a node's own certificate
        may add or remove that node, and no other (a pod asks for its own addition when it starts and
        its removal when its StatefulSet is scaled down). To a member's key holder that gives nothing
        it lacks: whoever holds node N's key can already act as node N (and N leaving is never worse
        for the others than N down). To the holder of a node certificate outside the configuration it
        gives a way in, first as a learner, which counts for nothing until it has acknowledged: under
        --self-join, a node certificate is an invitation to join (docs/operating.md). Nothing else
        passes: not another node, not node N's own certificate at its own server (as Resign and
        Transfer allow), not a client."""
        node = self.node
        what = "Leadership/ChangeMembership"
        who = await require(context, node.settings.tls is not None, (*ADMIN, "node"), what)
        if who is None or who.kind != "node":
            return
        if not node.settings.self_join:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{what} needs an admin certificate (node {node.id} runs without --self-join, so a "
                f"node may not change even its own membership); the caller has {who.uri}",
            )
        if who.node_id != request.node_id:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{what}: node {who.node_id}'s certificate may add or remove node {who.node_id} only, "
                f"not node {request.node_id}; other changes need an admin certificate",
            )

    async def ChangeMembership(self, request, context):
        await self._require_admin_or_self(context, request)
        await self._refuse_if_failed(context)
        try:
            m = await self.handover.change_membership(request.action, request.node_id, request.timeout_ms)
        except TransferError as exc:
            await context.abort(exc.code, exc.detail)
        return pb.MembershipReply(configuration=membership_to_pb(m), leader_id=self.node.id)
