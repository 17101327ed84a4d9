"""`bullyproof fence check ADAPTER`: does a fencing adapter keep the fenced register's promise under
concurrent writers, pauses, kills and a bad network? Judged by Porcupine (chaos.fencing_check).

The check runs writer processes (chaos.fence_writer: one OS process each, so they can be paused and
killed as a leader's process can) and one reader process against the adapter. The writers reach the
database through a Toxiproxy proxy in front of its host:port (the URL rewritten to the proxy); the
reader reads it directly. A seeded plan (`make_plan`) decides everything but the timing:

* rounds of leadership: each round a new leader writes with an epoch above the last (the first two of
  its writes, to the first resource, finish before the next round starts), sometimes a rival given the
  same epoch writes too (after the leader's first write, or racing it), and earlier leaders go on
  writing with their old epochs (stale);
* one fault a round: latency with jitter, a cut (a `timeout` toxic that holds every connection mute,
  or the proxy disabled), the previous leader paused (SIGSTOP) at a random instant of a write or
  between an adapter's check and its write (its hook), across the new leader's first write, or killed
  (SIGKILL) there. SQLite, and any URL without a host and port, get pauses and kills only.

Each process records the call and outcome of its operations (CLOCK_MONOTONIC, one clock for all);
what a writer never learned (killed, timed out, connection lost) is "unknown". The history
(docs/fencing-history.md) is judged with check_history and the report says what went wrong.

How each wrong rule shows up, by design of the plan:
* the check outside the transaction: the previous leader stops between its check and its write (the
  adapter's hook), the new leader writes a higher epoch and is acknowledged, then the old one writes:
  a stale write accepted (twice a run at least, when the adapter has the hook);
* a stale refusal of the leader's own second write in its epoch (`<=` for `<`): every round, before
  any higher epoch exists;
* no per-writer check: a rival given the leader's epoch is accepted too (the first round always has one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .fencing_check import FencingVerdict, check_history

ROOT = Path(__file__).resolve().parent.parent
BUILT_IN_SCHEMES = ("postgresql", "postgres", "redis", "rediss", "unix", "sqlite", "bullyproof-store")
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "rediss": 6379}
NO_NETWORK_SCHEMES = ("sqlite", "unix", "file")
STORE_SCHEME = "bullyproof-store"

NETWORK_FAULTS = ("latency", "blackhole", "refuse")
PROCESS_FAULTS = ("pause", "pause-at-check", "kill")

DEFAULT_ROUNDS = 12
DEFAULT_WRITERS = 4
DEFAULT_OP_TIMEOUT_S = 5.0
# A paused writer stays paused until the new leader's write returns, or this long (HOLD_S, or
# HOLD_WRITES times the median write so far when that is longer: a loaded machine).
HOLD_S = 1.0
HOLD_WRITES = 20
START_TIMEOUT_S = 30.0  # a process's start (imports, the reader's probe)
STEP_TIMEOUT_S = 15.0  # any one wait on a process's progress; the run goes on without it (the history stays sound)
STOPPED_TIMEOUT_S = 3.0
CHECKER_TIMEOUT_S = 60.0


class UsageError(ValueError):
    """What the user asked for cannot be checked (exit 2)."""


# ---- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    kind: str = "none"  # "none", NETWORK_FAULTS, PROCESS_FAULTS
    at_check: bool = False  # pause/kill: between the adapter's check and its write (its hook), if it has one
    delay_ms: int = 0  # pause/kill elsewhere: this long after the write was sent
    duration_ms: int = 0  # cuts
    latency_ms: int = 0
    jitter_ms: int = 0

    def describe(self) -> str:
        if self.kind == "latency":
            return f"latency {self.latency_ms} ms +- {self.jitter_ms} ms"
        if self.kind in ("blackhole", "refuse"):
            how = "connections held mute (timeout toxic)" if self.kind == "blackhole" else "proxy disabled"
            return f"cut {self.duration_ms} ms, {how}"
        if self.kind in PROCESS_FAULTS:
            verb = "killed" if self.kind == "kill" else "paused"
            where = "between its check and its write" if self.at_check else f"{self.delay_ms} ms into a write"
            return f"previous leader {verb} {where}"
        return "none"


@dataclass(frozen=True)
class Round:
    epoch: int  # relative to the run's epoch floor (the fenced store's highest epoch before the run)
    leader: int
    leader_writes: tuple[int, ...]  # resource indexes; the first two are resource 0
    rival: int | None  # given the same epoch
    rival_after_ack: bool  # the rival starts after the leader's first write returned (else racing it)
    rival_writes: tuple[int, ...]
    target: int | None  # the previous leader: the process the fault hits
    target_epoch: int
    target_writes: tuple[int, ...]  # its writes with its old epoch (the first two to resource 0): the first is hit
    stale: tuple[tuple[int, int, tuple[int, ...]], ...]  # other earlier holders: (writer, epoch, resources)
    fault: Fault


@dataclass(frozen=True)
class Plan:
    seed: int
    writers: int
    resources: int
    network: bool
    rounds: tuple[Round, ...]

    def fault_counts(self) -> dict[str, int]:
        return dict(Counter(r.fault.kind for r in self.rounds if r.fault.kind != "none"))


def make_plan(
    seed: int, rounds: int = DEFAULT_ROUNDS, writers: int = DEFAULT_WRITERS, resources: int = 1, network: bool = True
) -> Plan:
    """The whole run from its seed: epochs, who writes what, the faults and their parameters.

    The second round pauses the first leader between its check and its write (so two rounds catch
    each planted bug); every other fault kind comes once in the next rounds, in a seeded order; then
    kinds are drawn."""
    if writers < 3:
        raise UsageError("at least 3 writers (a leader, the previous leader and a rival)")
    if rounds < 1 or resources < 1:
        raise UsageError("at least one round and one resource")
    rng = random.Random(seed)
    kinds = (NETWORK_FAULTS if network else ()) + PROCESS_FAULTS
    first = [*kinds]
    rng.shuffle(first)
    first.insert(0, "pause-at-check")
    fault_kinds = ["none"] + [
        first[r - 1] if r - 1 < len(first) else rng.choice((*kinds, "none")) for r in range(1, rounds)
    ]

    def any_resource() -> int:
        return rng.randrange(resources)

    held: dict[int, int] = {}  # writer -> the epoch it was last given
    out: list[Round] = []
    epoch, previous = 0, None
    slots = list(range(1, writers + 1))
    for r in range(rounds):
        epoch += rng.choice((1, 1, 1, 2, 3))
        leader = rng.choice([s for s in slots if s != previous])
        kind = fault_kinds[r]
        # A rival in the first round always; later in about half. Where the next round pauses this
        # leader at its check, the rival comes after the leader's first write, so the leader owns the epoch.
        rival = None
        if r == 0 or rng.random() < 0.5:
            rival = rng.choice([s for s in slots if s not in (leader, previous)])
        next_at_check = r + 1 < rounds and fault_kinds[r + 1] == "pause-at-check"
        rival_after_ack = r == 0 or next_at_check or rng.random() < 0.7
        fault = Fault(kind)
        if kind in ("pause", "kill", "pause-at-check"):
            fault = Fault(
                kind,
                at_check=kind == "pause-at-check" or (kind == "kill" and rng.random() < 0.5),
                delay_ms=rng.randint(0, 15),
            )
        elif kind in ("blackhole", "refuse"):
            fault = Fault(kind, duration_ms=rng.randint(300, 900))
        elif kind == "latency":
            latency = rng.randint(10, 40)
            fault = Fault(kind, latency_ms=latency, jitter_ms=rng.randint(5, latency))
        target = previous if kind in PROCESS_FAULTS else None
        busy = {leader, rival, target}
        stale = tuple(
            (s, held[s], tuple(any_resource() for _ in range(rng.randint(1, 2))))
            for s in slots
            if s not in busy and s in held and rng.random() < 0.5
        )
        out.append(
            Round(
                epoch=epoch,
                leader=leader,
                leader_writes=(0, 0, *(any_resource() for _ in range(rng.randint(1, 3)))),
                rival=rival,
                rival_after_ack=rival_after_ack,
                rival_writes=() if rival is None else (0, *(any_resource() for _ in range(rng.randint(0, 1)))),
                target=target,
                target_epoch=held.get(target, 0) if target else 0,
                target_writes=() if target is None else (0, 0, *(any_resource() for _ in range(rng.randint(0, 1)))),
                stale=stale,
                fault=fault,
            )
        )
        held[leader] = epoch
        if rival is not None:
            held[rival] = epoch
        previous = leader
    return Plan(seed, writers, resources, network, tuple(out))


# ---- the adapter and its URL ---------------------------------------------------------------------


@dataclass(frozen=True)
class Adapter:
    url: str
    factory: str | None = None  # MODULE:CALLABLE, or None for the built-in schemes (open_fence)

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower()

    @property
    def is_store(self) -> bool:
        return self.factory is None and self.scheme == STORE_SCHEME

    @property
    def has_hook(self) -> bool:
        """Whether the writers' fences take the check-and-write hook and planted bugs (built-ins but the store)."""
        return self.factory is None and self.scheme in BUILT_IN_SCHEMES and not self.is_store

    def upstream(self) -> tuple[str, int] | None:
        """The database's host and port, which a proxy can stand in front of (None: no network)."""
        parts = urlsplit(self.url)
        if self.scheme in NO_NETWORK_SCHEMES or not parts.hostname:
            return None
        try:
            port = parts.port
        except ValueError:
            return None
        port = port or DEFAULT_PORTS.get(self.scheme)
        return None if port is None else (parts.hostname, port)

    def through(self, host: str, port: int) -> str:
        """The URL with its host and port replaced by the proxy's (user, path and query kept)."""
        parts = urlsplit(self.url)
        user = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=(f"{user}@" if user else "") + f"{host}:{port}"))


def check_adapter(adapter: Adapter) -> None:
    if adapter.factory is None and adapter.scheme not in BUILT_IN_SCHEMES:
        raise UsageError(
            f"{adapter.url!r}: a built-in scheme ({', '.join(BUILT_IN_SCHEMES)}), "
            "or --factory MODULE:CALLABLE for your own adapter"
        )
    if adapter.factory is not None:
        module, colon, name = adapter.factory.partition(":")
        if not colon or not module or not name:
            raise UsageError(f"--factory {adapter.factory!r}: want MODULE:CALLABLE")


# ---- the processes -------------------------------------------------------------------------------


class Process:
    """One writer or reader process: its commands in, its events out; it can be paused, resumed, killed
    (each by its pid) and, for a writer, started again under the same writer id."""

    def __init__(self, run: Run, name: str, argv: list[str]) -> None:
        self.run = run
        self.name = name
        self.argv = argv
        self.incarnation = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.changed = asyncio.Condition()
        self.ready: dict[str, Any] | None = None
        self.invoked: set[int] = set()
        self.invoked_at: dict[int, float] = {}
        self.hooked: set[int] = set()
        self.done: dict[int, str] = {}
        self.sent: list[int] = []  # this incarnation's commands
        self.finished = False
        self._pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        self.incarnation += 1
        self.ready, self.sent, self.finished = None, [], False
        record = self.run.dir / f"{self.name}.{self.incarnation}.jsonl"
        log = open(self.run.dir / f"{self.name}.{self.incarnation}.log", "wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "chaos.fence_writer",
                *self.argv,
                "--record",
                str(record),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=self.run.env,
                start_new_session=True,
            )
        finally:
            log.close()
        self._pump = asyncio.ensure_future(self._read(self.proc))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            async with self.changed:
                if "ready" in event:
                    self.ready = event
                elif "invoke" in event:
                    self.invoked.add(event["invoke"])
                    self.invoked_at[event["invoke"]] = time.monotonic()
                elif "hook" in event:
                    self.hooked.add(event["hook"])
                elif "done" in event:
                    self.done[event["done"]] = event["result"]
                    if event["done"] in self.invoked_at and event["result"] != "unknown":
                        self.run.latencies.append(time.monotonic() - self.invoked_at[event["done"]])
                    if event.get("error"):
                        self.run.errors[event["error"]] += 1
                elif "finished" in event:
                    self.finished = True
                self.changed.notify_all()
        await proc.wait()
        async with self.changed:
            self.changed.notify_all()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def wait_for(self, predicate: Any, timeout_s: float = STEP_TIMEOUT_S) -> bool:
        """Until predicate() holds (True), the process is gone or the time is up (False)."""
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(lambda: predicate() or not self.alive()), timeout_s)
            except TimeoutError:
                return False
        return bool(predicate())

    def send(self, command: dict[str, Any]) -> None:
        if not self.alive() or self.proc is None or self.proc.stdin is None:
            return
        with contextlib.suppress(OSError, RuntimeError):
            self.proc.stdin.write((json.dumps(command) + "\n").encode())
        if "n" in command:
            self.sent.append(command["n"])

    def signal(self, sig: signal.Signals) -> None:
        if self.alive() and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def stopped(self) -> bool:
        """Whether the process is stopped (SIGSTOP), from /proc."""
        try:
            text = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        return text.rpartition(")")[2].split()[0] in ("T", "t")

    async def wait_stopped(self) -> bool:
        deadline = time.monotonic() + STOPPED_TIMEOUT_S
        while self.alive() and not self.stopped():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return self.alive()

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 10.0)
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pump, 10.0)

    async def finish(self, timeout_s: float) -> None:
        """Exit once its commands are done (or the time is up); then SIGKILL whatever is left."""
        if self.alive():
            self.signal(signal.SIGCONT)
            self.send({"exit": True})
            if self.proc is not None and self.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    self.proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), timeout_s)
        await self.kill()


@dataclass
class RunResult:
    seed: int
    adapter: str
    directory: Path
    plan: Plan
    history: Path
    verdict: FencingVerdict | None
    counts: dict[str, dict[str, int]]
    faults: list[dict[str, Any]]
    errors: dict[str, int]
    network: bool
    hooked: bool
    epoch_floor: int
    elapsed_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def acknowledged(self) -> int:
        return self.counts["write"].get("ok", 0)

    @property
    def exit_code(self) -> int:
        if self.verdict is None or self.verdict.result == "Unknown" or not self.acknowledged:
            return 3
        return 0 if self.verdict.linearizable else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "adapter": self.adapter,
            "directory": str(self.directory),
            "history": str(self.history),
            "exit": self.exit_code,
            "elapsed_s": round(self.elapsed_s, 3),
            "counts": self.counts,
            "faults": self.faults,
            "fault_plan": self.plan.fault_counts(),
            "errors": self.errors,
            "network_faults": self.network,
            "check_and_write_hook": self.hooked,
            "epoch_floor": self.epoch_floor,
            "rounds": len(self.plan.rounds),
            "writers": self.plan.writers,
            "resources": self.plan.resources,
            "notes": self.notes,
            "verdict": None if self.verdict is None else self.verdict.to_json(),
        }


class Run:
    """One check: the processes, the proxy, the plan carried out round by round."""

    def __init__(
        self,
        adapter: Adapter,
        plan: Plan,
        directory: Path,
        *,
        op_timeout_s: float,
        planted: tuple[str, ...] = (),
        network: bool = True,
        epoch_floor: int = 0,
        log: Any = None,
    ) -> None:
        self.adapter = adapter
        self.epoch_floor = epoch_floor
        self.plan = plan
        self.dir = directory
        self.op_timeout_s = op_timeout_s
        self.planted = planted
        self.network = network and adapter.upstream() is not None
        self.log = log or (lambda text: None)
        self.tag = os.urandom(4).hex()
        self.resources = [f"fence-check/{self.tag}/r{i}" for i in range(plan.resources)]
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []  # seconds, writes that returned
        self.faults: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.floor = 0
        self.hooked = False
        self._n = 0
        self.toxiproxy: Any = None
        self.api: Any = None
        self.proxy = "fence-writers"
        paths = [str(ROOT), os.getcwd()]  # the project, and a user's own adapter module beside them
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}
        self.writers: dict[int, Process] = {}
        self.reader: Process | None = None
        self.t0 = time.monotonic()

    def next_n(self) -> int:
        self._n += 1
        return self._n

    def note_fault(self, round_: int, kind: str, **detail: Any) -> None:
        self.faults.append({"round": round_, "kind": kind, "at_s": round(time.monotonic() - self.t0, 3), **detail})

    # ---- set-up and tear-down -----------------------------------------------------------------

    async def setup(self) -> None:
        writer_url = self.adapter.url
        if self.network:
            from chaos.toxiproxy import ToxiproxyServer
            from node.launcher.ports import free_port

            host, port = self.adapter.upstream()  # type: ignore[misc]
            self.toxiproxy = await asyncio.to_thread(ToxiproxyServer(log_path=self.dir / "toxiproxy.log").start)
            self.api = self.toxiproxy.client()
            listen = f"127.0.0.1:{free_port()}"
            upstream = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            proxy = await asyncio.to_thread(self.api.create_proxy, self.proxy, listen, upstream)
            writer_url = self.adapter.through("127.0.0.1", proxy.listen_port)
        common = ["--op-timeout", str(self.op_timeout_s)]
        if self.adapter.factory:
            common += ["--factory", self.adapter.factory]
        reader_id = self.plan.writers + 1
        self.reader = Process(
            self,
            "reader",
            [
                "--adapter",
                self.adapter.url,
                *common,
                "--client",
                str(reader_id),
                "--reader",
                "--seed",
                str(self.plan.seed),
                *[a for r in self.resources for a in ("--resource", r)],
            ],
        )
        planted = [a for bug in self.planted for a in ("--planted", bug)]
        for slot in range(1, self.plan.writers + 1):
            self.writers[slot] = Process(
                self, f"writer-{slot}", ["--adapter", writer_url, *common, "--client", str(slot), *planted]
            )
        await asyncio.gather(self.reader.start(), *(w.start() for w in self.writers.values()))
        everyone = [self.reader, *self.writers.values()]
        for proc in everyone:
            if not await proc.wait_for(lambda p=proc: p.ready is not None, START_TIMEOUT_S):
                raise RuntimeError(f"{proc.name} did not start: see {self.dir / f'{proc.name}.1.log'}")
            if proc.ready and proc.ready.get("error"):
                raise UsageError(f"{self.adapter.url}: {proc.ready['error']}")
        start = self.reader.ready["start"]  # type: ignore[index]
        if any(state != {"epoch": 0, "writer": 0, "value": ""} for state in start.values()):
            raise UsageError(f"the check's resources are already written: {start}")
        self.floor = max(self.epoch_floor, int(self.reader.ready.get("epoch_floor", 0)))  # type: ignore[union-attr]
        self.hooked = all(w.ready.get("hook") for w in self.writers.values())  # type: ignore[union-attr]

    async def teardown(self) -> None:
        if self.api is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.api.reset)
        for proc in self.writers.values():
            proc.signal(signal.SIGCONT)
        # Writers first (each finishes what it was sent), then the reader's last reads.
        await asyncio.gather(
            *(w.finish(self.op_timeout_s * max(1, len(w.sent) - len(w.done)) + 5.0) for w in self.writers.values()),
            return_exceptions=True,
        )
        if self.reader is not None:
            if self.reader.alive():
                self.reader.send({"final": True})
                await self.reader.wait_for(lambda: self.reader.finished, self.op_timeout_s * 3 + 10.0)
            await self.reader.finish(5.0)
        if self.toxiproxy is not None:
            await asyncio.to_thread(self.toxiproxy.stop)

    # ---- writes and faults --------------------------------------------------------------------

    def write(self, slot: int, epoch: int, resource: int, stop_at_check: bool = False) -> int:
        n = self.next_n()
        self.writers[slot].send(
            {
                "n": n,
                "write": {"resource": self.resources[resource], "epoch": self.floor + epoch, "value": str(n)},
                **({"stop_at_check": True} if stop_at_check else {}),
            }
        )
        return n

    async def toxic(self, call: str, *args: Any) -> Any:
        return await asyncio.to_thread(getattr(self.api, call), *args)

    async def run_round(self, index: int, rnd: Round) -> None:
        fault = rnd.fault
        latency = None
        for slot in {rnd.leader, rnd.rival, rnd.target} - {None}:  # a writer killed earlier is started again
            proc = self.writers[slot]  # type: ignore[index]
            await proc.wait_for(lambda p=proc: p.ready is not None, START_TIMEOUT_S)
        if fault.kind == "latency" and self.network:
            latency = await self.toxic("latency", self.proxy, fault.latency_ms, fault.jitter_ms, "upstream")
            self.note_fault(index, "latency", latency_ms=fault.latency_ms, jitter_ms=fault.jitter_ms)
        for slot, epoch, resources in rnd.stale:
            for resource in resources:
                self.write(slot, epoch, resource)
        # The previous leader, stopped or killed mid-write before the new leader writes.
        target = self.writers[rnd.target] if rnd.target is not None else None
        held, target_ns = False, []
        if target is not None and fault.kind in PROCESS_FAULTS:
            held, target_ns = await self.strike(index, rnd, target)
        # The new leader, and a rival given the same epoch.
        leader = self.writers[rnd.leader]
        ns = [self.write(rnd.leader, rnd.epoch, rnd.leader_writes[0])]
        rival_ns: list[int] = []
        if rnd.rival is not None and not rnd.rival_after_ack:
            rival_ns = [self.write(rnd.rival, rnd.epoch, resource) for resource in rnd.rival_writes]
        across_all = fault.kind == "pause" and not fault.at_check
        if held and across_all:
            ns += [self.write(rnd.leader, rnd.epoch, resource) for resource in rnd.leader_writes[1:]]
        if held and target is not None:
            # Across the new leader's first write (a plain pause: all its writes of the round): until
            # they return, or for the hold (an adapter that holds a lock for the stopped writer makes
            # the new leader wait for it, and whatever the leader still had to write before).
            await leader.wait_for(lambda: all(n in leader.done for n in ns), self.hold_s())
            if fault.kind == "kill":
                await self.kill_and_restart(target)
            else:
                target.signal(signal.SIGCONT)
                # The resumed writer's write lands now if at all, and its next write with the same
                # epoch comes after it: both before the new leader writes again, and a read looks.
                await target.wait_for(lambda: all(n in target.done for n in target_ns[:2]))
                await self.read_now(rnd.leader_writes[0])
        if not (held and across_all):
            ns += [self.write(rnd.leader, rnd.epoch, resource) for resource in rnd.leader_writes[1:]]
        if rnd.rival is not None and rnd.rival_after_ack:
            await leader.wait_for(lambda: ns[0] in leader.done)
            rival_ns = [self.write(rnd.rival, rnd.epoch, resource) for resource in rnd.rival_writes]
        # No higher epoch before the leader's first two writes and the rival's first returned: each is
        # judged in this epoch alone.
        await leader.wait_for(lambda: all(n in leader.done for n in ns[:2]))
        if rival_ns:
            rival = self.writers[rnd.rival]  # type: ignore[index]
            await rival.wait_for(lambda: rival_ns[0] in rival.done)
        if fault.kind in ("blackhole", "refuse") and self.network:
            await self.cut(index, rnd, fault)
        if latency is not None:
            await leader.wait_for(lambda: all(n in leader.done for n in ns))
            await self.toxic("remove", latency)

    def hold_s(self) -> float:
        recent = sorted(self.latencies[-50:])
        typical = recent[len(recent) // 2] if recent else 0.0
        return min(max(HOLD_S, HOLD_WRITES * typical), self.op_timeout_s / 2)

    async def read_now(self, resource: int) -> None:
        """The reader reads `resource` at once (between its own reads); until it returned."""
        assert self.reader is not None
        n = self.next_n()
        self.reader.send({"n": n, "read": self.resources[resource]})
        await self.reader.wait_for(lambda: n in self.reader.done)  # type: ignore[union-attr]

    async def strike(self, index: int, rnd: Round, target: Process) -> tuple[bool, list[int]]:
        """Pause or kill the previous leader in a write. True when it is left stopped, to be resumed
        (or killed) across the new leader's first write; False when it was killed at once or could not
        be stopped."""
        fault = rnd.fault
        at_check = fault.at_check and self.hooked
        ns = [
            self.write(
                target_slot := rnd.target,
                rnd.target_epoch,
                resource,  # type: ignore[arg-type]
                stop_at_check=at_check and i == 0,
            )
            for i, resource in enumerate(rnd.target_writes)
        ]
        first = ns[0]
        if at_check:
            await target.wait_for(lambda: first in target.hooked or first in target.done)
            if first in target.hooked and await target.wait_stopped():
                self.note_fault(index, fault.kind, writer=target_slot, where="between its check and its write")
                return True, ns
            # The check and the write are one step in this adapter (a script), or the write was
            # refused before the hook: the process is hit right after the write instead.
            where = "after a write (the adapter did not stop between check and write)"
        else:
            await target.wait_for(lambda: first in target.invoked)
            await asyncio.sleep(fault.delay_ms / 1000)
            where = f"{fault.delay_ms} ms after a write was sent"
        if fault.kind == "kill":
            self.note_fault(index, fault.kind, writer=target_slot, where=where)
            await self.kill_and_restart(target)
            return False, ns
        target.signal(signal.SIGSTOP)
        if not await target.wait_stopped():
            self.notes.append(f"round {index}: writer {target_slot} could not be stopped")
            return False, ns
        self.note_fault(index, fault.kind, writer=target_slot, where=where)
        return True, ns

    async def kill_and_restart(self, target: Process) -> None:
        await target.kill()
        await target.start()

    async def cut(self, index: int, rnd: Round, fault: Fault) -> None:
        """Cut the writers from the database while the leader and an old holder write."""
        for resource in rnd.leader_writes[:2]:
            self.write(rnd.leader, rnd.epoch, resource)
        for slot, epoch, resources in rnd.stale[:1]:
            self.write(slot, epoch, resources[0])
        if fault.kind == "blackhole":
            done = await self.toxic("blackhole", self.proxy)
        else:
            done = await self.toxic("refuse", self.proxy)
        self.note_fault(index, fault.kind, duration_ms=fault.duration_ms)
        await asyncio.sleep(fault.duration_ms / 1000)
        await self.toxic("remove", done)

    async def execute(self) -> None:
        for index, rnd in enumerate(self.plan.rounds):
            self.log(
                f"round {index}: epoch {self.floor + rnd.epoch}, writer {rnd.leader} leads"
                + (f", writer {rnd.rival} shares the epoch" if rnd.rival else "")
                + (f"; fault: {rnd.fault.describe()}" if rnd.fault.kind != "none" else "")
            )
            await self.run_round(index, rnd)
        # Everything sent is done, or its writer is stuck (it is killed at the end; its writes unknown).
        for proc in self.writers.values():
            await proc.wait_for(lambda p=proc: all(n in p.done for n in p.sent), STEP_TIMEOUT_S)


# ---- collecting and judging ------------------------------------------------------------------------


def collect(directory: Path) -> list[dict[str, Any]]:
    """Every process's record merged into the history's ops: a call without an outcome is unknown."""
    ops: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.jsonl")):
        calls: dict[int, dict[str, Any]] = {}
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # cannot happen with one write(2) a line, but a record is not trusted blindly
                continue
            n = entry.pop("n")
            if "call_ns" in entry:
                calls[n] = entry
            elif n in calls:
                calls[n].update(entry)
        for op in calls.values():
            if "result" not in op:
                op.update(result="unknown", return_ns=None)
            ops.append(op)
    ops.sort(key=lambda op: (op["call_ns"], op["client"]))
    return ops


def count(ops: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {"write": {}, "read": {}}
    for op in ops:
        out[op["kind"]][op["result"]] = out[op["kind"]].get(op["result"], 0) + 1
    return out


RUN_FILES = (
    "writer-*.jsonl",
    "writer-*.log",
    "reader.*.jsonl",
    "reader.*.log",
    "history.json",
    "history.html",
    "result.json",
    "toxiproxy.log",
)


def prepare_directory(directory: Path | None) -> Path:
    """A new temporary directory, or `directory` emptied of an earlier check's files (their records
    would join this history); anything else in it is refused."""
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="bullyproof-fence-check-"))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot use {directory} for the run: {exc.strerror or exc}") from None
    ours = {path for pattern in RUN_FILES for path in directory.glob(pattern)}
    if others := sorted(path.name for path in directory.iterdir() if path not in ours):
        raise UsageError(
            f"{directory} holds files a check did not write ({', '.join(others[:3])}): give an empty or new directory"
        )
    for path in ours:
        path.unlink()
    return directory


async def run_check(
    adapter: Adapter,
    *,
    seed: int,
    rounds: int = DEFAULT_ROUNDS,
    writers: int = DEFAULT_WRITERS,
    resources: int | None = None,
    directory: Path | None = None,
    op_timeout_s: float = DEFAULT_OP_TIMEOUT_S,
    network: bool = True,
    epoch_floor: int = 0,
    planted: tuple[str, ...] = (),
    log: Any = None,
) -> RunResult:
    """The whole check: plan, processes, faults, collection, verdict."""
    check_adapter(adapter)
    if adapter.is_store:
        if resources not in (None, 1):
            raise UsageError("the fenced store keeps one highest epoch for all keys: it is checked on one resource")
        if planted:
            raise UsageError("the fenced store's rule is in the store process: plant its bugs there (--planted-bug)")
    if planted and not adapter.has_hook:
        raise UsageError("planted bugs are for the built-in PostgreSQL, Redis and SQLite adapters")
    resources = resources or (1 if adapter.is_store else 2)
    network = network and adapter.upstream() is not None
    plan = make_plan(seed, rounds, writers, resources, network)
    directory = prepare_directory(directory)
    run = Run(
        adapter,
        plan,
        directory,
        op_timeout_s=op_timeout_s,
        planted=planted,
        network=network,
        epoch_floor=epoch_floor,
        log=log,
    )
    started = time.monotonic()
    try:
        await run.setup()
        await run.execute()
    finally:
        await run.teardown()
    ops = collect(directory)
    history = directory / "history.json"
    history.write_text(json.dumps({"adapter": adapter.url, "seed": seed, "ops": ops}))
    verdict = await asyncio.to_thread(
        check_history, {"ops": ops}, html=directory / "history.html", timeout_s=CHECKER_TIMEOUT_S
    )
    result = RunResult(
        seed=seed,
        adapter=adapter.url,
        directory=directory,
        plan=plan,
        history=history,
        verdict=verdict,
        counts=count(ops),
        faults=run.faults,
        errors=dict(run.errors.most_common()),
        network=network,
        hooked=run.hooked,
        epoch_floor=run.floor,
        elapsed_s=time.monotonic() - started,
        notes=run.notes,
    )
    (directory / "result.json").write_text(json.dumps({**result.to_json(), "plan": asdict(plan)}, indent=1))
    return result


# ---- the report ----------------------------------------------------------------------------------------


def report_lines(result: RunResult) -> list[str]:
    plan, verdict = result.plan, result.verdict
    writes, reads = result.counts["write"], result.counts["read"]

    def counted(kinds: dict[str, int], order: tuple[str, ...]) -> str:
        return ", ".join(f"{kinds.get(k, 0)} {k}" for k in order)

    head = {
        0: "PASS: linearizable",
        1: "FAIL: NOT linearizable",
        3: "INCONCLUSIVE: "
        + ("no write was acknowledged" if verdict and verdict.result != "Unknown" else "the checker ran out of time"),
    }[result.exit_code]
    out = [
        f"fence check of {result.adapter}",
        f"  seed {result.seed} (replay the plan: --seed {result.seed})",
        f"  {len(plan.rounds)} rounds, {plan.writers} writer processes and a reader, {plan.resources} resource(s);"
        f" epochs {result.epoch_floor + plan.rounds[0].epoch}..{result.epoch_floor + plan.rounds[-1].epoch}",
        "  faults: "
        + (", ".join(f"{k} {v}" for k, v in sorted(Counter(f["kind"] for f in result.faults).items())) or "none")
        + ("" if result.network else " (no network between writers and database: pauses and kills only)"),
        f"  operations: {sum(writes.values()) + sum(reads.values())}; "
        f"writes {sum(writes.values())} ({counted(writes, ('ok', 'stale', 'taken', 'unknown'))}); "
        f"reads {sum(reads.values())} ({counted(reads, ('ok', 'unknown'))})",
        f"  verdict: {head}",
    ]
    if verdict is not None:
        d = verdict.diagnostics
        out += [
            f"  stale writes accepted: {d['stale_accepted'].count}",
            f"  acknowledged writes lost: {d['lost_writes'].count}",
            f"  epochs accepted from two writers: {d['epoch_shared'].count}",
            f"  reads of states never written: {d['phantom_reads'].count}",
            f"  refusals no write explains: {d['unexplained_refusals'].count}",
            f"  indeterminate operations: {d['indeterminate'].count}",
        ]
        for name in ("stale_accepted", "lost_writes", "epoch_shared", "phantom_reads", "unexplained_refusals"):
            out += [f"    {example['what']}" for example in d[name].examples]
        if verdict.visualization:
            out.append(f"  visualization: {verdict.visualization}")
    if result.errors:
        out.append("  errors (outcome unknown): " + "; ".join(f"{n}x {e}" for e, n in list(result.errors.items())[:3]))
    out += [f"  note: {note}" for note in result.notes]
    out += [f"  history: {result.history}", f"  took {result.elapsed_s:.1f} s"]
    return out
