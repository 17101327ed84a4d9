"""Inside a pod: the preStop decision (a pure function) and reading the StatefulSet from the API.

No Kubernetes here: the API is a stand-in HTTPS server on loopback (tests/conftest.py, kube_api) that
answers what the API server would (the object, 404, 403), checks the bearer token and is verified
against the account's ca.crt as the real one is. What it cannot show is the real server's RBAC and
the kubelet running the hook.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.cli import main
from node.launcher import k8s_pod
from node.launcher.k8s_pod import StatefulSetState, StatefulSetUnreadable, leaves_on_stop, read_statefulset
from node.tls import make_cluster_certs


@pytest.mark.parametrize(
    "ordinal, state, leaves",
    [
        (3, StatefulSetState(3), True),  # 4 -> 3: the pod of ordinal 3 goes
        (4, StatefulSetState(3), True),  # 5 -> 3: so does 4
        (2, StatefulSetState(3), False),  # a restart (rolling update, drain, eviction) of a pod that stays
        (0, StatefulSetState(1), False),
        (3, StatefulSetState(7), False),  # scaled up meanwhile: stays
        (2, StatefulSetState(0), False),  # scaled to zero: the cluster stops, members stay
        (2, StatefulSetState(None), False),  # the StatefulSet deleted: likewise
        (2, StatefulSetState(1, deleting=True), False),  # being deleted: likewise
        (2, None, False),  # unreadable: decide nothing
    ],
)
def test_only_a_scale_down_below_the_pod_leaves(ordinal: int, state: StatefulSetState | None, leaves: bool) -> None:
    decided, why = leaves_on_stop(ordinal, state)
    assert decided is leaves and why


def test_a_negative_ordinal_is_a_bug() -> None:
    with pytest.raises(ValueError):
        leaves_on_stop(-1, StatefulSetState(3))


PATH = "/apis/apps/v1/namespaces/prod/statefulsets/bullyproof"


def test_the_statefulset_is_read_in_the_pods_namespace_with_its_token(kube_api) -> None:
    account, env = kube_api.account, kube_api.env
    kube_api.statefulset("bullyproof", 3)
    assert read_statefulset("bullyproof", account, env) == StatefulSetState(3)
    assert kube_api.seen == [(PATH, "Bearer pod-token")]
    kube_api.objects[PATH] = {"metadata": {"deletionTimestamp": "2030-01-01T00:00:00Z"}, "spec": {"replicas": 3}}
    assert read_statefulset("bullyproof", account, env) == StatefulSetState(3, deleting=True)
    kube_api.objects[PATH] = {"metadata": {}, "spec": {}}
    assert read_statefulset("bullyproof", account, env) == StatefulSetState(1)  # the API's default
    assert read_statefulset("gone", account, env) == StatefulSetState(None)  # 404


def test_what_cannot_be_read_says_why(kube_api, tmp_path: Path) -> None:
    account, env = kube_api.account, kube_api.env
    kube_api.statefulset("bullyproof", 3)
    (account / "token").write_text("someone else's")
    with pytest.raises(
        StatefulSetUnreadable, match=r"HTTP 403 .*needs `get` on statefulsets/bullyproof in namespace prod"
    ):
        read_statefulset("bullyproof", account, env)
    other_ca = make_cluster_certs(tmp_path / "other", 1)["store"].ca
    (account / "ca.crt").write_bytes(other_ca.read_bytes())  # an API server we cannot verify: refused
    with pytest.raises(StatefulSetUnreadable, match="CERTIFICATE_VERIFY_FAILED"):
        read_statefulset("bullyproof", account, env)
    with pytest.raises(StatefulSetUnreadable, match="KUBERNETES_SERVICE_HOST is not set"):
        read_statefulset("bullyproof", account, {})
    with pytest.raises(StatefulSetUnreadable, match="cannot read the pod's service account"):
        read_statefulset("bullyproof", tmp_path / "none", env)


def test_the_prestop_hook_keeps_the_member_of_a_restarted_pod(kube_api, monkeypatch, capsys) -> None:
    """`bullyproof leave --statefulset` in pod bullyproof-1 (node 2) of a StatefulSet of 3: a restart.
    It decides from the API alone and asks no node anything (the addresses lead nowhere)."""
    monkeypatch.setattr(k8s_pod, "SERVICE_ACCOUNT_DIR", kube_api.account)
    for key, value in kube_api.env.items():
        monkeypatch.setenv(key, value)
    kube_api.statefulset("bullyproof", 3)
    argv = [
        "leave",
        "--id",
        "2",
        "--client-address-template",
        "192.0.2.{id}:1",
        "--statefulset",
        "bullyproof",
        "--insecure",
    ]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == {
        "node": 2,
        "leaves": False,
        "why": "the StatefulSet still runs 3 pods, this one included (pod 1): a restart",
    }
    (kube_api.account / "token").write_text("revoked")
    assert main(argv) == 0  # unreadable: warned, and the member stays
    out = capsys.readouterr()
    assert json.loads(out.out)["leaves"] is False and "warning: GET https://127.0.0.1" in out.err


def test_leaders_leaving_together_hand_leadership_down_never_back() -> None:
    """A StatefulSet scaled from 5 to 3 stops pods 3 and 4 (nodes 4 and 5) at once. Had each handed
    leadership to the highest other voter, 5 would hand it to 4 and 4 back to 5 (seen on real
    processes: neither left within 40 s). Each hands it to a lower voter that stays."""
    from node.client.leave import choose_successor

    stays = lambda node: node <= 3  # noqa: E731 (replicas 3: nodes 1..3)
    assert choose_successor(5, [1, 2, 3, 4], stays) == 3 and choose_successor(4, [1, 2, 3, 5], stays) == 3
    anyone = lambda node: True  # noqa: E731 (no StatefulSet to ask: a plain `bullyproof leave`)
    assert choose_successor(5, [1, 2, 3, 4], anyone) == 4 and choose_successor(4, [1, 2, 3, 5], anyone) == 3
    assert choose_successor(1, [2, 3], anyone) == 3  # the lowest node leaving: the highest other voter
    assert choose_successor(2, [1, 3], lambda node: node != 1) == 3  # a voter that stays, over one below
