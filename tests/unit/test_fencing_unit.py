"""node.client.fencing without servers: the rule is the store's, the URLs, the bounds, the handle."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from node.client import Fenced, LeaseToken
from node.client.fencing import (
    BlockingSqliteFence,
    EpochTaken,
    FenceBug,
    FencingRefused,
    SqliteFence,
    StaleEpoch,
    open_fence,
)
from node.client.fencing.base import check_claim, judge
from node.client.fencing.redis import script
from node.store.db import decide


def test_the_rule_is_the_stores_decide_and_names_the_refusal():
    for highest, owner, writer, epoch in itertools.product(range(4), range(3), range(1, 3), range(1, 5)):
        reason = decide(highest, owner, writer, epoch)
        if reason is None:
            judge("r", writer, epoch, highest, owner)
            continue
        with pytest.raises(StaleEpoch if epoch < highest else EpochTaken) as refused:
            judge("r", writer, epoch, highest, owner)
        assert refused.value.reason == reason and isinstance(refused.value, FencingRefused)
        assert (refused.value.epoch, refused.value.highest_epoch, refused.value.owner_id) == (epoch, highest, owner)


def test_each_planted_bug_changes_the_rule_where_it_says():
    judge("r", 1, 3, 3, 1)  # the owner again: accepted
    with pytest.raises(StaleEpoch):
        judge("r", 1, 3, 3, 1, frozenset({FenceBug.EQUAL_IS_STALE}))
    with pytest.raises(EpochTaken):
        judge("r", 2, 3, 3, 1)
    judge("r", 2, 3, 3, 1, frozenset({FenceBug.NO_WRITER_CHECK}))
    with pytest.raises(StaleEpoch):  # no bug accepts a lower epoch by itself
        judge("r", 2, 2, 3, 1, frozenset(FenceBug) - {FenceBug.CHECK_OUTSIDE_TRANSACTION})
    correct = script("", False)
    assert all(script("", False, frozenset({bug})) != correct for bug in FenceBug)


def test_fenced_is_fencing_refused_and_keeps_its_old_signature():
    assert Fenced is FencingRefused
    exc = StaleEpoch(3, 5, "stale epoch 3 < highest 5", 17, resource="jobs", writer_id=2)
    assert isinstance(exc, Fenced) and (exc.seq, exc.resource, exc.writer_id) == (17, "jobs", 2)
    assert str(exc).startswith("'jobs': write with epoch 3 refused")


@pytest.mark.parametrize(
    "resource, writer_id, epoch", [("", 1, 1), ("r", 0, 1), ("r", 2**32, 1), ("r", 1, 0), ("r", 1, 2**63)]
)
def test_claims_out_of_bounds_are_value_errors(resource, writer_id, epoch):
    with pytest.raises(ValueError):
        check_claim(resource, writer_id, epoch)


def test_open_fence_picks_the_adapter_from_the_url(tmp_path: Path):
    assert isinstance(open_fence(f"sqlite://{tmp_path}/a.db"), SqliteFence)
    blocking = open_fence("sqlite:relative/a.db", blocking=True)
    assert isinstance(blocking, BlockingSqliteFence) and blocking.path == Path("relative/a.db")
    assert type(open_fence("postgresql://u@127.0.0.1:1/db")).__name__ == "PostgresFence"  # connects on first use
    assert type(open_fence("postgres://u@127.0.0.1:1/db", blocking=True)).__name__ == "BlockingPostgresFence"
    assert type(open_fence("redis://127.0.0.1:1/0")).__name__ == "RedisFence"
    assert type(open_fence("redis://127.0.0.1:1/0", blocking=True)).__name__ == "BlockingRedisFence"
    store = open_fence("bullyproof-store://127.0.0.1:7000")
    assert type(store).__name__ == "StoreFence" and store.address == "127.0.0.1:7000" and store.certs is None
    assert open_fence("bullyproof-store://127.0.0.1:7000?certs=/c").certs == Path("/c")
    for bad in ("mysql://x/y", "sqlite://host/a.db", "sqlite://", "bullyproof-store://nohostport"):
        with pytest.raises(ValueError):
            open_fence(bad)


def test_a_term_binds_its_epoch_and_node(tmp_path: Path):
    fence = BlockingSqliteFence(tmp_path / "a.db")
    term = LeaseToken(node_id=3, epoch=9).fenced(fence)
    assert (term.writer_id, term.epoch, term.fence) == (3, 9, fence)
    term.write("r", b"v")
    with term.transaction("r") as conn:
        conn.execute("CREATE TABLE t (x)")
    assert tuple(term.read("r")) == (9, 3, b"v")
    with pytest.raises(EpochTaken):
        LeaseToken(node_id=4, epoch=9).fenced(fence).write("r", b"w")
    with pytest.raises(AttributeError):
        term.eval("r", "return 1")  # a Redis-only operation


def test_a_redis_fence_made_from_a_url_never_resends_a_command_on_its_own():
    """redis-py retries on connection errors by default: a fenced write whose reply was lost, sent
    again, could come back refused although the first one was applied. No client is connected here."""
    from node.client.fencing.redis import BlockingRedisFence, RedisFence

    for fence in (RedisFence("redis://127.0.0.1:1"), BlockingRedisFence("redis://127.0.0.1:1")):
        assert fence.client.get_retry().get_retries() == 0
