"""The promise file: saved durably or not at all (PersistError), loaded exactly or refused (StateError)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from node.core import Membership, Promise, Timing
from node.runtime.state import PROMISE_FILE, PROMISE_TMP, PersistError, PromiseStore, StateError


def test_save_then_load_round_trips_and_leaves_no_temp_file(tmp_path: Path) -> None:
    store = PromiseStore(tmp_path)
    assert store.load() == Promise()
    store.save(Promise(epoch=7, leader_id=3))
    assert PromiseStore(tmp_path).load() == Promise(epoch=7, leader_id=3)
    assert not (tmp_path / PROMISE_TMP).exists()


def test_save_failure_raises_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    store = PromiseStore(tmp_path)
    store.save(Promise(epoch=1, leader_id=2))
    # A real fault, one that root cannot bypass: the temp file's name is taken by a directory.
    (tmp_path / PROMISE_TMP).mkdir()
    with pytest.raises(PersistError) as info:
        store.save(Promise(epoch=2, leader_id=3))
    exc = info.value
    assert isinstance(exc, StateError) and isinstance(exc.error, OSError)
    assert exc.error.errno == errno.EISDIR
    assert exc.target == tmp_path / PROMISE_FILE and exc.path == tmp_path / PROMISE_TMP
    message = str(exc)
    assert str(tmp_path / PROMISE_FILE) in message and str(tmp_path / PROMISE_TMP) in message
    assert "Is a directory" in message and "\n" not in message
    assert store.load() == Promise(epoch=1, leader_id=2), "the old promise is untouched"


def test_save_failure_on_the_rename_names_the_promise_file(tmp_path: Path) -> None:
    store = PromiseStore(tmp_path)
    (tmp_path / PROMISE_FILE).mkdir()  # os.replace(file, directory) fails
    with pytest.raises(PersistError) as info:
        store.save(Promise(epoch=1, leader_id=2))
    assert info.value.path == tmp_path / PROMISE_FILE
    assert str(info.value).startswith(f"cannot persist the promise to {tmp_path / PROMISE_FILE}: [Errno")


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "empty"),
        (b"\n", "empty"),
        (b'{"epoch": 4, "lea', "corrupt"),
        (b'{"epoch": 4}', "corrupt"),
        (b"\x00\xff\xfegarbage\x9c", "corrupt"),
        (b"[4, 2]", "corrupt"),
        (b'{"epoch": "4", "leader_id": 2}', "corrupt"),
        (b'{"epoch": 4.5, "leader_id": 2}', "corrupt"),
        (b'{"epoch": true, "leader_id": 2}', "corrupt"),
        (b'{"epoch": -1, "leader_id": 2}', "negative"),
        (b'{"epoch": 4, "leader_id": 2, "window_ms": "80"}', "corrupt"),
        (b'{"epoch": 4, "leader_id": 2, "window_ms": -80}', "negative"),
    ],
    ids=[
        "empty",
        "newline",
        "half-object",
        "missing-field",
        "garbage",
        "list",
        "string",
        "float",
        "bool",
        "negative",
        "window-string",
        "window-negative",
    ],
)
def test_a_bad_promise_file_is_refused_with_one_line_naming_it(tmp_path: Path, content: bytes, words: str) -> None:
    (tmp_path / PROMISE_FILE).write_bytes(content)
    with pytest.raises(StateError) as info:
        PromiseStore(tmp_path).load()
    message = str(info.value)
    assert str(tmp_path / PROMISE_FILE) in message and words in message and "\n" not in message
    assert (tmp_path / PROMISE_FILE).read_bytes() == content, "the evidence is left as it was"


def test_an_unreadable_promise_file_is_refused_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / PROMISE_FILE).mkdir()
    with pytest.raises(StateError, match="cannot read"):
        PromiseStore(tmp_path).load()


def test_a_leftover_temp_file_is_an_aborted_write_and_ignored(tmp_path: Path) -> None:
    store = PromiseStore(tmp_path)
    store.save(Promise(epoch=3, leader_id=1))
    (tmp_path / PROMISE_TMP).write_bytes(b'{"epoch": 9, "lea')  # crashed mid-write, before the rename
    assert store.load() == Promise(epoch=3, leader_id=1)
    store.save(Promise(epoch=4, leader_id=1))  # and the next save overwrites it
    assert store.load() == Promise(epoch=4, leader_id=1) and not (tmp_path / PROMISE_TMP).exists()


def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")
    with pytest.raises(StateError, match="state directory"):
        PromiseStore(tmp_path / "state")
    assert os.path.isfile(tmp_path / "state")


def test_the_window_a_promise_was_granted_for_survives_a_restart_with_other_timings(tmp_path: Path) -> None:
    """The file keeps the window in milliseconds: a node that held a long window (its own, under a longer
    election timeout, or one a leader's longer lease asked for) honours it from boot under shorter timings."""
    long, short = Timing.from_ms(10, 100, 1), Timing.from_ms(10, 50, 1)
    PromiseStore(tmp_path, long, tick_ms=1).save(Promise(epoch=4, leader_id=2))
    assert PromiseStore(tmp_path, short, tick_ms=1).load() == Promise(4, 2, hold_ticks=long.promise_hold_ticks)
    # Ticks of another length: the window in the new ticks is rounded up.
    assert PromiseStore(tmp_path, short, tick_ms=3).load().window_ticks(short) * 3 >= long.promise_hold_ticks
    # A leader's longer lease asked for more than the node's own window.
    asked = Promise(5, 2, hold_ticks=short.hold_ticks_for(long.leader_lease_ticks))
    PromiseStore(tmp_path, short, tick_ms=1).save(asked)
    assert PromiseStore(tmp_path, short, tick_ms=1).load() == asked
    # Under the same or a longer timing, its own window covers it: nothing extra is carried.
    PromiseStore(tmp_path, long, tick_ms=1).save(Promise(6, 2))
    assert PromiseStore(tmp_path, long, tick_ms=1).load() == Promise(6, 2)
    # A file written before windows were kept: the node's own window.
    (tmp_path / PROMISE_FILE).write_text('{"epoch": 7, "leader_id": 3}')
    assert PromiseStore(tmp_path, short, tick_ms=1).load() == Promise(7, 3)


def test_the_configuration_is_saved_with_the_promise_and_a_corrupt_one_refused(tmp_path: Path) -> None:
    joint = Membership((1, 2, 3, 4), (5,), index=3, term=2, previous=(1, 2, 3), notify=(6,))
    PromiseStore(tmp_path).save(Promise(epoch=2, leader_id=3, membership=joint))
    assert PromiseStore(tmp_path).load().membership == joint
    # A file written before membership changes has none: the node's start-up list.
    (tmp_path / PROMISE_FILE).write_text('{"epoch": 2, "leader_id": 3}')
    assert PromiseStore(tmp_path).load().membership is None
    for bad in (
        '"voters"',
        '{"voters": [1, 1], "learners": [], "previous": [], "index": 0, "term": 0}',
        '{"voters": [1], "learners": [], "previous": [], "index": "0", "term": 0}',
        '{"voters": [1], "learners": [1], "previous": [], "index": 0, "term": 0}',
    ):
        (tmp_path / PROMISE_FILE).write_text(f'{{"epoch": 2, "leader_id": 3, "configuration": {bad}}}')
        with pytest.raises(StateError, match="corrupt configuration"):
            PromiseStore(tmp_path).load()
