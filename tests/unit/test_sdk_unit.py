"""The SDK's pure parts: address checks, backoff, the leading predicate, event filtering (no gRPC calls)."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import node.client.sdk as sdk
from node.api import bullyproof_pb2 as pb
from node.client.sdk import Backoff, LeaderEvent, LeaseToken, _call, _EventFilter, is_leading, parse_addresses


def test_public_names_are_exported() -> None:
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None
    expected = {"LeaderClient", "Leadership", "FencedWriter", "Fenced", "LeaseToken", "Leader", "LeaderEvent"}
    assert expected <= set(sdk.__all__)


@pytest.mark.parametrize(
    "given_, expected",
    [
        ("127.0.0.1:7001", ("127.0.0.1:7001",)),
        ("a:1, b:2,a:1,", ("a:1", "b:2")),
        (["node-1:7101", " node-2:7102 "], ("node-1:7101", "node-2:7102")),
        (["[::1]:7001"], ("[::1]:7001",)),
    ],
)
def test_parse_addresses_accepts_host_port_lists(given_, expected) -> None:
    assert parse_addresses(given_) == expected


@pytest.mark.parametrize(
    "bad, says",
    [
        ("", "no addresses"),
        ([], "no addresses"),
        ("localhost", "not HOST:PORT"),
        (":7001", "not HOST:PORT"),
        ("host:", "port ''"),
        ("host:0", "port '0'"),
        ("host:65536", "port '65536'"),
        ("host:70x", "port '70x'"),
        ("host:\u00b2", "port"),
        ("::1:7001", "brackets"),
    ],
)
def test_parse_addresses_names_the_bad_one(bad, says) -> None:
    with pytest.raises(ValueError, match=says):
        parse_addresses(bad)


def test_clients_check_their_addresses_and_deadlines_up_front() -> None:
    with pytest.raises(ValueError, match="not HOST:PORT"):
        sdk.LeaderClient(["127.0.0.1:1", "oops"])
    with pytest.raises(ValueError, match="deadline_s"):
        sdk.LeaderClient("127.0.0.1:1", deadline_s=0)
    with pytest.raises(ValueError, match="confirm_interval_s"):
        sdk.Leadership("127.0.0.1:1", 1, confirm_interval_s=0.5, confirm_timeout_s=0.5)
    with pytest.raises(ValueError, match="writer_id"):
        sdk.FencedWriter("127.0.0.1:1", writer_id=0)


def test_clients_are_secure_unless_told_otherwise(tmp_path) -> None:
    """No certificate and no insecure=True is a mistake, not a silent plaintext channel."""
    from node.tls import Tls

    tls = Tls.in_dir(tmp_path, "client")
    for make in (
        lambda **kw: sdk.LeaderClient("127.0.0.1:1", **kw),
        lambda **kw: sdk.Leadership("127.0.0.1:1", 1, **kw),
        lambda **kw: sdk.FencedWriter("127.0.0.1:1", writer_id=1, **kw),
    ):
        for kwargs in ({}, {"tls": tls, "insecure": True}):
            with pytest.raises(ValueError, match="insecure=True"):
                make(**kwargs)
        assert make(tls=tls).tls == tls
        assert make(insecure=True).tls is None


@given(initial_s=st.floats(0.001, 1.0), factor=st.floats(1.0, 100.0), seed=st.integers(0, 2**32))
def test_backoff_doubles_within_bounds_and_resets(initial_s: float, factor: float, seed: int) -> None:
    backoff = Backoff(initial_s, initial_s * factor, random.Random(seed))
    ceiling_s = initial_s
    for _ in range(60):  # far past the cap: no overflow, never above max_s
        delay_s = backoff.next_s()
        assert ceiling_s / 2 <= delay_s <= ceiling_s
        ceiling_s = min(backoff.max_s, ceiling_s * 2)
    backoff.reset()
    assert initial_s / 2 <= backoff.next_s() <= initial_s


def test_backoff_rejects_bounds_that_cannot_hold() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)


def info(
    node_id: int = 3,
    leader_id: int = 3,
    epoch: int = 4,
    role: int = pb.ROLE_LEADER,
    lease_valid: bool = True,
    known: bool = True,
) -> pb.LeaderInfo:
    return pb.LeaderInfo(
        known=known,
        leader_id=leader_id,
        epoch=epoch,
        node_id=node_id,
        role=role,
        lease_valid=lease_valid,
        view_time_unix_ns=123,
    )


def test_is_leading_only_for_the_node_itself_with_a_valid_lease() -> None:
    assert is_leading(info(), 3)
    assert not is_leading(info(), 2), "another node's answer"
    assert not is_leading(info(node_id=2), 3), "node 2 saying 3 leads is hearsay"
    assert not is_leading(info(leader_id=2, role=pb.ROLE_FOLLOWER), 3)
    assert not is_leading(info(role=pb.ROLE_CANDIDATE), 3)
    assert not is_leading(info(lease_valid=False), 3), "a leader whose lease ran out must not act"
    assert not is_leading(info(known=False), 3)


def test_leader_event_from_info_maps_unknown_to_none() -> None:
    assert LeaderEvent.from_info(info(node_id=1)) == LeaderEvent(3, 4, 1, 123)
    assert LeaderEvent.from_info(info(known=False, leader_id=0, epoch=0)).leader_id is None


def event(leader_id: int | None, epoch: int, node_id: int = 1) -> LeaderEvent:
    return LeaderEvent(leader_id, epoch, node_id, 0)


def test_event_filter_drops_repeats_and_leaders_older_than_seen() -> None:
    news = _EventFilter()
    passed = [
        e
        for e in [
            event(3, 4),
            event(3, 4, node_id=2),  # the same view from another node after a failover
            event(None, 0),
            event(None, 0, node_id=2),
            event(3, 4, node_id=1),  # the same leader heard again after "no leader" is news
            event(2, 5),
            event(3, 4, node_id=1),  # superseded leader: time must not run backwards
            event(None, 0),
            event(2, 5),
        ]
        if news.is_news(e)
    ]
    assert [(e.leader_id, e.epoch) for e in passed] == [(3, 4), (None, 0), (3, 4), (2, 5), (None, 0), (2, 5)]


def test_lease_token_compares_by_value_but_keeps_its_own_lost_event() -> None:
    a, b = LeaseToken(1, 5), LeaseToken(1, 5)
    assert a == b and a.lost is not b.lost
    a.lost.set()
    assert not b.lost.is_set()


def test_callbacks_may_be_plain_or_async() -> None:
    calls: list[tuple[str, tuple]] = []

    def plain(*args: object) -> None:
        calls.append(("plain", args))

    async def coro(*args: object) -> None:
        await asyncio.sleep(0)
        calls.append(("async", args))

    async def main() -> None:
        await _call(None, 1)
        await _call(plain, 1, 2)
        await _call(coro, None, 3)

    asyncio.run(main())
    assert calls == [("plain", (1, 2)), ("async", (None, 3))]


def test_fenced_names_epochs_and_reason() -> None:
    exc = sdk.Fenced(epoch=3, highest_epoch=5, reason="stale epoch 3 < highest 5", seq=17)
    assert (exc.epoch, exc.highest_epoch, exc.seq) == (3, 5, 17)
    assert "epoch 3" in str(exc) and "stale" in str(exc) and "5" in str(exc)
