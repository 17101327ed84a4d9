"""The false-alarm run's pure parts: counting leader changes and time without an agreed leader from
polled views, the link settings, etcd's Status and agreement, and the report (no timing asserted)."""

from __future__ import annotations

import argparse

import pytest

from bench.false_alarms import (
    LinkSetting,
    Poll,
    etcd_agreement,
    etcd_reply,
    markdown,
    parse_links,
    tally,
)

A1, A2, B3 = (1, 1), (1, 2), (3, 3)  # (leader, epoch)


def test_a_steady_leader_is_no_change_and_no_gap() -> None:
    t = tally([Poll(0.0, A1), Poll(1.0, A1), Poll(2.0, A1)], 0.0, 3.0, before=A1)
    d = t.as_dict()
    assert (d["leader_changes"], d["unagreed_s"], d["unagreed_spans"], d["unobserved_s"]) == (0, 0, 0, 0)
    assert d["leader_changes_per_hour"] == 0 and d["polls"] == 3


def test_a_change_through_a_gap_counts_once_with_the_gap() -> None:
    polls = [Poll(0.0, A1), Poll(1.0, None), Poll(1.5, None), Poll(2.5, B3), Poll(3.0, B3)]
    d = tally(polls, 0.0, 4.0, before=A1).as_dict()
    assert d["leader_changes"] == 1 and d["other_leader_changes"] == 1
    assert d["changes"] == [{"t_s": 2.5, "from": [1, 1], "to": [3, 3]}]
    assert d["unagreed_s"] == 1.5 and d["unagreed_longest_ms"] == 1500 and d["unagreed_spans"] == 1
    assert d["leader_changes_per_hour"] == 900.0  # 1 in 4 s


def test_a_new_epoch_of_the_same_leader_is_a_change() -> None:
    d = tally([Poll(0.0, A1), Poll(1.0, A2)], 0.0, 2.0, before=A1).as_dict()
    assert d["leader_changes"] == 1 and d["other_leader_changes"] == 0


def test_a_gap_that_ends_on_the_same_leader_is_no_change() -> None:
    d = tally([Poll(0.0, A1), Poll(1.0, None), Poll(1.2, A1)], 0.0, 2.0, before=A1).as_dict()
    assert d["leader_changes"] == 0 and d["unagreed_spans"] == 1
    assert d["unagreed_longest_ms"] == pytest.approx(200)


def test_spans_add_up_and_the_longest_is_kept() -> None:
    polls = [Poll(0.0, None), Poll(0.5, A1), Poll(1.0, None), Poll(3.0, A1), Poll(4.0, None)]
    d = tally(polls, 0.0, 5.0, before=A1).as_dict()
    # 0.0-0.5, 1.0-3.0, and the one still open at the end: 4.0-5.0.
    assert d["unagreed_spans"] == 3 and d["unagreed_s"] == 3.5 and d["unagreed_longest_ms"] == 2000
    assert d["unagreed_fraction"] == 0.7


def test_unanswered_polls_are_unobserved_outside_a_gap_and_part_of_one_inside() -> None:
    polls = [Poll(0.0, A1), Poll(1.0, answered=False), Poll(2.0, None), Poll(3.0, answered=False), Poll(4.0, B3)]
    d = tally(polls, 0.0, 5.0, before=A1).as_dict()
    assert d["unanswered_polls"] == 2 and d["unobserved_s"] == 1.0
    assert d["unagreed_s"] == 2.0 and d["leader_changes"] == 1


def test_without_a_known_start_the_first_agreement_is_no_change() -> None:
    d = tally([Poll(0.0, None), Poll(1.0, A1), Poll(2.0, B3)], 0.0, 3.0).as_dict()
    assert d["leader_changes"] == 1 and d["unagreed_s"] == 1.0


def test_no_polls() -> None:
    d = tally([], 0.0, 2.0, before=A1).as_dict()
    assert d["leader_changes"] == 0 and d["unagreed_s"] == 0 and d["polls"] == 0


def test_link_settings_parse_and_derive_the_stall() -> None:
    a, b = parse_links("20/15/1, 50/40/1")
    assert (a, b) == (LinkSetting(20, 15, 1.0), LinkSetting(50, 40, 1.0))
    assert a.stall_ms == 240 and b.stall_ms == 300  # 200 ms minimum RTO + the mean round trip
    assert a.stalls_per_s() == pytest.approx(0.1)  # 1 % of a stream of one message per 100 ms
    assert a.label == "20±15 ms, 1 % loss"
    for bad in ("20/15", "20/30/1", "x/1/1", "20/15/100"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_links(bad)


def _status(member: int, leader: int, term: int) -> bytes:
    """etcdserverpb.StatusResponse{header{member_id}, leader, raftTerm}, encoded by hand."""

    def varint(n: int) -> bytes:
        out = b""
        while True:
            b, n = n & 0x7F, n >> 7
            out += bytes([b | (0x80 if n else 0)])
            if not n:
                return out

    header = b"\x10" + varint(member)
    return b"\x0a" + varint(len(header)) + header + b"\x20" + varint(leader) + b"\x30" + varint(term)


def test_etcd_status_names_member_leader_and_term() -> None:
    big = 15851981191353498495  # etcd's ids are 64-bit
    assert etcd_reply(_status(big, 7, 12)) == (big, 7, 12)


def test_etcd_agreement_needs_one_leader_one_term_and_the_leader_among_them() -> None:
    ids = [11, 22, 33]
    assert etcd_agreement([(m, 22, 4) for m in ids]) == (2, 4)
    assert etcd_agreement([(11, 22, 4), (22, 22, 4), (33, 22, 5)]) is None  # one still at another term
    assert etcd_agreement([(11, 22, 4), (22, 22, 4), (33, 0, 4)]) is None  # one knows no leader
    assert etcd_agreement([(m, 0, 4) for m in ids]) is None
    assert etcd_agreement([(m, 44, 4) for m in ids]) is None  # a leader not among those asked


def test_the_report_shows_each_system_and_the_failover_beside_it() -> None:
    row = tally([Poll(0.0, A1), Poll(60.0, None), Poll(60.4, B3)], 0.0, 120.0, before=A1).as_dict()
    row["own_counters"] = {"elections_started": 3, "elections_won": 1, "stepdowns": 1, "stepdowns_lease_expired": 1}
    etcd = tally([Poll(0.0, A1)], 0.0, 120.0, before=A1).as_dict()
    result = {
        "failover": [
            {
                "heartbeat_interval_ms": 100,
                "election_timeout_ms": 500,
                "systems": {"quorum": {"median_ms": 440.0, "p99_ms": 480.0, "median_over_et": 0.88}},
            }
        ],
        "false_alarms": {
            "nodes": 5,
            "heartbeat_interval_ms": 100,
            "election_timeout_ms": 500,
            "systems": ["etcd", "quorum"],
            "poll_ms": 50,
            "stall_toxicity": 0.25,
            "seed": 7,
            "settings": [
                {
                    "label": "20±15 ms, 1 % loss",
                    "loadavg_before": [4.0, 4.0, 4.0],
                    "loadavg_after": [4.5, 4.1, 4.0],
                    "systems": {"etcd": etcd, "quorum": row},
                }
            ],
        },
    }
    md = "\n".join(markdown(result))
    assert "| bullyproof quorum | 20±15 ms, 1 % loss | 2.0 | **1** (1) | 30.0 | 0.40 s | 400 ms | 3 / 1 |" in md
    assert "| 1 (lease_expired 1) | 440 / 480 ms (0.88 ET) | 4.00 → 4.50 |" in md
    assert "| etcd | 20±15 ms, 1 % loss | 2.0 | **0** (0) | 0.0 | 0.00 s | 0 ms | – / – | – | – |" in md
    assert "20±15 ms, 1 % loss: 4.00 4.00 4.00 → 4.50 4.10 4.00" in md
    assert markdown({"false_alarms": {"skipped": "--skip"}}) == []
