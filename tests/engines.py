"""The container engines the compose test (tests/compose) runs docker-compose.yml on, each with its own
API server, started for the test and stopped by pid:

* podman, driven by Debian's docker-compose (1.29) over podman's Docker-compatible API: the test's own
  `podman system service` on a private socket;
* Docker Engine (Debian's docker.io: dockerd 20.10, overlay2, runc), driven by the Docker Compose CLI
  plugin (`docker compose`, .ci/install-compose-plugin): the test's own dockerd, with its own socket
  and exec root in a short temporary directory, and a data root kept under .tools/docker, so the base
  images loaded into it and the classic builder's cache survive between runs. Its bridge (docker0),
  address pools and iptables chains are the engine's defaults, which two dockerds on one machine
  would share: so one such test runs at a time on the machine (a lock in /run/lock), none where a
  system dockerd already answers, and dockerd's pidfile sits beside the data root, so it refuses to
  start while one from an earlier, killed run is still alive. Only 127.0.0.1 is published.

No registry is reachable: .ci/install-containers builds the base images with podman, and the Docker
variant loads them into its dockerd (`podman save | docker load`) whenever podman's differ.
`Unavailable` says why an engine cannot run here (the test skips with it); a set-up left unfinished
where it could run is an error.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
PYTHON_IMAGE = "python:3.11-slim"
# The Go image Dockerfile.toxiproxy builds from (a stand-in here): Docker's classic builder runs that stage.
GO_IMAGE = next(
    line.split("=", 1)[1].strip()
    for line in (ROOT / "Dockerfile.toxiproxy").read_text().splitlines()
    if line.startswith("ARG GO_IMAGE=")
)
SETUP_HINT = "make containers (.ci/install-containers, as root on Debian) sets them up"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
DOCKERD_LOCK_WAIT_S = 900.0  # another test run's dockerd on this machine
DOCKERD_LOCK = Path("/run/lock" if Path("/run/lock").is_dir() else tempfile.gettempdir()) / "bullyproof-dockerd.lock"
SYSTEM_DOCKER_SOCKET = Path("/var/run/docker.sock")


class Unavailable(Exception):
    """This engine cannot run containers here; the message says why."""


def _last_lines(text: str, n: int = 1) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-n:]) if lines else "(no output)"


def setup_unavailable() -> str | None:
    """Why .ci/install-containers could not set containers up here (it leaves the reason), or None."""
    unavailable = TOOLS / "containers-unavailable"
    if unavailable.exists():
        return f"containers are not set up here: {unavailable.read_text().strip()} (.ci/install-containers)"
    return None


def _stop(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM, then SIGKILL after timeout_s; True if it had to be killed."""
    if process.poll() is not None:
        return False
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
        return False
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)
        return True


class Engine:
    """One engine's CLI and its API server; the compose CLI that drives it; what differs between them."""

    name: str  # the engine's CLI (BULLYPROOF_CONTAINER_ENGINE)
    compose_cli: tuple[str, ...]  # the compose CLI, run in the compose file's directory
    up: tuple[str, ...]  # how the test brings the project up (the images are built before unless --build)
    down: tuple[str, ...]
    socket: Path

    @property
    def env(self) -> dict[str, str]:
        """What compose, the engine's CLI and `bullyproof ... --compose` run with."""
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "BULLYPROOF_CONTAINER_ENGINE": self.name}

    def run(self, *args: str, timeout_s: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.name, *args], env=self.env, capture_output=True, text=True, timeout=timeout_s)
        if check and done.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return done

    def label(self, key: str) -> str:
        """`ps --format` for one label's value (podman's .Labels is a map, Docker's a string)."""
        return f'{{{{index .Labels "{key}"}}}}'

    def healthy(self, containers: list[str]) -> set[str]:
        """Which of these containers' healthchecks pass."""
        raise NotImplementedError

    def certs_failed(self, done: subprocess.CompletedProcess[str], container: str) -> bool:
        """Whether compose's output says the one-shot certs service (`container`) failed, with exit 2."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class Podman(Engine):
    """`podman system service` on a private unix socket: the Docker API docker-compose 1.29 talks to.
    The images come from the set-up; the project's own image is built before `up` (`build certs`)."""

    name = "podman"
    compose_cli = ("docker-compose",)
    up = ("up", "-d")
    down = ("down", "-v", "--timeout", "5")

    def __init__(self, directory: Path, toxiproxy_image: str) -> None:
        self.socket = directory / "podman.sock"
        self.log = directory / "podman-service.log"
        self.toxiproxy_image = toxiproxy_image
        self.process: subprocess.Popen[bytes] | None = None

    def check(self) -> None:
        """Unavailable if podman cannot run containers here; AssertionError if the set-up is unfinished."""
        reason = setup_unavailable()
        if reason:
            raise Unavailable(reason)
        for tool in ("podman", "docker-compose"):
            if shutil.which(tool) is None:
                raise Unavailable(f"{tool} is not installed, so containers cannot run here ({SETUP_HINT})")
        for image in (PYTHON_IMAGE, self.toxiproxy_image):
            if self.run("image", "exists", image, check=False).returncode != 0:
                raise AssertionError(f"image {image} is missing: run .ci/install-containers (make containers)")
        probe = self.run("run", "--rm", "--network", "none", self.toxiproxy_image, "-version", check=False)
        if probe.returncode != 0:
            raise Unavailable(
                f"containers cannot run here: `podman run` failed: {_last_lines(probe.stderr)} ({SETUP_HINT})"
            )

    def start(self) -> Podman:
        self.check()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"podman system service did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def healthy(self, containers: list[str]) -> set[str]:
        """Podman schedules healthchecks with systemd timers; without systemd nothing runs them, so
        this runs each once (`podman healthcheck run`), as those timers would."""
        checks = {
            cid: subprocess.Popen(
                ["podman", "healthcheck", "run", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for cid in containers
        }
        return {cid for cid, check in checks.items() if check.wait() == 0}

    def certs_failed(self, done: subprocess.CompletedProcess[str], container: str) -> bool:
        return f'Container "{container[:12]}" exited with code 2' in done.stderr  # docker-compose 1.29's words

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


class Docker(Engine):
    """The test's own dockerd, driven by `docker compose`: docs/compose.md's commands as a user types them
    (`docker compose up -d --build` builds both images, Docker runs the healthchecks)."""

    name = "docker"
    compose_cli = ("docker", "compose")
    up = ("up", "-d", "--build")
    down = ("down", "-v")
    home = TOOLS / "docker"

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.lock: int | None = None

    @property
    def socket(self) -> Path:  # type: ignore[override]
        assert self.run_dir is not None
        return self.run_dir / "docker.sock"

    def check(self) -> None:
        reason = setup_unavailable()
        if reason:
            raise Unavailable(reason)
        for tool, what in [
            ("dockerd", "Docker Engine (Debian's docker.io)"),
            ("docker", "the docker CLI"),
            ("podman", "podman, which holds the base images the set-up built,"),
        ]:
            if shutil.which(tool) is None:
                raise Unavailable(f"{what} is not installed, so Docker cannot run here ({SETUP_HINT})")
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60)
        if plugin.returncode != 0:
            raise Unavailable(
                "the Docker Compose CLI plugin is not installed (`docker compose` failed: "
                f"{_last_lines(plugin.stderr)}); .ci/install-compose-plugin builds it ({SETUP_HINT})"
            )
        if os.geteuid() != 0:
            raise Unavailable("not root, so this test cannot start its own dockerd")
        if SYSTEM_DOCKER_SOCKET.exists():
            system = subprocess.run(
                ["docker", "--host", f"unix://{SYSTEM_DOCKER_SOCKET}", "version"], capture_output=True, timeout=30
            )
            if system.returncode == 0:
                raise Unavailable(
                    f"a dockerd already answers on {SYSTEM_DOCKER_SOCKET}; this test starts its own, whose bridge "
                    "and address pools would clash with it"
                )
        for image in (PYTHON_IMAGE, GO_IMAGE):
            if subprocess.run(["podman", "image", "exists", image]).returncode != 0:
                raise AssertionError(f"image {image} is missing: run .ci/install-containers (make containers)")

    def start(self) -> Docker:
        self.check()
        self.home.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self._start_dockerd()
            self._load_base_images()
            probe = self.run("run", "--rm", "--network", "none", PYTHON_IMAGE, "python3", "-c", "", check=False)
            if probe.returncode != 0:
                raise Unavailable(f"containers cannot run here: `docker run` failed: {_last_lines(probe.stderr, 3)}")
        except BaseException:
            self.stop()
            raise
        return self

    def _take_lock(self) -> None:
        self.lock = os.open(DOCKERD_LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        deadline = time.monotonic() + DOCKERD_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.lock)
                    self.lock = None
                    raise RuntimeError(
                        f"another test run's dockerd held {DOCKERD_LOCK} for {DOCKERD_LOCK_WAIT_S:.0f} s"
                    ) from None
                time.sleep(1)

    def _start_dockerd(self) -> None:
        # A short path: unix socket paths (containerd's under the exec root) are limited to 107 bytes.
        self.run_dir = Path(tempfile.mkdtemp(prefix="bp-dockerd-"))
        log = self.run_dir / "dockerd.log"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    "dockerd",
                    "--data-root",
                    str(self.home / "data-root"),
                    "--exec-root",
                    str(self.run_dir / "exec"),
                    "--pidfile",
                    str(self.home / "dockerd.pid"),
                    "--host",
                    f"unix://{self.socket}",
                    "--log-level",
                    "warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                said = log.read_text(errors="replace")
                if "pid file found" in said or "is still running" in said:
                    raise RuntimeError(
                        f"a dockerd from an earlier run still uses {self.home} (pid in {self.home / 'dockerd.pid'}): "
                        f"stop it first ({_last_lines(said)})"
                    )
                raise Unavailable(f"dockerd cannot run here: it exited: {_last_lines(said, 3)}")
            if self.socket.exists() and self.run("version", check=False, timeout_s=30).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT_S:.0f} s: {log.read_text()[-2000:]}")
            time.sleep(0.1)

    def _load_base_images(self) -> None:
        """The set-up's stand-ins, from podman, unless dockerd holds the very same images already."""
        for image in (PYTHON_IMAGE, GO_IMAGE):
            wanted = subprocess.run(
                ["podman", "image", "inspect", "--format", "{{.Id}}", image],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            held = self.run("image", "inspect", "--format", "{{.Id}}", image, check=False).stdout.strip()
            if held.removeprefix("sha256:") == wanted:
                continue
            save = subprocess.Popen(["podman", "save", image], stdout=subprocess.PIPE)
            try:
                loaded = subprocess.run(
                    ["docker", "load", "--quiet"],
                    stdin=save.stdout,
                    env=self.env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
            finally:
                assert save.stdout is not None
                save.stdout.close()
                save.wait(timeout=600)
            if save.returncode != 0 or loaded.returncode != 0:
                raise RuntimeError(f"podman save {image} | docker load failed: {_last_lines(loaded.stderr)}")
            # podman names local images localhost/NAME; the Dockerfiles name NAME.
            self.run("tag", f"localhost/{image}", image)
            self.run("rmi", f"localhost/{image}")  # only that second name

    def label(self, key: str) -> str:
        return f'{{{{.Label "{key}"}}}}'

    def healthy(self, containers: list[str]) -> set[str]:
        """Docker runs the healthchecks itself; this reads their status."""
        if not containers:
            return set()
        inspected = json.loads(self.run("inspect", *containers).stdout)
        healthy = {c["Id"] for c in inspected if (c["State"].get("Health") or {}).get("Status") == "healthy"}
        return {cid for cid in containers if any(full.startswith(cid) for full in healthy)}

    @staticmethod
    def _kill_containerd(state: Path) -> None:
        """The containerd a killed dockerd leaves: its pid from its pidfile, if that process is still it."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((state / "containerd.pid").read_text().strip())
            if str(state) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                os.kill(pid, signal.SIGKILL)

    def certs_failed(self, done: subprocess.CompletedProcess[str], container: str) -> bool:
        return 'service "certs" didn\'t complete successfully: exit 2' in done.stdout + done.stderr

    def stop(self) -> None:
        """dockerd by pid (it stops the containerd it started); that containerd by pid if dockerd had to
        be killed; then the lock."""
        if self.process is not None:
            if _stop(self.process, timeout_s=60) and self.run_dir is not None:
                self._kill_containerd(self.run_dir / "exec" / "containerd")
            self.process = None
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.lock is not None:
            os.close(self.lock)  # releases the flock
            self.lock = None
