"""The registry of election modes: the one list of algorithms in the codebase.

Everything that needs to know which modes exist (the CLI's choices, the cluster description, the
runtime, the simulator, the checkers, the history) asks this module. Adding a mode means: a core
module with an ElectorKit subclass (its message types in types.py), one entry here, its RPCs in the
.proto (the mode's RPCs follow from its dispatch table; node/runtime/wire.py only if its messages carry
fields no mode had before), and its scenarios.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from .bully import ClassicBully, QuorumBully
from .elector import Elector
from .instants import GENERIC_INSTANTS
from .kit import ElectorKit
from .raft import RaftElector
from .ring import RingElector
from .types import Config, PlantedBug, Promise


@dataclass(frozen=True)
class ModeInfo:
    name: str
    summary: str
    factory: type[ElectorKit]  # (config, promise, rng, now) -> the Elector
    # Acknowledgements are promises with a window (Timing.follower_promise_ticks): the checkers judge
    # leadership from the followers' grants (P3g), and P1/P3 must hold.
    promises: bool
    # On/off switches this mode takes (`--mode-option NAME`), each with what it does.
    options: dict[str, str] = field(default_factory=dict)
    # The planted bugs (tests only) its elector honours; the store's own applies to every mode.
    planted_bugs: frozenset[PlantedBug] = frozenset()

    @property
    def transfers(self) -> bool:
        """Can leadership be handed over on request (Resign, TransferLeadership)? The elector says."""
        return self.factory.TRANSFERS

    @property
    def membership_changes(self) -> bool:
        """Can its configuration change while it runs (members added, removed; node.core.membership)?"""
        return self.factory.CHANGES_MEMBERSHIP

    @property
    def instants(self) -> dict[str, str]:
        """Every protocol instant of this mode, by name, with what it means (node.core.instants)."""
        return {**GENERIC_INSTANTS, **getattr(self.factory, "INSTANTS", {})}


# Which planted bugs live in which elector (each names its mode in node/core/types.py).
_RAFT_BUGS = frozenset(
    {
        PlantedBug.TERM_ONLY_PERSIST,
        PlantedBug.VOTE_WINDOW_IS_LEASE,
        PlantedBug.LEASE_CHECK_ON_TICK,
        PlantedBug.LATE_VOTE_UNTIL_DEADLINE,
        PlantedBug.RELEASE_ANY_TERM,
        PlantedBug.VOTE_BY_WINDOW,
        PlantedBug.LEASE_FROM_WIN,
        PlantedBug.PERSIST_BEFORE_SELF_VOTE,
    }
)
# Members running different timings: both electors that hold promises.
_TIMING_BUGS = frozenset({PlantedBug.ANNOUNCED_LEASE_IGNORED, PlantedBug.HOLD_NOT_PERSISTED})
# Membership changes: the kit's configuration part, in every mode that changes membership.
MEMBERSHIP_BUGS = frozenset(
    {
        PlantedBug.NEW_CONFIGURATION_RELEASES,
        PlantedBug.MEMBERSHIP_NOT_PERSISTED,
        PlantedBug.REMOVED_STILL_COUNTED,
        PlantedBug.ADOPTS_ANY_CONFIGURATION,
    }
)
_QUORUM_BUGS = frozenset(PlantedBug) - _RAFT_BUGS
_RAFT_BUGS |= _TIMING_BUGS | MEMBERSHIP_BUGS

REGISTRY: dict[str, ModeInfo] = {
    info.name: info
    for info in (
        ModeInfo(
            "classic", "textbook Bully: the highest reachable id wins without consent", ClassicBully, promises=False
        ),
        ModeInfo(
            "quorum",
            "Bully ordering with majority-acknowledged leadership, leases and durable promises",
            QuorumBully,
            promises=True,
            planted_bugs=_QUORUM_BUGS,
        ),
        ModeInfo(
            "ring",
            "textbook Ring election (Chang-Roberts): a token collects the live ids, the highest leads; "
            "no consent, no lease",
            RingElector,
            promises=False,
        ),
        ModeInfo(
            "raft",
            "Raft election (no log): randomized timeouts, PreVote, one durable vote per term, CheckQuorum leases",
            RaftElector,
            promises=True,
            options={
                "no-pre-vote": "campaign without a PreVote round first (a rejoining node may depose a healthy leader)"
            },
            planted_bugs=_RAFT_BUGS | {PlantedBug.STALE_STORE},
        ),
    )
}

DEFAULT_MODE = "quorum"

# The names as an enum, for code that likes Mode.QUORUM; built from the registry, not a second list.
Mode = enum.Enum("Mode", {name.upper(): name for name in REGISTRY}, type=str)  # type: ignore[misc]


def mode_info(mode: str) -> ModeInfo:
    try:
        return REGISTRY[str(Mode(mode).value)]
    except ValueError:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(REGISTRY)}") from None


def mode_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def check_mode_options(mode: str, options: frozenset[str]) -> None:
    """ValueError naming what the mode takes, if it does not take every one of `options`."""
    info = mode_info(mode)
    unknown = sorted(set(options) - info.options.keys())
    if unknown:
        takes = ", ".join(info.options) if info.options else "none"
        raise ValueError(f"mode {info.name} has no option {', '.join(map(repr, unknown))} (it takes: {takes})")


def make_elector(mode: str, config: Config, promise: Promise, rng: random.Random, now: int) -> Elector:
    """The one factory the runtime and the simulator use."""
    return mode_info(mode).factory(config, promise, rng, now)
