"""The leader's duty: fenced writes to the store while this node leads with a valid lease."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import peer_channel
from node.core import Role
from node.runtime.port import DutyNode
from node.store.db import claim_key
from node.tls import STORE_NAME


@dataclass
class _Claimed:
    """The newest epoch whose claim was sent, and the newest whose claim was answered (or timed out)."""

    sent: int = 0
    answered: int = 0


class LeaderDuty:
    """Fenced writes while this node leads with a valid lease, over one channel to the store.

    The first store action in every epoch this node leads (elected, or moved to a fresh epoch by a
    reassert) is a claim of that epoch (key ``claim/<node>/<epoch>``), sent as soon as the view
    changes rather than after a write period: from the moment the store accepts it, any older
    leader's write still in flight is rejected. Duty writes follow every ``write_period_ms``, in an
    epoch only after its claim was answered (or timed out).
    """

    def __init__(self, node: DutyNode) -> None:
        self.node = node

    async def run(self) -> None:
        s = self.node.settings
        assert s.store
        async with peer_channel(s.store, s.heartbeat_interval_ms, s.tls, STORE_NAME) as ch:
            stub = pb_grpc.FencedStoreStub(ch)
            claimed = _Claimed()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._claim_loop(stub, claimed))
                group.create_task(self._duty_loop(stub, claimed))

    async def _claim_loop(self, stub: pb_grpc.FencedStoreStub, claimed: _Claimed) -> None:
        node = self.node
        while not node.stopping.is_set():
            changed = node.observe.view_changed  # taken before looking: a change from here on wakes us
            v = node.elector.view(node.now())
            if v.role == Role.LEADER and v.lease_valid and v.epoch > claimed.sent:
                claimed.sent = v.epoch
                await self._store_write(stub, v.epoch, claim_key(node.id, v.epoch), b"")
                claimed.answered = max(claimed.answered, v.epoch)
                continue
            await node.observe.until_changed_or_stopping(changed)

    async def _duty_loop(self, stub: pb_grpc.FencedStoreStub, claimed: _Claimed) -> None:
        node = self.node
        period_s = node.settings.write_period_ms / 1000
        counter = 0
        while not node.stopping.is_set():
            changed = node.observe.view_changed  # taken before looking: a change from here on wakes us
            if node.elector.view(node.now()).role != Role.LEADER:
                # A follower has nothing to write: no timer every period, only a wake when its role changes.
                await node.observe.until_changed_or_stopping(changed)
                continue
            await asyncio.sleep(period_s)
            v = node.elector.view(node.now())  # re-checked right before writing (pauses happen)
            if v.role != Role.LEADER or not v.lease_valid or v.epoch > claimed.answered:
                continue
            counter += 1
            await self._store_write(stub, v.epoch, f"duty/{node.id}/{v.epoch}/{counter}", str(counter).encode())

    async def _store_write(self, stub: pb_grpc.FencedStoreStub, epoch: int, key: str, value: bytes) -> None:
        """One fenced write, recorded in the history as a "write" event when its answer comes."""
        node = self.node
        req = pb.WriteRequest(writer_id=node.id, epoch=epoch, key=key, value=value)
        sent_ns = time.monotonic_ns()
        try:
            reply = await stub.Write(req, timeout=max(0.5, node.transport.rpc_timeout_s))
        except grpc.aio.AioRpcError as exc:
            node.events.record(
                "write", epoch=epoch, key=key, accepted=None, seq=None, error=exc.code().name, sent_ns=sent_ns
            )
            return
        node.events.record(
            "write",
            epoch=epoch,
            key=key,
            accepted=reply.accepted,
            seq=reply.seq,
            error=reply.reason or None,
            sent_ns=sent_ns,
        )
        if not reply.accepted:
            node.events.log("store rejected write", epoch, level="warning", reason=reply.reason, key=key)
