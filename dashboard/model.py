"""The dashboard's state: what each node says now, and what the history says happened. Pure, no I/O.

Two inputs feed it. Live answers: each node's WatchLeader stream and GetStatus polls, and whether its
process runs, is stopped (paused) or is gone (crashed). The history: the events the nodes, the harness
(faults, process actions) and the store record, in the same schema the checkers read. Out come the
tiles, the agreed leader, the event log, the elections with the messages they exchanged, and the
timeline. Every part has a version, so the server pushes only what changed.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from node.api import bullyproof_pb2 as pb
from node.config import DEFAULT_TIMING
from node.launcher.cluster import ROLE_NAME
from node.observer import agreed_leader
from node.store.db import CLAIM_KEY_PREFIX

from .history_feed import TIMELINE_KINDS, picture

MODE_NAME = {
    pb.Mode.Value(name): name.removeprefix("MODE_").lower() for name in pb.Mode.keys() if name != "MODE_UNSPECIFIED"
}
LOG_LIMIT = 2000  # entries kept (the page shows the newest)
ELECTION_LIMIT = 200  # elections kept
MESSAGES_PER_ELECTION = 400  # messages kept per election (the rest are counted)
TIMELINE_EVENT_LIMIT = 50_000
STEP_DOWN_REASONS = {
    "lease_expired": "its lease ran out",
    "higher_epoch": "it saw a newer epoch",
    "higher_leader": "a higher node leads",
    "resigned": "it resigned",
    "preempted": "a higher node took over",
}


def wall_clock(t_ns: int, now_mono_ns: int, now_wall_s: float) -> str:
    """A monotonic history time as local wall-clock time, HH:MM:SS.mmm."""
    t = now_wall_s - (now_mono_ns - t_ns) / 1e9
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


@dataclass
class NodeState:
    id: int
    address: str
    pid: int | None = None
    proc: str = "unknown"  # running | paused | crashed | unknown (no pid: another host, compose)
    info: pb.LeaderInfo | None = None  # latest from WatchLeader (or a status poll, whichever is newer)
    status: pb.NodeStatus | None = None
    answered: bool = False  # the last status poll or stream message got an answer
    error: str = ""
    streaming: bool = False  # its WatchLeader stream is open: the view comes from there, not from polls

    def live(self) -> bool:
        """Counts for agreement: answering, and not stopped or gone."""
        return self.answered and self.proc in ("running", "unknown") and self.info is not None

    def role(self) -> str:
        if self.proc == "crashed":
            return "crashed"
        if self.proc == "paused":
            return "paused"
        if not self.answered or self.info is None:
            return "unreachable"
        role = ROLE_NAME.get(self.info.role, "follower")
        if role == "follower" and not self.info.known:
            return "no leader known"
        return role

    def tile(self) -> dict[str, Any]:
        info, st = self.info, self.status
        out: dict[str, Any] = {
            "id": self.id,
            "role": self.role(),
            "proc": self.proc,
            "pid": self.pid,
            "address": self.address,
            "error": self.error,
        }
        if info is not None:
            out.update(
                epoch=info.epoch if info.known else None,
                follows=info.leader_id if info.known else None,
                lease_valid=info.lease_valid,
            )
            if info.view_time_unix_ns:  # when the node formed this view (streamed views carry it)
                out["view_unix_ms"] = info.view_time_unix_ns // 1_000_000
        if st is not None:
            if out.get("epoch") is None:  # the stream's view is the newer one when it names a leader
                out["epoch"] = st.epoch
            out.update(
                mode=MODE_NAME.get(st.mode, "?"),
                promised_epoch=st.promised_epoch,
                promised_to=st.promised_to or None,
                sent=dict(st.messages_sent),
                received=dict(st.messages_received),
                elections_started=st.elections_started,
                elections_won=st.elections_won,
                stepdowns=st.stepdowns,
                uptime_ms=st.uptime_ms,
            )
            # Peers on another member list: neither counts the other (the full reason on hover).
            refused = [p for p in st.peers if p.configuration_refusal]
            if refused:
                out["warning"] = "another member list than node(s) " + ", ".join(str(p.id) for p in refused)
                out["warning_detail"] = refused[-1].configuration_refusal
        out["lease"] = _lease_text(out)
        return out


def _lease_text(tile: dict[str, Any]) -> str:
    if tile["role"] == "leader":
        return "lease valid" if tile.get("lease_valid") else "lease expired"
    if tile.get("promised_to"):
        return f"promise: epoch {tile.get('promised_epoch')} to node {tile['promised_to']}"
    return "no promise"


@dataclass
class Election:
    """Election traffic close together in time (no gap longer than the quiet period), and its outcome."""

    id: int
    start_ns: int
    end_ns: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    winners: list[tuple[int, int]] = field(default_factory=list)  # (node, epoch) that began to lead meanwhile

    def to_json(self, origin_ns: int, messages: bool = True) -> dict[str, Any]:
        nodes = sorted({m["src"] for m in self.messages} | {m["dst"] for m in self.messages})
        epochs = sorted({m["epoch"] for m in self.messages})
        refused = sum(1 for m in self.messages if m.get("granted") is False)
        failed = sum(1 for m in self.messages if m.get("error"))
        out = {
            "id": self.id,
            "start_ms": _ms(self.start_ns, origin_ns),
            "end_ms": _ms(self.end_ns, origin_ns),
            "total": self.total,
            "nodes": nodes,
            "epochs": epochs,
            "refused": refused,
            "failed": failed,
            "winners": [{"node": n, "epoch": e} for n, e in self.winners],
        }
        if messages:
            out["messages"] = [
                {**m, "t_ms": _ms(m["t_ns"], origin_ns)} for m in sorted(self.messages, key=lambda m: m["t_ns"])
            ]
        return out


def _ms(t_ns: int, origin_ns: int) -> float:
    return round((t_ns - origin_ns) / 1e6, 1)


class Model:
    def __init__(
        self,
        nodes: dict[int, str],
        origin_ns: int,
        election_timeout_ms: int = DEFAULT_TIMING.election_timeout_ms,
        mode: str = "",
        source: str = "",
    ) -> None:
        self.nodes = {nid: NodeState(nid, addr) for nid, addr in sorted(nodes.items())}
        self.origin_ns = origin_ns
        self.quiet_ns = max(300, election_timeout_ms) * 1_000_000
        self.mode = mode
        self.source = source
        self.versions = {"nodes": 0, "timeline": 0, "elections": 0}
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self.log_seq = 0
        self.elections: deque[Election] = deque(maxlen=ELECTION_LIMIT)
        self.election_seq = 0
        self.election_changed: dict[int, int] = {}  # election id -> version when it last changed
        self.timeline_events: list[dict[str, Any]] = []
        self.timeline_dirty = False
        self.picture: dict[str, Any] = {"intervals": [], "overlaps": [], "faults": []}
        self.split_brains_logged: set[tuple[Any, ...]] = set()
        self.history_view: dict[int, dict[str, Any]] = {}  # node -> its latest view event
        self.electing: set[int] = set()  # nodes that started an election and have not had a leader since
        self.store = {"accepted": 0, "rejected": 0, "claims": 0, "highest_epoch": 0}
        self.rejected_marks: deque[dict[str, Any]] = deque(maxlen=500)  # red x on the timeline
        self.counts = {"grant": 0, "release": 0, "write": 0}
        self.claimed: set[tuple[int, int]] = set()
        self.fenced: set[tuple[int, int]] = set()  # (writer, epoch) the store rejected at least once
        self.source_errors: dict[str, str] = {}  # source -> its last error, until it works again (shown on the page)

    # ---- live answers ------------------------------------------------------------------------

    def on_info(self, node: int, info: pb.LeaderInfo) -> None:
        st = self.nodes[node]
        st.info, st.answered, st.error, st.streaming = info, True, "", True
        self._nodes_changed()

    def on_stream_down(self, node: int) -> None:
        self.nodes[node].streaming = False

    def on_status(self, node: int, status: pb.NodeStatus | str) -> None:
        """A status poll's answer, or the gRPC code's name when the node did not answer."""
        st = self.nodes[node]
        if isinstance(status, str):
            changed = st.answered or st.error != status
            st.answered, st.error = False, status
            if changed:
                self._nodes_changed()
            return
        st.status, st.answered, st.error = status, True, ""
        if status.election_timeout_ms:  # (0 from an older node) elections group by what the members run
            timeouts = [n.status.election_timeout_ms for n in self.nodes.values() if n.status is not None]
            self.quiet_ns = max(300, *timeouts) * 1_000_000
        if not self.mode and status.mode in MODE_NAME:  # (a mode this page does not know: left unsaid)
            self.mode = MODE_NAME[status.mode]
        if not st.streaming:  # a poll's view may be older than the stream's latest push
            st.info = pb.LeaderInfo(
                known=status.has_leader,
                leader_id=status.leader_id,
                epoch=status.epoch if status.has_leader else 0,
                node_id=node,
                role=status.role,
                lease_valid=status.lease_valid,
            )
        self._nodes_changed()

    def on_process(self, node: int, pid: int | None, proc: str) -> None:
        st = self.nodes[node]
        if (st.pid, st.proc) != (pid, proc):
            st.pid, st.proc = pid, proc
            if proc != "running":
                st.answered = False
            self._nodes_changed()

    def _nodes_changed(self) -> None:
        self.versions["nodes"] += 1

    def agreed(self) -> tuple[int, int] | None:
        views = {nid: (st.info if st.live() else None) for nid, st in self.nodes.items()}
        return agreed_leader(views)

    def leaders_now(self) -> list[dict[str, int]]:
        return [
            {"node": nid, "epoch": st.info.epoch}
            for nid, st in self.nodes.items()
            if st.live() and st.info is not None and st.info.role == pb.ROLE_LEADER
        ]

    def nodes_json(self, now_ns: int) -> dict[str, Any]:
        agreed = self.agreed()
        leaders = self.leaders_now()
        return {
            "now_ms": _ms(now_ns, self.origin_ns),
            "source": self.source,
            "mode": self.mode,
            "agreed": None if agreed is None else {"leader": agreed[0], "epoch": agreed[1]},
            "leaders": leaders,
            "split_brain": len(leaders) > 1,
            "tiles": [st.tile() for st in self.nodes.values()],
            "store": dict(self.store),
            "counts": dict(self.counts),
            "source_error": "; ".join(f"{k}: {v}" for k, v in sorted(self.source_errors.items())),
        }

    def source_failed(self, source: str, error: str | None) -> None:
        """A source (the history files, the store log...) failed, or works again (error None)."""
        before = self.source_errors.get(source)
        if error is None:
            self.source_errors.pop(source, None)
        else:
            self.source_errors[source] = error
        if self.source_errors.get(source) != before:
            self._nodes_changed()

    # ---- the history -------------------------------------------------------------------------

    def on_events(self, events: list[dict[str, Any]], now_mono_ns: int, now_wall_s: float) -> None:
        def wall(t_ns: int) -> str:
            return wall_clock(t_ns, now_mono_ns, now_wall_s)

        ordered = sorted((e for e in events if isinstance(e.get("t_ns"), int)), key=lambda e: e["t_ns"])
        # Elections first, so that a candidate's or a leader's line can link to the messages that came
        # with it (they are recorded a few milliseconds after the candidate's view).
        starts = {id(ev): self._group_message(ev) for ev in ordered if ev.get("kind") == "message"}
        for ev in ordered:
            kind = ev.get("kind")
            if kind == "message":
                if starts[id(ev)] is not None:
                    self._say(ev, wall, "election", "election", election=starts[id(ev)])
                continue
            if kind in TIMELINE_KINDS:
                self.timeline_events.append(ev)
                self.timeline_dirty = True
            handler = getattr(self, f"_on_{kind}", None)
            if handler is not None:
                handler(ev, wall)
            elif kind in self.counts:
                self.counts[kind] += 1
        if len(self.timeline_events) > TIMELINE_EVENT_LIMIT:
            del self.timeline_events[: TIMELINE_EVENT_LIMIT // 2]

    def _say(self, ev: dict[str, Any], wall: Any, text: str, level: str = "info", **extra: Any) -> dict[str, Any]:
        self.log_seq += 1
        entry = {
            "seq": self.log_seq,
            "t_ms": _ms(ev["t_ns"], self.origin_ns),
            "wall": wall(ev["t_ns"]),
            "text": text,
            "level": level,
            **extra,
        }
        self.log.append(entry)
        return entry

    def _on_gap(self, ev: dict[str, Any], wall: Any) -> None:
        """Events a node's WatchEvents stream said this page will never get (dashboard --nodes)."""
        self._say(
            ev,
            wall,
            f"node {ev['node']}: {ev['missed']} history events lost here (older than the node keeps, "
            "or this page fell behind); the log and timeline have a gap",
            level="warn",
        )

    def _on_meta(self, ev: dict[str, Any], wall: Any) -> None:
        if ev.get("scenario") and ev["scenario"] != "manual":
            self._say(
                ev, wall, f"scenario {ev['scenario']} ({ev.get('mode')}, seed {ev.get('seed')}) started its cluster"
            )

    def _on_view(self, ev: dict[str, Any], wall: Any) -> None:
        node, role, epoch = ev["node"], ev["role"], ev["epoch"]
        prev = self.history_view.get(node)
        self.history_view[node] = ev
        was = prev["role"] if prev else None
        if ev.get("reason") == "boot":
            self._say(ev, wall, f"node {node} booted as {role} (epoch {epoch})", node=node)
        elif role == "leader" and was == "leader" and prev and prev["epoch"] != epoch:
            self._say(
                ev,
                wall,
                f"node {node} moved its leadership to epoch {epoch}",
                "leader",
                node=node,
                epoch=epoch,
                election=self._election_near(ev["t_ns"], node, epoch),
            )
        elif role == "leader" and was != "leader":
            self._say(
                ev,
                wall,
                f"node {node} is the new LEADER (epoch {epoch})",
                "leader",
                node=node,
                epoch=epoch,
                election=self._election_near(ev["t_ns"], node, epoch),
            )
        elif role == "candidate" and node not in self.electing:
            # Once per leaderless stretch: its retries show as elections of their own.
            self.electing.add(node)
            self._say(
                ev,
                wall,
                f"node {node} started an election (epoch {epoch})",
                node=node,
                election=self._election_near(ev["t_ns"]),
            )
        if role == "leader" or ev.get("leader") is not None:
            self.electing.discard(node)
        if was == "leader" and role != "leader":
            why = STEP_DOWN_REASONS.get(ev.get("reason", ""), ev.get("reason") or "")
            self._say(
                ev,
                wall,
                f"node {node} stepped down from epoch {prev['epoch'] if prev else epoch}" + (f": {why}" if why else ""),
                "warn",
                node=node,
            )

    def _on_process(self, ev: dict[str, Any], wall: Any) -> None:
        node, action = ev["node"], ev.get("action")
        who = "the store" if node == "store" else f"node {node}"
        if ev.get("harness", True) and "pid" in ev and action in ("kill", "pause", "resume", "restart"):
            text = {
                "kill": f"crash {who} (SIGKILL pid {ev['pid']})",
                "pause": f"pause {who} (SIGSTOP)",
                "resume": f"resume {who} (SIGCONT)",
                "restart": f"restart {who}",
            }[action]
            self._say(
                ev,
                wall,
                text,
                "fault" if action in ("kill", "pause") else "action",
                node=node if isinstance(node, int) else None,
            )
            if isinstance(node, int) and action in ("kill", "restart"):
                self._forget(node)
        elif action == "stop" and isinstance(node, int):
            self._say(ev, wall, f"node {node} shut down", node=node)
            self._forget(node)

    def _forget(self, node: int) -> None:
        """A process ended: what it reported says nothing about the next one."""
        self.history_view.pop(node, None)
        self.electing.discard(node)

    def _on_fault(self, ev: dict[str, Any], wall: Any) -> None:
        detail = ev.get("detail") or {}
        if ev.get("action") == "start":
            self._say(ev, wall, f"fault {ev['name']} started: {_describe_fault(detail)}", "fault")
        else:
            self._say(ev, wall, f"fault {ev['name']} healed", "action")

    def _on_heal(self, ev: dict[str, Any], wall: Any) -> None:
        self._say(ev, wall, "heal: every network fault removed", "action")

    def _on_transfer(self, ev: dict[str, Any], wall: Any) -> None:
        self._say(ev, wall, f"node {ev.get('node')} asked to hand leadership to node {ev.get('target')}", "action")

    def _on_store(self, ev: dict[str, Any], wall: Any) -> None:
        if ev.get("resource", "store") != "store":
            return  # a database's log read back after a chaos run (docs/fencing-chaos.md): not the store's
        writer, epoch = ev["writer"], ev["epoch"]
        if ev["accepted"]:
            self.store["accepted"] += 1
            self.store["highest_epoch"] = max(self.store["highest_epoch"], epoch)
            if ev["key"].startswith(CLAIM_KEY_PREFIX) and (writer, epoch) not in self.claimed:
                self.claimed.add((writer, epoch))
                self.store["claims"] += 1
                self._say(
                    ev,
                    wall,
                    f"store accepted node {writer}'s claim of epoch {epoch}: older epochs are fenced off",
                    "store",
                    node=writer,
                )
        else:
            self.store["rejected"] += 1
            self.rejected_marks.append({"node": writer, "t_ms": _ms(ev["t_ns"], self.origin_ns)})
            self.timeline_dirty = True
            if (writer, epoch) not in self.fenced:  # once per stale writer and epoch; the rest are counted
                self.fenced.add((writer, epoch))
                self._say(
                    ev,
                    wall,
                    f"store REJECTED node {writer}'s write in epoch {epoch} ({ev.get('reason', '')}); "
                    "its further writes in that epoch are counted above and marked × on the timeline",
                    "error",
                    node=writer,
                )

    def _group_message(self, ev: dict[str, Any]) -> int | None:
        """Add a message event to the election going on, or start one; the new election's id if it did."""
        msg = {
            k: ev[k]
            for k in (
                "t_ns",
                "node",
                "type",
                "src",
                "dst",
                "epoch",
                "reply",
                "granted",
                "why",
                "error",
                "resigning",
                "successor",
                "ids",
                "skipped",
            )
            if ev.get(k) is not None
        }
        current = self.elections[-1] if self.elections else None
        started = None
        if current is None or ev["t_ns"] - current.end_ns > self.quiet_ns:
            self.election_seq += 1
            current = started = Election(self.election_seq, ev["t_ns"], ev["t_ns"])
            self.elections.append(current)
        current.end_ns = max(current.end_ns, ev["t_ns"])
        current.start_ns = min(current.start_ns, ev["t_ns"])
        current.total += 1 + ev.get("skipped", 0)
        if len(current.messages) < MESSAGES_PER_ELECTION:
            current.messages.append(msg)
        self._election_changed(current)
        return None if started is None else started.id

    def _election_changed(self, e: Election) -> None:
        self.versions["elections"] += 1
        self.election_changed[e.id] = self.versions["elections"]

    def _election_near(self, t_ns: int, winner: int | None = None, epoch: int | None = None) -> int | None:
        """The election going on at t_ns (or just before): a leader's or candidate's log line links to it."""
        for e in reversed(self.elections):
            if e.start_ns - self.quiet_ns <= t_ns <= e.end_ns + self.quiet_ns:
                if winner is not None and (winner, epoch) not in e.winners:
                    e.winners.append((winner, epoch))
                    self._election_changed(e)
                return e.id
            if e.end_ns + self.quiet_ns < t_ns:
                break
        return None

    # ---- what the page gets ------------------------------------------------------------------

    def refresh_timeline(self, now_ns: int, now_wall_s: float) -> bool:
        """Recompute the timeline if the history changed; log each newly seen split brain. True if changed."""
        if not self.timeline_dirty:  # open spans: the page draws them on to its own "now"
            return False
        self.timeline_dirty = False
        pic = picture(self.timeline_events, now_ns, self.origin_ns).to_json()
        pic["rejected"] = list(self.rejected_marks)
        for o in pic["overlaps"]:
            key = (tuple(o["nodes"]), tuple(o["epochs"]), o["start_ms"])
            if key not in self.split_brains_logged:
                self.split_brains_logged.add(key)
                a, b = o["nodes"]
                ea, eb = o["epochs"]
                start_ns = self.origin_ns + int(o["start_ms"] * 1e6)
                self._say(
                    {"t_ns": start_ns},
                    lambda t: wall_clock(t, now_ns, now_wall_s),
                    f"SPLIT BRAIN: node {a} (epoch {ea}) and node {b} (epoch {eb}) both lead",
                    "error",
                )
        if pic != self.picture:
            self.picture = pic
            self.versions["timeline"] += 1
            return True
        return False

    def log_after(self, seq: int) -> list[dict[str, Any]]:
        return [e for e in self.log if e["seq"] > seq]

    def elections_after(self, version: int, messages: bool = True) -> list[dict[str, Any]]:
        return [
            e.to_json(self.origin_ns, messages) for e in self.elections if self.election_changed.get(e.id, 0) > version
        ]

    def election(self, election_id: int) -> dict[str, Any] | None:
        for e in self.elections:
            if e.id == election_id:
                return e.to_json(self.origin_ns)
        return None


def _describe_fault(detail: dict[str, Any]) -> str:
    if "groups" in detail:
        return " / ".join(",".join(map(str, g)) for g in detail["groups"])
    if "node" in detail:
        return f"node {detail['node']}"
    if "links" in detail:
        links = detail["links"]
        shown = ", ".join(links[:6]) + (f" and {len(links) - 6} more" if len(links) > 6 else "")
        extra = ", ".join(f"{k} {v}" for k, v in detail.items() if k not in ("links", "type"))
        return shown + (f" ({extra})" if extra else "")
    if "from" in detail:
        return f"{detail['from']} -> {detail.get('to')}"
    if "allowed" in detail:
        return "only some links allowed"
    return ""
