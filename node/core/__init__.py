"""The election protocol as a pure state machine: messages and clock ticks in, messages and effects out.

No asyncio, no grpc, no clock, no global random: see DESIGN.md section 2. tests/unit/test_layering.py
enforces it.
"""

from .bully import BullyElector, ClassicBully, QuorumBully, make_elector
from .types import (
    REPLY_TYPE,
    BecameLeader,
    Config,
    ElectionStarted,
    Event,
    Message,
    Mode,
    MsgType,
    Output,
    PlantedBug,
    Promise,
    Role,
    Stats,
    SteppedDown,
    Timing,
    View,
)

Elector = BullyElector  # the one interface: tick, step, send_failed, resign, view

__all__ = [
    "REPLY_TYPE", "BecameLeader", "BullyElector", "ClassicBully", "Config", "ElectionStarted", "Elector",
    "Event", "Message", "Mode", "MsgType", "Output", "PlantedBug", "Promise", "QuorumBully", "Role",
    "Stats", "SteppedDown", "Timing", "View", "make_elector",
]
