"""Shared fixtures: real processes, owned by the test that starts them and stopped by pid."""

from __future__ import annotations

import dataclasses
import json
import os
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from node.launcher.cluster import LocalCluster, local_spec  # noqa: E402
from tests.databases import PostgresServer, RedisServer, StoreServer, Unavailable  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (a stable sort keeps the rest in order): pytest-xdist hands tests out in this
    order, so the long ones start at once instead of leaving one worker busy alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    started: list[LocalCluster] = []

    def make(
        n: int = 5,
        mode: str = "quorum",
        env: dict[str, str] | None = None,
        write_period_ms: int | None = None,
        secure: bool = False,
        spares: int = 0,
        **timing: int,
    ) -> LocalCluster:
        """Plaintext unless `secure` (mutual TLS, certificates in the cluster's directory): these
        tests are about elections; tests/integration/test_security.py is about who may do what."""
        directory = tmp_path / f"cluster-{len(started)}"
        spec = local_spec(n, mode, certs_dir=str(directory / "certs") if secure else None, spares=spares, **timing)
        if write_period_ms is not None:
            spec = dataclasses.replace(spec, write_period_ms=write_period_ms)
        cluster = LocalCluster(spec, directory, env={**os.environ, **(env or {})})
        started.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in started:
        cluster.stop()


# ---- real database servers (tests/databases.py): one of each per test process, started on first use ----


def _serve(server_class):
    """Start a server of `server_class` for the session and stop it at the end (skip where it cannot run)."""
    try:
        server = server_class()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    yield from _serve(PostgresServer)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database of the session's PostgreSQL server, for this test alone."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    yield from _serve(RedisServer)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis server, emptied (keys and cached scripts) for this test."""
    redis_server.flush()
    return redis_server.url()


@pytest.fixture(scope="session")
def store_server() -> Iterator[StoreServer]:
    """A fenced store process alone (plaintext). Its highest epoch is one for all keys and all tests
    of the session: a test gives it epochs above every earlier test's."""
    server = StoreServer()
    try:
        yield server.start()
    finally:
        server.stop()


# ---- a stand-in for the Kubernetes API server (no cluster here) ------------------------------------


@dataclass
class KubeApi:
    """A loopback HTTPS server answering GETs as the API server would: `objects` by path (200), 404
    for the rest, 403 without the bearer `token`; verified against `account`/ca.crt as the real one
    is. `account`: a pod's service account directory (token, namespace, ca.crt); `env`: the variables
    the kubelet gives every container (KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT)."""

    account: Path
    env: dict[str, str]
    token: str
    objects: dict[str, dict] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization) of every GET

    def statefulset(self, name: str, replicas: int, namespace: str = "prod") -> None:
        self.objects[f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}"] = {
            "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
        }


@pytest.fixture
def kube_api(tmp_path: Path) -> Iterator[KubeApi]:
    from node.tls import make_cluster_certs

    made = make_cluster_certs(tmp_path / "kube-api-ca", 1)
    account = tmp_path / "serviceaccount"
    account.mkdir()
    api = KubeApi(account, {}, "pod-token")
    (account / "token").write_text(api.token + "\n")
    (account / "namespace").write_text("prod")
    (account / "ca.crt").write_bytes(made["store"].ca.read_bytes())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            api.seen.append((self.path, self.headers.get("Authorization", "")))
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                status, body = 403, {"kind": "Status", "code": 403}
            elif self.path in api.objects:
                status, body = 200, api.objects[self.path]
            else:
                status, body = 404, {"kind": "Status", "code": 404}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(made["store"].cert, made["store"].key)  # a server certificate naming 127.0.0.1
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    api.env.update(KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT=str(server.server_port))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
