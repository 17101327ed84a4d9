"""Every gRPC channel and server bullyproof makes, with its options, in one place.

Credentials (TLS) will go here too: callers ask for a kind of channel, never build one themselves.
"""

from __future__ import annotations

from typing import Any

import grpc


def peer_options(heartbeat_interval_ms: int) -> list[tuple[str, Any]]:
    """Node to node, and node to store. Reconnect fast: gRPC's default backoff grows to 120 s, so a
    healed link would sit unused. Keepalive makes an idle channel behind a blackhole notice; every
    call also has a deadline."""
    backoff_ms = max(20, heartbeat_interval_ms // 2)
    return [
        ("grpc.initial_reconnect_backoff_ms", backoff_ms),
        ("grpc.min_reconnect_backoff_ms", backoff_ms),
        ("grpc.max_reconnect_backoff_ms", heartbeat_interval_ms),
        ("grpc.keepalive_time_ms", max(1000, 10 * heartbeat_interval_ms)),
        ("grpc.keepalive_timeout_ms", max(1000, 10 * heartbeat_interval_ms)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 0),
    ]


# Other services (the SDK) and the observer (CLI, harness, benchmarks). A local subchannel pool keeps
# one client's failed connection attempts from delaying another's. No keepalive pings: a server with
# gRPC's default ping policy closes a connection that pings an idle stream more often than every 5
# minutes; liveness comes from deadline-bound calls instead.
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


def peer_channel(address: str, heartbeat_interval_ms: int) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=peer_options(heartbeat_interval_ms))


def client_channel(address: str) -> grpc.aio.Channel:
    """An asyncio channel for a service that asks nodes (or the store) things."""
    return grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS)


def observer_channel(address: str) -> grpc.Channel:
    """A blocking channel for the CLI, the chaos harness and benchmarks."""
    return grpc.insecure_channel(address, options=OBSERVER_OPTIONS)


# Every request bullyproof takes is a few dozen bytes (a peer message names at most 25 ids; a store
# write carries a short key and value). gRPC's default limit is 4 MiB: a caller could make a node
# allocate that much per request. Larger requests get RESOURCE_EXHAUSTED before any handler runs.
MAX_RECEIVE_BYTES = 64 * 1024


def server() -> grpc.aio.Server:
    # No SO_REUSEPORT: a second process on our port must fail to bind, not silently share it.
    return grpc.aio.server(options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)])
