"""EventLog's subscriber fan-out (WatchEvents): numbered, kept, bounded per reader, gaps counted."""

from __future__ import annotations

import pytest

from node.runtime.events import MAX_SUBSCRIBERS, SUBSCRIBER_EVENTS, EventLog, SubscribeRefused


def test_a_slow_reader_loses_the_oldest_and_is_told_how_many():
    log = EventLog(1, None, keep=100)
    sub = log.subscribe(0, [])
    for i in range(SUBSCRIBER_EVENTS + 10):
        log.record("grant", i=i)
    batch = sub.take()
    assert len(batch) == SUBSCRIBER_EVENTS
    assert batch[0][0].seq == 11 and batch[0][1] == 10
    assert all(missed == 0 for _, missed in batch[1:])
    log.record("view")
    assert sub.take() == [(log.recent[-1], 0)]


def test_kept_events_resume_and_a_too_old_after_seq_counts_the_lost_of_any_kind():
    log = EventLog(1, None, keep=5)
    for _ in range(8):
        log.record("grant")
    log.record("view")
    batch = log.subscribe(2, []).take()
    assert [e.seq for e, _ in batch] == [5, 6, 7, 8, 9] and batch[0][1] == 2
    batch = log.subscribe(6, ["view"]).take()
    assert [(e.seq, missed) for e, missed in batch] == [(9, 0)]
    # Nothing of the asked kind kept: the loss is told with the first new one.
    sub = log.subscribe(0, ["membership"])
    assert sub.take() == []
    log.record("membership")
    assert [(e.seq, m) for e, m in sub.take()] == [(10, 4)]


def test_no_reader_means_no_queue_and_unsubscribe_stops_delivery():
    log = EventLog(1, None, keep=3)
    sub = log.subscribe(0, [])
    log.unsubscribe(sub)
    log.record("view")
    assert sub.take() == [] and not log.subscribers and log.seq == 1


def test_after_seq_past_the_end_and_too_many_readers_are_refused():
    log = EventLog(7, None)
    log.record("view")
    with pytest.raises(ValueError, match="after_seq 5 is past node 7's last event 1"):
        log.subscribe(5, [])
    assert [e.seq for e, _ in log.subscribe(5, [], incarnation=log.incarnation + 1).take()] == [1]
    for _ in range(MAX_SUBSCRIBERS - 1):
        log.subscribe(0, [])
    with pytest.raises(SubscribeRefused):
        log.subscribe(0, [])
