"""Process faults on a compose cluster, through the container engine: docker or podman, whichever answers.

The local launcher signals pids (cluster.py `process_fault`); here the same four actions go to the
container of a compose service, found by the labels every compose implementation sets
(`com.docker.compose.service`, and the project: `COMPOSE_PROJECT_NAME` if set, else the compose
file's directory, as compose itself chooses). `restart` is a crash-restart, as locally: SIGKILL,
then start the same container, with its volume (promise, store log) kept.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from node.config import ConfigError
from node.launcher.cluster import STORE

ENGINE_ENV = "BULLYPROOF_CONTAINER_ENGINE"  # docker | podman: skip the detection
ENGINES = ("docker", "podman")
LABEL_SERVICE = "com.docker.compose.service"
LABEL_PROJECT = "com.docker.compose.project"
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
COMMAND_TIMEOUT_S = 60.0


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def detect_engine(environ: dict[str, str] | None = None) -> str:
    """`$BULLYPROOF_CONTAINER_ENGINE`, else the first of docker, podman whose server answers."""
    environ = os.environ if environ is None else environ
    forced = environ.get(ENGINE_ENV)
    if forced:
        if forced not in ENGINES:
            raise ConfigError(f"{ENGINE_ENV} must be one of {', '.join(ENGINES)}, got {forced!r}")
        if shutil.which(forced) is None:
            raise ConfigError(f"{ENGINE_ENV}={forced}, but {forced} is not installed")
        return forced
    problems = []
    for name in ENGINES:
        if shutil.which(name) is None:
            problems.append(f"{name}: not installed")
            continue
        try:
            done = subprocess.run(
                [name, "version", "--format", "{{.Server.Version}}"],
                capture_output=True,
                text=True,
                timeout=15,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            problems.append(f"{name}: no answer within 15 s")
            continue
        if done.returncode == 0:
            return name
        problems.append(f"{name}: {_last_line(done.stderr)}")
    raise ConfigError(f"no container engine answers ({'; '.join(problems)})")


class Engine:
    """One engine's CLI, and the containers of one compose cluster (a record from read_compose_file)."""

    def __init__(self, record: dict[str, Any], name: str | None = None) -> None:
        self.name = name or detect_engine()
        self.record = record
        self.compose_file = record["compose_file"]

    def run(self, *args: str) -> str:
        try:
            done = subprocess.run(
                [self.name, *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(f"{self.name} {' '.join(args)}: no answer within {COMMAND_TIMEOUT_S:.0f} s") from None
        if done.returncode != 0:
            raise ConfigError(f"{self.name} {' '.join(args)} failed: {_last_line(done.stderr or done.stdout)}")
        return done.stdout

    def project_labels(self) -> list[str]:
        project = os.environ.get("COMPOSE_PROJECT_NAME")
        if project:
            return [f"{LABEL_PROJECT}={project}"]
        return [f"{LABEL_WORKING_DIR}={Path(self.compose_file).parent}"]

    def describe_project(self) -> str:
        project = os.environ.get("COMPOSE_PROJECT_NAME")
        return f"compose project {project}" if project else f"the compose project of {self.compose_file}"

    def container(self, service: str) -> str:
        """The id of the one container of `service`; a one-line error naming the engine if there is none."""
        filters = [
            arg
            for label in [f"{LABEL_SERVICE}={service}", *self.project_labels()]
            for arg in ("--filter", f"label={label}")
        ]
        rows = [
            line.split()
            for line in self.run("ps", "-a", *filters, "--format", "{{.ID}} {{.Names}}").splitlines()
            if line.strip()
        ]
        if not rows:
            raise ConfigError(
                f"{self.name}: no container of service {service} in {self.describe_project()}; "
                f"is the compose cluster up? (docker compose -f {self.compose_file} up -d)"
            )
        if len(rows) > 1:
            raise ConfigError(
                f"{self.name}: {len(rows)} containers of service {service} in {self.describe_project()} "
                f"({', '.join(r[-1] for r in rows)}); set COMPOSE_PROJECT_NAME to choose one project"
            )
        return rows[0][0]

    def state(self, container: str) -> str:
        return self.run("inspect", "--format", "{{.State.Status}}", container).strip()


def service_of(record: dict[str, Any], target: str) -> str:
    if target == STORE:
        return str(record["store"]["service"])
    try:
        node_id = int(target)
    except ValueError:
        raise ConfigError(f"node must be a node id (an integer) or 'store', got {target!r}") from None
    for node in record["nodes"]:
        if node["id"] == node_id:
            return str(node["service"])
    raise ConfigError(f"no node {node_id} in this cluster (nodes: {', '.join(str(n['id']) for n in record['nodes'])})")


def container_fault(record: dict[str, Any], target: str, action: str, engine: str | None = None) -> dict[str, Any]:
    """kill | pause | resume | restart a node (by id) or the store ("store") of a compose cluster."""
    if action not in ("kill", "pause", "resume", "restart"):
        raise ConfigError(f"unknown action {action!r}")
    service = service_of(record, target)
    eng = Engine(record, engine)
    cid = eng.container(service)
    if action == "kill":
        eng.run("kill", cid)  # SIGKILL
        eng.run("wait", cid)  # until it has exited, as `bullyproof kill` returns on a dead process
    elif action == "pause":
        eng.run("pause", cid)  # the cgroup freezer: SIGSTOP for every process in it
    elif action == "resume":
        eng.run("unpause", cid)
    else:
        state = eng.state(cid)
        if state == "paused":
            eng.run("unpause", cid)  # a frozen process cannot die
            state = "running"
        if state in ("running", "restarting"):
            eng.run("kill", cid)
            eng.run("wait", cid)  # `start` on a container still running would do nothing
        eng.run("start", cid)
    return {"action": action, "target": target, "engine": eng.name, "service": service, "container": cid}
