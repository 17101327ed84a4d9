"""Real PostgreSQL and Redis servers for tests, from Debian's packages (.ci/install-databases).

Each server is this test process's own: loopback only, a free port from this worker's slice, a data
directory made for it, and stopped by its pid. PostgreSQL refuses to run as root, so under root it
runs as the `postgres` user (its directory is made in /tmp, which that user can reach). The fixtures
that use these are in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from node.launcher.ports import free_port

START_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
INSTALL_HINT = "`make databases` installs it (.ci/install-databases)"


class Unavailable(Exception):
    """The server cannot run here; the message says why (a test skips with it)."""


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = [
        p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").is_file() and (p / "initdb").is_file()
    ]
    if not found:
        raise Unavailable(
            f"PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/postgres); {INSTALL_HINT}"
        )
    return max(found, key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)] or [0])


def _stop(proc: subprocess.Popen, sig: int) -> None:
    """Signal the server by its pid, wait up to STOP_GRACE_S, then SIGKILL it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(STOP_GRACE_S)


class PostgresServer:
    """`postgres` on 127.0.0.1:port with a fresh cluster (initdb, trust authentication for the
    superuser `postgres`, fsync off: nothing here needs to survive a crash of the machine)."""

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        # /tmp itself, not TMPDIR or pytest's directories, which the postgres user may not reach
        self.dir = Path(tempfile.mkdtemp(prefix="bullyproof-pg-", dir="/tmp" if os.geteuid() == 0 else None))
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._databases = 0
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no `postgres` user to run PostgreSQL as") from None
            self._user: dict[str, int] = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            os.chown(self.dir, account.pw_uid, account.pw_gid)
        else:
            self._user = {}

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        data = self.dir / "data"
        init = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-N",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            cwd=self.dir,
            capture_output=True,
            text=True,
            **self._user,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stdout[-500:]}{init.stderr[-1000:]}")
        self.port = free_port()
        log = open(self.dir / "postgres.log", "wb")
        self.proc = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.dir}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=60",
                "-c",
                "shared_buffers=16MB",
            ],
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **self._user,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self.proc.returncode}: {self.log()[-1500:]}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"postgres did not accept connections within {START_TIMEOUT_S} s: {self.log()[-1500:]}"
                    ) from None
                time.sleep(0.05)

    def create_database(self) -> str:
        """A new empty database (a test's own): its URL."""
        import psycopg

        self._databases += 1
        name = f"test_{os.getpid()}_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        path = self.dir / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, close connections) by pid, then remove its files."""
        if self.proc is not None:
            _stop(self.proc, signal.SIGINT)
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """`redis-server` on 127.0.0.1:port, persisting nothing."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).is_file():
            raise Unavailable(f"redis-server is not installed; {INSTALL_HINT}")
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="bullyproof-redis-"))
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        self.port = free_port()
        log = open(self.dir / "redis.log", "wb")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ],
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        import redis

        deadline = time.monotonic() + START_TIMEOUT_S
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited {self.proc.returncode}: {(self.dir / 'redis.log').read_text()[-1500:]}"
                    )
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"redis-server did not answer within {START_TIMEOUT_S} s") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def flush(self) -> None:
        import redis

        with redis.Redis(port=self.port) as client:
            client.flushall()
            client.script_flush()

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, signal.SIGTERM)
        shutil.rmtree(self.dir, ignore_errors=True)


class StoreServer:
    """The cluster's fenced store alone (`python -m node.store.server --insecure`) on a port it picks."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bullyproof-store-"))
        self.address = ""
        self.proc: subprocess.Popen | None = None

    def url(self) -> str:
        return f"bullyproof-store://{self.address}"

    def start(self) -> StoreServer:
        import json
        import select
        import sys

        root = Path(__file__).resolve().parent.parent
        with open(self.dir / "store.stderr", "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "node.store.server",
                    "--insecure",
                    "--listen",
                    "127.0.0.1:0",
                    "--data-dir",
                    str(self.dir / "data"),
                ],
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n"):
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"the store did not start: {(self.dir / 'store.stderr').read_text()[-1500:]}")
            if select.select([self.proc.stdout], [], [], remaining_s)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                line += chunk
        self.address = json.loads(line)["address"]
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, signal.SIGTERM)
            self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)
