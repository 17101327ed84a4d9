"""etcd beside us: a cluster of Debian's etcd-server members, and its Status RPC read without etcd's
.proto (a few protobuf fields decoded by hand), for the benchmarks that compare the two."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from node.channels import observer_channel
from node.launcher.cluster import (
    pid_alive,
    signal_pid,
    spawn,
    stop_pids,
    wait_for,
)
from node.launcher.ports import free_port


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def proto_fields(buf: bytes) -> dict[int, Any]:
    """The last value of each field of a protobuf message (varints and length-delimited only)."""
    out: dict[int, Any] = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            out[number], i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            out[number], i = buf[i : i + size], i + size
        elif wire == 1:
            out[number], i = int.from_bytes(buf[i : i + 8], "little"), i + 8
        elif wire == 5:
            out[number], i = int.from_bytes(buf[i : i + 4], "little"), i + 4
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return out


def etcd_status(address: str, timeout_s: float = 0.2) -> tuple[int, int] | None:
    """(member id, the leader it knows or 0) from etcd's Maintenance.Status; None if it did not answer.

    etcdserverpb.StatusResponse: header = 1 (ResponseHeader: member_id = 2), leader = 4. Decoded by
    hand, so the benchmark needs no etcd stubs; asked like our nodes, on a fresh channel each time.
    """
    try:
        with observer_channel(address) as ch:
            raw = ch.unary_unary("/etcdserverpb.Maintenance/Status")(b"", timeout=timeout_s)
    except grpc.RpcError:
        return None
    reply = proto_fields(raw)
    return proto_fields(reply.get(1, b"")).get(2, 0), reply.get(4, 0)


@dataclass
class EtcdMember:
    name: str
    client: str
    peer: str
    pid: int = 0
    member_id: int = 0


@dataclass
class EtcdCluster:
    """n etcd members on loopback, data in `directory`, at our heartbeat and election timeout."""

    etcd: Path
    directory: Path
    n: int = 5
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 500
    members: list[EtcdMember] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.members = [
            EtcdMember(f"m{i}", f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}") for i in range(1, self.n + 1)
        ]

    def argv(self, m: EtcdMember) -> list[str]:
        initial = ",".join(f"{x.name}=http://{x.peer}" for x in self.members)
        return [
            str(self.etcd),
            "--name",
            m.name,
            "--data-dir",
            str(self.directory / m.name),
            "--listen-client-urls",
            f"http://{m.client}",
            "--advertise-client-urls",
            f"http://{m.client}",
            "--listen-peer-urls",
            f"http://{m.peer}",
            "--initial-advertise-peer-urls",
            f"http://{m.peer}",
            "--initial-cluster",
            initial,
            "--initial-cluster-state",
            "new",  # ignored once the data dir exists
            "--initial-cluster-token",
            "bullyproof-bench",
            "--heartbeat-interval",
            str(self.heartbeat_interval_ms),
            "--election-timeout",
            str(self.election_timeout_ms),
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]

    def start(self) -> None:
        for m in self.members:
            m.pid = spawn(self.argv(m), self.directory / f"{m.name}.log")

    def stop(self) -> None:
        stop_pids([m.pid for m in self.members if m.pid])

    def pids(self) -> dict[str, int]:
        return {m.name: m.pid for m in self.members}

    def kill(self, index: int) -> None:
        signal_pid(self.members[index].pid, signal.SIGKILL)

    def restart(self, index: int) -> None:
        m = self.members[index]
        signal_pid(m.pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(m.pid), 5.0, what=f"etcd pid {m.pid} to exit")
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(m.pid, os.WNOHANG)
        m.pid = spawn(self.argv(m), self.directory / f"{m.name}.log")

    def wait_for_agreement(
        self,
        timeout_s: float,
        exclude: frozenset[int] = frozenset(),
        differs_from: int | None = None,
        interval_s: float = 0.01,
        rpc_timeout_s: float = 0.2,
    ) -> int:
        """The index of the member every other (not excluded) member names as leader."""
        asked = [i for i in range(self.n) if i not in exclude]

        def check() -> int | None:
            leaders = set()
            for i in asked:
                st = etcd_status(self.members[i].client, rpc_timeout_s)
                if st is None:
                    return None  # every member must answer, as for our nodes
                self.members[i].member_id = st[0]
                leaders.add(st[1])
            if len(leaders) != 1:
                return None
            (leader,) = leaders
            index = next((i for i in asked if self.members[i].member_id == leader), None)
            return None if index is None or index == differs_from else index + 1  # 0 is falsy

        return wait_for(check, timeout_s, interval_s, what=f"etcd members {asked} to agree on a leader") - 1
