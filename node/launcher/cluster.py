"""One cluster description, three renderings: local processes (this module), docker compose
(compose.py) and Kubernetes (k8s.py).

`ClusterSpec` says which nodes exist, where they listen and how they are tuned. `LocalCluster`
starts it as real processes on loopback and records `DIR/cluster.json`; `render_compose` and
`render_k8s` turn the same description into docker-compose.yml and manifests, so they cannot drift
apart. `directed_links` is the one list of links that chaos runs put a Toxiproxy proxy on, locally
and in compose alike.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from node.api import bullyproof_pb2 as pb
from node.channels import dial_as
from node.config import DEFAULT_TIMING, ConfigError
from node.core import check_mode_options, mode_info, mode_names
from node.launcher.ports import free_port
from node.launcher.stopping import signals_held
from node.observer import agreed_leader, views_of
from node.tls import STORE_NAME, Tls, make_cluster_certs, node_name

CLUSTER_FILE = "cluster.json"
# Every process started for a run directory carries it in its environment, set at its exec: the record
# of what a run started that no signal can split from the start (run_pids).
RUN_DIR_ENV = "BULLYPROOF_RUN_DIR"
STORE = "store"  # the store's name in link names ("3->store") and process targets
ROLE_NAME = {pb.ROLE_FOLLOWER: "follower", pb.ROLE_CANDIDATE: "candidate", pb.ROLE_LEADER: "leader"}


@dataclass(frozen=True)
class NodeSpec:
    id: int
    peer_address: str  # where its Peer service listens
    client_address: str  # Leadership, health, reflection (the observer's unproxied port)
    # How this node dials each peer: the peer's own address, or a Toxiproxy listener for link id->peer.
    dial: dict[int, str] = field(default_factory=dict)
    metrics_address: str | None = None  # Prometheus /metrics over HTTP; None = no metrics server


@dataclass(frozen=True)
class ClusterSpec:
    nodes: tuple[NodeSpec, ...]
    store_address: str
    mode: str = "quorum"
    heartbeat_interval_ms: int = DEFAULT_TIMING.heartbeat_interval_ms
    election_timeout_ms: int = DEFAULT_TIMING.election_timeout_ms
    write_period_ms: int = DEFAULT_TIMING.write_period_ms
    preempt_hold_down_ms: int = DEFAULT_TIMING.preempt_hold_down_ms
    # Where each node dials the store (a proxy per node in chaos runs); defaults to store_address.
    store_dial: dict[int, str] = field(default_factory=dict)
    mode_options: tuple[str, ...] = ()  # the mode's switches (`--mode-option`), e.g. raft's no-pre-vote
    # Where every process finds `bullyproof certs init`'s files (as it sees the path: a run directory
    # locally, a mounted volume in a container); None runs everything with --insecure.
    certs_dir: str | None = None
    # Nodes started outside the configuration (`node --join`), to be added by `bullyproof member add`;
    # the others start as its voters (modes that change membership).
    joining: tuple[int, ...] = ()
    # The leader's duty writes to the store (`--store`, every write_period_ms). False runs the election
    # alone, as a service that fences at its own database runs it (the idle benchmark's rows beside etcd).
    leader_writes: bool = True

    def __post_init__(self) -> None:
        if self.mode not in mode_names():
            raise ConfigError(f"mode must be one of {', '.join(mode_names())}, got {self.mode!r}")
        try:
            check_mode_options(self.mode, frozenset(self.mode_options))
        except ValueError as exc:
            raise ConfigError(f"--mode-option: {exc}") from None
        if not self.nodes:
            raise ConfigError("a cluster needs at least one node")
        if self.joining and not mode_info(self.mode).membership_changes:
            raise ConfigError(f"mode {self.mode} keeps its start-up list: no node can join it (use quorum)")
        if set(self.joining) >= {n.id for n in self.nodes}:
            raise ConfigError("every node would be joining: a cluster needs voters to start with")

    def security_args(self) -> list[str]:
        """The TLS flags of every node and the store: their own files in certs_dir, or --insecure."""
        return ["--certs", self.certs_dir] if self.certs_dir else ["--insecure"]

    def health_args(self, port: int, holder: str, server_name: str | None = None) -> list[str]:
        """`bullyproof health` on a process's own port, as `holder` (a container's probe): compose and k8s."""
        who = ["--as", holder, *(["--server-name", server_name] if server_name else [])] if self.certs_dir else []
        return ["bullyproof", "health", f"127.0.0.1:{port}", *self.security_args(), *who]

    def store_args(self, data_dir: str) -> list[str]:
        """The `bullyproof store` arguments: the single source for local and compose."""
        return ["store", "--listen", self.store_address, "--data-dir", data_dir, *self.security_args()]

    def node(self, node_id: int) -> NodeSpec:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise ConfigError(f"no node {node_id} in this cluster (nodes: {', '.join(str(n.id) for n in self.nodes)})")

    def node_args(self, node: NodeSpec, state_dir: str, events_path: str | None) -> list[str]:
        """The `bullyproof node` arguments for one node: the single source for local and compose."""
        peers = ",".join(f"{p.id}={node.dial.get(p.id, p.peer_address)}" for p in self.nodes if p.id != node.id)
        args = [
            "node",
            "--id",
            str(node.id),
            "--listen",
            node.peer_address,
            "--client-listen",
            node.client_address,
            "--peers",
            peers,
            "--mode",
            self.mode,
            "--state-dir",
            state_dir,
            "--heartbeat-interval-ms",
            str(self.heartbeat_interval_ms),
            "--election-timeout-ms",
            str(self.election_timeout_ms),
            *(
                [
                    "--store",
                    self.store_dial.get(node.id, self.store_address),
                    "--write-period-ms",
                    str(self.write_period_ms),
                ]
                if self.leader_writes
                else []
            ),
            "--preempt-hold-down-ms",
            str(self.preempt_hold_down_ms),
        ]
        for option in self.mode_options:
            args += ["--mode-option", option]
        if node.id in self.joining:
            args.append("--join")
        elif self.joining:  # the others start as the configuration's voters, without the joining nodes
            args += ["--voters", ",".join(str(n.id) for n in self.nodes if n.id not in self.joining)]
        args += self.security_args()
        if node.metrics_address:
            args += ["--metrics-listen", node.metrics_address]
        if events_path:
            args += ["--events", events_path]
        return args


MAX_NODES = 25


def check_cluster_size(n: int) -> None:
    """Every way of describing a cluster (local, compose, Kubernetes) takes 2 to MAX_NODES nodes: a
    node needs other members (node --peers refuses an empty list)."""
    if not 2 <= n <= MAX_NODES:
        raise ConfigError(f"--nodes must be between 2 and {MAX_NODES}, got {n}")


def local_spec(
    n: int,
    mode: str = "quorum",
    heartbeat_interval_ms: int = DEFAULT_TIMING.heartbeat_interval_ms,
    election_timeout_ms: int = DEFAULT_TIMING.election_timeout_ms,
    host: str = "127.0.0.1",
    certs_dir: str | None = None,
    spares: int = 0,
) -> ClusterSpec:
    """n voters, and `spares` more nodes (ids after n) started to join, for `bullyproof member add`."""
    check_cluster_size(n + spares)
    nodes = tuple(
        NodeSpec(
            i, f"{host}:{free_port(host)}", f"{host}:{free_port(host)}", metrics_address=f"{host}:{free_port(host)}"
        )
        for i in range(1, n + spares + 1)
    )
    return ClusterSpec(
        nodes,
        f"{host}:{free_port(host)}",
        mode,
        heartbeat_interval_ms,
        election_timeout_ms,
        certs_dir=certs_dir,
        joining=tuple(range(n + 1, n + spares + 1)),
    )


# ---- links: one Toxiproxy proxy per direction --------------------------------------------------


def link_name(src: int | str, dst: int | str) -> str:
    return f"{src}->{dst}"


@dataclass(frozen=True)
class Link:
    """Node `src` dialling peer `dst` (or the store, dst == STORE); `upstream` is where it dials directly."""

    src: int
    dst: int | str
    upstream: str

    @property
    def name(self) -> str:
        return link_name(self.src, self.dst)


def directed_links(spec: ClusterSpec) -> list[Link]:
    """Every directed peer link a->b and every node->store link of a directly wired cluster, in order."""
    links: list[Link] = []
    for a in spec.nodes:
        links += [Link(a.id, b.id, a.dial.get(b.id, b.peer_address)) for b in spec.nodes if b.id != a.id]
        links.append(Link(a.id, STORE, spec.store_dial.get(a.id, spec.store_address)))
    return links


def dial_through(spec: ClusterSpec, listen: dict[Link, str]) -> ClusterSpec:
    """The same cluster with each node dialling every link at its proxy's address `listen[link]`."""
    dial: dict[int, dict[int, str]] = {}
    store_dial: dict[int, str] = {}
    for link, address in listen.items():
        if link.dst == STORE:
            store_dial[link.src] = address
        else:
            dial.setdefault(link.src, {})[int(link.dst)] = address
    return with_dial(spec, dial, store_dial)


# ---- talking to nodes ------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.02, what: str = "condition") -> Any:
    """Poll until predicate() is truthy; return its value or raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:.1f}s waiting for {what}")
        time.sleep(interval_s)


def wait_for_agreement(
    addresses: dict[int, str],
    timeout_s: float,
    exclude: set[int] = frozenset(),
    differs_from: tuple[int, int] | None = None,
    interval_s: float = 0.02,
    rpc_timeout_s: float = 0.3,
) -> tuple[int, int]:
    """Poll every node's client address (but `exclude`) until all answer and agree on (leader, epoch)
    (those in no configuration, joining or removed, answer but are not asked to agree)."""
    addrs = {k: v for k, v in addresses.items() if k not in exclude}
    last: dict[int, Any] = {}

    def check() -> tuple[int, int] | None:
        views = views_of(addrs, rpc_timeout_s)
        last.clear()
        last.update(views)
        if any(v is None for v in views.values()):
            return None  # every node must answer, not just a quorum
        agreed = agreed_leader(views)
        return agreed if agreed != differs_from else None

    try:
        return wait_for(check, timeout_s, interval_s, what=f"all of nodes {sorted(addrs)} to agree on a leader")
    except TimeoutError as e:
        # Say what each node last answered (None: no answer within rpc_timeout_s), to tell a slow
        # node from a split or from no leader at all.
        answers = {
            n: None if v is None else (v.leader_id if v.known else None, v.epoch, v.role == pb.ROLE_LEADER)
            for n, v in sorted(last.items())
        }
        raise TimeoutError(f"{e}; last answers as (leader named, epoch, is leader): {answers}") from None


# ---- the cluster file ------------------------------------------------------------------------


def make_run_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission: one line, not a traceback
        raise ConfigError(f"cannot use {directory} as the run directory: {exc.strerror or exc}") from None


def trust_cluster(data: dict[str, Any], holder: str = "admin") -> None:
    """From now on, dial this cluster's nodes and store as `holder` (the operator: admin) with its CA."""
    certs = data.get("certs")
    tls = Tls.in_dir(Path(certs), holder) if certs else None
    for n in data["nodes"]:
        dial_as(n["client_address"], tls, node_name(n["id"]))  # that node, not just any member
    dial_as(data["store"]["address"], tls, STORE_NAME)


def read_cluster_file(directory: Path) -> dict[str, Any]:
    """The record `cluster up` wrote; its nodes and store are dialled as its admin from now on."""
    path = directory / CLUSTER_FILE
    try:
        data = json.loads(path.read_text())
        trust_cluster(data)
        return data
    except FileNotFoundError:
        raise ConfigError(
            f"no cluster at {directory}: {path} does not exist "
            f"(start one with: bullyproof cluster up --dir {directory})"
        ) from None
    except NotADirectoryError:
        raise ConfigError(f"no cluster at {directory}: it is not a directory") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None


@contextlib.contextmanager
def locked_cluster_file(directory: Path) -> Iterator[dict[str, Any]]:
    """Read-modify-write cluster.json under a lock (restart from another terminal updates pids)."""
    read_cluster_file(directory)  # a clear error before touching anything if there is no cluster
    with open(directory / ".cluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read_cluster_file(directory)
        yield data
        tmp = directory / (CLUSTER_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, directory / CLUSTER_FILE)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def run_env(directory: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: ours) for a process of run directory `directory`: tagged with RUN_DIR_ENV."""
    return {**(os.environ if env is None else env), RUN_DIR_ENV: str(directory.resolve())}


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None, run_dir: Path | None = None) -> int:
    """Start `argv` in its own session, output appended to `log_path`; a process of `run_dir` if given.

    Popen returns once the child has exec'd, so a child of `run_dir` is tagged (found by run_pids)
    by the time a stop signal, held until then, can act on it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log, signals_held():
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the launcher's terminal must not kill nodes abruptly
            env=env if run_dir is None else run_env(run_dir, env),
        )
    return proc.pid


def run_pids(directory: Path) -> list[int]:
    """Every live process started for run directory `directory` (tagged RUN_DIR_ENV), from /proc.

    A process whose environment we may not read is not ours; one that recycled a pid of ours is not
    tagged. A child between fork and exec still shows its parent's environment, which is why spawn
    holds stop signals until Popen returns."""
    tag = f"{RUN_DIR_ENV}={directory.resolve()}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:  # gone, or another user's
            continue
        if tag in environ and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot, /proc/PID/stat): with the pid, who it is."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def signal_pid(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def stop_pids(pids: list[int], grace_s: float = 3.0) -> None:
    """SIGCONT (a paused process cannot exit), SIGTERM, then SIGKILL whatever is left."""
    for pid in pids:
        signal_pid(pid, signal.SIGCONT)
        signal_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in pids:
        if pid_alive(pid):
            signal_pid(pid, signal.SIGKILL)
    for pid in pids:  # reap our own children so they do not linger as zombies
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


class LocalCluster:
    """Real node and store processes on loopback, recorded in DIR/cluster.json."""

    def __init__(
        self,
        spec: ClusterSpec,
        directory: Path,
        env: dict[str, str] | None = None,
        extra_node_args: list[str] | None = None,
        extra: dict[str, Any] | None = None,
        extra_store_args: list[str] | None = None,
    ) -> None:
        self.spec = spec
        self.dir = directory.resolve()
        self.env = env
        self.extra_node_args = extra_node_args or []
        self.extra_store_args = extra_store_args or []
        self.extra = extra or {}
        self.owns_dir = False  # whether start() got past "a cluster is already running here"

    @staticmethod
    def python_argv(args: list[str]) -> list[str]:
        return [sys.executable, "-m", "node.cli", *args]

    def node_argv(self, node: NodeSpec) -> list[str]:
        ndir = self.dir / f"node-{node.id}"
        args = self.spec.node_args(node, str(ndir / "state"), str(ndir / "events.jsonl"))
        return self.python_argv(args + self.extra_node_args)

    def store_argv(self) -> list[str]:
        return self.python_argv([*self.spec.store_args(str(self.dir / "store")), *self.extra_store_args])

    def start(self, launcher_pid: int | None = None) -> dict[str, Any]:
        make_run_dir(self.dir)
        existing = self.dir / CLUSTER_FILE
        if existing.exists():
            old = read_cluster_file(self.dir)
            alive = _recorded_alive(old, run_pids(self.dir))
            if alive:
                raise ConfigError(
                    f"a cluster is already running in {self.dir} (pids {alive}); "
                    f"stop it with: bullyproof cluster down --dir {self.dir}"
                )
        self.owns_dir = True  # from here on, stop() stops whatever runs for this directory
        # Only now: a refused start must not reissue the running cluster's certificates (its servers
        # would pick them up at the next handshake, and admin.key, the dashboard token's root, would change).
        if self.spec.certs_dir:  # a CA already there is kept: nodes restarted later still trust each other
            with signals_held():  # half a CA (ca.pem without ca.key) would make every later start here fail
                make_cluster_certs(Path(self.spec.certs_dir), max(n.id for n in self.spec.nodes))
        store_pid = spawn(self.store_argv(), self.dir / "store" / "store.log", self.env, self.dir)
        data: dict[str, Any] = {
            "dir": str(self.dir),
            "mode": self.spec.mode,
            "heartbeat_interval_ms": self.spec.heartbeat_interval_ms,
            "election_timeout_ms": self.spec.election_timeout_ms,
            "launcher_pid": launcher_pid,
            "launcher_start_ticks": start_ticks(launcher_pid) if launcher_pid else None,  # who launcher_pid is
            "store": {"address": self.spec.store_address, "pid": store_pid, "argv": self.store_argv()},
            "nodes": [],
            "spec": asdict(self.spec),
            "certs": self.spec.certs_dir,  # None: plaintext (--insecure)
            **self.extra,
        }
        for node in self.spec.nodes:
            argv = self.node_argv(node)
            pid = spawn(argv, self.dir / f"node-{node.id}" / "node.log", self.env, self.dir)
            data["nodes"].append(
                {
                    "id": node.id,
                    "pid": pid,
                    "peer_address": node.peer_address,
                    "client_address": node.client_address,
                    "metrics_address": node.metrics_address,
                    "argv": argv,
                    "events": str(self.dir / f"node-{node.id}" / "events.jsonl"),
                }
            )
        trust_cluster(data)
        tmp = self.dir / (CLUSTER_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, existing)
        return data

    def client_addresses(self) -> dict[int, str]:
        return {n.id: n.client_address for n in self.spec.nodes}

    def wait_for_agreement(
        self,
        timeout_s: float,
        exclude: set[int] = frozenset(),
        differs_from: tuple[int, int] | None = None,
        interval_s: float = 0.02,
        rpc_timeout_s: float = 0.3,
    ) -> tuple[int, int]:
        return wait_for_agreement(self.client_addresses(), timeout_s, exclude, differs_from, interval_s, rpc_timeout_s)

    def stop(self) -> list[int]:
        """Stop what this cluster started, also halfway through start() (see stop_run)."""
        return stop_run(self.dir) if self.owns_dir else []


def stop_run(directory: Path) -> list[int]:
    """Stop every process of run directory `directory`, by pid; return their pids.

    Those are the processes tagged with it (run_pids), recorded in cluster.json or not: a launcher
    stopped or killed before it wrote cluster.json leaves them unrecorded. A recorded pid counts too
    if its command line is still the recorded one (a cluster started before processes were tagged).
    Nodes and anything unrecorded first, then the store, then Toxiproxy, as they depend on each other.
    """
    try:
        data = json.loads((directory / CLUSTER_FILE).read_text())
    except (OSError, ValueError):
        data = {}
    tagged = run_pids(directory)
    ours = tagged + [p for p in _recorded_alive(data, tagged) if p not in tagged]
    store, toxiproxy = data.get("store", {}).get("pid"), data.get("toxiproxy_pid")
    for group in ([p for p in ours if p not in (store, toxiproxy)], [store], [toxiproxy]):
        stop_pids([p for p in group if p in ours])
    return ours


def _runs(pid: int, argv: list[str] | None) -> bool:
    """Whether process `pid` runs exactly `argv` (its /proc/PID/cmdline)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return bool(argv) and f.read().split(b"\0")[:-1] == [a.encode() for a in argv] and pid_alive(pid)
    except OSError:
        return False


def _recorded_alive(data: dict[str, Any], tagged: list[int]) -> list[int]:
    """The node and store pids `data` (cluster.json) records that are still those processes: among
    the run's `tagged` ones, or running their recorded command line (a cluster started before tagging)."""
    recs = [*data.get("nodes", []), *([data["store"]] if "store" in data else [])]
    return [r["pid"] for r in recs if r["pid"] in tagged or _runs(r["pid"], r.get("argv"))]


def node_record(data: dict[str, Any], node_id: int) -> dict[str, Any]:
    for n in data["nodes"]:
        if n["id"] == node_id:
            return n
    raise ConfigError(f"no node {node_id} in this cluster (nodes: {', '.join(str(n['id']) for n in data['nodes'])})")


PROCESS_ACTIONS = ("kill", "pause", "resume", "restart")


def process_fault(
    directory: Path,
    target: str,
    action: str,
    env: dict[str, str] | None = None,
    timing_ms: dict[str, int] | None = None,
) -> dict[str, Any]:
    """kill | pause | resume | restart a node (by id) or the store ("store"), by pid from cluster.json.

    A restart with `timing_ms` ({"--election-timeout-ms": 1000, ...}) starts the node with those flags
    changed on its recorded command line, kept for later restarts: one step of a rolling change."""
    with locked_cluster_file(directory) as data:
        rec = data["store"] if target == "store" else node_record(data, parse_node_id(target))
        if timing_ms:
            if action != "restart" or target == "store":
                raise ConfigError("new timings apply only to restarting a node")
            rec["argv"] = retimed_argv(rec["argv"], timing_ms)
        log = Path(data["dir"]) / ("store/store.log" if target == "store" else f"node-{rec['id']}/node.log")
        pid = rec["pid"]
        if action == "kill":
            signal_pid(pid, signal.SIGKILL)
        elif action == "pause":
            signal_pid(pid, signal.SIGSTOP)
        elif action == "resume":
            signal_pid(pid, signal.SIGCONT)
        elif action == "restart":
            signal_pid(pid, signal.SIGCONT)
            signal_pid(pid, signal.SIGKILL)
            wait_for(lambda: not pid_alive(pid), 5.0, what=f"pid {pid} to exit")
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            rec["pid"] = spawn(rec["argv"], log, env, Path(data["dir"]))
        else:
            raise ConfigError(f"unknown action {action!r}")
        return dict(rec)


TIMING_FLAGS = ("--heartbeat-interval-ms", "--election-timeout-ms")


def retimed_argv(argv: list[str], timing_ms: dict[str, int]) -> list[str]:
    """`argv` (a `bullyproof node` command line) with the given timing flags set; the combination must
    be one a node accepts (ConfigError otherwise, before anything is stopped)."""
    from node.config import check_timings

    out = list(argv)
    for flag, value in timing_ms.items():
        if flag not in TIMING_FLAGS:
            raise ConfigError(f"{flag} is not a timing flag ({', '.join(TIMING_FLAGS)})")
        if flag in out:
            out[out.index(flag) + 1] = str(value)
        else:
            out += [flag, str(value)]
    current = {flag: int(out[out.index(flag) + 1]) for flag in TIMING_FLAGS if flag in out}
    check_timings(
        current.get("--heartbeat-interval-ms", DEFAULT_TIMING.heartbeat_interval_ms),
        current.get("--election-timeout-ms", DEFAULT_TIMING.election_timeout_ms),
    )
    return out


def parse_node_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"node must be a node id (an integer) or 'store', got {text!r}") from None


def with_dial(spec: ClusterSpec, dial: dict[int, dict[int, str]], store_dial: dict[int, str]) -> ClusterSpec:
    """The same cluster, with each node dialling its peers and the store through given addresses."""
    nodes = tuple(replace(n, dial=dial.get(n.id, {})) for n in spec.nodes)
    return replace(spec, nodes=nodes, store_dial=store_dial)
