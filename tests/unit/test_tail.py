"""JsonLinesTail: whole lines only, torn lines skipped, a replaced file reread, a tail from near the end."""

from __future__ import annotations

import json

from node.launcher.tail import JsonLinesTail


def test_reads_only_whole_lines_and_skips_a_torn_one(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = JsonLinesTail(path)
    assert tail.poll() == []  # no file yet
    path.write_text('{"a": 1}\n{"b": ')
    assert tail.poll() == [{"a": 1}]
    with open(path, "a") as f:
        f.write('2}\n{"cut short by a SIGKILL\n{"c": 3}\n')
    assert tail.poll() == [{"b": 2}, {"c": 3}]
    assert tail.poll() == []


def test_a_replaced_file_is_read_from_its_start(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"n": 1}) + "\n" + json.dumps({"n": 2}) + "\n")
    tail = JsonLinesTail(path)
    assert len(tail.poll()) == 2
    path.write_text(json.dumps({"n": 3}) + "\n")
    assert tail.poll() == [{"n": 3}]


def test_a_tail_from_the_end_starts_at_a_whole_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(100)))
    tail = JsonLinesTail(path, from_end_bytes=30)
    got = tail.poll()
    assert 1 <= len(got) <= 3 and got[-1] == {"n": 99}
    assert JsonLinesTail(path, from_end_bytes=10**6).poll()[0] == {"n": 0}
