"""Fencing, judged by a linearizability checker: the verdict of a fenced store's conformance check.

A history of writes and reads against a fenced store (ours, or an adapter enforcing the same rule in
another database) is judged by fencecheck (chaos/fencecheck: Porcupine against the fenced register,
one register per resource). Porcupine is the judge. The diagnostics here, computed from the same
history, say what kind of failure it is; each is a count with examples:

* stale_accepted: an "ok" write whose epoch is below that of a write acknowledged before it was called;
* epoch_shared: two writers accepted in one epoch of a resource (the store must answer "taken");
* lost_writes: an acknowledged write that a read called after it returned does not see, and that no
  write at a higher epoch (or a later one of the same writer and epoch) explains;
* phantom_reads: a read that saw a state no write (accepted or indeterminate) could have made;
* unexplained_refusals: a write refused "stale" though no write of a higher epoch (accepted or
  indeterminate) was called before the refusal returned, or "taken" though no other writer's write of
  that epoch was (a current epoch refused: `<=` for `<`, or a refusal of the wrong kind);
* indeterminate: operations whose outcome the client never learned.

A history is {"ops": [op, ...]} (docs/fencing-history.md; the model: docs/design.md, "Fencing, judged
by a linearizability checker"):

    {"client": int, "resource": str, "kind": "write"|"read", "epoch": int, "value": str,
     "call_ns": int, "return_ns": int|null, "result": "ok"|"stale"|"taken"|"unknown",
     "observed": {"epoch": int, "writer": int, "value": str}}

    python -m chaos.fencing_check HISTORY.json [--html FILE]   # prints the verdict as JSON
"""

from __future__ import annotations

import bisect
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaos.tools import fencecheck_path

EXAMPLES_LIMIT = 5  # examples kept per diagnostic; the count is always the full one
DEFAULT_TIMEOUT_S = 60.0
INITIAL = (0, 0, "")  # (epoch, writer, value) of a resource nobody wrote
MAX_WRITER_ID = 2**32 - 1  # as the store takes it (node/store/db.py)
FIELDS = {"client", "resource", "kind", "epoch", "value", "call_ns", "return_ns", "result", "observed"}

History = Mapping[str, Any] | Sequence[Mapping[str, Any]]


class HistoryFormatError(ValueError):
    """The history does not follow the format; the message names the operation and the field."""


@dataclass(frozen=True)
class Op:
    index: int  # position in "ops"
    client: int
    resource: str
    kind: str  # "write" | "read"
    call_ns: int
    return_ns: int | None
    result: str
    epoch: int = 0  # writes
    value: str = ""  # writes
    observed: tuple[int, int, str] | None = None  # reads that returned: (epoch, writer, value)

    @property
    def state(self) -> tuple[int, int, str]:
        """What an accepted write makes the register: (epoch, writer, value)."""
        return (self.epoch, self.client, self.value)


@dataclass(frozen=True)
class Finding:
    count: int
    examples: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class FencingVerdict:
    linearizable: bool
    result: str  # Porcupine's: "Ok", "Illegal", "Unknown" (timed out)
    operations: int
    indeterminate: int
    per_resource: dict[str, dict[str, Any]]
    diagnostics: dict[str, Finding]
    tightened: int = 0  # unknown writes given an earlier return than the end (fencecheck's noOpFrom)
    checker: dict[str, str] = field(default_factory=dict)  # Porcupine's version and sum, the sources' hash
    visualization: Path | None = None  # Porcupine's HTML page, when asked for and not linearizable

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["visualization"] = str(self.visualization) if self.visualization else None
        return out

    def lines(self) -> list[str]:
        """The verdict in words, for a report."""
        head = {"Ok": "linearizable", "Illegal": "NOT linearizable", "Unknown": "undecided (the checker timed out)"}
        out = [
            f"fenced register: {head.get(self.result, self.result)} "
            f"({self.operations} operations, {self.indeterminate} indeterminate)"
        ]
        out += [
            f"  resource {name!r}: not linearizable"
            for name, r in sorted(self.per_resource.items())
            if r.get("linearizable") is False
        ]
        for name, finding in self.diagnostics.items():
            if finding.count:
                out.append(f"  {name}: {finding.count}")
                out += [f"    {example['what']}" for example in finding.examples]
        if self.visualization:
            out.append(f"  visualization: {self.visualization}")
        return out


def check_history(
    history: History,
    *,
    html: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    plain: bool = False,
    binary: Path | None = None,
) -> FencingVerdict:
    """Porcupine's verdict on `history` (fencecheck, built on first use) and the diagnostics.

    `html`: where to write Porcupine's visualization if the history is not linearizable.
    `plain`: every unknown write returns after every event, as Porcupine's documentation does it,
    without fencecheck's tightening (same verdicts, but a failing history with many unknown writes
    can take exponential time).
    Raises HistoryFormatError for a malformed history (checked here first, then by fencecheck)."""
    ops = parse_ops(history)
    diagnostics = diagnose(ops)
    document = {"ops": [_op_json(op) for op in ops]}
    argv = [str(binary or fencecheck_path()), "-timeout", f"{timeout_s}s"]
    if html is not None:
        argv += ["-html", str(html)]
    if plain:
        argv.append("-plain")
    with tempfile.TemporaryFile("w+") as stdin:  # a file, not a pipe: large histories, no deadlock
        json.dump(document, stdin)
        stdin.seek(0)
        done = subprocess.run(argv, stdin=stdin, capture_output=True, text=True, timeout=timeout_s + 30.0)
    if done.returncode == 2:
        raise HistoryFormatError(done.stderr.strip())
    if done.returncode not in (0, 1, 3):
        raise RuntimeError(f"fencecheck failed ({done.returncode}): {done.stderr.strip()}")
    verdict = json.loads(done.stdout)
    return FencingVerdict(
        linearizable=verdict["linearizable"],
        result=verdict["result"],
        operations=verdict["operations"],
        indeterminate=verdict["indeterminate"],
        per_resource=verdict["per_resource"],
        diagnostics=diagnostics,
        tightened=verdict["tightened"],
        checker=verdict["checker"],
        visualization=Path(verdict["visualization"]) if verdict["visualization"] else None,
    )


# --- the history --------------------------------------------------------------------------------


def parse_ops(history: History) -> list[Op]:
    """The history's operations ({"ops": [...]} or the list itself), checked against the format."""
    items = history.get("ops") if isinstance(history, Mapping) else history
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise HistoryFormatError('the history is {"ops": [...]}')
    return [_parse_op(i, item) for i, item in enumerate(items)]


def _parse_op(i: int, item: Any) -> Op:
    def need(name: str, kind: type, where: Mapping[str, Any] | None = None) -> Any:
        value = (item if where is None else where).get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise HistoryFormatError(f"op {i}: {name!r} must be {kind.__name__}, got {value!r}")
        return value

    if not isinstance(item, Mapping):
        raise HistoryFormatError(f"op {i}: not an object")
    if unknown_fields := sorted(set(item) - FIELDS):
        raise HistoryFormatError(f"op {i}: unknown field(s) {', '.join(map(repr, unknown_fields))}")
    kind, result = item.get("kind"), item.get("result")
    call_ns = need("call_ns", int)
    return_ns = item.get("return_ns")
    if (result == "unknown") != (return_ns is None):
        raise HistoryFormatError(f'op {i}: "return_ns" is null exactly when "result" is "unknown"')
    if return_ns is not None and (need("return_ns", int) < call_ns):
        raise HistoryFormatError(f'op {i}: "return_ns" {return_ns} is before "call_ns" {call_ns}')
    common = dict(
        index=i,
        client=need("client", int),
        resource=need("resource", str),
        kind=kind,
        call_ns=call_ns,
        return_ns=return_ns,
        result=result,
    )
    if kind == "write":
        if result not in ("ok", "stale", "taken", "unknown"):
            raise HistoryFormatError(f'op {i}: a write\'s "result" is ok, stale, taken or unknown, not {result!r}')
        if not 0 < common["client"] <= MAX_WRITER_ID or need("epoch", int) < 1:
            raise HistoryFormatError(
                f'op {i}: a write\'s "client" is its writer id (1..{MAX_WRITER_ID}) and its "epoch" is at least 1'
            )
        if "observed" in item:
            raise HistoryFormatError(f'op {i}: a write has no "observed"')
        return Op(**common, epoch=need("epoch", int), value=need("value", str))
    if kind == "read":
        if "epoch" in item or "value" in item:
            raise HistoryFormatError(f'op {i}: a read has no "epoch" or "value" (what it saw is "observed")')
        if result == "ok":
            seen = item.get("observed")
            if not isinstance(seen, Mapping):
                raise HistoryFormatError(f'op {i}: a read that returned needs "observed"')
            return Op(
                **common, observed=(need("epoch", int, seen), need("writer", int, seen), need("value", str, seen))
            )
        if result != "unknown":
            raise HistoryFormatError(f'op {i}: a read\'s "result" is ok or unknown, not {result!r}')
        return Op(**common)
    raise HistoryFormatError(f'op {i}: "kind" is write or read, not {kind!r}')


def _op_json(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {
        "client": op.client,
        "resource": op.resource,
        "kind": op.kind,
        "call_ns": op.call_ns,
        "return_ns": op.return_ns,
        "result": op.result,
    }
    if op.kind == "write":
        out |= {"epoch": op.epoch, "value": op.value}
    elif op.observed is not None:
        out["observed"] = dict(zip(("epoch", "writer", "value"), op.observed))
    return out


# --- the diagnostics ----------------------------------------------------------------------------


def diagnose(history: History | Iterable[Op]) -> dict[str, Finding]:
    """What kind of failure a history shows (see the module's docstring); computed in Python alone."""
    if isinstance(history, Mapping):
        ops = parse_ops(history)
    else:
        items = list(history)
        ops = items if all(isinstance(op, Op) for op in items) else parse_ops(items)
    by_resource: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_resource[op.resource].append(op)
    found: dict[str, list[dict[str, Any]]] = {
        name: [] for name in ("stale_accepted", "epoch_shared", "lost_writes", "phantom_reads", "unexplained_refusals")
    }
    for resource in sorted(by_resource):
        resource_ops = by_resource[resource]
        found["stale_accepted"] += _stale_accepted(resource_ops)
        found["epoch_shared"] += _epoch_shared(resource, resource_ops)
        lost, phantom = _lost_and_phantom(resource_ops)
        found["lost_writes"] += lost
        found["phantom_reads"] += phantom
        found["unexplained_refusals"] += _unexplained_refusals(resource_ops)
    found["indeterminate"] = [
        {"op": op.index, "what": f"{_words(op)}: outcome unknown"} for op in ops if op.result == "unknown"
    ]
    return {name: Finding(len(examples), tuple(examples[:EXAMPLES_LIMIT])) for name, examples in found.items()}


def _stale_accepted(ops: list[Op]) -> list[dict[str, Any]]:
    """Accepted writes below an epoch acknowledged before they were called."""
    acked = sorted((op for op in ops if op.kind == "write" and op.result == "ok"), key=lambda op: op.return_ns)
    returns = [op.return_ns for op in acked]
    highest: list[Op] = []  # highest[i]: the highest-epoch write among acked[:i+1]
    for op in acked:
        highest.append(op if not highest or op.epoch > highest[-1].epoch else highest[-1])
    out = []
    for op in sorted(acked, key=lambda op: op.index):
        before = bisect.bisect_left(returns, op.call_ns)  # acked[:before] returned strictly before the call
        if before and highest[before - 1].epoch > op.epoch:
            above = highest[before - 1]
            out.append(
                {
                    "op": op.index,
                    "after": above.index,
                    "what": f"{_words(op)} was accepted after {_words(above)} had been acknowledged",
                }
            )
    return out


def _epoch_shared(resource: str, ops: list[Op]) -> list[dict[str, Any]]:
    """Epochs of a resource in which more than one writer was accepted."""
    writers: dict[int, dict[int, int]] = defaultdict(dict)  # epoch -> writer -> first accepted op
    for op in ops:
        if op.kind == "write" and op.result == "ok":
            writers[op.epoch].setdefault(op.client, op.index)
    return [
        {
            "resource": resource,
            "epoch": epoch,
            "writers": sorted(ws),
            "ops": sorted(ws.values()),
            "what": f"{resource!r} epoch {epoch}: writers {', '.join(map(str, sorted(ws)))} were all accepted "
            f"(ops {', '.join(map(str, sorted(ws.values())))})",
        }
        for epoch, ws in sorted(writers.items())
        if len(ws) > 1
    ]


def _unexplained_refusals(ops: list[Op]) -> list[dict[str, Any]]:
    """Refusals no write could have caused: "stale" needs a higher epoch, "taken" another writer's
    write of the same epoch, accepted or indeterminate and called before the refusal returned."""
    may_apply = sorted(
        (op for op in ops if op.kind == "write" and op.result in ("ok", "unknown")), key=lambda op: op.call_ns
    )
    calls = [w.call_ns for w in may_apply]
    out = []
    for op in ops:
        if op.kind != "write" or op.result not in ("stale", "taken"):
            continue
        before = may_apply[: bisect.bisect_right(calls, op.return_ns)]
        if op.result == "stale":
            explained = any(w.epoch > op.epoch for w in before)
            needed = "no write of a higher epoch"
        else:
            explained = any(w.epoch == op.epoch and w.client != op.client for w in before)
            needed = "no other writer's write of that epoch"
        if not explained:
            out.append({"op": op.index, "what": f"{_words(op)}: {needed} could have come before it"})
    return out


def _lost_and_phantom(ops: list[Op]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Acknowledged writes a later read does not see (unexplained), and reads of states never written."""
    may_apply = [op for op in ops if op.kind == "write" and op.result in ("ok", "unknown")]
    # For each state a write may have made, the latest moment that write could have taken effect.
    latest: dict[tuple[int, int, str], float] = {}
    for op in may_apply:
        latest[op.state] = max(latest.get(op.state, -1), float("inf") if op.return_ns is None else op.return_ns)
    acked = sorted((op for op in ops if op.kind == "write" and op.result == "ok"), key=lambda op: -op.epoch)
    lost: dict[int, dict[str, Any]] = {}
    phantom = []
    for read in sorted((op for op in ops if op.kind == "read" and op.observed is not None), key=lambda op: op.index):
        seen = read.observed
        assert seen is not None
        if seen != INITIAL and seen not in latest:
            phantom.append({"op": read.index, "what": f"{_words(read)}: no write could have made that state"})
        for write in acked:  # highest epoch first; those below what the read saw are explained by it
            if write.epoch < seen[0]:
                break
            if write.return_ns >= read.call_ns or write.index in lost or write.state == seen:
                continue
            # The read saw another state of this epoch: only a later write by the same writer explains it.
            if write.epoch == seen[0] and write.client == seen[1] and latest.get(seen, -1) >= write.call_ns:
                continue
            lost[write.index] = {
                "op": write.index,
                "read": read.index,
                "what": f"{_words(write)} was acknowledged before {_words(read)} was called, which does not see it",
            }
    return [lost[i] for i in sorted(lost)], phantom


def _words(op: Op) -> str:
    if op.kind == "write":
        return f"op {op.index} (writer {op.client} on {op.resource!r}: epoch {op.epoch}, {op.value!r} -> {op.result})"
    if op.observed is None:
        return f"op {op.index} (read of {op.resource!r} by {op.client} -> {op.result})"
    epoch, writer, value = op.observed
    return f"op {op.index} (read of {op.resource!r} by {op.client} -> epoch {epoch}, writer {writer}, {value!r})"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m chaos.fencing_check", description=__doc__.split("\n")[0])
    parser.add_argument("history", type=Path, help='a history file ({"ops": [...]})')
    parser.add_argument("--html", type=Path, help="write Porcupine's visualization here if not linearizable")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds for the checker")
    args = parser.parse_args(argv)
    try:
        verdict = check_history(json.loads(args.history.read_text()), html=args.html, timeout_s=args.timeout)
    except (HistoryFormatError, json.JSONDecodeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(verdict.lines()), file=sys.stderr)
    print(json.dumps(verdict.to_json()))
    return {"Ok": 0, "Illegal": 1}.get(verdict.result, 3)


if __name__ == "__main__":
    sys.exit(main())
