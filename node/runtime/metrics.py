"""Prometheus metrics of one node, served over HTTP on the node's metrics address.

Each NodeMetrics has its own CollectorRegistry (never the process-global one), so several nodes in
one process — tests, embedders — cannot clash. The runtime calls one method per thing that happened;
the gauge and histogram bookkeeping stays here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from node.config import parse_address
from node.core import Role, Stats, View
from node.tls import Tls

PREFIX = "bullyproof"
# From ElectionStarted until the node has a leader again (detection time is not included: on
# loopback a contest-free election takes milliseconds, a contested or partitioned one seconds).
ELECTION_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


class NodeMetrics:
    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, registry=r)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            # prometheus_client appends `_total` to counters itself.
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=r)

        self.has_leader = gauge("has_leader", "1 if this node knows a leader (itself or another), else 0")
        self.is_leader = gauge("is_leader", "1 if this node is the leader, else 0")
        self.epoch = gauge("epoch", "epoch (fencing token) of this node's current view")
        self.promised_epoch = gauge("promised_epoch", "highest epoch this node has durably promised")
        self.lease_valid = gauge("lease_valid", "1 if this node leads with a valid lease (classic: leads at all)")
        self.leader_changes = counter("leader_changes", "times the leader this node knows changed (incl. to none)")
        # These three (and lease_renewals) mirror the core's Stats, as GetStatus shows them.
        self.elections_started = counter(
            "elections_started", "elections this node started (an Election round, a (pre)vote campaign, a ring token)"
        )
        self.elections_won = counter(
            "elections_won",
            "times this node became leader by winning an election; in bully and raft modes only "
            "elections it started (so at most elections_started), in ring mode also ones other members started",
        )
        self.handovers_won = counter(
            "handovers_won",
            "times this node became leader as the successor a resigning, transferring or preempted "
            "leader named, without an election of its own (classic and quorum; raft's successor runs an election)",
        )
        self.election_duration = Histogram(
            f"{PREFIX}_election_duration_seconds",
            "from this node starting an election until it has a leader again (itself or another)",
            buckets=ELECTION_BUCKETS_S,
            registry=r,
        )
        self.messages_sent = counter("messages_sent", "peer messages sent, by type", ("type",))
        self.messages_received = counter("messages_received", "peer messages received, by type", ("type",))
        self.rpc_errors = counter(
            "rpc_errors", "peer RPCs that failed, by gRPC status code and peer id", ("code", "peer")
        )
        self.configuration_refusals = counter(
            "configuration_refusals",
            "messages refused, either way, because this node and the peer run different "
            "member lists (neither counts the other)",
            ("peer",),
        )
        self.peer_disconnects = counter(
            "peer_disconnects",
            "times this node's connection to a peer was up and went down (the peer stopped or "
            "restarted, a reset, a GOAWAY), by peer id; an idle link that stays open adds nothing",
            ("peer",),
        )
        self.heartbeat_streams_opened = counter(
            "heartbeat_streams_opened",
            "heartbeat streams this node opened to a peer, by peer id: one per link while it leads, and "
            "one more each time a stream broke (a reset, a stall, an ack out of step) or could not open "
            "(an older peer without streams counts one before it gets unary heartbeats)",
            ("peer",),
        )
        self.lease_renewals = counter(
            "lease_renewals", "times the leader's lease was extended by a majority-acked round"
        )
        self.stepdowns = counter("stepdowns", "times this node stopped leading, by reason", ("reason",))
        self.watchers = gauge(
            "watchers", "WatchLeader streams (and transfers waiting for their target) following this node's view"
        )

        # Labelled children, looked up once: labels() costs a lock and a dict build per call, and
        # heartbeats count a message several times a second per peer (a tenth of idle CPU).
        self._sent_by_type: dict[str, Any] = {}
        self._received_by_type: dict[str, Any] = {}
        self._last_gauges: tuple | None = None
        self._election_started_s: float | None = None
        self._stats_seen = Stats()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ---- what happened (one call per event, from the runtime) --------------------------------

    def view_changed(self, view: View, promised_epoch: int, stats: Stats) -> None:
        """After every elector step: the node's view, its promise, and the core's counts."""
        has_leader = view.answer is not None  # what GetLeader says
        gauges = (has_leader, view.role == Role.LEADER, view.epoch, promised_epoch, view.lease_valid)
        if gauges != self._last_gauges:  # most steps (heartbeats) change none of them
            self._last_gauges = gauges
            for gauge, value in zip(
                (self.has_leader, self.is_leader, self.epoch, self.promised_epoch, self.lease_valid), gauges
            ):
                gauge.set(value)
        seen = self._stats_seen
        if stats != seen:  # most steps (heartbeats) count nothing
            for name, counter in (
                ("elections_started", self.elections_started),
                ("elections_won", self.elections_won),
                ("handovers_won", self.handovers_won),
                ("lease_renewals", self.lease_renewals),
            ):
                if (grew := getattr(stats, name) - getattr(seen, name)) > 0:
                    counter.inc(grew)
            self._stats_seen = dataclasses.replace(stats)
        if has_leader and self._election_started_s is not None:
            self.election_duration.observe(time.monotonic() - self._election_started_s)
            self._election_started_s = None

    def leader_changed(self) -> None:
        self.leader_changes.inc()

    def election_started(self) -> None:
        """Starts the election_duration clock (the counter follows Stats in view_changed)."""
        if self._election_started_s is None:  # a retry continues the same leaderless stretch
            self._election_started_s = time.monotonic()

    def stepped_down(self, reason: str) -> None:
        self.stepdowns.labels(reason=reason).inc()

    def message_sent(self, type_: str) -> None:
        _child(self._sent_by_type, self.messages_sent, type_).inc()

    def message_received(self, type_: str) -> None:
        _child(self._received_by_type, self.messages_received, type_).inc()

    def watcher_opened(self) -> None:
        self.watchers.inc()

    def watcher_closed(self) -> None:
        self.watchers.dec()

    def rpc_failed(self, code: str, peer: int) -> None:
        self.rpc_errors.labels(code=code, peer=str(peer)).inc()

    def configuration_refused(self, peer: int) -> None:
        self.configuration_refusals.labels(peer=str(peer)).inc()

    def peer_disconnected(self, peer: int) -> None:
        self.peer_disconnects.labels(peer=str(peer)).inc()

    def heartbeat_stream_opened(self, peer: int) -> None:
        self.heartbeat_streams_opened.labels(peer=str(peer)).inc()

    # ---- serving -------------------------------------------------------------------------------

    def start(
        self, listen: str, on_error: Callable[[str, BaseException | None], None] | None = None, tls: Tls | None = None
    ) -> int:
        """Serve /metrics on HOST:PORT (port 0: any free port); returns the bound port. With `tls`,
        HTTPS that demands a client certificate of the cluster CA (as the gRPC ports do), so a
        scraper needs one (Prometheus: tls_config with cert_file/key_file/ca_file)."""
        host, port = parse_address(listen, "--metrics-listen")
        if tls is None:
            server, thread = start_http_server(port, addr=host.strip("[]"), registry=self.registry)
        else:
            server, thread = _start_https(port, host.strip("[]"), self.registry, tls)
        if on_error is not None:
            # socketserver prints request errors (a scraper hanging up, say) to stderr; keep the
            # node's output one JSON object per line instead.
            def handle_error(request: Any, client_address: Any) -> None:
                exc = sys.exc_info()[1]
                if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError)):  # a refused or abandoned handshake:
                    on_error(f"metrics request from {client_address} refused: {exc!r}", None)  # one line, no traceback
                else:
                    on_error(f"metrics request from {client_address} failed", exc)

            server.handle_error = handle_error
        self._server, self._thread = server, thread
        return server.server_port

    def stop(self) -> None:
        """Stop serving (blocks up to the server's 0.5 s poll interval)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._server = self._thread = None


HANDSHAKE_TIMEOUT_S = 5.0


def _start_https(port: int, host: str, registry: CollectorRegistry, tls: Tls) -> tuple[Any, threading.Thread]:
    """/metrics over HTTPS with a client certificate of the cluster CA required.

    prometheus_client's own HTTPS wraps the listening socket, so each TLS handshake runs inside
    accept() on the one serving thread, with no timeout: a single idle connection would stall every
    scrape. Here accept() only accepts; the handshake runs in the request's own thread, bounded by
    HANDSHAKE_TIMEOUT_S. The certificate files are re-read when they change, as the gRPC ports do.
    """
    from wsgiref.simple_server import make_server

    from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler, make_wsgi_app

    def context() -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca))
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        ctx, ctx_stamp = context(), tls.stamp()

        def get_request(self) -> tuple[Any, Any]:
            sock, address = self.socket.accept()
            if (now := tls.stamp()) != self.ctx_stamp and now:
                with contextlib.suppress(OSError, ssl.SSLError):  # half-written files: keep the old ones
                    self.ctx, self.ctx_stamp = context(), now
            sock.settimeout(HANDSHAKE_TIMEOUT_S)
            return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    class Handler(_SilentHandler):
        def setup(self) -> None:
            self.request.do_handshake()  # in this request's thread, under the socket's timeout
            super().setup()

    httpd = make_server(host, port, make_wsgi_app(registry), Server, handler_class=Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name="metrics")
    thread.start()
    return httpd, thread


def _child(cache: dict[str, Any], counter: Counter, type_: str) -> Any:
    child = cache.get(type_)
    if child is None:
        child = cache[type_] = counter.labels(type=type_)
    return child
