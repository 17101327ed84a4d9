"""--self-join: a node in no configuration asks the leader to add it (a StatefulSet scaled up).

Members manage their own membership: whoever runs (a pod of the StatefulSet) is meant to be a member.
While this node is in no configuration (started outside it, or removed before it restarted), it asks
the members it knows of who leads, at their client ports (--client-address-template), and asks that
leader to add it, with its own certificate (the leader grants a node's request for itself only:
node.runtime.leadership). The leader adds it as a learner and promotes it once it has acknowledged
the configuration that names it: the same two steps as `bullyproof member add`, through the protocol.

A node told to leave (`bullyproof leave`, a preStop hook, writes LEAVING_FILE into the state
directory before it asks for the removal) asks no more until it restarts: otherwise it would add
itself back between its removal and its stop.
"""

from __future__ import annotations

import asyncio

import grpc

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import client_channel
from node.runtime.port import JoiningNode
from node.runtime.state import LEAVING_FILE
from node.tls import node_name


class SelfJoin:
    def __init__(self, node: JoiningNode) -> None:
        self.node = node
        self.last_note = ""

    def leaving(self) -> bool:
        return (self.node.settings.state_dir / LEAVING_FILE).exists()

    def wanted(self) -> bool:
        node = self.node
        return node.failed is None and node.observe.outside() and not self.leaving()

    async def run(self) -> None:
        node, s = self.node, self.node.settings
        (s.state_dir / LEAVING_FILE).unlink(missing_ok=True)  # a stop that asked to leave is over
        pause_s = s.election_timeout_ms / 1000
        while not node.stopping.is_set():
            if self.wanted():
                await self.ask()
            try:
                await asyncio.wait_for(node.stopping.wait(), pause_s)
            except TimeoutError:
                pass

    def candidates(self) -> list[int]:
        """Whom to ask who leads: the configuration it last ran (a removed node's), --voters, --peers."""
        node, s = self.node, self.node.settings
        return sorted({*node.elector.membership.audience, *s.voters, *s.peers} - {node.id})

    async def _leader_info(self, node_id: int, timeout_s: float) -> pb.LeaderInfo | None:
        s = self.node.settings
        address = s.client_address(node_id)
        if address is None:
            return None
        try:
            async with client_channel(address, s.tls, node_name(node_id)) as ch:
                return await pb_grpc.LeadershipStub(ch).GetLeader(pb.GetLeaderRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return None

    async def ask(self) -> None:
        """One round: find the leader among the candidates, ask it to add this node, note the outcome."""
        node, s = self.node, self.node.settings
        asked = self.candidates()
        if not asked:
            self.note("knows no member to ask who leads: give --voters or --peers", "warning")
            return
        views = await asyncio.gather(*(self._leader_info(c, s.election_timeout_ms / 1000) for c in asked))
        claims = [
            (info.epoch, c)
            for c, info in zip(asked, views)
            if info is not None and info.role == pb.ROLE_LEADER and info.lease_valid
        ]
        if not claims:
            self.note(
                f"outside the configuration, and none of nodes {','.join(map(str, asked))} leads now: "
                "asking again shortly",
                "warning",
            )
            return
        leader = max(claims)[1]
        address = s.client_address(leader)
        assert address is not None
        self.note(f"outside the configuration: asking node {leader} (the leader) to add node {node.id}")
        request = pb.MembershipRequest(action=pb.MembershipRequest.ACTION_ADD, node_id=node.id)
        try:
            async with client_channel(address, s.tls, node_name(leader)) as ch:
                reply = await pb_grpc.LeadershipStub(ch).ChangeMembership(
                    request, timeout=4 * s.election_timeout_ms / 1000 + 2
                )
        except grpc.aio.AioRpcError as exc:
            self.note(f"node {leader} did not add node {node.id}: {exc.code().name}: {exc.details()}", "warning")
            return
        voters = ",".join(map(str, reply.configuration.voters))
        self.note(f"node {leader} added node {node.id}: voters {voters}")

    def note(self, msg: str, level: str = "info") -> None:
        """Log an outcome once, not at every attempt while it stays the same."""
        if msg != self.last_note:
            self.last_note = msg
            node = self.node
            node.events.log(msg, node.epoch(), level=level, event="self_join")
