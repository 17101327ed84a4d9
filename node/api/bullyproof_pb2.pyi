from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_FOLLOWER: _ClassVar[Role]
    ROLE_CANDIDATE: _ClassVar[Role]
    ROLE_LEADER: _ClassVar[Role]

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    MODE_CLASSIC: _ClassVar[Mode]
    MODE_QUORUM: _ClassVar[Mode]
    MODE_RING: _ClassVar[Mode]
    MODE_RAFT: _ClassVar[Mode]
ROLE_UNSPECIFIED: Role
ROLE_FOLLOWER: Role
ROLE_CANDIDATE: Role
ROLE_LEADER: Role
MODE_UNSPECIFIED: Mode
MODE_CLASSIC: Mode
MODE_QUORUM: Mode
MODE_RING: Mode
MODE_RAFT: Mode

class PeerMessage(_message.Message):
    __slots__ = ("sender_id", "receiver_id", "epoch", "round", "resigning", "successor_id", "ring_ids", "initiator_id", "lease_remaining_ms", "transfer", "lease_ms", "configuration_id", "configuration")
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    RESIGNING_FIELD_NUMBER: _ClassVar[int]
    SUCCESSOR_ID_FIELD_NUMBER: _ClassVar[int]
    RING_IDS_FIELD_NUMBER: _ClassVar[int]
    INITIATOR_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_REMAINING_MS_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    sender_id: int
    receiver_id: int
    epoch: int
    round: int
    resigning: bool
    successor_id: int
    ring_ids: _containers.RepeatedScalarFieldContainer[int]
    initiator_id: int
    lease_remaining_ms: int
    transfer: bool
    lease_ms: int
    configuration_id: int
    configuration: Configuration
    def __init__(self, sender_id: _Optional[int] = ..., receiver_id: _Optional[int] = ..., epoch: _Optional[int] = ..., round: _Optional[int] = ..., resigning: _Optional[bool] = ..., successor_id: _Optional[int] = ..., ring_ids: _Optional[_Iterable[int]] = ..., initiator_id: _Optional[int] = ..., lease_remaining_ms: _Optional[int] = ..., transfer: _Optional[bool] = ..., lease_ms: _Optional[int] = ..., configuration_id: _Optional[int] = ..., configuration: _Optional[_Union[Configuration, _Mapping]] = ...) -> None: ...

class Configuration(_message.Message):
    __slots__ = ("voters", "learners", "index", "term", "previous", "notify")
    VOTERS_FIELD_NUMBER: _ClassVar[int]
    LEARNERS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_FIELD_NUMBER: _ClassVar[int]
    voters: _containers.RepeatedScalarFieldContainer[int]
    learners: _containers.RepeatedScalarFieldContainer[int]
    index: int
    term: int
    previous: _containers.RepeatedScalarFieldContainer[int]
    notify: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, voters: _Optional[_Iterable[int]] = ..., learners: _Optional[_Iterable[int]] = ..., index: _Optional[int] = ..., term: _Optional[int] = ..., previous: _Optional[_Iterable[int]] = ..., notify: _Optional[_Iterable[int]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("sender_id", "receiver_id", "epoch", "round", "granted", "promised_epoch", "configuration_id", "configuration", "refusal")
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    PROMISED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    sender_id: int
    receiver_id: int
    epoch: int
    round: int
    granted: bool
    promised_epoch: int
    configuration_id: int
    configuration: Configuration
    refusal: str
    def __init__(self, sender_id: _Optional[int] = ..., receiver_id: _Optional[int] = ..., epoch: _Optional[int] = ..., round: _Optional[int] = ..., granted: _Optional[bool] = ..., promised_epoch: _Optional[int] = ..., configuration_id: _Optional[int] = ..., configuration: _Optional[_Union[Configuration, _Mapping]] = ..., refusal: _Optional[str] = ...) -> None: ...

class PeerReply(_message.Message):
    __slots__ = ("ack",)
    ACK_FIELD_NUMBER: _ClassVar[int]
    ack: Ack
    def __init__(self, ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("after_seq", "kinds", "incarnation")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    kinds: _containers.RepeatedScalarFieldContainer[str]
    incarnation: int
    def __init__(self, after_seq: _Optional[int] = ..., kinds: _Optional[_Iterable[str]] = ..., incarnation: _Optional[int] = ...) -> None: ...

class NodeEvent(_message.Message):
    __slots__ = ("seq", "kind", "unix_ns", "monotonic_ns", "json", "missed", "incarnation")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    MONOTONIC_NS_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: str
    unix_ns: int
    monotonic_ns: int
    json: str
    missed: int
    incarnation: int
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[str] = ..., unix_ns: _Optional[int] = ..., monotonic_ns: _Optional[int] = ..., json: _Optional[str] = ..., missed: _Optional[int] = ..., incarnation: _Optional[int] = ...) -> None: ...

class MembershipRequest(_message.Message):
    __slots__ = ("action", "node_id", "timeout_ms")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[MembershipRequest.Action]
        ACTION_ADD: _ClassVar[MembershipRequest.Action]
        ACTION_REMOVE: _ClassVar[MembershipRequest.Action]
    ACTION_UNSPECIFIED: MembershipRequest.Action
    ACTION_ADD: MembershipRequest.Action
    ACTION_REMOVE: MembershipRequest.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    action: MembershipRequest.Action
    node_id: int
    timeout_ms: int
    def __init__(self, action: _Optional[_Union[MembershipRequest.Action, str]] = ..., node_id: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class MembershipReply(_message.Message):
    __slots__ = ("configuration", "leader_id")
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    configuration: Configuration
    leader_id: int
    def __init__(self, configuration: _Optional[_Union[Configuration, _Mapping]] = ..., leader_id: _Optional[int] = ...) -> None: ...

class WatchLeaderRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResignRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResignReply(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class TransferRequest(_message.Message):
    __slots__ = ("target_id", "timeout_ms")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    timeout_ms: int
    def __init__(self, target_id: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class TransferReply(_message.Message):
    __slots__ = ("leader_id", "epoch")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    leader_id: int
    epoch: int
    def __init__(self, leader_id: _Optional[int] = ..., epoch: _Optional[int] = ...) -> None: ...

class GetLeaderRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LeaderInfo(_message.Message):
    __slots__ = ("known", "leader_id", "epoch", "node_id", "role", "lease_valid", "view_time_unix_ns", "outside")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LEASE_VALID_FIELD_NUMBER: _ClassVar[int]
    VIEW_TIME_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    OUTSIDE_FIELD_NUMBER: _ClassVar[int]
    known: bool
    leader_id: int
    epoch: int
    node_id: int
    role: Role
    lease_valid: bool
    view_time_unix_ns: int
    outside: bool
    def __init__(self, known: _Optional[bool] = ..., leader_id: _Optional[int] = ..., epoch: _Optional[int] = ..., node_id: _Optional[int] = ..., role: _Optional[_Union[Role, str]] = ..., lease_valid: _Optional[bool] = ..., view_time_unix_ns: _Optional[int] = ..., outside: _Optional[bool] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PeerView(_message.Message):
    __slots__ = ("id", "address", "last_heard_ms", "reachable", "configuration_refusal")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARD_MS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_REFUSAL_FIELD_NUMBER: _ClassVar[int]
    id: int
    address: str
    last_heard_ms: int
    reachable: bool
    configuration_refusal: str
    def __init__(self, id: _Optional[int] = ..., address: _Optional[str] = ..., last_heard_ms: _Optional[int] = ..., reachable: _Optional[bool] = ..., configuration_refusal: _Optional[str] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node_id", "role", "mode", "epoch", "promised_epoch", "promised_to", "has_leader", "leader_id", "lease_valid", "peers", "elections_started", "elections_won", "stepdowns", "messages_sent", "messages_received", "leader_changes", "uptime_ms", "handovers_won", "configuration_id", "configuration", "configuration_agreed", "heartbeat_interval_ms", "election_timeout_ms")
    class MessagesSentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class MessagesReceivedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    PROMISED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PROMISED_TO_FIELD_NUMBER: _ClassVar[int]
    HAS_LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_VALID_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    ELECTIONS_STARTED_FIELD_NUMBER: _ClassVar[int]
    ELECTIONS_WON_FIELD_NUMBER: _ClassVar[int]
    STEPDOWNS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_SENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    LEADER_CHANGES_FIELD_NUMBER: _ClassVar[int]
    UPTIME_MS_FIELD_NUMBER: _ClassVar[int]
    HANDOVERS_WON_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_AGREED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    ELECTION_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    role: Role
    mode: Mode
    epoch: int
    promised_epoch: int
    promised_to: int
    has_leader: bool
    leader_id: int
    lease_valid: bool
    peers: _containers.RepeatedCompositeFieldContainer[PeerView]
    elections_started: int
    elections_won: int
    stepdowns: int
    messages_sent: _containers.ScalarMap[str, int]
    messages_received: _containers.ScalarMap[str, int]
    leader_changes: int
    uptime_ms: int
    handovers_won: int
    configuration_id: int
    configuration: Configuration
    configuration_agreed: bool
    heartbeat_interval_ms: int
    election_timeout_ms: int
    def __init__(self, node_id: _Optional[int] = ..., role: _Optional[_Union[Role, str]] = ..., mode: _Optional[_Union[Mode, str]] = ..., epoch: _Optional[int] = ..., promised_epoch: _Optional[int] = ..., promised_to: _Optional[int] = ..., has_leader: _Optional[bool] = ..., leader_id: _Optional[int] = ..., lease_valid: _Optional[bool] = ..., peers: _Optional[_Iterable[_Union[PeerView, _Mapping]]] = ..., elections_started: _Optional[int] = ..., elections_won: _Optional[int] = ..., stepdowns: _Optional[int] = ..., messages_sent: _Optional[_Mapping[str, int]] = ..., messages_received: _Optional[_Mapping[str, int]] = ..., leader_changes: _Optional[int] = ..., uptime_ms: _Optional[int] = ..., handovers_won: _Optional[int] = ..., configuration_id: _Optional[int] = ..., configuration: _Optional[_Union[Configuration, _Mapping]] = ..., configuration_agreed: _Optional[bool] = ..., heartbeat_interval_ms: _Optional[int] = ..., election_timeout_ms: _Optional[int] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("writer_id", "epoch", "key", "value")
    WRITER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    writer_id: int
    epoch: int
    key: str
    value: bytes
    def __init__(self, writer_id: _Optional[int] = ..., epoch: _Optional[int] = ..., key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class WriteReply(_message.Message):
    __slots__ = ("accepted", "highest_epoch", "seq", "reason")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    HIGHEST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    highest_epoch: int
    seq: int
    reason: str
    def __init__(self, accepted: _Optional[bool] = ..., highest_epoch: _Optional[int] = ..., seq: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ReadLogRequest(_message.Message):
    __slots__ = ("after_seq", "limit")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    limit: int
    def __init__(self, after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("seq", "writer_id", "epoch", "key", "value", "accepted", "reason", "recorded_unix_ns", "recorded_monotonic_ns")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    WRITER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RECORDED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    RECORDED_MONOTONIC_NS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    writer_id: int
    epoch: int
    key: str
    value: bytes
    accepted: bool
    reason: str
    recorded_unix_ns: int
    recorded_monotonic_ns: int
    def __init__(self, seq: _Optional[int] = ..., writer_id: _Optional[int] = ..., epoch: _Optional[int] = ..., key: _Optional[str] = ..., value: _Optional[bytes] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., recorded_unix_ns: _Optional[int] = ..., recorded_monotonic_ns: _Optional[int] = ...) -> None: ...

class ReadLogReply(_message.Message):
    __slots__ = ("entries", "highest_epoch", "highest_epoch_writer")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    HIGHEST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    HIGHEST_EPOCH_WRITER_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    highest_epoch: int
    highest_epoch_writer: int
    def __init__(self, entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ..., highest_epoch: _Optional[int] = ..., highest_epoch_writer: _Optional[int] = ...) -> None: ...
