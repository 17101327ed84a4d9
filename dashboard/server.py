"""The dashboard's web server: Starlette on uvicorn, one page, server-sent events, JSON actions.

    bullyproof dashboard --dir runs/local [--port 8040] [--host 127.0.0.1]
    bullyproof cluster up --dashboard

GET /                  the page (dashboard/static: plain HTML, CSS and JS, shipped in the package)
GET /api/stream        server-sent events: reset, nodes, log, elections, timeline, scenario
GET /api/state         the same as one JSON object (tests, curl)
GET /api/election/ID   one election's messages (sender, receiver, epoch, answer, why)
POST /api/action       {"action": "crash" | "recover" | "pause" | "resume" | a network fault with a button
                       (node.faults: partition, cut, latency, heal), ...}: dashboard.actions, the CLI's own functions
GET /api/scenarios     what can be run; POST /api/scenario {"name", "mode", "seed"}: a `chaos run` child;
                       POST /api/scenario/cancel; POST /api/watch/cluster: back to the cluster after a run
GET /api/scenario/timeline.png   the finished run's timeline picture

It listens on loopback unless told otherwise. The POSTs (faults, scenario runs) are for the cluster's
admin only: on a mutual-TLS cluster each needs the admin token, which is derived from the admin's
private key (DIR/certs/admin.key) and printed in the URL's fragment (#token=...) to whoever started
the dashboard; without it they get 403 and the page is a read-only view. A cluster started with
--insecure has no admin, so anyone who can reach the page can break it (the CLI says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from node.config import ConfigError
from node.launcher.cluster import read_cluster_file

from .actions import act, controls_html
from .model import Model
from .observe import Observer, RemoteObserver
from .runs import ScenarioRun, catalogue

READ_ONLY = (
    "Read-only: this page watches a cluster by its nodes' client addresses (--nodes), so it has no "
    "processes to crash or pause and no proxy to cut links with; its faults and scenario runs are "
    "for a local cluster (--dir)"
)

DEFAULT_PORT = 8040
TIMELINE_PERIOD_S = 0.25
PUSH_COALESCE_S = 0.02  # after a change, wait this long for more before pushing (bursts go out as one)
LOG_ON_CONNECT = 500


TOKEN_HEADER = "X-Bullyproof-Token"
FAULTS_MARK = (
    "<!-- FAULTS: the network faults' rows, drawn from the fault registry (dashboard.actions.controls_html) -->"
)


def admin_token(data: dict[str, Any]) -> str | None:
    """The token the page must send with every fault: an HMAC keyed by the admin's private key, so
    only someone who can read that key can make it. None for a cluster without TLS (no admin)."""
    if not data.get("certs"):
        return None
    key_path = Path(data["certs"]) / "admin.key"
    try:
        key = key_path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"the dashboard acts as the cluster's admin and cannot read {key_path}: {exc.strerror}"
        ) from None
    return hmac.new(key, b"bullyproof dashboard admin", hashlib.sha256).hexdigest()[:32]


def with_token(url: str, token: str | None) -> str:
    # In the fragment: browsers never send it to a server, so it stays out of logs and Referer headers.
    return f"{url}#token={token}" if token else url


class Dashboard:
    """The cluster being watched, its model, and the scenario run (if any). Lives in the server's loop."""

    def __init__(self, directory: Path | None, remote: dict[str, Any] | None = None) -> None:
        # `remote`: a cluster named by its client addresses (node.launcher.remote), watched read-only.
        self.remote = remote
        if remote is None:
            assert directory is not None
            self.main_dir: Path | None = Path(directory).resolve()
            data = read_cluster_file(self.main_dir)  # a clear one-line error now if there is no cluster there
            self.token = admin_token(data)
        else:
            self.main_dir, self.token = None, None
        self.origin_ns = time.monotonic_ns()
        self.generation = 0  # the source changed (cluster <-> scenario run): the page starts over
        self.watching: Path | None = self.main_dir
        self.model: Model | None = None
        self.observer: Observer | None = None
        self.run: ScenarioRun | None = None
        self.run_task: asyncio.Task[None] | None = None
        self.scenario_version = 0
        self._changed: asyncio.Event | None = None
        self._timeline_task: asyncio.Task[None] | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._changed = asyncio.Event()
        if self.remote is not None:
            await self.watch_remote(self.remote)
        else:
            assert self.main_dir is not None
            await self.watch(self.main_dir, f"cluster in {self.main_dir}")
        self._timeline_task = asyncio.ensure_future(self._timeline())

    async def stop(self) -> None:
        if self.run is not None:
            await self.run.cancel()
        for task in (self._timeline_task, self.run_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.observer is not None:
            await self.observer.stop()

    async def watch(self, directory: Path, label: str) -> None:
        """Show the cluster in `directory` from now on (a new model: the page starts over)."""
        data = read_cluster_file(directory)
        if self.observer is not None:
            await self.observer.stop()
        self.model = Model(
            {n["id"]: n["client_address"] for n in data["nodes"]},
            self.origin_ns,
            data.get("election_timeout_ms", 500),
            data.get("mode", ""),
            label,
        )
        self.observer = Observer(directory, self.model, self.notify)
        await self.observer.start()
        self.watching = directory
        self.generation += 1
        self.notify()

    async def watch_remote(self, remote: dict[str, Any]) -> None:
        """Watch the cluster at these addresses: over its client ports only (read-only)."""
        addresses = {n["id"]: n["client_address"] for n in remote["nodes"]}
        self.model = Model(addresses, self.origin_ns, 500, "", "cluster at " + ", ".join(addresses.values()))
        self.observer = RemoteObserver(addresses, self.model, self.notify)
        await self.observer.start()
        self.generation += 1
        self.notify()

    def notify(self) -> None:
        assert self._changed is not None
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def changed(self) -> asyncio.Event:
        assert self._changed is not None
        return self._changed

    async def _timeline(self) -> None:
        while True:
            await asyncio.sleep(TIMELINE_PERIOD_S)
            if self.model is not None and self.model.refresh_timeline(time.monotonic_ns(), time.time()):
                self.notify()

    # ---- actions -----------------------------------------------------------------------------

    def refuse_if_remote(self) -> None:
        if self.remote is not None:
            raise ConfigError(READ_ONLY)

    async def act(self, body: dict[str, Any]) -> dict[str, Any]:
        self.refuse_if_remote()
        assert self.main_dir is not None
        if self.watching != self.main_dir:
            raise ConfigError("the page is showing a scenario run; go back to the cluster to break it")
        result = await asyncio.to_thread(act, self.main_dir, body)
        if self.observer is not None:
            await self.observer.look_now()
        return result

    async def start_run(self, body: dict[str, Any]) -> dict[str, Any]:
        self.refuse_if_remote()
        assert self.main_dir is not None
        if self.run is not None and self.run.state in ("starting", "running"):
            raise ConfigError(f"scenario {self.run.name} is still running")
        try:
            seed = int(body.get("seed", 0))
        except (TypeError, ValueError):
            raise ConfigError("the seed must be a whole number") from None
        name, mode = str(body.get("name", "")), str(body.get("mode", ""))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run = ScenarioRun(name, mode, seed, self.main_dir / "scenarios" / f"{stamp}-{name}-{mode}-{seed}")
        self.run = run
        self.run_task = asyncio.ensure_future(self._follow_run(run))
        self._scenario_changed()
        return run.to_json()

    async def _follow_run(self, run: ScenarioRun) -> None:
        waiting = asyncio.ensure_future(run.run())
        # Watch the run's own cluster as soon as it has written its cluster.json.
        while not waiting.done():
            if (run.directory / "cluster.json").exists() and self.watching != run.directory:
                with contextlib.suppress(ConfigError, OSError, ValueError):
                    await self.watch(run.directory, f"scenario {run.name} ({run.mode}, seed {run.seed})")
            self._scenario_changed()
            await asyncio.wait([waiting], timeout=0.2)
        with contextlib.suppress(Exception):
            waiting.result()
        if self.watching == run.directory and self.observer is not None:
            await self.observer.look_now()  # the run's last events, before the page goes back
        self._scenario_changed()

    async def cancel_run(self) -> None:
        if self.run is not None:
            await self.run.cancel()
            self._scenario_changed()

    async def back_to_cluster(self) -> None:
        if self.main_dir is not None and self.watching != self.main_dir:
            await self.watch(self.main_dir, f"cluster in {self.main_dir}")

    def _scenario_changed(self) -> None:
        self.scenario_version += 1
        self.notify()

    # ---- what the page gets ------------------------------------------------------------------

    def reset_json(self) -> dict[str, Any]:
        assert self.model is not None
        return {
            "generation": self.generation,
            "source": self.model.source,
            "mode": self.model.mode,
            "nodes": list(self.model.nodes),
            "main": self.watching == self.main_dir,
            "readonly": READ_ONLY if self.remote is not None else "",
        }

    def scenario_json(self) -> dict[str, Any] | None:
        return None if self.run is None else self.run.to_json()

    def state(self) -> dict[str, Any]:
        m = self.model
        assert m is not None
        return {
            "reset": self.reset_json(),
            "nodes": m.nodes_json(time.monotonic_ns()),
            "log": list(m.log)[-LOG_ON_CONNECT:],
            "elections": m.elections_after(0, messages=False),
            "timeline": m.picture,
            "scenario": self.scenario_json(),
        }


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _push(dash: Dashboard) -> AsyncIterator[str]:
    """One page's stream: everything on connect, then whatever changed, as soon as it changed."""
    generation = -1
    sent: dict[str, int] = {}
    log_seq = 0
    while True:
        changed = dash.changed()
        m = dash.model
        assert m is not None
        if dash.generation != generation:
            generation, sent, log_seq = dash.generation, {}, 0
            yield _sse("reset", dash.reset_json())
        if sent.get("nodes") != m.versions["nodes"]:
            sent["nodes"] = m.versions["nodes"]
            yield _sse("nodes", m.nodes_json(time.monotonic_ns()))
        entries = m.log_after(log_seq)
        if entries:
            log_seq = entries[-1]["seq"]
            yield _sse("log", entries[-LOG_ON_CONNECT:])
        if sent.get("elections", 0) != m.versions["elections"]:
            yield _sse("elections", m.elections_after(sent.get("elections", 0), messages=False))
            sent["elections"] = m.versions["elections"]
        if sent.get("timeline") != m.versions["timeline"]:
            sent["timeline"] = m.versions["timeline"]
            yield _sse("timeline", m.picture)
        if sent.get("scenario") != dash.scenario_version:
            sent["scenario"] = dash.scenario_version
            yield _sse("scenario", dash.scenario_json())
        try:
            await asyncio.wait_for(changed.wait(), 15)
        except TimeoutError:
            yield ": still here\n\n"  # keeps proxies and the browser from giving up on a quiet stream
        await asyncio.sleep(PUSH_COALESCE_S)


def build_app(dash: Dashboard, host: str = "127.0.0.1") -> Starlette:
    static = resources.files("dashboard") / "static"

    # The network faults' controls come from the fault registry (node.faults), drawn once.
    page = (static / "index.html").read_text(encoding="utf-8").replace(FAULTS_MARK, controls_html(), 1)

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def stream(request: Request) -> Response:
        return StreamingResponse(
            _push(dash),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def state(request: Request) -> Response:
        return JSONResponse(dash.state())

    async def election(request: Request) -> Response:
        assert dash.model is not None
        found = dash.model.election(int(request.path_params["election_id"]))
        return (
            JSONResponse(found)
            if found
            else JSONResponse({"error": "no such election (it may have scrolled out)"}, 404)
        )

    async def json_body(request: Request) -> dict[str, Any]:
        # JSON only: a page on another site cannot send this without the browser asking us first.
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise ConfigError("send JSON (Content-Type: application/json)")
        try:
            body = await request.json()
        except ValueError:
            raise ConfigError("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise ConfigError("the request body must be a JSON object")
        return body

    def refused(request: Request) -> Response | None:
        """403 unless the request carries the admin token (clusters without TLS have none to check)."""
        if dash.token is None or hmac.compare_digest(request.headers.get(TOKEN_HEADER, ""), dash.token):
            return None
        return JSONResponse(
            {
                "ok": False,
                "error": "faults and scenario runs are for the cluster's admin: open the URL "
                "`bullyproof dashboard` printed (it carries the admin token)",
            },
            403,
        )

    def read_only() -> Response | None:
        """A cluster watched by its addresses has no processes or proxies to act on from here."""
        return JSONResponse({"ok": False, "error": READ_ONLY}, 403) if dash.remote is not None else None

    async def action(request: Request) -> Response:
        if (no := read_only() or refused(request)) is not None:
            return no
        try:
            return JSONResponse({"ok": True, **await dash.act(await json_body(request))})
        except (ConfigError, OSError, RuntimeError, TimeoutError) as exc:  # ToxiproxyError is an Exception too
            return JSONResponse({"ok": False, "error": str(exc)}, 400)
        except Exception as exc:  # e.g. chaos.toxiproxy.ToxiproxyError: say what failed, keep serving
            return JSONResponse({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, 500)

    async def scenarios(request: Request) -> Response:
        return JSONResponse(catalogue())

    async def run_scenario(request: Request) -> Response:
        if (no := read_only() or refused(request)) is not None:
            return no
        try:
            return JSONResponse({"ok": True, **await dash.start_run(await json_body(request))})
        except ConfigError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, 400)

    async def cancel(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        await dash.cancel_run()
        return JSONResponse({"ok": True})

    async def back(request: Request) -> Response:
        if (no := refused(request)) is not None:  # it switches what every viewer sees
            return no
        await dash.back_to_cluster()
        return JSONResponse({"ok": True})

    async def timeline_png(request: Request) -> Response:
        path = dash.run.timeline_png() if dash.run is not None else None
        return FileResponse(path, media_type="image/png") if path else JSONResponse({"error": "no finished run"}, 404)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await dash.start()
        try:
            yield
        finally:
            await dash.stop()

    hosts = ["*"] if host in ("0.0.0.0", "::", "") else [host, "127.0.0.1", "localhost", "[::1]", "::1"]
    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/stream", stream),
            Route("/api/state", state),
            Route("/api/election/{election_id:int}", election),
            Route("/api/action", action, methods=["POST"]),
            Route("/api/scenarios", scenarios),
            Route("/api/scenario", run_scenario, methods=["POST"]),
            Route("/api/scenario/cancel", cancel, methods=["POST"]),
            Route("/api/scenario/timeline.png", timeline_png),
            Route("/api/watch/cluster", back, methods=["POST"]),
            Mount("/static", StaticFiles(packages=[("dashboard", "static")]), name="static"),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
        lifespan=lifespan,
    )


# ---- serving -----------------------------------------------------------------------------------


def bind(host: str, port: int, port_flag: str = "--port") -> socket.socket:
    """A listening socket on host:port, or a one-line ConfigError that names the port."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is taken by another program; choose another with {port_flag}"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    return f"http://{shown}:{port}/"


def _server(dash: Dashboard, host: str) -> uvicorn.Server:
    config = uvicorn.Config(
        build_app(dash, host),
        log_level="warning",
        lifespan="on",
        loop="asyncio",
        http="h11",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


def warn_if_exposed(host: str) -> str | None:
    if host in ("127.0.0.1", "localhost", "::1", "[::1]") or host.startswith("127."):
        return None
    return (
        f"warning: the dashboard listens on {host} over plain HTTP: anyone who can reach it sees the cluster, "
        "and the admin token in its URL (which allows faults) crosses the network unencrypted; prefer the "
        "default 127.0.0.1 with an SSH tunnel (on a cluster started --insecure, there is no token at all)"
    )


def serve(
    directory: Path | None, host: str = "127.0.0.1", port: int = DEFAULT_PORT, remote: dict[str, Any] | None = None
) -> int:
    """`bullyproof dashboard`: serve until Ctrl-C (`remote`: a cluster by its addresses, read-only)."""
    dash = Dashboard(directory, remote)
    sock = bind(host, port)
    if remote is None and (warning := warn_if_exposed(host)) is not None:
        print(warning, flush=True)
    what = (
        f"cluster in {dash.main_dir}"
        if remote is None
        else "read-only, cluster at " + ", ".join(n["client_address"] for n in remote["nodes"])
    )
    print(f"dashboard: {with_token(url_of(sock, host), dash.token)}  ({what}; stop with Ctrl-C)", flush=True)
    _server(dash, host).run(sockets=[sock])
    return 0


class Background:
    """The dashboard served from a thread of another command (`cluster up --dashboard`).

    The port is taken first (a taken port fails before the cluster starts), the cluster is watched
    from `start(directory)` on."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, port_flag: str = "--dashboard-port") -> None:
        self.host = host
        self.sock = bind(host, port, port_flag)
        self.url = url_of(self.sock, host)
        self.warning = warn_if_exposed(host)
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self, directory: Path) -> Background:
        dash = Dashboard(directory)
        self.url = with_token(self.url, dash.token)
        self.server = _server(dash, self.host)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="dashboard", daemon=True
        )
        self.thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout_s)
        with contextlib.suppress(OSError):
            self.sock.close()
