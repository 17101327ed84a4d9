"""The election protocol as a pure state machine: messages and clock ticks in, messages and effects out.

No asyncio, no grpc, no clock, no global random: see docs/design.md. tests/unit/test_layering.py
enforces it. Every algorithm implements `Elector`; `modes.REGISTRY` is the one list of them.
"""

from .bully import BullyElector, ClassicBully, QuorumBully
from .elector import Elector
from .instants import GENERIC_INSTANTS, instants_of_output
from .membership import Membership, MembershipRefused
from .modes import DEFAULT_MODE, REGISTRY, Mode, ModeInfo, check_mode_options, make_elector, mode_info, mode_names
from .raft import RaftElector
from .types import (
    CLOCK_DRIFT_BOUND,
    PROMISE_REPLY_TYPES,
    REPLY_TYPE,
    BecameLeader,
    Config,
    ElectionStarted,
    Event,
    MembershipChanged,
    Message,
    MsgType,
    Output,
    PlantedBug,
    Promise,
    PromiseReleased,
    Reached,
    Reason,
    Role,
    Stats,
    SteppedDown,
    Timing,
    View,
    configuration_id,
)

__all__ = [
    "CLOCK_DRIFT_BOUND",
    "DEFAULT_MODE",
    "GENERIC_INSTANTS",
    "instants_of_output",
    "PROMISE_REPLY_TYPES",
    "REGISTRY",
    "REPLY_TYPE",
    "BecameLeader",
    "BullyElector",
    "ClassicBully",
    "Config",
    "ElectionStarted",
    "Elector",
    "Event",
    "Message",
    "Mode",
    "ModeInfo",
    "MsgType",
    "Output",
    "PlantedBug",
    "Promise",
    "PromiseReleased",
    "QuorumBully",
    "Reached",
    "RaftElector",
    "Reason",
    "Role",
    "Stats",
    "SteppedDown",
    "Timing",
    "View",
    "check_mode_options",
    "make_elector",
    "mode_info",
    "mode_names",
    "configuration_id",
    "Membership",
    "MembershipChanged",
    "MembershipRefused",
]
