"""What a chaos run takes about the databases its apps write to (chaos.apps, `chaos run --fence`),
checked before anything starts; the runs themselves are in tests/chaos."""

from __future__ import annotations

import pytest

from chaos.apps import Apps, fence_options, parse_fences
from chaos.cli import build_parser, cmd_run
from node.config import ConfigError


@pytest.mark.parametrize(
    "items, words",
    [
        (["postgres"], "want NAME=URL"),
        (["store=sqlite:///tmp/x.db"], "other than 'store'"),
        (["db=mysql://127.0.0.1/x"], "not a postgresql://, redis:// or sqlite:// URL"),
        (["a=sqlite:///tmp/a.db", "a=sqlite:///tmp/b.db"], "given twice"),
    ],
)
def test_a_bad_fence_is_refused(items, words):
    with pytest.raises(ConfigError, match=words):
        parse_fences(items)


def test_fences_parse_by_name():
    assert parse_fences(["pg=postgresql://app@127.0.0.1:5432/app", "kv=redis://127.0.0.1:6379/0"]) == {
        "pg": "postgresql://app@127.0.0.1:5432/app",
        "kv": "redis://127.0.0.1:6379/0",
    }


def test_a_planted_fence_bug_needs_a_fence():
    args = build_parser().parse_args(["run", "leader-blackholed", "--planted-fence-bug", "check-outside-transaction"])
    with pytest.raises(ConfigError, match="need --fence"):
        cmd_run(args)


def test_each_run_keeps_its_own_tables_and_keys(tmp_path):
    assert fence_options("redis://127.0.0.1:6379/0", "t1") == {
        "prefix": "bullyproof_fence:t1:",
        "log": "bullyproof_fence_log:t1",
    }
    assert fence_options("postgresql://a@h/db", "t1") == {
        "table": "bullyproof_fence_t1",
        "log": "bullyproof_fence_log_t1",
    }
    assert fence_options("sqlite:///x.db", "t1") == fence_options("postgresql://a@h/db", "t1")
    assert Apps(tmp_path, {"a": "sqlite:///x.db"}).tag != Apps(tmp_path, {"a": "sqlite:///x.db"}).tag
    with pytest.raises(ValueError, match="other than 'store'"):
        Apps(tmp_path, {"store": "sqlite:///x.db"})
