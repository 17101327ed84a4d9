"""A StatefulSet scaled up and down, on real mutual-TLS processes (loopback only, stopped by pid).

Each node runs the command line `bullyproof k8s` gives every pod (node_template_args), with only what
a pod has and a test process cannot: its id (--id N for --id-from-hostname), its own address (127.0.0.N
on the same ports, as bullyproof-(N-1).bullyproof is in the cluster), its files (state, events,
certificates) and no store or metrics. The address templates are the pod's, pointed at 127.0.0.{id}.
Three voters start; two more pods join by themselves and become voters; the preStop hook (`bullyproof
leave --statefulset`, run in this process against a stand-in API server that answers the replicas)
keeps a pod on a restart, and on a scale-down two pods leave at once through the protocol, the
leading one handing leadership down first; scaled up again on its old volume, a pod asks to be added
again.

What is not exercised here: a real Kubernetes API server (its RBAC), kubelet and DNS (none on this
machine). The decision is a pure function (tests/unit/test_k8s_pod.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from node.api import bullyproof_pb2 as pb
from node.api import bullyproof_pb2_grpc as pb_grpc
from node.channels import channel_credentials, dial_as
from node.cli import main
from node.launcher import k8s_pod
from node.launcher.cluster import spawn, stop_pids, stop_run, wait_for, wait_for_agreement
from node.launcher.k8s import k8s_spec, node_template_args
from node.launcher.k8s_pod import StatefulSetState, leaves_on_stop
from node.launcher.ports import free_port
from node.observer import get_status, transfer_leadership
from node.tls import Tls, make_cluster_certs, node_name

pytestmark = pytest.mark.integration

TIMING = {"heartbeat_interval_ms": 100, "election_timeout_ms": 1000}


def host(node_id: int) -> str:
    return f"127.0.0.{node_id}"


def shared_ports(count: int, nodes: int) -> list[int]:
    """`count` ports free on every node's loopback address (each node binds its own 127.0.0.N)."""
    found: list[int] = []
    while len(found) < count:
        port = free_port()
        try:
            for n in range(2, nodes + 1):
                with socket.socket() as s:
                    s.bind((host(n), port))
        except OSError:
            continue
        found.append(port)
    return found


class Pods:
    """The StatefulSet's pods as local processes of one run directory."""

    def __init__(self, base: Path, n: int, max_nodes: int) -> None:
        self.base = base
        self.certs = base / "certs"
        make_cluster_certs(self.certs, max_nodes)
        self.peer_port, self.client_port = shared_ports(2, max_nodes)
        self.peer_template = f"127.0.0.{{id}}:{self.peer_port}"
        self.client_template = f"127.0.0.{{id}}:{self.client_port}"
        spec = k8s_spec(n, **TIMING)
        self.template = node_template_args(spec, self.peer_template, self.client_template)
        self.pids: dict[int, int] = {}
        for node_id in range(1, max_nodes + 1):  # the operator's tools (status, transfer) as the admin
            dial_as(self.client(node_id), Tls.in_dir(self.certs, "admin"), node_name(node_id))

    def client(self, node_id: int) -> str:
        return f"{host(node_id)}:{self.client_port}"

    def argv(self, node_id: int) -> list[str]:
        """The template's command line as pod bullyproof-(node_id - 1) would run it."""
        local = {
            "--listen": f"{host(node_id)}:{self.peer_port}",
            "--client-listen": self.client(node_id),
            "--state-dir": str(self.base / f"node-{node_id}" / "state"),
            "--events": str(self.base / f"node-{node_id}" / "events.jsonl"),
            "--certs": str(self.certs),
        }
        args: list[str] = []
        rest = iter(self.template)
        for arg in rest:
            if arg == "--id-from-hostname":
                args += ["--id", str(node_id)]
            elif arg in ("--store", "--metrics-listen"):
                next(rest)
            elif arg in local:
                next(rest)
                args += [arg, local[arg]]
            else:
                args.append(arg)
        return [sys.executable, "-m", "node.cli", *args]

    def start(self, node_id: int) -> None:
        self.pids[node_id] = spawn(
            self.argv(node_id), self.base / f"node-{node_id}" / "node.log", dict(os.environ), self.base
        )

    def configuration(self, node_id: int) -> pb.Configuration | None:
        st = get_status(self.client(node_id))
        return None if isinstance(st, str) else st.configuration

    def names(self, node_id: int, member: int) -> bool:
        """Whether node `node_id`'s configuration names `member` (voter or learner)."""
        c = self.configuration(node_id)
        return c is not None and member in (*c.voters, *c.learners)

    def leader(self, nodes: range) -> tuple[int, int]:
        return wait_for_agreement({n: self.client(n) for n in nodes}, timeout_s=15)


@pytest.fixture
def pods(tmp_path: Path):
    made = Pods(tmp_path, 3, 5)
    try:
        yield made
    finally:
        stop_run(tmp_path)  # every process tagged with this run directory, by pid


def prestop(pods: Pods, node_id: int, ask_api: bool = True) -> list[str]:
    """The preStop hook's command (k8s.leave_args) as pod bullyproof-(node_id - 1) runs it; without
    `ask_api`, as one whose decision was made (to leave) without the stand-in API."""
    return [
        "leave",
        "--id",
        str(node_id),
        "--client-address-template",
        pods.client_template,
        "--members",
        "1,2,3",
        "--state-dir",
        str(pods.base / f"node-{node_id}" / "state"),
        *(["--statefulset", "bullyproof"] if ask_api else []),
        "--timeout-s",
        "20",
        "--certs",
        str(pods.certs),
    ]


def test_scaled_up_pods_join_by_themselves_and_a_scale_down_removes_them_through_the_protocol(
    pods, kube_api, monkeypatch, capsys
):
    for node_id in (1, 2, 3):
        pods.start(node_id)
    pods.leader(range(1, 4))
    assert list(pods.configuration(1).voters) == [1, 2, 3]

    # kubectl scale --replicas 5: pods bullyproof-3 and -4 start as nodes 4 and 5, outside the
    # configuration, and ask at the same time (one change at a time: one of them waits its turn).
    pods.start(4)
    pods.start(5)
    wait_for(
        lambda: all(pods.names(n, 4) and pods.names(n, 5) and not pods.configuration(n).learners for n in range(1, 6)),
        20,
        0.1,
        what="nodes 4 and 5 to add themselves and become voters",
    )
    leader, _ = pods.leader(range(1, 6))
    assert list(pods.configuration(leader).voters) == [1, 2, 3, 4, 5]

    # Node 4's certificate may change node 4's membership only: anything else is refused, precisely.
    node4 = Tls.in_dir(pods.certs, "node-4")
    with grpc.secure_channel(
        pods.client(leader), channel_credentials(node4), options=[("grpc.ssl_target_name_override", node_name(leader))]
    ) as ch:
        stub = pb_grpc.LeadershipStub(ch)
        for action, target in ((pb.MembershipRequest.ACTION_ADD, 6), (pb.MembershipRequest.ACTION_REMOVE, 1)):
            with pytest.raises(grpc.RpcError) as refused:
                stub.ChangeMembership(pb.MembershipRequest(action=action, node_id=target), timeout=5)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert f"node 4's certificate may add or remove node 4 only, not node {target}" in refused.value.details()

    # The hard case: node 5 leads when it is stopped. (Transfers stick: node 5 keeps leading.)
    if leader != 5:
        transfer_leadership(pods.client(leader), 5, timeout_ms=0, timeout_s=10)
    assert pods.leader(range(1, 6))[0] == 5
    # Node 5's preStop hook, run as the kubelet runs it, against a stand-in API server (the
    # StatefulSet's replicas). A restart (still 5 replicas) keeps the member and asks no node anything...
    monkeypatch.setattr(k8s_pod, "SERVICE_ACCOUNT_DIR", kube_api.account)
    for key, value in kube_api.env.items():
        monkeypatch.setenv(key, value)
    kube_api.statefulset("bullyproof", 5)
    assert main(prestop(pods, 5)) == 0
    assert json.loads(capsys.readouterr().out)["leaves"] is False
    assert pods.leader(range(1, 6))[0] == 5 and list(pods.configuration(5).voters) == [1, 2, 3, 4, 5]
    # ...and the scale-down to 3 replicas stops both pods at once. Node 4's hook (decided alike: pod 3
    # of 3 replicas) runs as its own process; node 5's here. Both leave through the protocol, node 5
    # handing leadership down first, to a node that stays.
    kube_api.statefulset("bullyproof", 3)
    assert leaves_on_stop(3, StatefulSetState(3))[0]
    other = subprocess.Popen(
        [sys.executable, "-m", "node.cli", *prestop(pods, 4, ask_api=False)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert main(prestop(pods, 5)) == 0
    out, err = other.communicate(timeout=30)
    assert other.returncode == 0, err + out
    steps = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert steps[0]["leaves"] is True and {"step": "transfer", "from": 5, "to": 3} in steps, steps
    assert steps[-1]["left"] == 5 and json.loads(out.splitlines()[-1])["left"] == 4
    new_leader, _ = pods.leader(range(1, 4))
    assert new_leader == 3 and list(pods.configuration(new_leader).voters) == [1, 2, 3]
    # Until they stop (SIGTERM follows preStop), nodes 4 and 5 ask to be added no more: LEAVING_FILE.
    wait_for(lambda: not any(pods.names(n, n) for n in (4, 5)), 5, 0.1, what="nodes 4 and 5 to hear their removal")
    with pytest.raises(TimeoutError):  # two of their asking rounds (one election timeout each)
        wait_for(lambda: pods.names(3, 4) or pods.names(3, 5), 2.5, 0.2, what="a node to add itself back (none may)")

    # Scaled up again on its old volume (the StatefulSet keeps it): node 4 asks again, and is a voter.
    stop_pids([pods.pids.pop(4)])
    pods.start(4)
    wait_for(
        lambda: (c := pods.configuration(4)) is not None and 4 in c.voters,
        20,
        0.1,
        what="node 4 to be added again after its restart",
    )
