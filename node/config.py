"""Node settings: parsed and checked once, with one-line errors that name the problem."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.core import CLOCK_DRIFT_BOUND, Mode, PlantedBug, Timing, check_mode_options, mode_info
from node.timing import DEFAULT_TIMING, TimingDefaults
from node.tls import Identity, Tls, TlsError, check_holder

__all__ = ["DEFAULT_TIMING", "TimingDefaults"]  # the runtime's default timing (node/timing.py), read from here

# Planted bugs exist to prove the checkers work. Only a test harness sets this variable; no config
# file, flag default or compose service can switch a bug on without it.
PLANTED_BUGS_ENV = "BULLYPROOF_TEST_ONLY_PLANTED_BUGS"


class ConfigError(ValueError):
    """A setting is wrong; the message says which and why, in one line."""


def parse_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{what} {text!r} is not HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what} {text!r} has a non-numeric port") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} {text!r} has port {port} outside 0..65535")
    return host, port


def parse_peers(text: str, self_id: int) -> dict[int, str]:
    """'2=127.0.0.1:7002,3=127.0.0.1:7003' -> {2: '127.0.0.1:7002', 3: ...}."""
    peers: dict[int, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        ident, sep, address = item.partition("=")
        if not sep:
            raise ConfigError(f"peer {item!r} is not ID=HOST:PORT")
        try:
            peer_id = int(ident)
        except ValueError:
            raise ConfigError(f"peer id {ident!r} is not an integer") from None
        if peer_id <= 0:
            raise ConfigError(f"peer id {peer_id} must be positive")
        if peer_id == self_id:
            raise ConfigError(f"peer list names this node's own id {self_id}")
        if peer_id in peers:
            raise ConfigError(f"peer id {peer_id} appears twice")
        parse_address(address, f"peer {peer_id} address")
        peers[peer_id] = address
    return peers


# Where a member is, from its id alone: "bullyproof-{ordinal}.bullyproof:7000" (a StatefulSet's pod
# NAME-N runs node N+1 under the headless Service NAME). Only these two names are replaced.
TEMPLATE_FIELDS = {"{id}": lambda node_id: node_id, "{ordinal}": lambda node_id: node_id - 1}


def expand_address_template(template: str, node_id: int) -> str:
    """The address `template` gives node `node_id`: {id} is its id, {ordinal} its id - 1."""
    for name, value in TEMPLATE_FIELDS.items():
        template = template.replace(name, str(value(node_id)))
    return template


def check_address_template(template: str, what: str) -> None:
    """A template names the node ({id} or {ordinal}), replaces nothing else, and makes HOST:PORT."""
    if not any(name in template for name in TEMPLATE_FIELDS):
        raise ConfigError(
            f"{what} {template!r} names no node: put {{id}} (the node's id) or {{ordinal}} "
            "(its id - 1, a StatefulSet pod's ordinal) in it"
        )
    rest = template
    for name in TEMPLATE_FIELDS:
        rest = rest.replace(name, "")
    if "{" in rest or "}" in rest:
        raise ConfigError(f"{what} {template!r}: only {{id}} and {{ordinal}} are replaced")
    parse_address(expand_address_template(template, 1), what)


def parse_planted_bugs(names: list[str], environ: dict[str, str] | None = None) -> frozenset[PlantedBug]:
    if not names:
        return frozenset()
    environ = os.environ if environ is None else environ
    if environ.get(PLANTED_BUGS_ENV) != "1":
        raise ConfigError(f"planted bugs are test-only: set {PLANTED_BUGS_ENV}=1 in a test harness to use them")
    try:
        return frozenset(PlantedBug(n) for n in names)
    except ValueError as exc:
        raise ConfigError(f"{exc}; known: {', '.join(b.value for b in PlantedBug)}") from None


# Peers refuse an announced lease over 10 minutes (node.runtime.wire.MAX_LEASE_MS); a lease is 0.7
# election timeouts, so a node with a longer timeout than this could never lead.
MAX_ELECTION_TIMEOUT_MS = 10 * 60 * 1000


def check_timings(
    heartbeat_interval_ms: int, election_timeout_ms: int, tick_ms: int = DEFAULT_TIMING.tick_ms
) -> Timing:
    if heartbeat_interval_ms <= 0 or election_timeout_ms <= 0:
        raise ConfigError("--heartbeat-interval-ms and --election-timeout-ms must be positive")
    if election_timeout_ms > MAX_ELECTION_TIMEOUT_MS:
        raise ConfigError(
            f"--election-timeout-ms ({election_timeout_ms}) is over {MAX_ELECTION_TIMEOUT_MS} "
            "(10 minutes): peers refuse a lease that long"
        )
    if election_timeout_ms < 3 * heartbeat_interval_ms:
        raise ConfigError(
            f"--election-timeout-ms ({election_timeout_ms}) must be at least 3x "
            f"--heartbeat-interval-ms ({heartbeat_interval_ms}) so a lease survives a lost heartbeat"
        )
    if not 1 <= tick_ms <= heartbeat_interval_ms:
        raise ConfigError(f"--tick-ms must be between 1 and the heartbeat interval, got {tick_ms}")
    try:
        timing = Timing.from_ms(heartbeat_interval_ms, election_timeout_ms, tick_ms)
    except ValueError as exc:
        raise ConfigError(f"timings do not fit together: {exc}") from None
    if timing.drift_margin < CLOCK_DRIFT_BOUND:
        # Ticks round the lease and the promise; too few ticks per election timeout leave them too close.
        raise ConfigError(
            f"--election-timeout-ms {election_timeout_ms} with --tick-ms {tick_ms} leaves a lease of "
            f"{timing.leader_lease_ticks} and a promise of {timing.follower_promise_ticks} ticks: safe only while "
            f"clocks drift less than {timing.drift_margin:.1%} (need {CLOCK_DRIFT_BOUND:.0%}); "
            "use a smaller --tick-ms or a longer election timeout"
        )
    return timing


@dataclass(frozen=True)
class NodeSettings:
    node_id: int
    peer_listen: str  # where the Peer service listens (what proxies point at)
    client_listen: str  # Leadership, health and reflection, for other services and the observer
    peers: dict[int, str]  # id -> address this node dials for that peer (maybe a proxy)
    mode: Mode
    state_dir: Path
    heartbeat_interval_ms: int = DEFAULT_TIMING.heartbeat_interval_ms
    election_timeout_ms: int = DEFAULT_TIMING.election_timeout_ms
    tick_ms: int = DEFAULT_TIMING.tick_ms
    store: str | None = None
    write_period_ms: int = DEFAULT_TIMING.write_period_ms
    preempt_hold_down_ms: int = DEFAULT_TIMING.preempt_hold_down_ms
    events_path: Path | None = None
    metrics_listen: str | None = None  # HOST:PORT for Prometheus /metrics over HTTP; None = no server
    planted_bugs: frozenset[PlantedBug] = field(default_factory=frozenset)
    mode_options: frozenset[str] = field(default_factory=frozenset)  # --mode-option, e.g. raft's no-pre-vote
    tls: Tls | None = None  # this node's certificate (mutual TLS on both ports and to the store); None: --insecure
    # The configuration it starts with (--voters; empty: every member of --peers and itself), or none
    # at all (--join: it waits to be added). Once it has promised anything, its durable configuration
    # wins over both (node.core.membership).
    voters: tuple[int, ...] = ()
    join: bool = False
    # Where to dial a member without an entry in `peers`, from its id (expand_address_template); with
    # it, any id may be a member: the configuration, not a list, says whom the node counts (quorum).
    peer_address_template: str | None = None
    # Where members serve Leadership (their client ports), from their ids: what --self-join asks.
    client_address_template: str | None = None
    # Members manage their own membership (Kubernetes, node.runtime.joining): while this node is in no
    # configuration it asks the leader to add it, and it grants a node certificate's request to add or
    # remove that node itself (node.runtime.leadership). A node not in --voters starts outside.
    self_join: bool = False

    def __post_init__(self) -> None:
        if self.node_id <= 0:
            raise ConfigError(f"--id must be a positive integer, got {self.node_id}")
        try:
            check_mode_options(self.mode, self.mode_options)
        except ValueError as exc:
            raise ConfigError(f"--mode-option: {exc}") from None
        parse_address(self.peer_listen, "--listen")
        parse_address(self.client_listen, "--client-listen")
        if self.store:
            parse_address(self.store, "--store")
        if self.metrics_listen is not None:
            parse_address(self.metrics_listen, "--metrics-listen")
        check_timings(self.heartbeat_interval_ms, self.election_timeout_ms, self.tick_ms)
        if self.write_period_ms <= 0:
            raise ConfigError(f"--write-period-ms must be positive, got {self.write_period_ms}")
        if self.preempt_hold_down_ms < 0:
            raise ConfigError(
                f"--preempt-hold-down-ms must be >= 0 (0 = never preempt), got {self.preempt_hold_down_ms}"
            )
        changes = mode_info(self.mode).membership_changes
        if (self.voters or self.join) and not changes:
            raise ConfigError(
                f"--voters and --join need a mode that changes membership (quorum), not {self.mode.value}"
            )
        for flag, template in (
            ("--peer-address-template", self.peer_address_template),
            ("--client-address-template", self.client_address_template),
        ):
            if template is not None:
                if not changes:
                    raise ConfigError(
                        f"{flag} needs a mode that changes membership (quorum), not {self.mode.value}: "
                        "the others keep their --peers list"
                    )
                check_address_template(template, flag)
        if self.self_join and self.client_address_template is None:
            raise ConfigError("--self-join asks the leader at its client address: give --client-address-template")
        if self.voters and self.join:
            raise ConfigError(
                "--join starts a node outside the configuration; --voters names the configuration: give one of them"
            )
        unknown = sorted(set(self.voters) - set(self.members))
        if unknown and self.peer_address_template is None:
            raise ConfigError(f"--voters names {','.join(map(str, unknown))}, not in --peers (or this node's --id)")
        if self.voters and self.node_id not in self.voters and not self.self_join:
            raise ConfigError(
                f"--voters must include this node ({self.node_id}); to start outside the "
                "configuration and be added later, use --join"
            )
        if not self.peers and self.peer_address_template is None:
            raise ConfigError("--peers is empty: a cluster needs other members")
        if not self.peers and not (self.voters or self.starts_outside):
            raise ConfigError(
                "--peer-address-template without --peers: give --voters (the configuration to start with) or --join"
            )

    @property
    def members(self) -> tuple[int, ...]:
        """Every node this one knows an address for (its own id and --peers): who may talk to it."""
        return tuple(sorted([self.node_id, *self.peers]))

    @property
    def initial_voters(self) -> tuple[int, ...]:
        return tuple(sorted(self.voters)) or self.members

    @property
    def starts_outside(self) -> bool:
        """In no configuration until a leader adds it: --join, or --self-join and not in --voters."""
        return self.join or (self.self_join and bool(self.voters) and self.node_id not in self.voters)

    @property
    def open_membership(self) -> bool:
        """Any node may be a member (an address template dials it): the configuration decides whom this
        node counts, not the list it was started with."""
        return self.peer_address_template is not None

    def knows(self, node_id: int) -> bool:
        """Whether node `node_id` may be a member: listed, or any node under an address template."""
        return node_id in self.members or (self.open_membership and node_id > 0)

    def peer_address(self, node_id: int) -> str | None:
        """Where this node dials node `node_id`'s Peer service: --peers first, then the template."""
        if node_id in self.peers:
            return self.peers[node_id]
        if self.peer_address_template is None or node_id <= 0 or node_id == self.node_id:
            return None
        return expand_address_template(self.peer_address_template, node_id)

    def client_address(self, node_id: int) -> str | None:
        """Where node `node_id` serves Leadership, by --client-address-template (None without it)."""
        if self.client_address_template is None or node_id <= 0:
            return None
        return expand_address_template(self.client_address_template, node_id)

    @property
    def timing(self) -> Timing:
        return Timing.from_ms(
            self.heartbeat_interval_ms, self.election_timeout_ms, self.tick_ms, self.preempt_hold_down_ms
        )


# ---- mutual TLS or an explicit opt-out (node and store take the same flags) -----------------------

INSECURE_WARNING = (
    "--insecure: plaintext, no authentication: anyone who reaches this process's ports can "
    "send peer messages under any node's id, resign the leader, or write to the store"
)


def add_tls_args(parser: Any, holder: str, dialler: bool = False) -> None:
    """--certs / --ca --cert --key / --insecure, for a server (its own files, as `holder`) or, with
    `dialler`, for a command that calls one (--as picks the holder, --server-name what to verify)."""
    g = parser.add_argument_group("security (one of --certs, --ca/--cert/--key, or --insecure)")
    g.add_argument(
        "--certs",
        metavar="DIR",
        help=f"the directory `bullyproof certs init` wrote: DIR/ca.pem, DIR/{holder}.pem and .key",
    )
    if dialler:
        g.add_argument(
            "--as",
            dest="holder",
            default=holder,
            metavar="NAME",
            help=f"whose certificate in --certs to present (default {holder}; admin, node-N, ...)",
        )
        g.add_argument(
            "--server-name",
            help="the name to verify in the server's certificate "
            "(default member.bullyproof; the store: store.bullyproof)",
        )
    g.add_argument("--ca", metavar="FILE", help="the cluster CA's certificate (PEM)")
    g.add_argument("--cert", metavar="FILE", help="the certificate to present (PEM), naming its identity")
    g.add_argument("--key", metavar="FILE", help="its private key (PEM)")
    g.add_argument(
        "--insecure", action="store_true", help="plaintext and no authentication (an explicit, logged opt-out)"
    )


def tls_files(args: Any, holder: str) -> Tls | None:
    """The TLS files the flags name (--certs DIR takes DIR/`holder`.pem and .key), or None for
    --insecure. Secure by default: exactly one of the three ways, or a configuration error."""
    files = (args.ca, args.cert, args.key)
    if sum([bool(args.certs), any(files), args.insecure]) != 1:
        raise ConfigError(
            "give exactly one of --certs DIR (made by `bullyproof certs init`), --ca/--cert/--key, or --insecure"
        )
    if args.insecure:
        return None
    if args.certs:
        return Tls.in_dir(Path(args.certs), holder)
    if not all(files):
        raise ConfigError("--ca, --cert and --key go together")
    return Tls(Path(args.ca), Path(args.cert), Path(args.key))


def tls_from_args(args: Any, holder: str, identity: Identity) -> Tls | None:
    """A node's or the store's own files (tls_files), checked to name `identity`."""
    tls = tls_files(args, holder)
    if tls is not None:
        try:
            check_holder(tls, identity, "--certs" if args.certs else "--cert")
        except TlsError as exc:
            raise ConfigError(str(exc)) from None
    return tls
