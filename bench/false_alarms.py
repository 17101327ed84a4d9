"""The false-alarm run of `bullyproof bench`: leader changes when nothing failed.

A failure detector that fires sooner after a real failure is only better if it does not also fire
when the links are merely slow. Here nothing is killed: bullyproof (each mode asked for) and etcd run
side by side, started together and measured in the same wall period on the same machine, every
member's peer port behind a proxy of one real Toxiproxy server, and every link gets the same latency
with jitter and the same "loss". Each member's view is polled (GetLeader; etcd's Maintenance.Status)
on a connection kept open, every --false-alarm-poll-ms; the run counts leader changes and the time
without an agreed leader.

Agreed: every member answered and all name the same leader and epoch (etcd: term), and the leader
itself says it leads (node.history.agreement; for etcd, the leader's own Status names itself).
A leader change: the agreed (leader, epoch) differs from the one agreed before; a change seen
between two polls counts once, however many elections happened in between (the elections each
system's own counters saw are reported beside: GetStatus's elections_started/won, and etcd's
"became candidate / pre-candidate / leader" log lines).

The links. Toxiproxy cannot name a per-member upstream for each dialler of etcd (a member's peer URL
is part of its identity: every member must dial the same URL), so both systems get the same layout:
one proxy in front of each member's peer port, through which every peer connection into that member
passes. Each proxy carries, on both streams, a latency toxic of LATENCY ± JITTER ms (Toxiproxy draws
the jitter uniformly per chunk; a TCP stream stays in order, so a slow chunk holds up those behind it).

"Loss" on a TCP link: TCP retransmits, so an application never sees a message lost, only late: a lost
segment stalls its stream (and every message behind it on that connection: gRPC's HTTP/2 and etcd's
streams share one connection per peer) until the retransmission, about one retransmission timeout
later. On a lightly loaded link with one segment in flight there are no duplicate ACKs to trigger a
fast retransmit, so Linux waits its RTO: SRTT + max(4 RTTVAR, 200 ms), about the round trip plus
200 ms. Toxiproxy has no per-chunk loss (a toxic's `toxicity` is drawn per connection when the toxic
is added, not per message), so the run makes the stalls itself: for each direction of each proxy, at
random instants (Poisson), it adds a latency toxic of STALL = 200 ms + the mean round trip
(2 x LATENCY) with toxicity STALL_TOXICITY, and removes it STALL later. Each connection through the
proxy draws it independently; one drawn holds every chunk that passes in that window until the
window ends, in order, as a retransmission would. The rate: L % loss on a stream carrying one
message per heartbeat interval (the leader's heartbeats and their acks, 10 a second at 100 ms) loses
L/100 x 10 messages a second, so every connection gets a stall at that rate in each direction (at
1 %: one every 10 s on average; busy or idle, in both systems alike). The store's links (bullyproof's
fenced store; etcd has none) and the observer's are direct.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import grpc

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import observer_channel
from node.launcher.cluster import LocalCluster, local_spec, with_dial
from node.launcher.ports import free_port
from node.observer import agreed_leader, get_status

PART = "false-alarms"
NODES = 5
HEARTBEAT_MS, ELECTION_MS = 100, 500  # the default timing, etcd's too
DEFAULT_SECONDS, QUICK_SECONDS = 600.0, 15.0
DEFAULT_MODES = ("quorum",)
MIN_RTO_MS = 200  # Linux's TCP_RTO_MIN
STALL_TOXICITY = 0.25  # each connection through a proxy draws a stall on its own
SETTLE_S = 3.0  # after the toxics change, before the window opens (not measured)
RPC_TIMEOUT_S = 0.5


def log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {text}", file=sys.stderr, flush=True)


# ---- link settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkSetting:
    """LATENCY ± JITTER ms each way on every link, and LOSS % of messages stalled (see the module doc)."""

    latency_ms: int
    jitter_ms: int
    loss_percent: float

    @property
    def label(self) -> str:
        return f"{self.latency_ms}±{self.jitter_ms} ms, {self.loss_percent:g} % loss"

    @property
    def stall_ms(self) -> int:
        """One retransmission timeout: Linux's minimum plus the mean round trip (latency both ways)."""
        return MIN_RTO_MS + 2 * self.latency_ms

    def stalls_per_s(self, heartbeat_ms: int = HEARTBEAT_MS) -> float:
        """Stalls per connection and direction: the loss on a stream of one message per heartbeat."""
        return self.loss_percent / 100 * 1000 / heartbeat_ms

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "loss_percent": self.loss_percent,
            "stall_ms": self.stall_ms,
            "stalls_per_connection_direction_per_s": self.stalls_per_s(),
        }


DEFAULT_LINKS = (LinkSetting(20, 15, 1.0), LinkSetting(50, 40, 1.0))


def parse_links(text: str) -> list[LinkSetting]:
    """ "20/15/1,50/40/1": LATENCY_MS/JITTER_MS/LOSS_PERCENT, ..."""
    out = []
    for item in text.split(","):
        parts = item.strip().split("/")
        try:
            latency, jitter, loss = int(parts[0]), int(parts[1]), float(parts[2])
            if len(parts) != 3:
                raise ValueError
        except (ValueError, IndexError):
            raise argparse.ArgumentTypeError(
                f"a link setting is LATENCY_MS/JITTER_MS/LOSS_PERCENT, e.g. 20/15/1, got {item!r}"
            ) from None
        if latency < 0 or not 0 <= jitter <= latency or not 0 <= loss < 100:
            raise argparse.ArgumentTypeError(f"{item}: need 0 <= jitter <= latency and 0 <= loss < 100")
        out.append(LinkSetting(latency, jitter, loss))
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--false-alarm-s",
        type=float,
        help=f"false alarms: seconds per link setting, all systems at once (default {DEFAULT_SECONDS:.0f}; "
        f"--quick {QUICK_SECONDS:.0f})",
    )
    p.add_argument(
        "--false-alarm-links",
        type=parse_links,
        help="false alarms: LATENCY_MS/JITTER_MS/LOSS_PERCENT,... on every link (default 20/15/1,50/40/1)",
    )
    p.add_argument(
        "--false-alarm-modes",
        type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
        help=f"false alarms: bullyproof modes run beside etcd (default {','.join(DEFAULT_MODES)})",
    )
    p.add_argument(
        "--false-alarm-poll-ms", type=int, default=50, help="false alarms: how often each member is asked (50)"
    )


# ---- what the polls say (pure) ------------------------------------------------------------------


@dataclass(frozen=True)
class Poll:
    """One round of asking every member, at `t_s`: the agreed (leader, epoch), None if they did not
    agree; `answered` False if some member did not answer in time (then nothing is known)."""

    t_s: float
    leader: tuple[int, int] | None = None
    answered: bool = True


@dataclass
class Tally:
    seconds: float
    polls: int = 0
    unanswered_polls: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    unagreed_spans_s: list[float] = field(default_factory=list)
    unobserved_s: float = 0.0

    @property
    def leader_changes(self) -> int:
        return len(self.changes)

    def as_dict(self) -> dict[str, Any]:
        hours = self.seconds / 3600
        return {
            "seconds": round(self.seconds, 1),
            "minutes": round(self.seconds / 60, 2),
            "polls": self.polls,
            "unanswered_polls": self.unanswered_polls,
            "leader_changes": self.leader_changes,
            "leader_changes_per_hour": round(self.leader_changes / hours, 1) if hours else None,
            "other_leader_changes": sum(1 for c in self.changes if c["from"][0] != c["to"][0]),
            "unagreed_s": round(sum(self.unagreed_spans_s), 3),
            "unagreed_longest_ms": round(max(self.unagreed_spans_s, default=0.0) * 1000, 1),
            "unagreed_spans": len(self.unagreed_spans_s),
            "unagreed_fraction": round(sum(self.unagreed_spans_s) / self.seconds, 5) if self.seconds else None,
            "unobserved_s": round(self.unobserved_s, 3),
            "changes": self.changes,
        }


def tally(polls: Sequence[Poll], start_s: float, end_s: float, before: tuple[int, int] | None = None) -> Tally:
    """Leader changes and time without an agreed leader over [start_s, end_s] from polls in time order.

    A poll's state holds until the next poll (the last until end_s). A change: an agreed (leader,
    epoch) other than the last one agreed (`before`: the one agreed when the window opened). A time
    without agreement runs from the first poll that answered without agreeing to the next agreed one
    (end_s if none); unanswered polls inside it belong to it, outside it they count as unobserved."""
    out = Tally(seconds=end_s - start_s, polls=len(polls))
    last = before
    open_at: float | None = None
    for i, poll in enumerate(polls):
        until = polls[i + 1].t_s if i + 1 < len(polls) else end_s
        if not poll.answered:
            out.unanswered_polls += 1
            if open_at is None:
                out.unobserved_s += max(0.0, until - poll.t_s)
            continue
        if poll.leader is None:
            if open_at is None:
                open_at = poll.t_s
            continue
        if open_at is not None:
            out.unagreed_spans_s.append(poll.t_s - open_at)
            open_at = None
        if last is not None and poll.leader != last:
            out.changes.append({"t_s": round(poll.t_s - start_s, 3), "from": list(last), "to": list(poll.leader)})
        last = poll.leader
    if open_at is not None:
        out.unagreed_spans_s.append(end_s - open_at)
    return out


# ---- the systems --------------------------------------------------------------------------------


STEPDOWN_REASON = re.compile(r'"reason": "([a-z_]+)"')
ETCD_STATUS = "/etcdserverpb.Maintenance/Status"
ETCD_ELECTION_LINES = {
    "elections_started": re.compile(r"became (?:pre-)?candidate at term"),
    "elections_won": re.compile(r"became leader at term"),
}


class System(Protocol):
    """One cluster of the run: its proxies, its processes, a poll of its members, its counters."""

    name: str
    proxies: dict[str, str]  # proxy name -> upstream (a member's real peer address)
    listen: dict[str, str]  # proxy name -> where it listens

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def wait_agreed(self, timeout_s: float) -> None: ...

    def open(self) -> None: ...

    def poll(self) -> Poll: ...

    def counters(self) -> dict[str, int]: ...


class Ours:
    def __init__(self, mode: str, directory: Path, name: str = "", env: dict[str, str] | None = None) -> None:
        self.name = name or mode
        spec = local_spec(NODES, mode, HEARTBEAT_MS, ELECTION_MS)
        self.listen = {f"{self.name}->{n.id}": f"127.0.0.1:{free_port()}" for n in spec.nodes}
        self.proxies = {f"{self.name}->{n.id}": n.peer_address for n in spec.nodes}
        # Every node dials every peer at that peer's proxy; the store directly.
        dial = {
            a.id: {b.id: self.listen[f"{self.name}->{b.id}"] for b in spec.nodes if b.id != a.id} for a in spec.nodes
        }
        self.cluster = LocalCluster(with_dial(spec, dial, {}), directory, env=env)
        self.stubs: dict[int, Any] = {}
        self.channels: list[grpc.Channel] = []

    def start(self) -> None:
        self.cluster.start()

    def stop(self) -> None:
        self.close()
        self.cluster.stop()

    def wait_agreed(self, timeout_s: float) -> None:
        self.cluster.wait_for_agreement(timeout_s, interval_s=0.05)

    def open(self) -> None:
        for nid, address in self.cluster.client_addresses().items():
            ch = observer_channel(address)
            self.channels.append(ch)
            self.stubs[nid] = pb_grpc.LeadershipStub(ch)

    def close(self) -> None:
        for ch in self.channels:
            ch.close()
        self.channels.clear()
        self.stubs.clear()

    def poll(self) -> Poll:
        t = time.monotonic()
        futures = {
            nid: stub.GetLeader.future(pb.GetLeaderRequest(), timeout=RPC_TIMEOUT_S) for nid, stub in self.stubs.items()
        }
        views: dict[int, Any] = {}
        for nid, f in futures.items():
            try:
                views[nid] = f.result()
            except grpc.RpcError:
                return Poll(t, answered=False)
        return Poll(t, agreed_leader(views))

    def counters(self) -> dict[str, int]:
        out = {"elections_started": 0, "elections_won": 0, "stepdowns": 0, "status_unanswered": 0}
        for address in self.cluster.client_addresses().values():
            st = get_status(address, 2.0)
            if isinstance(st, str):
                out["status_unanswered"] += 1
                continue
            out["elections_started"] += st.elections_started
            out["elections_won"] += st.elections_won + st.handovers_won
            out["stepdowns"] += st.stepdowns
        # Why leaders stepped down, from the nodes' own histories (cumulative, like the counters).
        for n in self.cluster.spec.nodes:
            with contextlib.suppress(OSError):
                with open(self.cluster.dir / f"node-{n.id}" / "events.jsonl") as events:
                    for line in events:
                        if '"kind": "view"' in line and '"role": "follower"' in line:
                            reason = STEPDOWN_REASON.search(line)
                            if reason and reason.group(1) != "boot":
                                key = f"stepdowns_{reason.group(1)}"
                                out[key] = out.get(key, 0) + 1
        return out


def etcd_reply(raw: bytes) -> tuple[int, int, int]:
    """(member id, leader it knows or 0, its raft term) from etcdserverpb.StatusResponse's bytes:
    header = 1 (ResponseHeader: member_id = 2), leader = 4, raftTerm = 6."""
    from bench.etcd import proto_fields

    reply = proto_fields(raw)
    return proto_fields(reply.get(1, b"")).get(2, 0), reply.get(4, 0), reply.get(6, 0)


def etcd_agreement(replies: Sequence[tuple[int, int, int]]) -> tuple[int, int] | None:
    """(index + 1 of the leader, term) if every member names the same leader at the same term and the
    leader is one of them (its own Status then names itself); None otherwise."""
    named = {(leader, term) for _, leader, term in replies}
    if len(named) != 1:
        return None
    ((leader, term),) = named
    ids = [member for member, _, _ in replies]
    return (ids.index(leader) + 1, term) if leader and leader in ids else None


class Etcd:
    def __init__(self, etcd: Path, directory: Path) -> None:
        from bench.etcd import EtcdCluster

        self.name = "etcd"
        self.cluster = EtcdCluster(etcd, directory, NODES, HEARTBEAT_MS, ELECTION_MS)
        self.listen = {f"etcd->{m.name}": f"127.0.0.1:{free_port()}" for m in self.cluster.members}
        self.proxies = {f"etcd->{m.name}": m.peer for m in self.cluster.members}
        advertised = {m.peer: self.listen[f"etcd->{m.name}"] for m in self.cluster.members}
        plain_argv = self.cluster.argv

        def argv(m: Any) -> list[str]:
            # Listen on the member's own port; advertise (and list in --initial-cluster) its proxy,
            # so every peer dials it through Toxiproxy. A member's peer URL is part of its identity.
            out = plain_argv(m)
            out[out.index("--initial-advertise-peer-urls") + 1] = f"http://{advertised[m.peer]}"
            initial = out.index("--initial-cluster") + 1
            out[initial] = ",".join(f"{x.name}=http://{advertised[x.peer]}" for x in self.cluster.members)
            return out

        self.cluster.argv = argv
        self.calls: list[Any] = []
        self.channels: list[grpc.Channel] = []
        self.log_offsets = {m.name: 0 for m in self.cluster.members}

    def start(self) -> None:
        self.cluster.start()

    def stop(self) -> None:
        self.close()
        self.cluster.stop()

    def wait_agreed(self, timeout_s: float) -> None:
        self.cluster.wait_for_agreement(timeout_s, interval_s=0.05)

    def open(self) -> None:
        for m in self.cluster.members:
            ch = observer_channel(m.client)
            self.channels.append(ch)
            self.calls.append(ch.unary_unary(ETCD_STATUS))

    def close(self) -> None:
        for ch in self.channels:
            ch.close()
        self.channels.clear()
        self.calls.clear()

    def poll(self) -> Poll:
        t = time.monotonic()
        futures = [call.future(b"", timeout=RPC_TIMEOUT_S) for call in self.calls]
        replies = []
        for f in futures:
            try:
                replies.append(etcd_reply(f.result()))
            except grpc.RpcError:
                return Poll(t, answered=False)
        return Poll(t, etcd_agreement(replies))

    def counters(self) -> dict[str, int]:
        """Election lines in the members' logs since the run began (raft's own account)."""
        out = dict.fromkeys(ETCD_ELECTION_LINES, 0)
        for m in self.cluster.members:
            with contextlib.suppress(OSError):
                text = (self.cluster.directory / f"{m.name}.log").read_text(errors="replace")
                for key, pattern in ETCD_ELECTION_LINES.items():
                    out[key] += len(pattern.findall(text))
        return out


# ---- the links ----------------------------------------------------------------------------------


class Stalls(threading.Thread):
    """For each (proxy, stream): stalls at Poisson instants (see the module doc), until stopped."""

    def __init__(self, api: Any, targets: list[tuple[str, str]], setting: LinkSetting, seed: int) -> None:
        super().__init__(name="stalls", daemon=True)
        self.api = api
        self.setting = setting
        self.rng = random.Random(seed)
        self.rate = setting.stalls_per_s() / STALL_TOXICITY  # per (proxy, stream): each connection draws
        self.stop_event = threading.Event()
        # (when, seq, proxy, stream, toxic): toxic "" = add a stall there, else remove that stall.
        self.queue: list[tuple[float, int, str, str, str]] = []
        self.added: dict[str, int] = {}  # proxy -> stalls added
        self.windows_s: list[float] = []  # how long each stall really stood (the API calls take time)
        self.errors = 0
        self._seq = 0
        self._added_at: dict[str, float] = {}
        now = time.monotonic()
        if self.rate > 0:
            for proxy, stream in targets:
                self._push(now + self.rng.expovariate(self.rate), proxy, stream)

    def _push(self, when: float, proxy: str, stream: str, toxic: str = "") -> None:
        self._seq += 1
        heapq.heappush(self.queue, (when, self._seq, proxy, stream, toxic))

    def run(self) -> None:
        while self.queue and not self.stop_event.is_set():
            when, seq, proxy, stream, toxic = self.queue[0]
            if self.stop_event.wait(max(0.0, when - time.monotonic())):
                break
            heapq.heappop(self.queue)
            if toxic:
                self._remove(proxy, toxic)
                continue
            self._push(when + self.rng.expovariate(self.rate), proxy, stream)
            name = f"stall{seq}"
            try:
                attributes = {"latency": self.setting.stall_ms, "jitter": 0}
                self.api.add_toxic(proxy, name, "latency", stream, attributes, toxicity=STALL_TOXICITY)
            except Exception:  # a failed call must not end the run: counted, reported
                self.errors += 1
                continue
            self._added_at[name] = time.monotonic()
            self.added[proxy] = self.added.get(proxy, 0) + 1
            self._push(time.monotonic() + self.setting.stall_ms / 1000, proxy, stream, name)

    def _remove(self, proxy: str, toxic: str) -> None:
        try:
            self.api.remove_toxic(proxy, toxic)
            self.windows_s.append(time.monotonic() - self._added_at.pop(toxic))
        except Exception:
            self.errors += 1

    def finish(self) -> None:
        """Stop, and take away every stall still in place."""
        self.stop_event.set()
        self.join(timeout=10)
        for _, _, proxy, _, toxic in self.queue:
            if toxic:
                self._remove(proxy, toxic)
        self.queue.clear()


def set_latency(api: Any, proxies: Sequence[str], setting: LinkSetting) -> None:
    """Every proxy: LATENCY ± JITTER on both streams (replacing the previous setting's toxics)."""
    for proxy in proxies:
        for stream in ("upstream", "downstream"):
            name = f"latency_{stream}"
            with contextlib.suppress(Exception):
                api.remove_toxic(proxy, name)
            api.latency(proxy, setting.latency_ms, setting.jitter_ms, stream=stream, name=name)


# ---- the run ------------------------------------------------------------------------------------


class Poller(threading.Thread):
    def __init__(self, system: System, interval_s: float) -> None:
        super().__init__(name=f"poll-{system.name}", daemon=True)
        self.system = system
        self.interval_s = interval_s
        self.polls: list[Poll] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            self.polls.append(self.system.poll())
            next_at = max(next_at + self.interval_s, time.monotonic())
            self.stop_event.wait(next_at - time.monotonic())


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(
    systems: Sequence[System], api: Any, setting: LinkSetting, seconds: float, poll_s: float, seed: int
) -> dict[str, Any]:
    """One setting: every system at once, `seconds` long."""
    proxies = [name for s in systems for name in s.proxies]
    set_latency(api, proxies, setting)
    stalls = Stalls(api, [(p, st) for p in proxies for st in ("upstream", "downstream")], setting, seed)
    stalls.start()
    time.sleep(SETTLE_S)
    before = {s.name: s.poll() for s in systems}
    counters = {s.name: s.counters() for s in systems}
    load_before = loadavg()
    pollers = [Poller(s, poll_s) for s in systems]
    start = time.monotonic()
    for p in pollers:
        p.start()
    time.sleep(seconds)
    for p in pollers:
        p.stop_event.set()
    for p in pollers:
        p.join(timeout=5)
    end = time.monotonic()
    load_after = loadavg()
    stalls.finish()
    out: dict[str, Any] = {
        "link": setting.as_dict(),
        "label": setting.label,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "stall_windows_mean_ms": round(1000 * sum(stalls.windows_s) / len(stalls.windows_s), 1)
        if stalls.windows_s
        else None,
        "stall_api_errors": stalls.errors,
        "systems": {},
    }
    for s, p in zip(systems, pollers):
        polls = [x for x in p.polls if x.t_s < end]
        row = tally(polls, start, end, before[s.name].leader).as_dict()
        after = s.counters()
        row["own_counters"] = {k: after[k] - counters[s.name].get(k, 0) for k in sorted(after)}
        row["stalls_added"] = sum(n for proxy, n in stalls.added.items() if proxy in s.proxies)
        out["systems"][s.name] = row
        log(
            f"  {s.name:8} {setting.label}: {row['leader_changes']} leader changes in {row['minutes']} min "
            f"({row['leader_changes_per_hour']}/h), no agreed leader {row['unagreed_s']} s in all, "
            f"longest {row['unagreed_longest_ms']} ms; own counters {row['own_counters']}"
        )
    return out


def run(
    toxiproxy: ModuleType,
    etcd: Path | None,
    modes: Sequence[str],
    links: Sequence[LinkSetting],
    seconds: float,
    poll_ms: int = 50,
    seed: int | None = None,
    extra: Sequence[Callable[[Path], System]] = (),
) -> dict[str, Any]:
    """Every system at once through one Toxiproxy server, each link setting in turn (`extra`: more
    systems, made in the run's directory: a variant of a mode, say)."""
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    out: dict[str, Any] = {
        "nodes": NODES,
        "heartbeat_interval_ms": HEARTBEAT_MS,
        "election_timeout_ms": ELECTION_MS,
        "seconds_per_setting": seconds,
        "poll_ms": poll_ms,
        "stall_toxicity": STALL_TOXICITY,
        "seed": seed,
        "systems": (["etcd"] if etcd is not None else []) + list(modes),  # and `extra`'s, below
        "settings": [],
    }
    with tempfile.TemporaryDirectory(prefix="bullyproof-bench-false-alarms-") as tmp:
        root = Path(tmp)
        server = toxiproxy.ToxiproxyServer(log_path=root / "toxiproxy.log")
        systems: list[System] = []
        try:
            server.start()
            api = server.client(timeout_s=5.0)
            if etcd is not None:
                systems.append(Etcd(etcd, root / "etcd"))
            systems += [Ours(mode, root / mode) for mode in modes]
            systems += [make(root) for make in extra]
            for s in systems:
                for name, upstream in s.proxies.items():
                    api.create_proxy(name, s.listen[name], upstream)
            for s in systems:
                s.start()
            for s in systems:
                s.wait_agreed(60)
                s.open()
            out["systems"] = [s.name for s in systems]
            out["toxiproxy"] = api.version()
            for i, setting in enumerate(links):
                log(f"false alarms: {', '.join(s.name for s in systems)} at once, {setting.label}, {seconds:.0f} s")
                out["settings"].append(measure(systems, api, setting, seconds, poll_ms / 1000, seed + i))
        finally:
            for s in systems:
                s.stop()
            server.stop()
    return out


def bench(args: argparse.Namespace, quick: bool, etcd: Path | None, toxiproxy: ModuleType) -> dict:
    """The part as `bullyproof bench` runs it (versus.main)."""
    seconds = args.false_alarm_s or (QUICK_SECONDS if quick else DEFAULT_SECONDS)
    links = args.false_alarm_links or list(DEFAULT_LINKS)
    modes = args.false_alarm_modes or list(DEFAULT_MODES)
    return run(toxiproxy, etcd, modes, links, seconds, args.false_alarm_poll_ms)


# ---- the report ---------------------------------------------------------------------------------


def failover_at(result: dict, name: str, heartbeat_ms: int, election_ms: int) -> str:
    """`name`'s failover at that timing from the failover part of the same bench run, if it ran."""
    rows = result.get("failover")
    for row in rows if isinstance(rows, list) else []:
        if (row["heartbeat_interval_ms"], row["election_timeout_ms"]) == (heartbeat_ms, election_ms):
            s = row["systems"].get(name, {})
            if "median_ms" in s:
                return f"{s['median_ms']:.0f} / {s['p99_ms']:.0f} ms ({s['median_over_et']:.2f} ET)"
    return "–"


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f} ms"


def markdown(result: dict) -> list[str]:
    fa = result.get("false_alarms")
    if not isinstance(fa, dict) or "skipped" in fa:
        return []
    lines = [
        "## False alarms: leader changes when nothing failed",
        "",
    ]
    if "error" in fa:
        return lines + [f"failed: {fa['error']}", ""]
    hb, et = fa["heartbeat_interval_ms"], fa["election_timeout_ms"]
    lines += [
        f"{fa['nodes']} members each, heartbeat {hb} ms, election timeout {et} ms (etcd: `--heartbeat-interval {hb} "
        f"--election-timeout {et}`, every other flag at its default), nothing killed. "
        f"{', '.join(fa['systems'])} ran **at the same time** (one wall period, one machine), every member's peer "
        "port behind its own proxy of one Toxiproxy server: a latency toxic of LATENCY ± JITTER ms (uniform per "
        "chunk) on both streams, so a round trip is twice that. **Loss** on TCP is not a lost message but a "
        "stall: TCP retransmits the lost segment after about one retransmission timeout (Linux: round trip + "
        f"200 ms on an idle link), and the messages behind it on the connection wait. Toxiproxy has no per-message "
        f"loss, so each direction of every connection gets stalls of {MIN_RTO_MS} ms + 2 × LATENCY at random "
        "instants, as many as L % loss would cause on a stream of one message per heartbeat interval (1 %: one "
        f"every 10 s); a stall is a latency toxic added with toxicity {fa['stall_toxicity']} (each connection "
        "draws it) and removed after its length. "
        f"Each member was asked every {fa['poll_ms']} ms on an open connection. Agreed: all members answer and name "
        "the same leader and epoch (etcd: term), and the leader says it leads. A leader change: the agreed "
        "(leader, epoch) differs from the last one agreed. Own counters: elections started / won by the "
        "systems' own account over the window (GetStatus; etcd's `became (pre-)candidate` / `became leader` "
        f"log lines). Failover: from this run's failover part at {hb} / {et} ms (median / p99, no link faults). "
        f"Seed {fa['seed']}.",
        "",
        "| system | link setting | minutes | leader changes (to another node) | per hour | no agreed leader: total "
        "| longest | elections started / won | stepdowns (why) | failover at "
        f"{hb} / {et} ms | load before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for st in fa["settings"]:
        for name, row in st["systems"].items():
            own = row.get("own_counters", {})
            who = "etcd" if name == "etcd" else f"bullyproof {name}"
            why = ", ".join(
                f"{k.removeprefix('stepdowns_')} {v}" for k, v in own.items() if k.startswith("stepdowns_") and v
            )
            lines.append(
                f"| {who} | {st['label']} | {row['minutes']:.1f} | **{row['leader_changes']}** "
                f"({row['other_leader_changes']}) | {row['leader_changes_per_hour']} | {row['unagreed_s']:.2f} s | "
                f"{row['unagreed_longest_ms']:.0f} ms | "
                f"{own.get('elections_started', '–')} / {own.get('elections_won', '–')} | "
                f"{own.get('stepdowns', '–')}{f' ({why})' if why else ''} | {failover_at(result, name, hb, et)} | "
                f"{st['loadavg_before'][0]:.2f} → {st['loadavg_after'][0]:.2f} |"
            )
    lines.append("")
    lines += [
        "Stalls applied: "
        + "; ".join(
            f"{st['label']}: {sum(r.get('stalls_added', 0) for r in st['systems'].values())} "
            f"(stood {_ms(st.get('stall_windows_mean_ms'))} on average, {st.get('stall_api_errors', 0)} API errors)"
            for st in fa["settings"]
        )
        + ". Load average (1, 5, 15 min) before → after each window: "
        + "; ".join(
            f"{st['label']}: {' '.join(f'{x:.2f}' for x in st['loadavg_before'])} → "
            f"{' '.join(f'{x:.2f}' for x in st['loadavg_after'])}"
            for st in fa["settings"]
        )
        + ".",
        "",
    ]
    unanswered = [
        f"{name} at {st['label']}: {row['unanswered_polls']} of {row['polls']}"
        for st in fa["settings"]
        for name, row in st["systems"].items()
        if row["unanswered_polls"]
    ]
    if unanswered:
        lines += [
            "Polls in which some member did not answer within "
            f"{RPC_TIMEOUT_S * 1000:.0f} ms (not counted either way unless inside a time without agreement): "
            + "; ".join(unanswered)
            + ".",
            "",
        ]
    return lines
