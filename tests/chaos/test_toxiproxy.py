"""chaos.toxiproxy against a real toxiproxy-server and a local TCP echo server.

Delays are only ever checked from below (injected latency is at least what we asked for);
every wait has a deadline and every process is stopped by pid.
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.tools import ROOT, TOXIPROXY_VERSION, toxiproxy_server_path
from chaos.toxiproxy import Toxiproxy, ToxiproxyError, ToxiproxyServer

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

HOST = "127.0.0.1"
IO_TIMEOUT_S = 5.0
SILENCE_S = 0.5  # how long "no data" must last to count as dropped


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True  # handlers may sit on connections a toxic holds open
    allow_reuse_address = True


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = _EchoServer((HOST, 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=IO_TIMEOUT_S)


@pytest.fixture
def toxiproxy() -> Iterator[ToxiproxyServer]:
    with ToxiproxyServer() as server:
        yield server


def connect(port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=IO_TIMEOUT_S)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def echo(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


def roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    with connect(port) as sock:
        return echo(sock, payload)


def assert_silent(sock: socket.socket, payload: bytes = b"lost") -> None:
    sock.sendall(payload)
    sock.settimeout(SILENCE_S)
    with pytest.raises(socket.timeout):
        data = sock.recv(1024)
        pytest.fail(f"expected silence, got {data!r}")
    sock.settimeout(IO_TIMEOUT_S)


def assert_closed(sock: socket.socket) -> None:
    """The peer closed or reset the connection (within IO_TIMEOUT_S)."""
    sock.settimeout(IO_TIMEOUT_S)
    try:
        assert sock.recv(1024) == b""
    except (ConnectionResetError, BrokenPipeError):
        pass


def test_binary_is_pinned_and_install_script_agrees() -> None:
    script = (ROOT / ".ci" / "install-tools").read_text()
    match = re.search(r'^TOXIPROXY_VERSION="([^"]+)"$', script, re.MULTILINE)
    assert match and match.group(1) == TOXIPROXY_VERSION
    assert toxiproxy_server_path() == ROOT / ".tools" / "bin" / "toxiproxy-server"


def test_server_starts_on_free_port_and_stops_by_pid(toxiproxy: ToxiproxyServer) -> None:
    client = toxiproxy.client()
    assert client.version() == TOXIPROXY_VERSION
    assert client.proxies() == {}
    process = toxiproxy.process
    assert process is not None and toxiproxy.pid == process.pid
    toxiproxy.stop()
    assert process.returncode is not None
    with pytest.raises(ToxiproxyError) as err:
        client.version()
    assert err.value.status is None


def test_echo_passes_through_proxy(toxiproxy: ToxiproxyServer, echo_port: int) -> None:
    client = toxiproxy.client()
    proxy = client.create_proxy("echo", f"{HOST}:0", f"{HOST}:{echo_port}")
    assert proxy.enabled and proxy.listen_port != 0 and proxy.toxics == ()
    assert client.proxies() == {"echo": proxy}
    assert roundtrip(proxy.listen_port, b"hello through toxiproxy") == b"hello through toxiproxy"


def test_latency_is_added(toxiproxy: ToxiproxyServer, echo_port: int) -> None:
    client = toxiproxy.client()
    port = client.create_proxy("echo", f"{HOST}:0", f"{HOST}:{echo_port}").listen_port
    latency_ms = 300
    fault = client.latency("echo", latency_ms, jitter_ms=0)
    assert client.proxies()["echo"].toxics == fault.toxics == ("latency_downstream",)
    with connect(port) as sock:
        started_s = time.monotonic()
        assert echo(sock) == b"ping"
        elapsed_s = time.monotonic() - started_s
    assert elapsed_s >= 0.8 * latency_ms / 1000
    client.remove(fault)
    assert client.proxies()["echo"].toxics == ()
    assert roundtrip(port) == b"ping"


def test_other_toxics_keep_data_intact(toxiproxy: ToxiproxyServer, echo_port: int) -> None:
    client = toxiproxy.client()
    port = client.create_proxy("echo", f"{HOST}:0", f"{HOST}:{echo_port}").listen_port
    faults = [
        client.bandwidth("echo", rate_kbps=64),
        client.slicer("echo", avg_size=8, size_variation=4, delay_us=100, stream="upstream"),
    ]
    payload = bytes(range(256)) * 8
    assert roundtrip(port, payload) == payload
    for fault in faults:
        client.remove(fault)
    assert client.proxies()["echo"].toxics == ()


def test_reset_peer_resets_connections(toxiproxy: ToxiproxyServer, echo_port: int) -> None:
    client = toxiproxy.client()
    port = client.create_proxy("echo", f"{HOST}:0", f"{HOST}:{echo_port}").listen_port
    fault = client.reset_peer("echo", timeout_ms=0)
    with connect(port) as sock:
        try:
            sock.sendall(b"ping")
        except (ConnectionResetError, BrokenPipeError):
            pass
        assert_closed(sock)
    client.remove(fault)
    assert roundtrip(port) == b"ping"


def test_blackhole_drops_silently_and_removal_closes_held_connections(
    toxiproxy: ToxiproxyServer, echo_port: int
) -> None:
    client = toxiproxy.client()
    port = client.create_proxy("echo", f"{HOST}:0", f"{HOST}:{echo_port}").listen_port
    with connect(port) as before:
        assert echo(before) == b"ping"
        fault = client.blackhole("echo")
        assert set(fault.toxics) == {"blackhole_upstream", "blackhole_downstream"}
        assert_silent(before)
        with connect(port) as during:  # the proxy still accepts; it just never answers
            assert_silent(during)
            client.remove(fault)
            # docs/design.md pitfall: removing a timeout toxic closes the connections it held.
            assert_closed(during)
        assert_closed(before)
    assert roundtrip(port) == b"ping"


def test_refuse_closes_and_refuses_then_recovers_on_same_port(toxiproxy: ToxiproxyServer, echo_port: int) -> None:
    client = toxiproxy.client()
    port = client.create_proxy("echo", f"{HOST}:0", f"{HOST}:{echo_port}").listen_port
    with connect(port) as before:
        assert echo(before) == b"ping"
        fault = client.refuse("echo")
        assert client.proxies()["echo"].enabled is False
        assert_closed(before)
    with pytest.raises(ConnectionRefusedError):
        connect(port).close()
    client.remove(fault)
    assert client.proxies()["echo"].enabled is True
    assert roundtrip(port) == b"ping"


def test_reset_restores_everything(toxiproxy: ToxiproxyServer, echo_port: int) -> None:
    client = toxiproxy.client()
    a = client.create_proxy("a", f"{HOST}:0", f"{HOST}:{echo_port}")
    b = client.create_proxy("b", f"{HOST}:0", f"{HOST}:{echo_port}")
    client.latency("a", 50, jitter_ms=10)
    client.blackhole("a")
    client.refuse("b")
    client.reset()
    proxies = client.proxies()
    assert all(p.enabled and p.toxics == () for p in proxies.values()), proxies
    assert roundtrip(a.listen_port) == roundtrip(b.listen_port) == b"ping"


def test_bad_calls_raise_with_status(toxiproxy: ToxiproxyServer, echo_port: int) -> None:
    client = toxiproxy.client()
    for call in (
        lambda: client.add_toxic("nope", "t", "latency", "downstream", {"latency": 1}),
        lambda: client.remove_toxic("nope", "t"),
        lambda: client.set_enabled("nope", False),
        lambda: client.delete_proxy("nope"),
    ):
        with pytest.raises(ToxiproxyError) as err:
            call()
        assert err.value.status == 404 and "not found" in err.value.body
    client.create_proxy("echo", f"{HOST}:0", f"{HOST}:{echo_port}")
    with pytest.raises(ToxiproxyError) as err:
        client.create_proxy("echo", f"{HOST}:0", f"{HOST}:{echo_port}")
    assert err.value.status == 409
    with pytest.raises(ToxiproxyError) as err:
        client.add_toxic("echo", "t", "no_such_toxic", "downstream", {})
    assert err.value.status == 400
    client.delete_proxy("echo")
    assert client.proxies() == {}


def test_link_style_names_work(toxiproxy: ToxiproxyServer, echo_port: int) -> None:
    client = toxiproxy.client()
    proxy = client.create_proxy("n1->n2 via store?", f"{HOST}:0", f"{HOST}:{echo_port}")
    fault = client.latency(proxy.name, 1, name="lat%ency #1")
    assert client.proxies()[proxy.name].toxics == fault.toxics
    client.remove(fault)
    client.remove(client.refuse(proxy.name))
    client.delete_proxy(proxy.name)
    assert client.proxies() == {}
    with pytest.raises(ValueError):
        client.create_proxy("a/b", f"{HOST}:0", f"{HOST}:{echo_port}")


def test_every_request_has_a_timeout() -> None:
    # Accepts (via the kernel backlog) but never answers.
    with socket.socket() as mute:
        mute.bind((HOST, 0))
        mute.listen()
        with pytest.raises(ToxiproxyError) as err:
            Toxiproxy(HOST, mute.getsockname()[1], timeout_s=0.3).version()
        assert err.value.status is None


def test_two_servers_at_once_do_not_interfere(echo_port: int) -> None:
    with ToxiproxyServer() as one, ToxiproxyServer() as two:
        assert one.port != two.port and one.pid != two.pid
        c1, c2 = one.client(), two.client()
        # Same proxy name on both: no 409, so they really are separate servers.
        p1 = c1.create_proxy("link", f"{HOST}:0", f"{HOST}:{echo_port}")
        p2 = c2.create_proxy("link", f"{HOST}:0", f"{HOST}:{echo_port}")
        c1.blackhole("link")
        assert c2.proxies()["link"].toxics == ()
        assert roundtrip(p2.listen_port) == b"ping"
        with connect(p1.listen_port) as sock:
            assert_silent(sock)
        c2.reset()  # /reset is server-wide: it must not reach server one
        assert len(c1.proxies()["link"].toxics) == 2
        one.stop()
        assert roundtrip(p2.listen_port) == b"ping"
        assert c2.version() == TOXIPROXY_VERSION


def test_log_path_is_written(tmp_path: Path) -> None:
    log_path = tmp_path / "toxiproxy.log"
    with ToxiproxyServer(log_path=log_path) as server:
        server.client().version()
    assert "Starting Toxiproxy" in log_path.read_text()
