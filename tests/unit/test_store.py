"""The fenced store's rules, its durability across reopen, and its input checks (no gRPC)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.store.db import (
    MAX_LIMIT,
    FencedStoreDB,
    StoreInputError,
    StoreOpenError,
    WriteDecision,
    decide,
)


@pytest.fixture
def db(tmp_path: Path):
    with FencedStoreDB(tmp_path / "store.sqlite3") as store:
        yield store


@pytest.mark.parametrize(
    "highest_epoch, owner_id, writer_id, epoch, reason",
    [
        (0, 0, 1, 1, None),  # empty store: anything valid is accepted
        (5, 2, 2, 5, None),  # the owner again, same epoch
        (5, 2, 1, 6, None),  # a higher epoch takes ownership
        (5, 2, 2, 4, "stale epoch 4 < highest 5"),
        (5, 2, 3, 4, "stale epoch 4 < highest 5"),
        (5, 2, 3, 5, "epoch 5 already owned by writer 2"),
    ],
)
def test_decide_table(highest_epoch, owner_id, writer_id, epoch, reason):
    assert decide(highest_epoch, owner_id, writer_id, epoch) == reason


def test_rules_through_the_store_and_every_attempt_is_logged(db: FencedStoreDB):
    assert db.write(1, 3, "k", b"a") == WriteDecision(True, 3, 1, "")
    assert db.write(1, 3, "k", b"b") == WriteDecision(True, 3, 2, "")  # same writer, same epoch
    assert db.write(2, 3, "k", b"c") == WriteDecision(False, 3, 3, "epoch 3 already owned by writer 1")
    assert db.write(2, 2, "k", b"d") == WriteDecision(False, 3, 4, "stale epoch 2 < highest 3")
    assert db.write(2, 4, "k", b"e") == WriteDecision(True, 4, 5, "")  # higher epoch: writer 2 owns now
    assert db.write(1, 4, "k", b"f") == WriteDecision(False, 4, 6, "epoch 4 already owned by writer 2")
    assert db.write(1, 3, "k", b"g") == WriteDecision(False, 4, 7, "stale epoch 3 < highest 4")

    entries, highest_epoch, owner_id = db.read_log()
    assert (highest_epoch, owner_id) == (4, 2)
    assert [(e.seq, e.writer_id, e.epoch, e.value, e.accepted) for e in entries] == [
        (1, 1, 3, b"a", True),
        (2, 1, 3, b"b", True),
        (3, 2, 3, b"c", False),
        (4, 2, 2, b"d", False),
        (5, 2, 4, b"e", True),
        (6, 1, 4, b"f", False),
        (7, 1, 3, b"g", False),
    ]
    assert entries[2].reason == "epoch 3 already owned by writer 1" and entries[0].reason == ""
    assert all(e.recorded_unix_ns > 0 and e.recorded_monotonic_ns > 0 for e in entries)
    monotonic_ns = [e.recorded_monotonic_ns for e in entries]
    assert monotonic_ns == sorted(monotonic_ns)


def test_empty_store_reports_no_owner(db: FencedStoreDB):
    assert db.read_log() == ([], 0, 0)


def test_read_log_pages_by_seq(db: FencedStoreDB):
    for i in range(1, 8):
        db.write(1, i, f"k{i}", b"")
    first, _, _ = db.read_log(after_seq=0, limit=3)
    rest, _, _ = db.read_log(after_seq=first[-1].seq, limit=MAX_LIMIT)
    assert [e.seq for e in first] == [1, 2, 3]
    assert [e.seq for e in rest] == [4, 5, 6, 7]
    assert db.read_log(after_seq=7)[0] == []


def test_log_highest_and_owner_survive_reopen(tmp_path: Path):
    path = tmp_path / "store.sqlite3"
    with FencedStoreDB(path) as db:
        db.write(1, 1, "a", b"1")
        db.write(2, 5, "b", b"2")
        db.write(3, 5, "c", b"3")  # rejected: epoch 5 belongs to writer 2
        db.write(2, 6, "d", b"4")
        db.write(1, 2, "e", b"5")  # rejected: stale
        before = db.read_log()
    with FencedStoreDB(path) as db:
        assert db.read_log() == before
        assert before[1:] == (6, 2)
        assert db.write(3, 6, "f", b"") == WriteDecision(False, 6, 6, "epoch 6 already owned by writer 2")
        assert db.write(2, 6, "g", b"") == WriteDecision(True, 6, 7, "")
        assert db.write(1, 5, "h", b"") == WriteDecision(False, 6, 8, "stale epoch 5 < highest 6")


def test_second_open_of_the_same_file_is_refused(tmp_path: Path):
    path = tmp_path / "store.sqlite3"
    with FencedStoreDB(path) as db:
        db.write(1, 1, "k", b"")
        with pytest.raises(StoreOpenError, match="is locked"):
            FencedStoreDB(path, busy_timeout_s=0.05)
    with FencedStoreDB(path) as db:  # released on close
        assert db.highest_epoch == 1


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path):
    path = tmp_path / "store.sqlite3"
    path.write_bytes(b"this is not sqlite" * 10)
    with pytest.raises(StoreOpenError, match="not a store database"):
        FencedStoreDB(path)


@pytest.mark.parametrize(
    "writer_id, epoch, key, value, message",
    [
        (0, 1, "k", b"", "writer_id must be in 1..4294967295, got 0"),
        (-1, 1, "k", b"", "writer_id must be in 1..4294967295, got -1"),
        (2**32, 1, "k", b"", "writer_id must be in 1..4294967295, got 4294967296"),
        (1, 0, "k", b"", "epoch must be in 1..9223372036854775807, got 0"),
        (1, 2**63, "k", b"", "epoch must be in 1..9223372036854775807, got 9223372036854775808"),
        (1, 1, "", b"", "key must not be empty"),
        (1, 1, "é" * 129, b"", "key must be at most 256 bytes of UTF-8, got 258"),
        (1, 1, "\udc80", b"", "key is not valid UTF-8"),
        (1, 1, "k", b"x" * (64 * 1024 + 1), "value must be at most 65536 bytes, got 65537"),
    ],
)
def test_bad_writes_raise_and_record_nothing(db: FencedStoreDB, writer_id, epoch, key, value, message):
    with pytest.raises(StoreInputError) as info:
        db.write(writer_id, epoch, key, value)
    assert message in str(info.value)
    assert db.read_log() == ([], 0, 0)


def test_writes_at_the_limits_are_accepted(db: FencedStoreDB):
    assert db.write(2**32 - 1, 2**63 - 1, "k" * 256, b"x" * 64 * 1024).accepted
    entries, highest_epoch, owner_id = db.read_log()
    assert (highest_epoch, owner_id) == (2**63 - 1, 2**32 - 1)
    assert entries[0].key == "k" * 256 and len(entries[0].value) == 64 * 1024


@pytest.mark.parametrize(
    "after_seq, limit, message",
    [
        (-1, 10, "after_seq must be in 0..9223372036854775807, got -1"),
        (2**63, 10, "after_seq must be in 0..9223372036854775807, got 9223372036854775808"),
        (0, 0, "limit must be in 1..10000, got 0"),
        (0, MAX_LIMIT + 1, "limit must be in 1..10000, got 10001"),
    ],
)
def test_bad_reads_raise(db: FencedStoreDB, after_seq, limit, message):
    with pytest.raises(StoreInputError) as info:
        db.read_log(after_seq, limit)
    assert message in str(info.value)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 6)), max_size=12))
def test_accepted_epochs_never_go_back_and_each_has_one_writer(attempts: list[tuple[int, int]]):
    """P2 holds for any sequence of attempts, and reopening changes no later decision."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.sqlite3"
        with FencedStoreDB(path) as db:
            for writer_id, epoch in attempts:
                db.write(writer_id, epoch, "k", b"")
            entries, highest_epoch, owner_id = db.read_log()
        accepted = [(e.epoch, e.writer_id) for e in entries if e.accepted]
        assert [epoch for epoch, _ in accepted] == sorted(epoch for epoch, _ in accepted)
        owners: dict[int, set[int]] = {}
        for epoch, writer_id in accepted:
            owners.setdefault(epoch, set()).add(writer_id)
        assert all(len(writers) == 1 for writers in owners.values())
        assert (highest_epoch, owner_id) == (accepted[-1] if accepted else (0, 0))
        with FencedStoreDB(path) as db:
            assert db.read_log() == (entries, highest_epoch, owner_id)
