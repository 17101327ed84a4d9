"""Process faults on compose clusters go to the container engine: which engine, which container, which calls.

A fake engine (a script on PATH that logs its arguments) stands in for docker and podman.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from node.config import ConfigError
from node.launcher.containers import ENGINE_ENV, container_fault, detect_engine

RECORD = {
    "compose_file": "/srv/cluster/docker-compose.yml",
    "store": {"service": "store", "address": "127.0.0.1:7200"},
    "nodes": [{"id": i, "service": f"node{i}", "client_address": f"127.0.0.1:{7100 + i}"} for i in (1, 2, 3)],
}


def fake_engine(
    bin_dir: Path,
    name: str,
    log: Path,
    *,
    version_ok: bool = True,
    ps_rows: str = "c0ffee bp-node2-1",
    state: str = "running",
) -> None:
    script = f"""#!/bin/sh
echo "$*" >> {log}
case "$1" in
  version) {"echo 4.3.1" if version_ok else 'echo "Cannot connect to the daemon" >&2; exit 1'} ;;
  ps) printf '%s\\n' "{ps_rows}" ;;
  inspect) echo {state} ;;
esac
"""
    path = bin_dir / name
    path.write_text(script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", str(d))  # only the fakes: a real docker or podman must not answer
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    return d


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines()


def test_the_engine_that_answers_is_chosen(bin_dir: Path, tmp_path: Path) -> None:
    fake_engine(bin_dir, "docker", tmp_path / "docker.log", version_ok=False)  # a client without a daemon
    fake_engine(bin_dir, "podman", tmp_path / "podman.log")
    assert detect_engine() == "podman"


def test_no_engine_is_one_error_naming_both(bin_dir: Path, tmp_path: Path) -> None:
    fake_engine(bin_dir, "docker", tmp_path / "docker.log", version_ok=False)
    with pytest.raises(
        ConfigError,
        match=r"no container engine answers \(docker: Cannot connect to the daemon; podman: not installed\)",
    ):
        detect_engine()


def test_the_environment_forces_an_engine(bin_dir: Path, tmp_path: Path) -> None:
    fake_engine(bin_dir, "docker", tmp_path / "docker.log")
    fake_engine(bin_dir, "podman", tmp_path / "podman.log")
    assert detect_engine({ENGINE_ENV: "podman"}) == "podman"
    with pytest.raises(ConfigError, match="must be one of docker, podman"):
        detect_engine({ENGINE_ENV: "lxc"})


def test_a_node_s_container_is_found_by_service_and_project_directory(bin_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "podman.log"
    fake_engine(bin_dir, "podman", log)
    out = container_fault(RECORD, "2", "kill", engine="podman")
    assert out == {"action": "kill", "target": "2", "engine": "podman", "service": "node2", "container": "c0ffee"}
    ps, kill, wait = calls(log)
    assert "label=com.docker.compose.service=node2" in ps
    assert "label=com.docker.compose.project.working_dir=/srv/cluster" in ps
    assert (kill, wait) == ("kill c0ffee", "wait c0ffee")


def test_compose_project_name_selects_the_project(
    bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "podman.log"
    fake_engine(bin_dir, "podman", log)
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "demo")
    container_fault(RECORD, "store", "pause", engine="podman")
    ps, pause = calls(log)
    assert "label=com.docker.compose.project=demo" in ps and "label=com.docker.compose.service=store" in ps
    assert pause == "pause c0ffee"


@pytest.mark.parametrize(
    "state, expected",
    [
        ("running", ["kill c0ffee", "wait c0ffee", "start c0ffee"]),
        ("paused", ["unpause c0ffee", "kill c0ffee", "wait c0ffee", "start c0ffee"]),
        ("exited", ["start c0ffee"]),
    ],
)
def test_restart_is_a_crash_restart_of_the_same_container(
    bin_dir: Path, tmp_path: Path, state: str, expected: list[str]
) -> None:
    log = tmp_path / "podman.log"
    fake_engine(bin_dir, "podman", log, state=state)
    container_fault(RECORD, "3", "restart", engine="podman")
    assert calls(log)[2:] == expected  # after ps and inspect


def test_no_container_says_which_engine_and_how_to_start(bin_dir: Path, tmp_path: Path) -> None:
    fake_engine(bin_dir, "docker", tmp_path / "docker.log", ps_rows="")
    with pytest.raises(
        ConfigError,
        match=r"^docker: no container of service node1 in the compose project of "
        r"/srv/cluster/docker-compose.yml; is the compose cluster up\?",
    ):
        container_fault(RECORD, "1", "resume", engine="docker")


def test_bad_targets(bin_dir: Path, tmp_path: Path) -> None:
    fake_engine(bin_dir, "podman", tmp_path / "podman.log")
    with pytest.raises(ConfigError, match="no node 9 in this cluster"):
        container_fault(RECORD, "9", "kill", engine="podman")
    with pytest.raises(ConfigError, match="node id"):
        container_fault(RECORD, "leader", "kill", engine="podman")
