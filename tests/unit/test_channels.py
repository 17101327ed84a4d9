"""The ping policy of our servers accepts what our own peer channels send (both from node.channels)."""

from __future__ import annotations

import pytest

from node.channels import MIN_PING_INTERVAL_MS, SERVER_PING_POLICY, peer_options


@pytest.mark.parametrize("heartbeat_interval_ms", [1, 10, 50, 100, 1000, 5000])
def test_servers_accept_the_peer_channels_keepalive_with_margin(heartbeat_interval_ms):
    client = dict(peer_options(heartbeat_interval_ms))
    server = dict(SERVER_PING_POLICY)
    assert client["grpc.keepalive_permit_without_calls"] == server["grpc.keepalive_permit_without_calls"] == 1
    # A ping that arrives early by up to half an interval (network jitter) is still no strike.
    assert client["grpc.keepalive_time_ms"] >= 2 * server["grpc.http2.min_ping_interval_without_data_ms"]
    assert server["grpc.http2.min_ping_interval_without_data_ms"] == MIN_PING_INTERVAL_MS
    assert server["grpc.http2.max_ping_strikes"] > 0  # a client pinging faster than that is still cut off
