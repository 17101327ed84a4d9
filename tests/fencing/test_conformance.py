"""`bullyproof fence check` on real servers (PostgreSQL, Redis, SQLite, the fenced store) through a real
Toxiproxy: every built-in adapter passes, and each planted bug fails it, with the diagnostic that names
it. Short runs (a few rounds, a few hundred operations), the checks of one test in parallel; every
process they start is stopped by its pid before they return (chaos.fence_conformance)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from fencelib import Target

from chaos.fence_conformance import Adapter, RunResult, collect, count, make_plan, report_lines, run_check
from node.cli import main as cli

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

HERE = Path(__file__).resolve().parent
CORRECT_ROUNDS = 8  # none, the pause at the check, then every other fault once (network adapters: 6 kinds)
PLANTED_ROUNDS = 2  # a rival and two writes of one epoch in the first round, the pause at the check in the second


def check_all(runs: dict[str, dict]) -> dict[str, RunResult]:
    """The checks, at once: name -> result."""

    async def everything() -> list[RunResult]:
        return await asyncio.gather(*(run_check(**kwargs) for kwargs in runs.values()))

    return dict(zip(runs, asyncio.run(everything())))


def explain(result: RunResult) -> str:
    return "\n".join(report_lines(result))


def test_every_built_in_adapter_passes(make, tmp_path: Path):
    targets = {kind: make(kind) for kind in ("postgres", "redis", "sqlite", "store")}
    runs = {
        kind: dict(adapter=Adapter(t.url), seed=1, rounds=CORRECT_ROUNDS, directory=tmp_path / kind)
        for kind, t in targets.items()
    }
    results = check_all(runs)
    for kind, result in results.items():
        print(explain(result))
        assert result.exit_code == 0, explain(result)
        assert result.verdict is not None and result.verdict.linearizable
        writes = result.counts["write"]
        assert writes.get("ok", 0) > 10 and writes.get("stale", 0) + writes.get("taken", 0) > 0, (kind, writes)
        assert sum(result.counts["read"].values()) > 10
        kinds = {f["kind"] for f in result.faults}
        assert {"pause-at-check", "pause", "kill"} <= kinds, (kind, result.faults)
        if kind == "sqlite":
            assert not result.network
        else:
            assert result.network and {"latency", "blackhole", "refuse"} <= kinds, (kind, result.faults)
        if kind in ("postgres", "sqlite"):  # Redis checks and writes in one script; the store has no hook
            assert any(f.get("where") == "between its check and its write" for f in result.faults), result.faults
    assert results["store"].plan.resources == 1 and results["store"].epoch_floor >= 0


@pytest.mark.parametrize(
    "bug,kind,diagnostic",
    [
        ("check-outside-transaction", "postgres", "stale_accepted"),
        ("equal-is-stale", "redis", "unexplained_refusals"),
        ("no-writer-check", "sqlite", "epoch_shared"),
    ],
    ids=["check-outside-transaction", "equal-is-stale", "no-writer-check"],
)
def test_a_planted_bug_fails_the_check(bug: str, kind: str, diagnostic: str, make, tmp_path: Path, capsys):
    """Through the CLI, as a user runs it: exit 1, the report names the failure and the visualization."""
    target: Target = make(kind)
    code = cli(
        [
            "fence",
            "check",
            target.url,
            "--seed",
            "3",
            "--rounds",
            str(PLANTED_ROUNDS),
            "--dir",
            str(tmp_path / "run"),
            "--planted-bug",
            bug,
        ]
    )
    out = capsys.readouterr().out
    print(out)
    assert code == 1, out
    assert "verdict: FAIL: NOT linearizable" in out and "seed 3" in out
    assert f"visualization: {tmp_path / 'run' / 'history.html'}" in out
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["verdict"]["diagnostics"][diagnostic]["count"] >= 1, result["verdict"]["diagnostics"]
    assert (tmp_path / "run" / "history.html").is_file()


def test_your_own_adapter_through_a_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """--factory MODULE:CALLABLE from the current directory: a wrapper of the SQLite fence that takes the
    hook passes; the same wrapper with the check outside the transaction is caught."""
    (tmp_path / "my_fences.py").write_text(
        "from node.client.fencing import SqliteFence\n"
        "def make(url, _between_check_and_write=None):\n"
        "    return SqliteFence(url.removeprefix('sqlite://'), _between_check_and_write=_between_check_and_write)\n"
        "def broken(url, _between_check_and_write=None):\n"
        "    return SqliteFence(url.removeprefix('sqlite://'), _between_check_and_write=_between_check_and_write,\n"
        "                       _planted=['check-outside-transaction'])\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    codes = {}
    for name in ("make", "broken"):
        codes[name] = cli(
            [
                "fence",
                "check",
                f"sqlite://{tmp_path / name}.db",
                "--factory",
                f"my_fences:{name}",
                "--seed",
                "5",
                "--rounds",
                str(PLANTED_ROUNDS),
                "--dir",
                str(tmp_path / name),
            ]
        )
    out = capsys.readouterr().out
    assert codes == {"make": 0, "broken": 1}, out
    assert "pauses and kills only" in out


def test_usage_errors_exit_2(tmp_path: Path, capsys):
    assert cli(["fence", "check", "mysql://127.0.0.1/app"]) == 2  # no built-in scheme, no --factory
    assert cli(["fence", "check", "bullyproof-store://127.0.0.1:1", "--resources", "2"]) == 2
    assert cli(["fence", "check", "bullyproof-store://127.0.0.1:1", "--planted-bug", "equal-is-stale"]) == 2
    (tmp_path / "mine.txt").write_text("keep")
    assert cli(["fence", "check", f"sqlite://{tmp_path / 'a.db'}", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--factory" in err and "one resource" in err and "did not write" in err
    with pytest.raises(SystemExit) as exited:
        cli(["fence", "check", "sqlite:///tmp/x.db", "--writers", "2"])
    assert exited.value.code == 2


def test_a_seed_replays_the_plan():
    assert make_plan(7, rounds=12) == make_plan(7, rounds=12)
    assert make_plan(7, rounds=12) != make_plan(8, rounds=12)
    for network in (True, False):
        for seed in range(20):
            plan = make_plan(seed, rounds=8, network=network)
            kinds = [r.fault.kind for r in plan.rounds]
            assert kinds[:2] == ["none", "pause-at-check"] and plan.rounds[0].rival is not None
            expected = {"pause", "pause-at-check", "kill"} | ({"latency", "blackhole", "refuse"} if network else set())
            assert set(kinds) >= expected
            epochs = [r.epoch for r in plan.rounds]
            assert epochs == sorted(set(epochs))  # rising
            for before, this in zip(plan.rounds, plan.rounds[1:]):
                assert this.leader != before.leader and (this.target in (None, before.leader))
                if this.fault.kind == "pause-at-check":  # the previous leader owns its epoch
                    assert before.rival is None or before.rival_after_ack


def test_the_proxy_takes_the_databases_place_in_the_url():
    pg = Adapter("postgresql://app:secret@db.example:6543/app?sslmode=disable")
    assert pg.upstream() == ("db.example", 6543)
    assert pg.through("127.0.0.1", 9) == "postgresql://app:secret@127.0.0.1:9/app?sslmode=disable"
    assert Adapter("redis://127.0.0.1/3").upstream() == ("127.0.0.1", 6379)
    assert Adapter("sqlite:///tmp/a.db").upstream() is None
    assert Adapter("unix:///run/redis.sock").upstream() is None
    assert Adapter("bullyproof-store://127.0.0.1:7100").is_store
    assert Adapter("mysql://h/db", "m:f").upstream() is None  # no port, none known: no proxy


def test_a_call_without_an_outcome_is_unknown(tmp_path: Path):
    """What the processes recorded makes the history: a killed writer's last call has no outcome line."""
    (tmp_path / "writer-1.1.jsonl").write_text(
        '{"n": 1, "client": 1, "resource": "r", "kind": "write", "epoch": 3, "value": "1", "call_ns": 10}\n'
        '{"n": 1, "return_ns": 20, "result": "ok"}\n'
        '{"n": 2, "client": 1, "resource": "r", "kind": "write", "epoch": 3, "value": "2", "call_ns": 30}\n'
    )
    (tmp_path / "reader.1.jsonl").write_text(
        '{"n": 1, "client": 5, "resource": "r", "kind": "read", "call_ns": 25}\n'
        '{"n": 1, "return_ns": 26, "result": "ok", "observed": {"epoch": 3, "writer": 1, "value": "1"}}\n'
    )
    ops = collect(tmp_path)
    assert [(op["call_ns"], op["result"], op["return_ns"]) for op in ops] == [
        (10, "ok", 20),
        (25, "ok", 26),
        (30, "unknown", None),
    ]
    assert count(ops) == {"write": {"ok": 1, "unknown": 1}, "read": {"ok": 1}}
