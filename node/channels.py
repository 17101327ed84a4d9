"""Every gRPC channel and server bullyproof makes, with its options and credentials, in one place.

Callers ask for a kind of channel, never build one themselves. With `tls` (node.tls.Tls: the
cluster CA, a certificate and its key) a channel is mutual TLS and verifies `server_name` in the
server's certificate (node.tls.node_name(N) for peer N, even through a proxy); without it, plaintext
(`--insecure`, an explicit opt-out).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from typing import Any

import grpc

from node.guard import DecodeGuard
from node.tls import MEMBER_NAME, Identity, Tls, TlsError

# Keepalive on peer links, both ends from these numbers. A peer channel pings a connection without
# calls every keepalive_time_ms (ten heartbeats, at least KEEPALIVE_FLOOR_MS): the links between
# followers carry nothing between elections, and a dead one must be noticed before the next election
# needs it. Every server we run accepts such pings (SERVER_PING_POLICY): gRPC's default policy counts a
# ping on a connection without calls as a strike unless two hours passed, and answers the third
# strike with GOAWAY ENHANCE_YOUR_CALM "too_many_pings", so idle links were closed within seconds of
# each election and the next one started on cold connections.
KEEPALIVE_FLOOR_MS = 1000
# Strikes on a connection without calls never expire (gRPC resets them only when the server sends
# data), so a ping that arrives early by network jitter must not count: the server accepts pings
# twice as often as any peer channel sends them. Faster pingers still get GOAWAY after
# MAX_PING_STRIKES (gRPC's default, stated here so the whole policy is in one place).
MIN_PING_INTERVAL_MS = KEEPALIVE_FLOOR_MS // 2
MAX_PING_STRIKES = 2
# A channel without calls for this long drops its connection (gRPC's default: 30 minutes); INT_MAX
# turns that off for peer channels, so an election after hours of calm still finds warm links.
NEVER_IDLE_MS = 2**31 - 1


def keepalive_time_ms(heartbeat_interval_ms: int) -> int:
    return max(KEEPALIVE_FLOOR_MS, 10 * heartbeat_interval_ms)


SERVER_PING_POLICY: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
    ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
)


def peer_options(heartbeat_interval_ms: int) -> list[tuple[str, Any]]:
    """Node to node, and node to store. Reconnect fast: gRPC's default backoff grows to 120 s, so a
    healed link would sit unused. Keepalive makes an idle channel behind a blackhole notice; every
    call also has a deadline."""
    backoff_ms = max(20, heartbeat_interval_ms // 2)
    keepalive_ms = keepalive_time_ms(heartbeat_interval_ms)
    return [
        ("grpc.initial_reconnect_backoff_ms", backoff_ms),
        ("grpc.min_reconnect_backoff_ms", backoff_ms),
        ("grpc.max_reconnect_backoff_ms", heartbeat_interval_ms),
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", keepalive_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.client_idle_timeout_ms", NEVER_IDLE_MS),
        ("grpc.enable_retries", 0),
    ]


# Other services (the SDK) and the observer (CLI, harness, benchmarks). A local subchannel pool keeps
# one client's failed connection attempts from delaying another's. No keepalive pings: these talk to
# nodes and the store (whose servers would accept them, SERVER_PING_POLICY) but also through
# whatever proxies a deployment puts in front of them, whose ping policy we do not know; liveness
# comes from deadline-bound calls instead.
CLIENT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.enable_retries", 0),
)
OBSERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
)


# ---- credentials from node.tls's files ---------------------------------------------------------------


def server_credentials(tls: Tls) -> grpc.ServerCredentials:
    """TLS that demands a client certificate from the cluster CA (a handshake without one, or with one
    from another CA, fails before any RPC). The files are re-read when they change (checked at each
    new connection), so a server's certificate rotates without a restart."""
    return grpc.dynamic_ssl_server_credentials(_server_config(tls), _Reloader(tls), require_client_authentication=True)


def _server_config(tls: Tls) -> Any:
    ca, cert, key = tls.read()
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


class _Reloader:
    """gRPC asks before each handshake; a new configuration only when a file changed."""

    def __init__(self, tls: Tls) -> None:
        self.tls = tls
        self.stamp = tls.stamp()

    def __call__(self) -> Any:
        stamp = self.tls.stamp()
        if stamp == self.stamp or not stamp:
            return None
        try:
            config = _server_config(self.tls)
        except TlsError:
            return None  # half-written files: keep the old ones, try again at the next handshake
        self.stamp = stamp
        return config


def channel_credentials(tls: Tls) -> grpc.ChannelCredentials:
    ca, cert, key = tls.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def handshake_refused(exc: grpc.RpcError, address: str, tls: Tls | None) -> str | None:
    """If `exc` is a TLS handshake that failed (not a node that is down, slow or refusing a request):
    what happened, in words, and what to check. None for every other error.

    gRPC reports both as UNAVAILABLE "failed to connect to all addresses"; what follows tells them
    apart: a server that refuses our certificate (or our plaintext) closes the socket mid-handshake
    ("Socket closed"); our side refusing the server's certificate says "Tls handshake failed".
    """
    if exc.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    details = exc.details() or ""
    if "Socket closed" in details:
        # A server refusing us closes the socket mid-handshake, but so does a link cut by a proxy (a
        # Toxiproxy toxic, a load balancer): only a server that answers a TLS hello of ours is one
        # that can have refused it.
        if server_answers_tls(address, tls) is False:
            return None
        if tls is None:
            return (
                f"{address} closed the connection at the handshake: it expects mutual TLS and we dialled "
                f"in plaintext. Present the cluster's certificates (--certs DIR, the directory `bullyproof certs "
                f"init` wrote for it) instead of --insecure"
            )
        return (
            f"{address} closed the connection during the TLS handshake: it refused our certificate {tls.cert}, "
            f"which the cluster's CA did not sign. Check that --certs is this cluster's certificate directory"
        )
    if "Tls handshake failed" in details or "ssl_transport_security" in details:
        if "WRONG_VERSION_NUMBER" in details or "packet length too long" in details:
            return (
                f"{address} does not speak TLS: if the cluster is plaintext (started with --insecure), "
                f"pass --insecure instead of certificates"
            )
        if "CERTIFICATE_VERIFY_FAILED" in details:
            ca = tls.ca if tls else "our CA"
            return (
                f"the TLS handshake with {address} failed: its certificate is not signed by {ca}. "
                f"Check that --certs is this cluster's certificate directory (its ca.pem)"
            )
        why = details.rpartition(": ")[2] or details
        return f"the TLS handshake with {address} failed ({why}); check --certs and --insecure"
    if "not in peer certificate" in details:
        return f"{address}'s certificate does not name the server we asked for: check the address and --server-name"
    return None


PROBE_TIMEOUT_S = 2.0


def server_answers_tls(address: str, tls: Tls | None, timeout_s: float = PROBE_TIMEOUT_S) -> bool | None:
    """Dial `address` once with Python's own TLS (our certificate if we have one, nothing verified: only
    the server's reaction matters): True if it answered our hello (a handshake, or an alert refusing
    us), False if the connection closed before any answer (a cut link, a proxy, a server going down),
    None if neither was seen in time (blocking: call it off the event loop)."""
    host, _, port = address.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    if tls is not None:
        try:
            context.load_cert_chain(tls.cert, tls.key)
        except (OSError, ssl.SSLError):
            return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as raw:
            with context.wrap_socket(raw, server_hostname=None) as conn:
                conn.settimeout(timeout_s)
                return conn.version() is not None
    except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ConnectionRefusedError):
        return False
    except ssl.SSLError as exc:  # an alert is an answer; anything else, we cannot say
        return True if "ALERT" in str(exc.reason).upper() else None
    except (OSError, ValueError):
        return None


def caller(context: grpc.aio.ServicerContext) -> Identity | None:
    """The identity in the calling peer's certificate, or None (plaintext, or no bullyproof URI)."""
    return Identity.of(value.decode(errors="replace") for value in context.auth_context().get("peer_uri", ()))


async def require(
    context: grpc.aio.ServicerContext,
    secure: bool,
    kinds: Iterable[str],
    what: str,
    claimed: tuple[str, int] | None = None,
) -> Identity | None:
    """Abort with PERMISSION_DENIED unless the caller's certificate is of one of `kinds`; its identity.
    `claimed` (field, id): a node certificate must name the node the request says it is from (a
    member cannot speak for another). Plaintext (--insecure) lets everyone through: that is what the
    opt-out means."""
    if not secure:
        return None
    who = caller(context)
    if who is None or who.kind not in kinds:
        shown = who.uri if who else "a certificate without a bullyproof identity"
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{what} needs a certificate of kind {' or '.join(kinds)}; the caller has {shown}",
        )
    if claimed is not None and who.kind == "node" and who.node_id != claimed[1]:
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{what}: {claimed[0]} {claimed[1]}, but the caller's certificate names node {who.node_id}",
        )
    return who


# ---- channels and servers ------------------------------------------------------------------------------


def _secure(
    options: Any, tls: Tls | None, server_name: str
) -> tuple[list[tuple[str, Any]], grpc.ChannelCredentials | None]:
    opts = list(options)
    if tls is None:
        return opts, None
    # The name checked in the server's certificate, whatever address we dial (a proxy, an IP).
    return opts + [("grpc.ssl_target_name_override", server_name)], channel_credentials(tls)


def peer_channel(
    address: str, heartbeat_interval_ms: int, tls: Tls | None = None, server_name: str = MEMBER_NAME
) -> grpc.aio.Channel:
    options, creds = _secure(peer_options(heartbeat_interval_ms), tls, server_name)
    return (
        grpc.aio.secure_channel(address, creds, options=options)
        if creds
        else grpc.aio.insecure_channel(address, options=options)
    )


def client_channel(address: str, tls: Tls | None = None, server_name: str = MEMBER_NAME) -> grpc.aio.Channel:
    """An asyncio channel for a service that asks nodes (or the store) things."""
    if tls is None:
        tls, server_name = _dial_book.get(address, (None, server_name))
    options, creds = _secure(CLIENT_OPTIONS, tls, server_name)
    return (
        grpc.aio.secure_channel(address, creds, options=options)
        if creds
        else grpc.aio.insecure_channel(address, options=options)
    )


def observer_channel(address: str, tls: Tls | None = None, server_name: str = MEMBER_NAME) -> grpc.Channel:
    """A blocking channel for the CLI, the chaos harness and benchmarks."""
    if tls is None:
        tls, server_name = _dial_book.get(address, (None, server_name))
    options, creds = _secure(OBSERVER_OPTIONS, tls, server_name)
    return (
        grpc.secure_channel(address, creds, options=options)
        if creds
        else grpc.insecure_channel(address, options=options)
    )


# How the operator's own tools (CLI, harness, dashboard, benchmarks) dial a cluster they read from its
# record (node.launcher.cluster.read_cluster_file, the launcher): address -> (identity, server name).
# Addresses are unique per process (each cluster has its own ports), so clusters with different CAs
# can be watched side by side; an address not in the book is dialled in plaintext, which a TLS
# server refuses at the handshake (fails closed).
_dial_book: dict[str, tuple[Tls, str]] = {}


def dialled_as(address: str) -> Tls | None:
    """The identity the operator's tools present to `address` (None: plaintext)."""
    return _dial_book.get(address, (None, MEMBER_NAME))[0]


def dial_as(address: str, tls: Tls | None, server_name: str = MEMBER_NAME) -> None:
    """Dial `address` with `tls` from now on (None: forget it, plaintext)."""
    if tls is None:
        _dial_book.pop(address, None)
    else:
        _dial_book[address] = (tls, server_name)


# Every request a node takes is a few dozen bytes (a peer message names at most 25 ids). gRPC's
# default limit is 4 MiB: a caller could make a node allocate that much per request. Larger requests
# get RESOURCE_EXHAUSTED before any handler runs. The store takes larger writes (its own limit).
MAX_RECEIVE_BYTES = 64 * 1024


# A connection that has not finished its TLS (or HTTP/2) handshake by then is closed: gRPC's default
# (120 s) let a caller hold a descriptor and ~12 KB per half-open connection for two minutes.
HANDSHAKE_TIMEOUT_MS = 5000


def server(max_receive_bytes: int = MAX_RECEIVE_BYTES) -> grpc.aio.Server:
    return grpc.aio.server(
        interceptors=[DecodeGuard()],  # a request that does not parse: INVALID_ARGUMENT, not UNKNOWN
        options=[
            ("grpc.so_reuseport", 0),  # a second process on our port must fail to bind, not silently share it
            ("grpc.max_receive_message_length", max_receive_bytes),
            ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
            *SERVER_PING_POLICY,  # our own peer channels' keepalive pings are welcome
        ],
    )


def listen(srv: grpc.aio.Server, address: str, tls: Tls | None) -> int:
    """Bind `address` (mutual TLS with `tls`, else plaintext); the port bound. RuntimeError if it cannot."""
    return srv.add_secure_port(address, server_credentials(tls)) if tls else srv.add_insecure_port(address)
