"""What each of the runtime's jobs may use of the node: one port per job, member by member.

NodeRuntime (node.py) builds the jobs, each in its own module (peers.py, observe.py, leadership.py,
duty.py, joining.py), and hands itself to each as `node`. A job imports its port from here, never
node.py: nothing in the runtime depends on the class that assembles it, and a job that needs more of
the node says so here first. tests/unit/test_runtime_ports.py checks both sides: NodeRuntime has
every member of every port, and each job uses exactly the members its port names.

Two jobs are seen by others: the peer transport (its links and counters: `Links`) and the
observation (the view as others see it: `Views`). Each names what the other jobs use of it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Protocol, runtime_checkable

from node.api import bullyproof_pb2 as pb
from node.config import NodeSettings
from node.core import Elector, Message, Output
from node.runtime.events import EventLog
from node.runtime.metrics import NodeMetrics
from node.runtime.state import PersistError


@runtime_checkable
class Link(Protocol):
    """One peer link as the other jobs read it (peers.PeerState)."""

    address: str
    last_heard_ns: int
    reachable: bool
    configuration_refusal: str


@runtime_checkable
class Links(Protocol):
    """The peer transport (peers.PeerTransport), as observe, leadership and duty use it."""

    peers: Mapping[int, Link]
    sent: Counter[str]
    received: Counter[str]
    configuration: str
    rpc_timeout_s: float

    def peer(self, pid: int) -> Link | None: ...


@runtime_checkable
class Views(Protocol):
    """The observation (observe.Observation), as leadership, duty and joining use it."""

    view_changed: asyncio.Event

    async def until_changed_or_stopping(self, changed: asyncio.Event) -> None: ...

    def outside(self) -> bool: ...

    def watch(self) -> AsyncIterator[pb.LeaderInfo]: ...

    def leader_info(self) -> pb.LeaderInfo: ...

    def status(self) -> pb.NodeStatus: ...


@runtime_checkable
class Node(Protocol):
    """What every job reads: who the node is, how it was started, and its elector."""

    id: int
    settings: NodeSettings
    elector: Elector


@runtime_checkable
class PeersNode(Node, Protocol):
    """peers.PeerTransport: sends the elector's messages, takes the peers', and carries out the answers."""

    events: EventLog
    metrics: NodeMetrics
    failed: PersistError | None
    records_promises: bool

    def now(self) -> int: ...

    def epoch(self) -> int: ...

    def tick_to_ns(self, tick: int) -> int: ...

    def apply(self, out: Output, reply_to: Message | None = None) -> Message | None: ...


@runtime_checkable
class ObserveNode(Node, Protocol):
    """observe.Observation: records the view, serves WatchLeader, health and GetStatus."""

    events: EventLog
    metrics: NodeMetrics
    stopping: asyncio.Event
    started_unix: float
    transport: Links

    def now(self) -> int: ...

    def tick_to_ns(self, tick: int) -> int: ...


@runtime_checkable
class LeadershipNode(Node, Protocol):
    """leadership.Handover and LeadershipServicer: resign, transfer, membership changes, the service,
    and its WatchEvents stream of the history events."""

    events: EventLog
    failed: PersistError | None
    stopping: asyncio.Event
    transport: Links
    observe: Views

    def now(self) -> int: ...

    def apply(self, out: Output, reply_to: Message | None = None) -> Message | None: ...


@runtime_checkable
class DutyNode(Node, Protocol):
    """duty.LeaderDuty: fenced writes to the store while leading with a valid lease."""

    events: EventLog
    stopping: asyncio.Event
    transport: Links
    observe: Views

    def now(self) -> int: ...


@runtime_checkable
class JoiningNode(Node, Protocol):
    """joining.SelfJoin: asks the leader to add this node while it is in no configuration."""

    events: EventLog
    failed: PersistError | None
    stopping: asyncio.Event
    observe: Views

    def epoch(self) -> int: ...
