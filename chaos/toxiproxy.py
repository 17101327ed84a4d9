"""The one place that talks to Toxiproxy: a real server process and a small API client.

The client goes through toxiproxy-python's `APIConsumer` (the PyPI client) and fixes its pitfalls
here, once: host/port are class attributes in the library (one server per process), so every
client gets its own subclass and clusters never share one; the library sends requests without a
timeout, so every call passes one; it lets 5xx and other statuses through as success, so every
non-2xx raises ToxiproxyError with the status and body. Like the library, updates use POST.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import quote

import requests
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from chaos.tools import toxiproxy_server_path
from node.launcher.ports import free_port
from node.launcher.stopping import signals_held

Stream = Literal["upstream", "downstream"]
STREAMS: tuple[Stream, Stream] = ("upstream", "downstream")

# Ignore http_proxy/https_proxy from the environment: the API is always local.
_NO_PROXY = {"http": None, "https": None}


class ToxiproxyError(Exception):
    """A Toxiproxy API call failed: non-2xx (`status` set) or no answer at all (`status` None)."""

    def __init__(self, method: str, path: str, status: int | None, body: str) -> None:
        super().__init__(f"{method} {path} -> {status if status is not None else 'no response'}: {body}")
        self.method = method
        self.path = path
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Proxy:
    name: str
    listen: str  # "host:port" actually bound (the server resolves ":0")
    upstream: str
    enabled: bool
    toxics: tuple[str, ...] = ()

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @staticmethod
    def from_json(data: dict[str, Any]) -> Proxy:
        return Proxy(
            name=data["name"],
            listen=data["listen"],
            upstream=data["upstream"],
            enabled=bool(data["enabled"]),
            toxics=tuple(t["name"] for t in data.get("toxics") or ()),
        )


@dataclass(frozen=True)
class Fault:
    """What a fault helper did to one proxy, so `Toxiproxy.remove(fault)` can undo exactly that."""

    proxy: str
    toxics: tuple[str, ...] = ()
    disabled: bool = False


class Toxiproxy:
    """Client for one Toxiproxy server. Instances share no state, so many servers can be driven at once."""

    def __init__(self, host: str, port: int, timeout_s: float = 2.0) -> None:
        self.base_url = f"http://{host}:{port}"
        self.timeout_s = timeout_s
        # Our own subclass: the library's host/port are class attributes shared by every caller.
        self._api = type("ClusterAPIConsumer", (APIConsumer,), {"host": host, "port": port})

    # --- raw API ---------------------------------------------------------------------------------

    def version(self) -> str:
        return str(self._request("GET", "/version")["version"])

    def proxies(self) -> dict[str, Proxy]:
        return {name: Proxy.from_json(data) for name, data in self._request("GET", "/proxies").items()}

    def create_proxy(self, name: str, listen: str, upstream: str, enabled: bool = True) -> Proxy:
        _check_name(name)
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return Proxy.from_json(self._request("POST", "/proxies", body))

    def delete_proxy(self, name: str) -> None:
        self._request("DELETE", f"/proxies/{quote(name, safe='')}")

    def set_enabled(self, name: str, enabled: bool) -> Proxy:
        """Disabling closes the listener and every open connection; enabling re-listens on the same address."""
        return Proxy.from_json(self._request("POST", f"/proxies/{quote(name, safe='')}", {"enabled": enabled}))

    def add_toxic(
        self, proxy: str, name: str, type: str, stream: Stream, attributes: dict[str, Any], toxicity: float = 1.0
    ) -> str:
        """Add a toxic and return its name. `toxicity` is drawn once per connection, not per message."""
        _check_name(name)
        body = {"name": name, "type": type, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        return str(self._request("POST", f"/proxies/{quote(proxy, safe='')}/toxics", body)["name"])

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._request("DELETE", f"/proxies/{quote(proxy, safe='')}/toxics/{quote(name, safe='')}")

    def reset(self) -> None:
        """Re-enable every proxy and remove every toxic (server-wide)."""
        self._request("POST", "/reset")

    # --- fault helpers: each returns a Fault for remove() ---------------------------------------

    def latency(
        self, proxy: str, latency_ms: int, jitter_ms: int = 0, stream: Stream = "downstream", name: str | None = None
    ) -> Fault:
        return self._toxic(proxy, "latency", stream, {"latency": latency_ms, "jitter": jitter_ms}, name)

    def bandwidth(self, proxy: str, rate_kbps: int, stream: Stream = "downstream", name: str | None = None) -> Fault:
        # Toxiproxy's unit is KB/s (kilobytes).
        return self._toxic(proxy, "bandwidth", stream, {"rate": rate_kbps}, name)

    def slicer(
        self,
        proxy: str,
        avg_size: int,
        size_variation: int,
        delay_us: int,
        stream: Stream = "downstream",
        name: str | None = None,
    ) -> Fault:
        attributes = {"average_size": avg_size, "size_variation": size_variation, "delay": delay_us}
        return self._toxic(proxy, "slicer", stream, attributes, name)

    def reset_peer(
        self, proxy: str, timeout_ms: int = 0, stream: Stream = "downstream", name: str | None = None
    ) -> Fault:
        return self._toxic(proxy, "reset_peer", stream, {"timeout": timeout_ms}, name)

    def blackhole(self, proxy: str) -> Fault:
        """Silently drop everything both ways (`timeout` toxic, timeout 0). Connections stay open but mute;
        removing the toxic closes the connections it held, so clients see a disconnect afterwards."""
        names = tuple(self.add_toxic(proxy, f"blackhole_{s}", "timeout", s, {"timeout": 0}) for s in STREAMS)
        return Fault(proxy, toxics=names)

    def refuse(self, proxy: str) -> Fault:
        """Disable the proxy: open connections are closed and new ones are refused."""
        self.set_enabled(proxy, False)
        return Fault(proxy, disabled=True)

    def remove(self, fault: Fault) -> None:
        for toxic in fault.toxics:
            self.remove_toxic(fault.proxy, toxic)
        if fault.disabled:
            self.set_enabled(fault.proxy, True)

    def _toxic(self, proxy: str, type: str, stream: Stream, attributes: dict[str, Any], name: str | None) -> Fault:
        return Fault(proxy, toxics=(self.add_toxic(proxy, name or f"{type}_{stream}", type, stream, attributes),))

    # --- transport -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        call = {"GET": self._api.get, "POST": self._api.post, "DELETE": self._api.delete}[method]
        kwargs: dict[str, Any] = {"timeout": self.timeout_s, "proxies": _NO_PROXY}
        if body is not None:
            kwargs["json"] = body
        try:
            response = call(path, **kwargs)
        except (ProxyExists, NotFound, InvalidToxic) as exc:  # the library's own 409/404/400
            status = {ProxyExists: 409, NotFound: 404, InvalidToxic: 400}[type(exc)]
            raise ToxiproxyError(method, path, status, str(exc)) from exc
        except requests.RequestException as exc:  # refused, reset, timed out
            raise ToxiproxyError(method, path, None, str(exc)) from exc
        if not 200 <= response.status_code < 300:  # the library lets 5xx through as success
            raise ToxiproxyError(method, path, response.status_code, response.text.strip())
        return response.json() if response.content.strip() else None


class ToxiproxyServer:
    """A real toxiproxy-server process on 127.0.0.1 and a free port; `with` starts and stops it."""

    def __init__(
        self,
        binary: Path | None = None,
        host: str = "127.0.0.1",
        start_timeout_s: float = 10.0,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.env = env  # the server's environment (None: ours); a cluster's run tags its own
        self.host = host
        self.port = 0
        self.start_timeout_s = start_timeout_s
        self.log_path = log_path  # None: an anonymous temp file, shown in start errors
        self.process: subprocess.Popen[bytes] | None = None
        self._log_reader: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def client(self, timeout_s: float = 2.0) -> Toxiproxy:
        return Toxiproxy(self.host, self.port, timeout_s)

    def start(self, attempts: int = 3) -> ToxiproxyServer:
        binary = self.binary or toxiproxy_server_path()
        for _ in range(attempts):
            self.port = free_port(self.host)
            self._spawn([str(binary), "-host", self.host, "-port", str(self.port)])
            if self._wait_ready():
                return self
            # Usually someone took the port between our probe and the server's bind: try another one.
            log_tail = self.log_tail()
            self.stop()
        raise RuntimeError(
            f"toxiproxy-server did not come up within {self.start_timeout_s} s "
            f"({attempts} attempts); last log:\n{log_tail}"
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`; always reaps the process."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout_s)
        if self._log_reader is not None:
            self._log_reader.close()
            self._log_reader = None

    def log_tail(self, size_bytes: int = 4000) -> str:
        if self._log_reader is None:
            return ""
        end = self._log_reader.seek(0, os.SEEK_END)
        self._log_reader.seek(max(0, end - size_bytes))
        return self._log_reader.read().decode(errors="replace")

    def __enter__(self) -> ToxiproxyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, argv: list[str]) -> None:
        path = self.log_path
        if path is None:
            fd, name = tempfile.mkstemp(prefix="toxiproxy-", suffix=".log")
            os.close(fd)
            path = Path(name)
        # The child appends through its own O_APPEND handle; we read through a separate one.
        with open(path, "ab") as child_log:
            self._log_reader = open(path, "rb")
            if self.log_path is None:
                os.unlink(path)
            with signals_held():  # a stop signal must find the process recorded in self.process
                self.process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=child_log, stderr=subprocess.STDOUT, env=self.env
                )

    def _wait_ready(self) -> bool:
        assert self.process is not None
        client = Toxiproxy(self.host, self.port, timeout_s=0.5)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            # On a failed bind the server logs it and keeps running without an API, so watch the log.
            if "Server finished with error" in self.log_tail():
                return False
            # Only trust /version once the listener is ours: another process may own this port.
            if _owns_listener(self.process.pid, self.port):
                try:
                    client.version()
                    return True
                except ToxiproxyError:
                    pass
            time.sleep(0.02)
        return False


def _check_name(name: str) -> None:
    # The server's router decodes %2F before matching, so such a name could be created but never addressed.
    if not name or "/" in name:
        raise ValueError(f"Toxiproxy names must be non-empty and contain no '/': {name!r}")


def _owns_listener(pid: int, port: int) -> bool:
    """Whether process `pid` has a listening IPv4 TCP socket on `port` (Linux /proc; True elsewhere)."""
    if not os.path.exists("/proc/net/tcp"):
        return True
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # fd closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except OSError:
        return False
    with open("/proc/net/tcp") as table:
        next(table)  # header
        for line in table:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                return True
    return False
