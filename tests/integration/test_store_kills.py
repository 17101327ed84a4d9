"""The store's log survives SIGKILL during writes, over many kills (issue 12, part 5: durability).

Three writers act as leaders the way a node does (node/runtime/duty.py): each takes a fresh epoch from a
shared election counter, claims it first (`claim_key`), then writes duty records under it until a newer
epoch fences it off; now and then one contends for the newest epoch, or keeps writing after it was fenced
off. The store is SIGKILLed at random moments while their writes are in flight and restarted on the same
data directory. After every restart the whole log is read back over gRPC (ReadLog) and checked:

(a) every acknowledged write is there, at the seq its reply gave, with its key, value, epoch, writer and
    decision: an acknowledged write is never lost;
(b) seqs are exactly 1..n; every row is a write some writer sent, once (one whose call failed may be
    missing, but if present it is exactly what was sent), and nothing sent after the store died is there;
(c) the log replays under the fencing rule (`decide`) to exactly the decisions it records and to the
    highest epoch and owner the store reports, which never goes back; a stale epoch, and another writer's
    claim of the highest epoch, are still refused after the restart;
(d) the store opens its database every time (it starts, listens and writes nothing to stderr), and a copy
    of the files it left behind when killed passes SQLite's integrity_check.

A SIGKILL cannot lose what the kernel already has (a power loss can): these kills prove the store never
acknowledges a write before its commit and keeps no fencing state only in memory. That each commit is
also fsynced (WAL, synchronous=FULL) is asserted directly by the last test.

STORE_KILLS_SEED=<n> repeats a run's random choices (thread timing still varies); the seed and the counts
are printed (pytest -s, or in the report of a failure).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from test_store_process import (
    EXIT_TIMEOUT_S,
    RPC_TIMEOUT_S,
    StoreProcess,
    read_all,
    start_store,  # noqa: F401 (a fixture)
    store_errors,
)

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.launcher.cluster import wait_for
from node.store.db import FencedStoreDB, claim_key, decide
from node.store.server import DB_FILE

pytestmark = pytest.mark.integration

KILLS = 60
WRITERS = 3
MAX_KILL_DELAY_S = 0.12  # after the cycle's first acknowledged write
ELECTION_CHANCE = 0.03  # per write: this writer takes a fresh epoch (a new election it wins)
CONTEND_CHANCE = 0.15  # per election: take the newest epoch already handed out, which may be another's
NOTICE_CHANCE = 0.7  # per rejected write: the writer notices it was fenced off and seeks a new epoch
READ_PAGE = 10_000  # MAX_LIMIT: a few pages read the whole log


@dataclass
class Attempt:
    """One Write call: what was sent and when, and its reply, or the status it failed with."""

    request: pb.WriteRequest
    cycle: int
    sent_s: float
    reply: pb.WriteReply | None = None
    error: grpc.StatusCode | None = None
    failed_s: float | None = None


class History:
    """Every attempt by every writer, in the order they were sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts: list[Attempt] = []
        self.by_key: dict[str, Attempt] = {}
        self.acked = 0

    def send(self, stub: pb_grpc.FencedStoreStub, request: pb.WriteRequest, cycle: int) -> Attempt:
        attempt = Attempt(request, cycle, time.monotonic())
        with self.lock:
            assert request.key not in self.by_key, f"test bug: key {request.key!r} sent twice"
            self.attempts.append(attempt)
            self.by_key[request.key] = attempt
        try:
            reply = stub.Write(request, timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            attempt.error, attempt.failed_s = exc.code(), time.monotonic()
            raise
        with self.lock:
            attempt.reply = reply
            self.acked += 1
        return attempt


class Election:
    """Hands out epochs, as elections would: each is fresh unless a writer contends for the newest."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latest = 0

    def new_epoch(self, above: int, rng: random.Random) -> int:
        with self.lock:
            if self.latest > above and rng.random() < CONTEND_CHANCE:
                return self.latest
            self.latest += 1
            return self.latest


class Writer:
    """One leader-like writer; its epoch and counter carry over from one store process to the next."""

    def __init__(self, writer_id: int, election: Election, history: History, rng: random.Random) -> None:
        self.writer_id, self.election, self.history, self.rng = writer_id, election, history, rng
        self.epoch = 0
        self.counter = 0
        self.fenced = True  # no epoch yet
        self.failure: BaseException | None = None

    def run(self, address: str, cycle: int, stop: threading.Event) -> None:
        """Write until stopped or until a call fails (the store was killed: the outcome is unknown)."""
        try:
            with grpc.insecure_channel(address) as ch:
                stub = pb_grpc.FencedStoreStub(ch)
                while not stop.is_set():
                    if self.fenced or self.rng.random() < ELECTION_CHANCE:
                        # A new epoch: its claim is the first write, as node/runtime/duty.py does it.
                        self.epoch = self.election.new_epoch(self.epoch, self.rng)
                        self.fenced = False
                        key, value = claim_key(self.writer_id, self.epoch), b""
                    else:
                        self.counter += 1
                        key, value = f"duty/{self.writer_id}/{self.epoch}/{self.counter}", str(self.counter).encode()
                    request = pb.WriteRequest(writer_id=self.writer_id, epoch=self.epoch, key=key, value=value)
                    try:
                        attempt = self.history.send(stub, request, cycle)
                    except grpc.RpcError:
                        return
                    if not attempt.reply.accepted and self.rng.random() < NOTICE_CHANCE:
                        self.fenced = True
        except BaseException as exc:  # surfaced by the test after join
            self.failure = exc


def check_log(
    entries: list[pb.LogEntry], highest_epoch: int, owner_id: int, attempts: list[Attempt], floor: int
) -> int:
    """Raise AssertionError naming the first broken promise; return the highest epoch (the next floor).

    `attempts` is every write sent so far; `floor` is the highest epoch the store has revealed so far
    (in a reply or a previous ReadLog): it is durable, so it may never be undercut.
    """
    # (b) seqs are 1..n in order: no gap, no duplicate, no reordering.
    for index, entry in enumerate(entries):
        assert entry.seq == index + 1, f"seqs not dense: position {index + 1} holds seq {entry.seq}"
    by_key = {a.request.key: a for a in attempts}
    seen: set[str] = set()
    for e in entries:
        assert e.key not in seen, f"seq {e.seq}: key {e.key!r} recorded twice"
        seen.add(e.key)
        attempt = by_key.get(e.key)
        assert attempt is not None, f"seq {e.seq}: key {e.key!r} was never sent"
        r = attempt.request
        assert (e.writer_id, e.epoch, e.value) == (r.writer_id, r.epoch, r.value), (
            f"seq {e.seq}: recorded writer {e.writer_id} epoch {e.epoch} value {e.value!r} for {e.key!r},"
            f" sent writer {r.writer_id} epoch {r.epoch} value {r.value!r}"
        )

    # (c) the recorded decisions are the fencing rule's, replayed from an empty store.
    highest, owner = 0, 0
    highest_after: list[int] = []
    for e in entries:
        reason = decide(highest, owner, e.writer_id, e.epoch)
        assert (e.accepted, e.reason) == (reason is None, reason or ""), (
            f"seq {e.seq}: recorded accepted={e.accepted} {e.reason!r} for writer {e.writer_id} epoch {e.epoch};"
            f" the fencing rule says accepted={reason is None} {reason or ''!r}"
        )
        if reason is None:
            highest, owner = e.epoch, e.writer_id
        highest_after.append(highest)
    assert (highest_epoch, owner_id) == (highest, owner), (
        f"store reports highest epoch {highest_epoch} owned by {owner_id}; its log says {highest} owned by {owner}"
    )
    assert highest_epoch >= floor, f"highest epoch went back: {highest_epoch} after {floor} was revealed"

    # (a) every acknowledged write is where its reply said, with the decision its reply gave.
    for a in attempts:
        if a.reply is None:
            continue
        seq, key = a.reply.seq, a.request.key
        e = entries[seq - 1] if 0 < seq <= len(entries) else None
        assert e is not None and e.key == key, (
            f"acknowledged write lost: {key!r} (seq {seq}, accepted={a.reply.accepted}) is"
            f" {'not in the log' if e is None else f'replaced by {e.key!r}'}"
        )
        assert (e.accepted, e.reason, highest_after[seq - 1]) == (
            a.reply.accepted,
            a.reply.reason,
            a.reply.highest_epoch,
        ), (
            f"seq {seq}: logged accepted={e.accepted} {e.reason!r} (highest {highest_after[seq - 1]});"
            f" replied accepted={a.reply.accepted} {a.reply.reason!r} (highest {a.reply.highest_epoch})"
        )
    return highest_epoch


def probe_fencing(
    stub: pb_grpc.FencedStoreStub, history: History, highest_epoch: int, owner_id: int, cycle: int
) -> None:
    """(c) After a restart the store still refuses a stale epoch and another writer's claim of the highest."""
    if highest_epoch == 0:
        return
    other = owner_id % WRITERS + 1
    taken = history.send(stub, pb.WriteRequest(writer_id=other, epoch=highest_epoch, key=f"probe/{cycle}/owned"), cycle)
    assert (taken.reply.accepted, taken.reply.reason) == (
        False,
        f"epoch {highest_epoch} already owned by writer {owner_id}",
    ), f"cycle {cycle}: {taken.reply}"
    if highest_epoch > 1:
        stale = history.send(
            stub, pb.WriteRequest(writer_id=owner_id, epoch=highest_epoch - 1, key=f"probe/{cycle}/stale"), cycle
        )
        assert (stale.reply.accepted, stale.reply.reason) == (
            False,
            f"stale epoch {highest_epoch - 1} < highest {highest_epoch}",
        ), f"cycle {cycle}: {stale.reply}"


def integrity_check(db_path: Path, scratch: Path) -> None:
    """(d) SQLite's own check, on a copy: opening the real file here would recover its WAL for the store."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    for suffix in ("", "-wal", "-journal"):
        if db_path.with_name(db_path.name + suffix).exists():
            shutil.copy(db_path.with_name(db_path.name + suffix), scratch / (DB_FILE + suffix))
    with sqlite3.connect(scratch / DB_FILE) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


def check_store(store: StoreProcess, history: History, floor: int, cycle: int) -> tuple[int, list[pb.LogEntry]]:
    """Read the whole log, check it against every attempt so far, then probe the fencing; the new floor."""
    with grpc.insecure_channel(store.address) as ch:
        stub = pb_grpc.FencedStoreStub(ch)
        entries, highest_epoch, owner_id = read_all(stub, limit=READ_PAGE)
        with history.lock:
            attempts = list(history.attempts)
        floor = check_log(entries, highest_epoch, owner_id, attempts, floor)
        probe_fencing(stub, history, highest_epoch, owner_id, cycle)
    return floor, entries


def kill(store: StoreProcess) -> tuple[float, float]:
    """SIGKILL by pid; the moment before the signal, and the moment the process was certainly gone."""
    kill_s = time.monotonic()
    os.kill(store.proc.pid, signal.SIGKILL)
    assert store.proc.wait(EXIT_TIMEOUT_S) == -signal.SIGKILL
    dead_s = time.monotonic()
    store.proc.stdout.close()
    # Plaintext here (the store's durability, not who may write): its one stderr line is that warning.
    errors = store_errors(store)
    assert errors == [], f"store wrote to stderr: {errors}"
    return kill_s, dead_s


@pytest.mark.slow
def test_acknowledged_writes_survive_many_sigkills_during_writes(start_store, tmp_path: Path):  # noqa: F811 (the fixture imported above)
    seed = int(os.environ.get("STORE_KILLS_SEED") or random.randrange(2**32))
    print(f"store kills: seed {seed} (STORE_KILLS_SEED={seed} to repeat)")
    rng = random.Random(seed)
    data_dir, db_path = tmp_path / "data", tmp_path / "data" / DB_FILE
    history, election = History(), Election()
    writers = [Writer(w, election, history, random.Random(rng.getrandbits(64))) for w in range(1, WRITERS + 1)]
    counts: Counter[str] = Counter()
    pending: list[Attempt] = []  # failed calls of the last cycle that were in flight when it was killed
    after_death: set[str] = set()  # keys of the last cycle's calls sent once its store was gone
    floor = 0
    began_s = time.monotonic()

    store = start_store(data_dir)
    for cycle in range(KILLS):
        floor, entries = check_store(store, history, floor, cycle)
        present = {e.key for e in entries}
        counts["in-flight writes found committed"] += sum(a.request.key in present for a in pending)
        assert not after_death & present, f"seed {seed}: writes sent to a dead store were logged"

        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(store.address, cycle, stop), daemon=True) for w in writers]
        acked_before = history.acked
        for t in threads:
            t.start()
        try:
            wait_for(
                lambda: history.acked > acked_before,
                RPC_TIMEOUT_S,
                interval_s=0.002,
                what=f"cycle {cycle}: a first acknowledged write",
            )
            time.sleep(rng.uniform(0, MAX_KILL_DELAY_S))
            kill_s, dead_s = kill(store)
        finally:
            stop.set()
            for t in threads:
                t.join(RPC_TIMEOUT_S * 2)
        assert not any(t.is_alive() for t in threads), f"seed {seed}: a writer is stuck"
        for w in writers:
            assert w.failure is None, f"seed {seed}: writer {w.writer_id} failed: {w.failure!r}"

        failed = [a for a in history.attempts if a.cycle == cycle and a.reply is None]
        for a in failed:  # a call can only fail because of the kill
            assert a.failed_s >= kill_s, f"seed {seed}: {a.request.key!r} failed ({a.error}) before the kill"
        pending = [a for a in failed if a.sent_s < kill_s]
        after_death = {a.request.key for a in failed if a.sent_s > dead_s}
        counts["kills"] += 1
        counts["kills with a write in flight"] += bool(pending)
        counts["writes in flight at a kill"] += len(pending)
        counts["writes sent to a dead store"] += len(after_death)

        integrity_check(db_path, tmp_path / "copy")
        store = start_store(data_dir)  # (d) a database that would not open fails here, with its stderr

    floor, entries = check_store(store, history, floor, KILLS)
    present = {e.key for e in entries}
    counts["in-flight writes found committed"] += sum(a.request.key in present for a in pending)
    assert not after_death & present, f"seed {seed}: writes sent to a dead store were logged"
    os.kill(store.proc.pid, signal.SIGTERM)
    assert store.proc.wait(EXIT_TIMEOUT_S) == 0
    assert store_errors(store) == []
    integrity_check(db_path, tmp_path / "copy")

    acked = [a for a in history.attempts if a.reply is not None]
    counts["writes sent"] = len(history.attempts)
    counts["acknowledged writes"] = len(acked)
    counts["acknowledged and accepted"] = sum(a.reply.accepted for a in acked)
    counts["log rows"] = len(entries)
    counts["highest epoch"] = floor
    elapsed_s = time.monotonic() - began_s
    print(f"store kills: seed {seed}, {elapsed_s:.1f} s: " + ", ".join(f"{k} {v}" for k, v in counts.items()))

    assert counts["kills"] == KILLS
    # The run exercised what it claims to: kills mid-write, both decisions, both kinds of rejection.
    assert counts["kills with a write in flight"] >= KILLS // 2, counts
    assert counts["acknowledged and accepted"] > 0 and counts["acknowledged and accepted"] < len(acked)
    reasons = {a.reply.reason.split()[0] for a in acked if not a.reply.accepted}
    assert reasons == {"stale", "epoch"}, reasons


def acked_history(tmp_path: Path) -> tuple[list[pb.LogEntry], int, int, list[Attempt]]:
    """A small real log and the replies it gave: writers 1 and 2 with accepts and both kinds of rejection."""
    attempts: list[Attempt] = []
    with FencedStoreDB(tmp_path / DB_FILE) as db:
        for i, (writer_id, epoch) in enumerate([(1, 1), (1, 1), (2, 2), (1, 1), (2, 2), (1, 2), (1, 3), (2, 2)]):
            request = pb.WriteRequest(writer_id=writer_id, epoch=epoch, key=f"k{i}", value=str(i).encode())
            d = db.write(writer_id, epoch, request.key, request.value)
            reply = pb.WriteReply(accepted=d.accepted, highest_epoch=d.highest_epoch, seq=d.seq, reason=d.reason)
            attempts.append(Attempt(request, 0, 0.0, reply))
        entries, highest_epoch, owner_id = db.read_log()
    return [pb.LogEntry(**e.__dict__) for e in entries], highest_epoch, owner_id, attempts


def _drop(entries: list[pb.LogEntry], index: int) -> list[pb.LogEntry]:
    return entries[:index] + entries[index + 1 :]


def _renumber(entries: list[pb.LogEntry]) -> list[pb.LogEntry]:
    """The rows given seqs 1..n again, as if the loss had happened before later rows were written."""
    return [
        pb.LogEntry(**{**{f.name: getattr(e, f.name) for f in e.DESCRIPTOR.fields}, "seq": seq})
        for seq, e in enumerate(entries, 1)
    ]


def _edit(entries: list[pb.LogEntry], index: int, **fields) -> list[pb.LogEntry]:
    for name, value in fields.items():
        setattr(entries[index], name, value)
    return entries


# Each breaks one promise the kill test relies on check_log to catch, and must be caught with its reason.
BROKEN_LOGS = {
    "lost last acknowledged row": (lambda es, _: es[:-1], "acknowledged write lost: 'k7'"),
    "lost row in the middle": (lambda es, _: _drop(es, 2), "seqs not dense: position 3 holds seq 4"),
    "lost row, later renumbered": (lambda es, _: _renumber(_drop(es, 1)), "acknowledged write lost: 'k1' (seq 2"),
    "row recorded twice": (lambda es, _: _renumber(es[:4] + es[3:]), "key 'k3' recorded twice"),
    "row never sent": (lambda es, _: _edit(es, 7, key="forged"), "key 'forged' was never sent"),
    "value changed": (lambda es, _: _edit(es, 1, value=b"x"), "value b'x' for 'k1'"),
    "stale write accepted": (
        lambda es, _: _edit(es, 3, accepted=True, reason=""),
        "the fencing rule says accepted=False",
    ),
    "highest epoch forgotten": (lambda es, h: es, "highest epoch went back: 3 after 4 was revealed"),
}


@pytest.mark.parametrize("broken", BROKEN_LOGS, ids=list(BROKEN_LOGS))
def test_check_log_catches_each_broken_promise(tmp_path: Path, broken: str):
    """Negative control for the kill test's checker; an intact log passes it."""
    entries, highest_epoch, owner_id, attempts = acked_history(tmp_path)
    assert check_log(entries, highest_epoch, owner_id, attempts, floor=3) == 3
    mutate, words = BROKEN_LOGS[broken]
    floor = 4 if broken == "highest epoch forgotten" else 3
    with pytest.raises(AssertionError, match=re.escape(words)):
        check_log(mutate(entries, highest_epoch), highest_epoch, owner_id, attempts, floor)


def test_a_row_deleted_behind_a_killed_store_is_reported_lost(start_store, tmp_path: Path):  # noqa: F811 (the fixture imported above)
    """Negative control end to end: the same checks over a real store catch a row that went missing."""
    data_dir = tmp_path / "data"
    store = start_store(data_dir)
    history = History()
    with grpc.insecure_channel(store.address) as ch:
        stub = pb_grpc.FencedStoreStub(ch)
        for i in range(1, 6):
            history.send(stub, pb.WriteRequest(writer_id=1, epoch=i, key=claim_key(1, i)), cycle=0)
    kill(store)
    with sqlite3.connect(data_dir / DB_FILE) as conn:
        conn.execute("DELETE FROM log WHERE seq = 5")
    conn.close()
    store = start_store(data_dir)
    with pytest.raises(AssertionError, match=re.escape("acknowledged write lost: 'claim/1/5' (seq 5, accepted=True)")):
        check_store(store, history, floor=0, cycle=1)


def test_every_commit_is_fsynced_before_write_returns(tmp_path: Path):
    """What a SIGKILL cannot show: a power loss keeps an acknowledged write only if it was fsynced.

    In WAL mode, synchronous=FULL syncs the WAL at every commit; NORMAL (the usual WAL setting) syncs
    only at checkpoints, so the newest acknowledged writes could vanish with the power.
    """
    with FencedStoreDB(tmp_path / DB_FILE) as db:
        conn = db._conn
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert db.write(1, 1, "k", b"v").accepted
        assert not conn.in_transaction  # autocommit: the row was committed before write() returned
