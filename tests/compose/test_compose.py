"""docker-compose.yml, for real: build, up, leader, failover, partition, restart, down, in containers,
on each engine (tests/engines.py): podman driven by Debian's docker-compose 1.29, and Docker Engine
driven by the Docker Compose CLI plugin. Where one cannot run here, its variant skips and says why.

The compose file is rendered by the same generator as the committed one (only the published ports,
the image tag and the build context differ, so that runs never collide), and every fault goes
through the `bullyproof ... --compose` CLI a user would type, in the file's directory: the container
engine for process faults, the published Toxiproxy API for network faults. On Docker the commands
are docs/compose.md's, word for word (`docker compose up -d --build`, `docker compose restart node3`,
`docker compose down -v`). Each step's wall time is printed.

Each engine's API server is the test's own, stopped by pid afterwards: `podman system service` on a
private socket, or a dockerd on its own socket and data root. Podman schedules healthchecks with
systemd timers; these machines have no systemd, so `HealthPump` runs them (`podman healthcheck run`)
as those timers would while compose waits on `service_healthy`; Docker runs its own. Every name the
test creates starts with bp-test-<pid>: the compose project (its containers, network and volumes) and
the image tag.

Mutual TLS is on, as in the committed file: the fixture makes certs/ beside the compose file as
`bullyproof compose` does, the certs service copies each process's own files into its volume, and the
test (like the CLI) dials the published ports as that admin.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chaos.harness import store_events
from chaos.tools import TOXIPROXY_VERSION
from node.api import bullyproof_pb2 as pb
from node.launcher.cluster import wait_for, wait_for_agreement
from node.launcher.compose import (
    CERTS_SERVICE,
    Published,
    compose_cluster,
    ensure_certs,
    read_compose_file,
    write_files,
)
from node.launcher.ports import free_port
from node.observer import get_status, views_of
from node.tls import make_cluster_certs
from tests.engines import Docker, Engine, Podman, Unavailable

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
TOXIPROXY_IMAGE = f"bullyproof-toxiproxy:{TOXIPROXY_VERSION}"


@dataclass
class Project:
    """One compose project: its file, its name, its engine, and the environment they all run with."""

    name: str
    file: Path
    engine: Engine

    @property
    def env(self) -> dict[str, str]:
        return {**self.engine.env, "COMPOSE_PROJECT_NAME": self.name}

    def compose(self, *args: str, timeout_s: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The compose CLI as a user types it in the file's directory (the project's name from the
        environment): `docker compose up -d --build`, `docker-compose restart store`, ..."""
        done = subprocess.run(
            [*self.engine.compose_cli, *args],
            env=self.env,
            cwd=self.file.parent,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(self.engine.compose_cli)} {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return done

    def run(self, *args: str, timeout_s: float = 120) -> str:
        """The engine's own CLI (podman ..., docker ...); its output."""
        return self.engine.run(*args, timeout_s=timeout_s).stdout

    def containers(self, stopped_too: bool = True) -> dict[str, str]:
        """service -> container id, for every container of the project (or only the running ones)."""
        out = self.run(
            "ps",
            *(["-a"] if stopped_too else []),
            "--filter",
            f"label=com.docker.compose.project={self.name}",
            "--format",
            "{{.ID}} " + self.engine.label("com.docker.compose.service"),
        )
        return {service: cid for cid, service in (line.split() for line in out.splitlines() if line.strip())}

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, volumes and networks of the project that still exist."""
        label = f"label=com.docker.compose.project={self.name}"

        def names(*cmd: str) -> list[str]:
            return [line for line in self.run(*cmd).split() if line]

        return {
            "containers": names("ps", "-a", "--filter", label, "--format", "{{.Names}}"),
            "volumes": names("volume", "ls", "--filter", label, "--format", "{{.Name}}"),
            "networks": [n for n in names("network", "ls", "--format", "{{.Name}}") if n.startswith(self.name)],
        }


class HealthPump:
    """Once a second until stopped, asks the engine which of the `wanted` containers not yet seen
    healthy are healthy now, and remembers them (podman runs their healthchecks then, as systemd's
    timers would; Docker runs its own and reports them)."""

    def __init__(self, project: Project, wanted: set[str], interval_s: float = 1.0) -> None:
        self.project = project
        self.wanted = wanted
        self.interval_s = interval_s
        self.healthy: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-pump", daemon=True)

    def __enter__(self) -> HealthPump:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pending = {
                    cid: service
                    for service, cid in self.project.containers().items()
                    if service in self.wanted and service not in self.healthy
                }
                self.healthy |= {pending[cid] for cid in self.project.engine.healthy(list(pending))}
            except AssertionError as error:  # a container going away as we ask: ask again
                print(f"health pump: {error}", flush=True)
            self._stop.wait(self.interval_s)


@pytest.fixture(scope="module", params=["podman", "docker"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The engine's own API server, for this module's test; skips, saying why, where it cannot run."""
    try:
        if request.param == "podman":
            started: Engine = Podman(tmp_path_factory.mktemp("podman"), TOXIPROXY_IMAGE).start()
        else:
            started = Docker().start()
    except Unavailable as reason:
        print(f"\ncompose test on {request.param} skipped: {reason}", flush=True)
        pytest.skip(str(reason))
    except AssertionError as error:  # containers can run, but the set-up did not finish
        pytest.fail(str(error))
    try:
        yield started
    finally:
        started.stop()


NODES = 5
SPARES = 1  # node 6 starts outside the configuration; the test adds it, then removes it
AGREE_TIMEOUT_S = 60.0  # containers start slower than processes, and the machine is shared


@pytest.fixture(scope="module")
def project(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    name = f"bp-test-{os.getpid()}"
    directory = tmp_path_factory.mktemp("compose")
    ids = list(range(1, NODES + SPARES + 1))
    published = Published({i: free_port() for i in ids}, {i: free_port() for i in ids}, free_port(), free_port())
    cc = compose_cluster(
        NODES,
        toxiproxy_version=TOXIPROXY_VERSION,
        published=published,
        build_context=str(ROOT),
        image=f"bullyproof:{name}",
        spares=SPARES,
    )
    write_files(cc, directory / "docker-compose.yml")
    assert ensure_certs(cc, directory / "docker-compose.yml")  # as `bullyproof compose` does: certs/ beside the file
    proj = Project(name, directory / "docker-compose.yml", engine)
    try:
        yield proj
    finally:
        proj.compose("down", "-v", "--timeout", "5", timeout_s=300, check=False)
        # The tag only: the layers stay as the next build's cache (Docker's classic builder keeps its cache
        # in the parent images, which a plain rmi would delete with it).
        engine.run("rmi", *(["--no-prune"] if engine.name == "docker" else []), f"bullyproof:{name}", check=False)
        # Each build leaves its untagged build stage behind as the next build's cache; a day's worth is plenty.
        engine.run("image", "prune", "--force", "--filter", "until=24h", timeout_s=300, check=False)


class Steps:
    """Wall time of each step, printed as it ends (run pytest with -s to watch)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        result = fn(*args, **kwargs)
        self.seconds[name] = time.monotonic() - t0
        print(f"compose step {name}: {self.seconds[name]:.1f} s", flush=True)
        return result


def bullyproof(project: Project, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    """The CLI a user would type, against the compose file (cwd: its directory, so runs/ stays there)."""
    done = subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        env={**project.env, "PYTHONPATH": str(ROOT)},
        cwd=project.file.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == expect, (
        f"bullyproof {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done


class RemoteDashboard:
    """`bullyproof dashboard --nodes ...`: the page's state read over HTTP (tests/dashboard drives
    the same page in chromium against a local cluster)."""

    def __init__(self, project: Project, source: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "dashboard", "--port", "0", *source],
            env={**project.env, "PYTHONPATH": str(ROOT)},
            cwd=project.file.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("dashboard: ") and "read-only" in line, line + self.proc.stdout.read()  # type: ignore[union-attr]
        self.url = line.split()[1]

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "api/state", timeout=5) as r:
            return json.loads(r.read())

    def agreed(self) -> int | None:
        agreed = self.state()["nodes"]["agreed"]
        return agreed["leader"] if agreed else None

    def role(self, node: int) -> str:
        return next(t["role"] for t in self.state()["nodes"]["tiles"] if t["id"] == node)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def clients(record: dict[str, Any], exclude: set[int] = frozenset()) -> dict[int, str]:
    return {n["id"]: n["client_address"] for n in record["nodes"] if n["id"] not in exclude}


def up_and_healthy(project: Project) -> None:
    wanted = {"store", "toxiproxy", *(f"node{i}" for i in range(1, NODES + SPARES + 1))}
    with HealthPump(project, wanted) as pump:
        # The certs copy first; store and toxiproxy healthy before the nodes (Docker: `up -d --build`,
        # docs/compose.md's line, so both images are built again, from the cache).
        project.compose(*project.engine.up, timeout_s=1500)
        wait_for(lambda: pump.healthy >= wanted, AGREE_TIMEOUT_S, 0.2, what=f"every service healthy ({sorted(wanted)})")


def ask_every_node(project: Project, record: dict[str, Any]) -> tuple[int, int]:
    """`bullyproof leader --compose`: every node answers through its published port and all agree."""

    def agreed() -> dict[str, Any] | None:
        done = subprocess.run(
            [sys.executable, "-m", "node.cli", "leader", "--compose"],
            env={**project.env, "PYTHONPATH": str(ROOT)},
            cwd=project.file.parent,
            capture_output=True,
            text=True,
            timeout=60,
        )
        out = json.loads(done.stdout) if done.returncode == 0 else None
        return out if out and all(v is not None for v in out["nodes"].values()) else None

    out = wait_for(agreed, AGREE_TIMEOUT_S, 0.5, what="every node to answer `bullyproof leader --compose` alike")
    assert set(out["nodes"]) == {str(i) for i in range(1, NODES + SPARES + 1)}
    members = {k: v for k, v in out["nodes"].items() if not v["outside"]}  # the spare follows no one yet
    assert set(members) == {str(i) for i in range(1, NODES + 1)}
    assert {v["leader"] for v in members.values()} == {out["leader"]}
    return out["leader"], out["epoch"]


@pytest.mark.slow
def test_compose_cluster_in_containers(project: Project) -> None:
    steps = Steps()
    record = read_compose_file(project.file)

    # Before `up`: one clear line, for the engine too.
    err = bullyproof(project, "leader", "--compose", expect=2).stderr
    assert "is not up" in err and len(err.strip().splitlines()) == 1, err
    err = bullyproof(project, "kill", "3", "--compose", expect=2).stderr
    assert f"{project.engine.name}: no container of service node3" in err, err

    if "--build" not in project.engine.up:  # docker-compose on podman: the image first (Toxiproxy's is the set-up's)
        steps.run("build", project.compose, "build", CERTS_SERVICE, timeout_s=1500)  # the first service to run it
    # On Docker, `up -d --build` builds both images first.
    steps.run("without certs/: nothing starts, one line says why", up_without_certificates, project)
    check_image(f"bullyproof:{project.name}", project)
    steps.run("up to healthy", up_and_healthy, project)
    networks = {service: _networks(project, cid) for service, cid in project.containers().items()}
    assert networks.pop(CERTS_SERVICE) in ((), ("none",)), networks  # the one-shot copy has no network at all
    assert set(networks.values()) == {(f"{project.name}_default",)}, networks  # only the project's own network
    steps.run("mutual TLS on every published port", check_tls, project, record)
    steps.run("first agreed leader", ask_every_node, project, record)
    status = json.loads(bullyproof(project, "status", "--compose").stdout)
    assert {k: v["node_id"] for k, v in status.items()} == {str(i): i for i in range(1, NODES + SPARES + 1)}, status
    # Bully: the highest id leads, at once or (if its container started late) after its preemption hold-down.
    leader, epoch = steps.run(
        "highest id leads",
        wait_for,
        lambda: _agreed_on(record, NODES),
        AGREE_TIMEOUT_S,
        0.1,
        what=f"node {NODES} to lead",
    )

    # The same cluster by its published addresses alone (as one on other hosts): `leader --nodes`
    # agrees with `--compose`, and a dashboard started with --nodes follows it over the client ports.
    by_address = ["--nodes", ",".join(clients(record).values()), "--certs", str(project.file.parent / "certs")]
    assert json.loads(bullyproof(project, "leader", *by_address).stdout)["leader"] == leader
    dash = RemoteDashboard(project, by_address)
    try:
        steps.run("dashboard --nodes shows the leader", wait_for, lambda: dash.agreed() == leader, AGREE_TIMEOUT_S, 0.2)

        # Failover: kill the leader's container.
        def failover() -> tuple[int, int]:
            bullyproof(project, "kill", str(leader), "--compose")
            return wait_for_agreement(
                clients(record), AGREE_TIMEOUT_S, exclude={leader}, differs_from=(leader, epoch), interval_s=0.05
            )

        new_leader, new_epoch = steps.run("failover", failover)
        assert new_leader != leader and new_epoch > epoch
        assert views_of({leader: clients(record)[leader]}, 0.3)[leader] is None  # its container is dead
        # The tiles follow WatchLeader; the log line comes from the new leader's WatchEvents stream,
        # which may arrive a moment later: both within the same wait.
        steps.run(
            "dashboard --nodes shows the failover",
            wait_for,
            lambda: (
                dash.agreed() == new_leader
                and dash.role(leader) == "unreachable"
                and any(f"node {new_leader} is the new LEADER" in line["text"] for line in dash.state()["log"])
            ),
            AGREE_TIMEOUT_S,
            0.2,
        )
    finally:
        dash.stop()

    # Crash-restart it: it rejoins, and after its hold-down the highest id leads again.
    def rejoin() -> tuple[int, int]:
        bullyproof(project, "restart", str(leader), "--compose")
        return wait_for(lambda: _agreed_on(record, leader), AGREE_TIMEOUT_S, 0.1, what=f"node {leader} to lead again")

    leader, epoch = steps.run("restart of the killed leader, leading again", rejoin)

    # Partition through the compose Toxiproxy: the leader and node 1 against the majority.
    minority, majority = [leader, 1], [i for i in range(1, NODES + 1) if i not in (leader, 1)]

    def partition() -> float:
        t0 = time.monotonic()
        bullyproof(
            project,
            "chaos",
            "partition",
            ",".join(map(str, minority)),
            "/",
            ",".join(map(str, majority)),
            "--compose",
        )
        wait_for(
            lambda: _role(record, leader) not in (None, pb.ROLE_LEADER),
            AGREE_TIMEOUT_S,
            0.02,
            what=f"node {leader} (minority) to step down",
        )
        return time.monotonic() - t0

    stepdown_s = steps.run("partition: minority leader steps down", partition)
    print(f"compose: node {leader} stepped down {stepdown_s * 1000:.0f} ms after the partition", flush=True)
    side_leader, side_epoch = steps.run(
        "partition: majority elects", wait_for_agreement, clients(record, exclude=set(minority)), AGREE_TIMEOUT_S
    )
    assert side_leader in majority and side_epoch > epoch
    bullyproof(project, "chaos", "heal", "--compose")
    leader, epoch = steps.run(
        "heal: all agree, highest leads",
        wait_for,
        lambda: _agreed_on(record, NODES),
        AGREE_TIMEOUT_S,
        0.1,
        what="agreement after heal",
    )
    assert (Path(project.file.parent) / "runs" / "compose" / "harness.jsonl").exists()  # the faults were recorded

    # Restart a follower: its promise comes back from its volume.
    follower = 2
    before = get_status(clients(record)[follower], 2.0)
    assert not isinstance(before, str) and before.promised_epoch == epoch and before.promised_to == leader, before

    def restart_follower() -> pb.NodeStatus:
        t0 = time.monotonic()
        bullyproof(project, "restart", str(follower), "--compose")

        def fresh() -> pb.NodeStatus | None:
            st = get_status(clients(record)[follower], 1.0)
            return st if not isinstance(st, str) and st.uptime_ms < (time.monotonic() - t0) * 1000 else None

        return wait_for(fresh, AGREE_TIMEOUT_S, 0.05, what=f"node {follower} to answer after its restart")

    steps.run("restart of a follower", restart_follower)
    # Its boot line says which promise it read back from its volume (a lost volume would read epoch 0).
    boots = _boot_promises(project, project.containers()[f"node{follower}"])
    assert len(boots) == 2, boots  # the same container: started by `up`, then by `restart`
    assert boots[-1]["epoch"] >= before.promised_epoch > 0 and boots[-1]["leader_id"], boots
    if boots[-1]["epoch"] == before.promised_epoch:
        assert boots[-1]["leader_id"] == before.promised_to, boots
    wait_for_agreement(clients(record), AGREE_TIMEOUT_S)

    # Pause a follower's container (the cgroup freezer): it answers nothing until resumed.
    def pause_and_resume() -> None:
        bullyproof(project, "pause", "3", "--compose")
        assert views_of({3: clients(record)[3]}, 0.3)[3] is None
        bullyproof(project, "resume", "3", "--compose")
        wait_for_agreement(clients(record), AGREE_TIMEOUT_S)

    steps.run("pause and resume a follower", pause_and_resume)

    # `docker compose restart store`: its log is kept on its volume, and the leader writes on.
    store = record["store"]["address"]
    logged = store_events(store)
    assert logged, "the leader's writes reached the store"

    def restart_store() -> list[dict[str, Any]]:
        project.compose("restart", "store")
        return wait_for(
            lambda: _more_log(store, len(logged)), AGREE_TIMEOUT_S, 0.2, what="the store's log to grow again"
        )

    after_log = steps.run("restart of the store", restart_store)
    assert after_log[: len(logged)] == logged

    # docs/compose.md's `docker compose restart node3`: a stop and a start of the same container, whose promise
    # comes back from its volume.
    before = get_status(clients(record)[3], 2.0)
    assert not isinstance(before, str) and before.promised_epoch > 0, before
    steps.run("compose restart node3", project.compose, "restart", "node3")
    node3 = project.containers()["node3"]
    boots = wait_for(
        lambda: (b := _boot_promises(project, node3)) and len(b) >= 2 and b,
        AGREE_TIMEOUT_S,
        0.2,
        what="node 3's second boot line",
    )
    assert len(boots) == 2 and boots[-1]["epoch"] >= before.promised_epoch, boots
    wait_for_agreement(clients(record), AGREE_TIMEOUT_S)

    # Grow through the protocol: the spare joins as a learner and is promoted; then shrink back.
    spare = NODES + SPARES

    def grow_and_shrink() -> None:
        grown = json.loads(bullyproof(project, "member", "add", str(spare), "--compose").stdout)
        assert grown["configuration"]["voters"] == list(range(1, spare + 1)), grown
        wait_for_agreement(clients(record), AGREE_TIMEOUT_S)
        shrunk = json.loads(bullyproof(project, "member", "remove", str(spare), "--compose").stdout)
        assert shrunk["configuration"]["voters"] == list(range(1, NODES + 1)), shrunk

    steps.run("member add and remove through the protocol", grow_and_shrink)
    wait_for_agreement(clients(record), AGREE_TIMEOUT_S)

    steps.run("rotate certificates without a restart", rotate_certificates, project, record)
    wait_for_agreement(clients(record), AGREE_TIMEOUT_S)  # and the cluster agrees on as before

    steps.run(" ".join(project.engine.down), project.compose, *project.engine.down)
    assert project.leftovers() == {"containers": [], "volumes": [], "networks": []}
    print("compose steps (s): " + json.dumps({k: round(v, 1) for k, v in steps.seconds.items()}), flush=True)


def up_without_certificates(project: Project) -> None:
    """A checkout where `bullyproof compose` never ran: the certs service fails with one line, and
    compose starts neither the store nor any node (service_completed_successfully)."""
    certs = project.file.parent / "certs"
    away = certs.with_name("certs.away")
    certs.rename(away)
    try:
        done = project.compose(*project.engine.up, check=False, timeout_s=1500)
        assert done.returncode != 0, done
        containers = project.containers()
        assert CERTS_SERVICE in containers, f"no certs container: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        # compose's words for a dependency that did not complete successfully (exit 2)
        assert project.engine.certs_failed(done, containers[CERTS_SERVICE]), (done.stdout, done.stderr)
        logs = project.engine.run("logs", containers[CERTS_SERVICE])
        assert (logs.stdout + logs.stderr).strip() == (
            "bullyproof: error: no ca.pem in /host-certs: make the certificates "
            "first (bullyproof certs init --nodes N --dir DIR, or bullyproof "
            "compose beside a compose file)"
        ), logs
        running = project.containers(stopped_too=False)
        assert not {"store", *(f"node{i}" for i in range(1, NODES + 1))} & set(running), running
    finally:
        project.compose("down", "--timeout", "5")
        if certs.is_dir() and not any(certs.iterdir()):
            certs.rmdir()  # the empty directory the engine made for the missing bind mount
        away.rename(certs)


def check_tls(project: Project, record: dict[str, Any]) -> None:
    """The certs service ran once and succeeded; each container holds only its own key (0600, the
    image's user) and never the CA's; the published ports refuse plaintext and another CA's
    certificate, and answer the cluster's read-only client as the CLI would."""
    containers = project.containers()
    exit_code = project.run("inspect", "--format", "{{.State.ExitCode}}", containers[CERTS_SERVICE]).strip()
    assert exit_code == "0", exit_code
    script = (
        "import os, json\n"
        "print(json.dumps({n: [oct(os.stat('/certs/' + n).st_mode & 0o777), os.stat('/certs/' + n).st_uid]"
        " for n in sorted(os.listdir('/certs'))}))\n"
    )
    for service, holder in [("store", "store"), ("node1", "node-1"), (f"node{NODES}", f"node-{NODES}")]:
        out = project.run("exec", containers[service], "python3", "-c", script, timeout_s=60)
        assert json.loads(out) == {
            "ca.pem": ["0o644", 10001],
            f"{holder}.key": ["0o600", 10001],
            f"{holder}.pem": ["0o644", 10001],
        }, (service, out)

    node, store = record["nodes"][0]["client_address"], record["store"]["address"]
    for address in (node, store):
        with grpc.insecure_channel(address) as ch:
            with pytest.raises(grpc.RpcError) as refused:
                health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value  # no handshake, no answer
    certs = Path(record["certs"])
    assert bullyproof(project, "health", node, "--certs", str(certs), "--as", "client").stdout.strip() == "SERVING"
    assert (
        bullyproof(
            project, "health", store, "--certs", str(certs), "--as", "client", "--server-name", "store.bullyproof"
        ).stdout.strip()
        == "SERVING"
    )
    stranger = project.file.parent / "stranger-certs"
    make_cluster_certs(stranger, 1)
    assert (
        bullyproof(project, "health", node, "--certs", str(stranger), "--as", "admin", expect=1).stdout.strip()
        == "UNAVAILABLE"
    )
    # Prometheus' view: HTTPS on the published metrics port, with a client certificate of the CA.
    context = client_context(certs)
    with urllib.request.urlopen(
        f"https://{record['nodes'][0]['metrics_address']}/metrics", context=context, timeout=10
    ) as r:
        assert b"bullyproof_epoch" in r.read()


def client_context(certs: Path) -> ssl.SSLContext:
    """TLS as the cluster's read-only client: trusts the cluster CA, presents client.pem."""
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    context.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
    return context


def served_certificate(address: str, certs: Path) -> bytes:
    """The certificate (DER) a node presents to a new connection, asked as the cluster's client."""
    context = client_context(certs)
    context.check_hostname = False  # only which certificate it is matters here
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw, context.wrap_socket(raw) as tls:
        return tls.getpeercert(binary_form=True)


def rotate_certificates(project: Project, record: dict[str, Any]) -> None:
    """docs/compose.md's rotation: new certificates under the same CA on the host, the certs service run again;
    a running node presents its new certificate at the next handshake, without a restart."""
    certs, node = Path(record["certs"]), record["nodes"][0]["client_address"]
    before = served_certificate(node, certs)
    make_cluster_certs(
        certs, NODES + SPARES
    )  # what `bullyproof certs init --nodes 5 --dir certs` does again: the CA is kept
    new = ssl.PEM_cert_to_DER_cert((certs / "node-1.pem").read_text())
    assert new != before
    project.compose("up", "-d", CERTS_SERVICE)
    wait_for(
        lambda: served_certificate(node, certs) == new,
        AGREE_TIMEOUT_S,
        0.2,
        what="node 1 to present its new certificate",
    )


def check_image(image: str, project: Project) -> None:
    """Non-root, no build tools, and exactly the pinned dependencies (requirements.lock) plus the project."""
    script = (
        "import importlib.metadata as m, os, shutil\n"
        "print(os.getuid())\n"
        "print(sorted(t for t in ('pip', 'pip3', 'gcc', 'cc', 'make') if shutil.which(t)))\n"
        "print('\\n'.join(sorted(f\"{d.metadata['Name'].lower()}=={d.version}\" for d in m.distributions())))\n"
    )
    out = project.run("run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", script)
    uid, tools, *installed = out.splitlines()
    assert uid == "10001"
    assert tools == "[]", f"build tools in the final image: {tools}"
    lock = sorted(
        line.lower()
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert [p for p in installed if not p.startswith("bullyproof==")] == lock
    toxiproxy_user = project.run("image", "inspect", "--format", "{{.Config.User}}", TOXIPROXY_IMAGE).strip()
    assert toxiproxy_user and not toxiproxy_user.startswith(("0", "root")), toxiproxy_user


def _agreed_on(record: dict[str, Any], node: int) -> tuple[int, int] | None:
    from node.observer import agreed_leader

    views = views_of(clients(record), 0.3)
    if any(v is None for v in views.values()):
        return None
    agreed = agreed_leader(views)
    return agreed if agreed and agreed[0] == node else None


def _boot_promises(project: Project, container: str) -> list[dict[str, int]]:
    """The promise each start of the node in `container` loaded (its JSON "boot" log lines)."""
    logs = project.engine.run("logs", container)
    lines = [json.loads(line) for line in (logs.stdout + logs.stderr).splitlines() if line.startswith("{")]
    return [line["promise"] for line in lines if line.get("msg") == "boot"]


def _networks(project: Project, container: str) -> tuple[str, ...]:
    out = project.run(
        "inspect", "--format", "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}", container
    )
    return tuple(sorted(out.split()))


def _role(record: dict[str, Any], node: int) -> int | None:
    view = views_of({node: clients(record)[node]}, 0.3)[node]
    return None if view is None else view.role


def _more_log(address: str, count: int) -> list[dict[str, Any]] | None:
    try:
        events = store_events(address)
    except Exception:  # the store is still starting
        return None
    return events if len(events) > count else None
