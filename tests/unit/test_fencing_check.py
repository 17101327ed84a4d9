"""The fenced register judged by Porcupine (chaos/fencecheck) and the diagnostics (chaos/fencing_check),
on hand-written histories and on generated ones. No servers: one small Go binary, built by the set-up."""

from __future__ import annotations

import json
import random
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chaos.fencing_check import FencingVerdict, HistoryFormatError, check_history, diagnose, parse_ops
from chaos.tools import fencecheck_path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "chaos" / "fencecheck"
PORCUPINE = "github.com/anishathalye/porcupine"
PORCUPINE_VERSION = "v1.3.1"

Op = dict[str, Any]


def W(writer: int, epoch: int, value: str, call: int, ret: int | None, result: str, resource: str = "k") -> Op:
    return {
        "client": writer,
        "resource": resource,
        "kind": "write",
        "epoch": epoch,
        "value": value,
        "call_ns": call,
        "return_ns": ret,
        "result": result,
    }


def R(call: int, ret: int | None, seen: tuple[int, int, str] | None, reader: int = 100, resource: str = "k") -> Op:
    op: Op = {
        "client": reader,
        "resource": resource,
        "kind": "read",
        "call_ns": call,
        "return_ns": ret,
        "result": "ok" if seen is not None else "unknown",
    }
    if seen is not None:
        op["observed"] = dict(zip(("epoch", "writer", "value"), seen))
    return op


def verdict(*ops: Op, **kwargs: Any) -> FencingVerdict:
    return check_history({"ops": list(ops)}, **kwargs)


def counts(v: FencingVerdict) -> dict[str, int]:
    return {name: finding.count for name, finding in v.diagnostics.items() if finding.count}


# --- linearizable -------------------------------------------------------------------------------


def test_a_sequential_history_with_every_answer_is_linearizable() -> None:
    v = verdict(
        R(0, 1, (0, 0, "")),  # nothing written yet: the initial state
        W(1, 1, "a", 2, 10, "ok"),
        R(11, 12, (1, 1, "a")),
        W(1, 1, "a2", 13, 14, "ok"),  # the owner writes again in its epoch
        W(2, 2, "b", 15, 20, "ok"),
        W(1, 1, "c", 21, 22, "stale"),
        W(3, 2, "d", 23, 24, "taken"),
        R(25, 26, (2, 2, "b")),
    )
    assert v.linearizable and v.result == "Ok"
    assert (v.operations, v.indeterminate) == (8, 0)
    assert v.per_resource["k"]["linearizable"] is True
    assert counts(v) == {}


@pytest.mark.parametrize("first", [1, 2])
def test_concurrent_writes_in_one_epoch_either_may_win(first: int) -> None:
    """Two writers claim epoch 1 at once: whichever the store took first is accepted, the other is taken."""
    other = 3 - first
    v = verdict(
        W(first, 1, f"w{first}", 0, 10, "ok"),
        W(other, 1, f"w{other}", 5, 15, "taken"),
        R(20, 21, (1, first, f"w{first}")),
    )
    assert v.linearizable, v.lines()
    assert counts(v) == {}


@pytest.mark.parametrize("higher_first", [False, True])
def test_overlapping_writes_of_two_epochs_in_either_order(higher_first: bool) -> None:
    """Epoch 1 and epoch 2 overlap: if epoch 1 went first both are accepted; if epoch 2 did, 1 is stale."""
    v = verdict(
        W(1, 1, "a", 0, 10, "stale" if higher_first else "ok"),
        W(2, 2, "b", 5, 15, "ok"),
        R(6, 14, (2, 2, "b") if higher_first else (1, 1, "a")),  # a read in the middle sees the first
        R(20, 21, (2, 2, "b")),
    )
    assert v.linearizable, v.lines()
    assert counts(v) == {}


@pytest.mark.parametrize("took_effect", [False, True])
def test_an_indeterminate_write_may_have_taken_effect_or_not(took_effect: bool) -> None:
    v = verdict(
        W(1, 1, "a", 0, 10, "ok"),
        W(2, 2, "b", 11, None, "unknown"),
        R(20, 21, (2, 2, "b") if took_effect else (1, 1, "a")),
        R(22, 23, (2, 2, "b") if took_effect else (1, 1, "a")),
    )
    assert v.linearizable, v.lines()
    assert v.indeterminate == 1
    assert counts(v) == {"indeterminate": 1}
    assert v.diagnostics["indeterminate"].examples[0]["op"] == 1


def test_an_indeterminate_write_shows_in_a_later_refusal() -> None:
    """Nobody read it, but epoch 1 refused afterwards as stale: the unknown write at epoch 2 took effect."""
    v = verdict(W(1, 1, "a", 0, 10, "ok"), W(2, 2, "b", 11, None, "unknown"), W(1, 1, "c", 30, 31, "stale"))
    assert v.linearizable, v.lines()


def test_a_delayed_write_of_the_same_writer_and_epoch_may_land_late() -> None:
    """The store keeps no order among one writer's writes of one epoch: an unknown one may overwrite later."""
    v = verdict(
        W(1, 1, "a", 0, None, "unknown"),
        W(1, 1, "b", 1, 5, "ok"),
        R(6, 7, (1, 1, "b")),
        R(8, 9, (1, 1, "a")),
        W(2, 2, "c", 10, 12, "ok"),
        R(13, 14, (2, 2, "c")),
    )
    assert v.linearizable, v.lines()
    assert v.tightened == 1  # epoch 2, acknowledged at 12, ends the unknown write's window


def test_an_indeterminate_read_constrains_nothing() -> None:
    v = verdict(W(1, 1, "a", 0, 10, "ok"), R(11, None, None), R(12, 13, (1, 1, "a")))
    assert v.linearizable and v.indeterminate == 1


# --- not linearizable ---------------------------------------------------------------------------


def test_a_stale_write_accepted_after_a_higher_one_returned() -> None:
    v = verdict(W(2, 2, "b", 0, 10, "ok"), W(1, 1, "a", 11, 12, "ok"), R(13, 14, (2, 2, "b")))
    assert not v.linearizable and v.result == "Illegal"
    assert v.per_resource["k"]["linearizable"] is False
    assert counts(v) == {"stale_accepted": 1}
    example = v.diagnostics["stale_accepted"].examples[0]
    assert (example["op"], example["after"]) == (1, 0)


def test_two_writers_accepted_in_one_epoch() -> None:
    """The "taken" rule broken: sequentially, and while the two writes overlap."""
    for second_call in (11, 5):
        v = verdict(W(1, 1, "a", 0, 10, "ok"), W(2, 1, "b", second_call, 15, "ok"))
        assert not v.linearizable
        assert counts(v) == {"epoch_shared": 1}
        example = v.diagnostics["epoch_shared"].examples[0]
        assert (example["epoch"], example["writers"], example["ops"]) == (1, [1, 2], [0, 1])


def test_an_acknowledged_write_lost() -> None:
    v = verdict(W(1, 1, "a", 0, 10, "ok"), W(1, 1, "b", 11, 20, "ok"), R(21, 22, (1, 1, "a")))
    assert not v.linearizable
    assert counts(v) == {"lost_writes": 1}
    example = v.diagnostics["lost_writes"].examples[0]
    assert (example["op"], example["read"]) == (1, 2)


def test_a_read_of_a_value_never_written() -> None:
    v = verdict(W(1, 1, "a", 0, 10, "ok"), R(11, 12, (1, 1, "zzz")))
    assert not v.linearizable
    assert counts(v) == {"phantom_reads": 1, "lost_writes": 1}  # and "a" is not seen either
    assert v.diagnostics["phantom_reads"].examples[0]["op"] == 1


def test_a_refused_write_that_should_have_been_accepted() -> None:
    """The model checks refusals too, and their reason: the first write, and a wrong reason; the
    diagnostics name the refusal no write explains."""
    for ops in (
        [W(1, 1, "a", 0, 10, "stale")],
        [W(1, 2, "a", 0, 10, "ok"), W(2, 1, "b", 11, 12, "taken")],  # it was stale
        [W(1, 2, "a", 0, 10, "ok"), W(2, 2, "b", 11, 12, "stale")],  # it was taken
        [W(1, 2, "a", 0, 10, "ok"), W(1, 2, "b", 11, 12, "stale")],
    ):  # its owner's second write: `<=` for `<`
        v = verdict(*ops)
        assert not v.linearizable
        assert counts(v) == {"unexplained_refusals": 1}
        assert v.diagnostics["unexplained_refusals"].examples[0]["op"] == len(ops) - 1


def test_a_refusal_is_explained_by_a_write_that_may_have_come_first() -> None:
    """Stale: a higher epoch, accepted or unknown, called before the refusal returned (even if it
    returned later); taken: another writer's write of the epoch."""
    v = verdict(
        W(1, 1, "a", 0, 10, "ok"),
        W(2, 2, "b", 11, 30, "ok"),
        W(1, 1, "c", 12, 20, "stale"),
        W(3, 3, "d", 31, None, "unknown"),
        W(2, 2, "e", 32, 33, "stale"),
        W(4, 3, "f", 34, 35, "taken"),
    )
    assert v.linearizable, v.lines()
    assert counts(v) == {"indeterminate": 1}


def test_an_indeterminate_write_takes_effect_only_after_its_call() -> None:
    """The unknown write of epoch 2 was called after the read that saw it had returned."""
    v = verdict(W(1, 1, "a", 0, 10, "ok"), R(11, 12, (2, 2, "b")), W(2, 2, "b", 13, None, "unknown"))
    assert not v.linearizable
    assert counts(v) == {"indeterminate": 1}  # a write that may apply, later: the diagnostics see no phantom


def unknown_writes_each_fenced_then_a_stale_write_accepted(n: int) -> list[Op]:
    """n writes that never answered, each followed by an acknowledged write of a higher epoch, then a
    write of epoch 1 accepted: not linearizable. Left open to the end, the unknown writes give the
    search 2^n subsets to try."""
    ops = []
    for i in range(1, n + 1):
        ops += [
            W(i, 2 * i, f"lost{i}", 10 * i, None, "unknown"),
            W(n + i, 2 * i + 1, f"ack{i}", 10 * i + 1, 10 * i + 5, "ok"),
        ]
    return [*ops, W(1, 1, "late", 10 * n + 20, 10 * n + 30, "ok")]


def test_unknown_writes_end_where_a_known_outcome_fences_them() -> None:
    """Each acknowledged higher epoch ends the window of the unknown write before it: decided at once."""
    v = verdict(*unknown_writes_each_fenced_then_a_stale_write_accepted(40), timeout_s=10.0)
    assert v.result == "Illegal" and v.tightened == 40
    assert counts(v) == {"stale_accepted": 1, "indeterminate": 40}


def test_a_search_that_runs_out_of_time_is_undecided() -> None:
    """Without the tightening (Porcupine's plain way), 2^40 subsets: the timeout answers "Unknown"."""
    v = verdict(*unknown_writes_each_fenced_then_a_stale_write_accepted(40), timeout_s=0.5, plain=True)
    assert (v.result, v.linearizable, v.tightened) == ("Unknown", False, 0)
    assert v.per_resource["k"]["linearizable"] is None
    assert "undecided" in v.lines()[0]


def test_resources_are_judged_apart() -> None:
    v = verdict(
        W(1, 1, "a", 0, 10, "ok", resource="good"),
        R(11, 12, (1, 1, "a"), resource="good"),
        W(1, 1, "a", 0, 10, "ok", resource="bad"),
        R(11, 12, (0, 0, ""), resource="bad"),
        R(0, None, None, resource="only-unknown-reads"),
    )
    assert not v.linearizable
    assert {name: r["linearizable"] for name, r in v.per_resource.items()} == {
        "good": True,
        "bad": False,
        "only-unknown-reads": True,
    }
    assert v.per_resource["bad"]["operations"] == 2
    assert v.diagnostics["lost_writes"].examples[0]["op"] == 2


def test_the_visualization_is_written_for_a_failing_history_only(tmp_path: Path) -> None:
    page = tmp_path / "failing.html"
    v = verdict(W(2, 2, "b", 0, 10, "ok"), W(1, 1, "a", 11, 12, "ok"), html=page)
    assert v.visualization == page and "<html" in page.read_text()[:500].lower()
    assert "w1 write(epoch 1" in page.read_text()
    fine = tmp_path / "fine.html"
    assert verdict(W(1, 1, "a", 0, 10, "ok"), html=fine).visualization is None and not fine.exists()


# --- the format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, words",
    [
        ({**W(1, 1, "a", 0, 10, "ok"), "return_ns": None}, "null exactly when"),
        (W(1, 1, "a", 10, 5, "ok"), "before"),
        (W(1, 1, "a", 0, 5, "maybe"), "result"),
        ({**R(0, 5, None), "result": "ok"}, "observed"),
        ({k: v for k, v in W(1, 1, "a", 0, 5, "ok").items() if k != "call_ns"}, "call_ns"),
        (W(0, 1, "a", 0, 5, "ok"), "writer id"),
        (W(1, 0, "a", 0, 5, "ok"), "epoch"),
        ({**W(1, 1, "a", 0, 5, "ok"), "epcoh": 2}, "epcoh"),
        ({**R(0, 5, (0, 0, "")), "value": "x"}, "observed"),
    ],
)
def test_malformed_operations_are_refused_by_both_readers(op: Op, words: str) -> None:
    with pytest.raises(HistoryFormatError, match=words):
        parse_ops({"ops": [op]})
    done = subprocess.run([str(fencecheck_path())], input=json.dumps({"ops": [op]}), capture_output=True, text=True)
    assert done.returncode == 2 and "op 0" in done.stderr


def test_the_binary_reads_a_file_and_exits_with_the_verdict(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"ops": [W(1, 1, "a", 0, 10, "ok"), R(11, 12, (1, 1, "a"))], "meta": "ignored"}))
    done = subprocess.run([str(fencecheck_path()), str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout)["linearizable"] is True
    path.write_text(json.dumps({"ops": [W(1, 1, "a", 0, 10, "ok"), R(11, 12, (0, 0, ""))]}))
    assert subprocess.run([str(fencecheck_path()), str(path)], capture_output=True).returncode == 1


def test_the_documented_example_is_a_linearizable_history() -> None:
    doc = (ROOT / "docs" / "fencing-history.md").read_text()
    example = json.loads(re.search(r"```json\n(.*?)```", doc, re.S).group(1))
    v = check_history(example)
    assert v.linearizable and (v.operations, v.indeterminate) == (4, 1)


# --- the pin ------------------------------------------------------------------------------------


def test_the_binary_is_built_from_the_pinned_porcupine() -> None:
    """go.mod requires v1.3.1, go.sum (checked in) holds its hash, and the binary was built with
    exactly that module (Go records each dependency's version and sum in the binary)."""
    go_mod = (SOURCES / "go.mod").read_text()
    assert re.search(rf"^require {re.escape(PORCUPINE)} {re.escape(PORCUPINE_VERSION)}$", go_mod, re.M), go_mod
    sums = dict(line.rsplit(" ", 1) for line in (SOURCES / "go.sum").read_text().splitlines())
    pinned = sums[f"{PORCUPINE} {PORCUPINE_VERSION}"]
    tracked = subprocess.run(
        ["git", "ls-files", "go.mod", "go.sum", "build.sh"], cwd=SOURCES, capture_output=True, text=True
    ).stdout.split()
    assert sorted(tracked) == ["build.sh", "go.mod", "go.sum"]
    words = subprocess.run(
        [str(fencecheck_path()), "-version"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert words[2:] == [PORCUPINE, PORCUPINE_VERSION, pinned]
    # The set-up builds it (make test -> make tools -> .ci/install-tools), never changing the pins.
    assert "chaos/fencecheck/build.sh" in (ROOT / ".ci" / "install-tools").read_text()
    assert "-mod=readonly" in (SOURCES / "build.sh").read_text()


def test_the_binary_is_rebuilt_only_when_its_sources_change() -> None:
    """The binary reports the hash of the sources it was built from; the build script is a no-op then."""
    stamped = subprocess.run([str(fencecheck_path()), "-version"], capture_output=True, text=True).stdout.split()[1]
    assert re.fullmatch(r"[0-9a-f]{16}", stamped)
    again = subprocess.run(["bash", str(SOURCES / "build.sh")], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == str(fencecheck_path()) and "building" not in again.stderr


# --- generated histories ------------------------------------------------------------------------


def correct_history(rng: random.Random, resource: str, n_ops: int = 40, writers: int = 3, readers: int = 2) -> list[Op]:
    """A run of a correct fenced register: each client calls one operation at a time; every operation
    takes effect at one instant inside its interval (random overlaps), applied in that order. Some
    writes and reads end "unknown": such a write took effect, or never did."""
    clients = list(range(1, writers + 1)) + [100 + r for r in range(readers)]
    free = dict.fromkeys(clients, 0)
    era = 1
    planned = []
    for i in range(n_ops):
        client = rng.choice(clients)
        call = free[client] + rng.randint(0, 20)
        effect = call + rng.randint(0, 30)
        ret = effect + rng.randint(0, 30)
        free[client] = ret + 1
        era += rng.random() < 0.15
        planned.append((effect, i, client, call, ret, max(1, era + rng.randint(-2, 0))))
    state = (0, 0, "")
    ops: list[tuple[int, Op]] = []
    for _effect, i, client, call, ret, epoch in sorted(planned):
        unknown = rng.random() < 0.1
        if client < 100:
            highest, owner, _ = state
            result = "stale" if epoch < highest else "taken" if epoch == highest and client != owner else "ok"
            if result == "ok" and (not unknown or rng.random() < 0.5):  # an unknown write may never arrive
                state = (epoch, client, f"v{i}")
            op = W(
                client,
                epoch,
                f"v{i}",
                call,
                None if unknown else ret,
                "unknown" if unknown else result,
                resource=resource,
            )
        else:
            op = R(call, None if unknown else ret, None if unknown else state, reader=client, resource=resource)
        ops.append((i, op))
    return [op for _, op in sorted(ops, key=lambda pair: pair[0])]


def corrupt_stale(ops: list[Op], rng: random.Random) -> int | None:
    """Flip to "ok" a stale write called strictly after a higher write was acknowledged: must be caught."""
    acked = [op for op in ops if op["kind"] == "write" and op["result"] == "ok"]
    candidates = [
        i
        for i, op in enumerate(ops)
        if op["kind"] == "write"
        and op["result"] == "stale"
        and any(a["epoch"] > op["epoch"] and a["return_ns"] < op["call_ns"] for a in acked)
    ]
    if not candidates:
        return None
    victim = rng.choice(candidates)
    ops[victim]["result"] = "ok"
    return victim


def corrupt_taken(ops: list[Op], rng: random.Random) -> int | None:
    """Flip to "ok" a write refused as taken after its epoch's owner was acknowledged: must be caught."""
    acked = [op for op in ops if op["kind"] == "write" and op["result"] == "ok"]
    candidates = [
        i
        for i, op in enumerate(ops)
        if op["kind"] == "write"
        and op["result"] == "taken"
        and any(
            a["epoch"] == op["epoch"] and a["client"] != op["client"] and a["return_ns"] < op["call_ns"] for a in acked
        )
    ]
    if not candidates:
        return None
    victim = rng.choice(candidates)
    ops[victim]["result"] = "ok"
    return victim


def corrupt_read(ops: list[Op], rng: random.Random) -> int | None:
    """A read that saw a state nobody wrote: must be caught."""
    candidates = [i for i, op in enumerate(ops) if op["kind"] == "read" and op["result"] == "ok"]
    if not candidates:
        return None
    victim = rng.choice(candidates)
    ops[victim]["observed"] = {"epoch": 99, "writer": 1, "value": "never written"}
    return victim


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_correct_histories_are_linearizable_and_their_corruptions_are_not(seed: int) -> None:
    """One history of many resources per check (each resource its own run): all correct ones pass with
    clean diagnostics; each corrupted copy fails, in its own resource, with the matching diagnostic."""
    rng = random.Random(seed)
    print(f"seed {seed}")
    correct: list[Op] = []
    corrupted: list[Op] = []
    caught_by: dict[str, tuple[str, int]] = {}  # resource -> (diagnostic, op index within the history)
    corruptions = {"stale_accepted": corrupt_stale, "epoch_shared": corrupt_taken, "phantom_reads": corrupt_read}
    for run in range(60):
        ops = correct_history(rng, f"s{seed}-{run}", n_ops=rng.randint(10, 50))
        correct += ops
        for diagnostic, corrupt in corruptions.items():
            resource = f"s{seed}-{run}-{diagnostic}"
            copy = [
                {**op, "resource": resource, "observed": dict(op["observed"])}
                if "observed" in op
                else {**op, "resource": resource}
                for op in ops
            ]
            if (victim := corrupt(copy, rng)) is not None:
                corrupted += copy
                caught_by[resource] = (diagnostic, victim)

    good = check_history({"ops": correct})
    assert good.linearizable, good.lines()
    assert {name: f.count for name, f in good.diagnostics.items() if f.count and name != "indeterminate"} == {}
    assert good.indeterminate > 0  # the generator did exercise unknown outcomes

    assert len(caught_by) >= 60, "too few corruptions to mean anything"
    assert {d for d, _ in caught_by.values()} == set(corruptions)
    bad = check_history({"ops": corrupted})
    assert not bad.linearizable
    wrong = {r for r in caught_by if bad.per_resource[r]["linearizable"] is not False}
    assert not wrong, f"seed {seed}: corruptions judged linearizable: {sorted(wrong)}"
    # Ending unknown writes' windows early (fencecheck's default) changes no verdict: Porcupine's plain way agrees.
    assert good.tightened > 0 and bad.tightened > 0
    assert check_history({"ops": correct}, plain=True).linearizable
    plain = check_history({"ops": corrupted}, plain=True, timeout_s=30.0)
    assert {r: v["linearizable"] for r, v in plain.per_resource.items()} == {
        r: v["linearizable"] for r, v in bad.per_resource.items()
    }
    for resource, (diagnostic, victim) in caught_by.items():
        alone = [op for op in corrupted if op["resource"] == resource]
        finding = diagnose({"ops": alone})[diagnostic]
        assert finding.count >= 1, f"seed {seed}, {resource}: {diagnostic} did not flag op {victim}"
        if diagnostic != "epoch_shared":
            assert victim in {example["op"] for example in finding.examples}, (resource, finding)
