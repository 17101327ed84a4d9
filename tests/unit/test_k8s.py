"""`bullyproof k8s`: manifests from the cluster description, valid against Kubernetes' own schemas.

kubernetes-validate ships the schemas (no cluster, no network): strict validation rejects unknown
fields too, so a misspelt key fails here rather than being silently ignored by the API server.
"""

from __future__ import annotations

import math
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from node.cli import _without_self, build_parser, id_from_hostname, main, node_settings
from node.config import ConfigError, parse_peers
from node.launcher.k8s import k8s_documents, k8s_spec, render_k8s

K8S_VERSION = kubernetes_validate.latest_version()


def documents(n: int, mode: str = "quorum", insecure: bool = False) -> list[dict]:
    return list(yaml.safe_load_all(render_k8s(k8s_spec(n, mode, insecure=insecure), image="example/bullyproof:1")))


@pytest.mark.parametrize("mode", ["quorum", "ring"])
@pytest.mark.parametrize("insecure", [False, True])
@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_every_manifest_is_valid_against_the_kubernetes_schemas(n: int, insecure: bool, mode: str) -> None:
    """Quorum's ServiceAccount, Role and RoleBinding too (rbac.authorization.k8s.io/v1)."""
    for doc in documents(n, mode, insecure=insecure):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_is_not_vacuous() -> None:
    statefulset = next(d for d in documents(3) if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "bullyproof")
    statefulset["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, K8S_VERSION, strict=True)
    statefulset["spec"]["replicas"] = 3
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, K8S_VERSION, strict=True)
    role = next(d for d in documents(3) if d["kind"] == "Role")
    role["rules"][0]["verb"] = role["rules"][0].pop("verbs")  # the RBAC kinds are checked as strictly
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(role, K8S_VERSION, strict=True)


def test_stable_identities_volumes_probes_and_requests() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in documents(5)}
    nodes = docs["StatefulSet", "bullyproof"]["spec"]
    assert nodes["replicas"] == 5 and nodes["serviceName"] == "bullyproof"
    headless = docs["Service", "bullyproof"]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert [c["metadata"]["name"] for c in nodes["volumeClaimTemplates"]] == ["data"]
    pod = nodes["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    container = pod["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}
    assert container["volumeMounts"] == [
        {"name": "data", "mountPath": "/var/lib/bullyproof"},
        {"name": "certs", "mountPath": "/certs", "readOnly": True},
    ]
    args = container["args"]
    assert args[:2] == ["node", "--id-from-hostname"] and "--id" not in args
    # Members found from their ids (any pod a scale-up adds too), the first five the voters to start with.
    assert "--peers" not in args and "--self-join" in args
    assert args[args.index("--peer-address-template") + 1] == "bullyproof-{ordinal}.bullyproof:7000"
    assert args[args.index("--client-address-template") + 1] == "bullyproof-{ordinal}.bullyproof:7100"
    assert args[args.index("--voters") + 1] == "1,2,3,4,5"
    assert args[args.index("--store") + 1] == "bullyproof-store:7200"
    assert docs["StatefulSet", "bullyproof-store"]["spec"]["replicas"] == 1
    assert docs["PodDisruptionBudget", "bullyproof"]["spec"]["minAvailable"] == "51%"  # a majority of the replicas


def _pod(docs: list[dict], name: str) -> dict:
    return next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == name)["spec"]["template"][
        "spec"
    ]


def test_every_process_reads_only_its_own_files_from_the_secret() -> None:
    """--certs /certs from the Secret bullyproof-certs; the volume's items keep ca.key, the admin's key
    and other holders' files out of each pod, whatever the Secret holds. Keys are readable by the
    pod's group (fsGroup 10001: the image's user), not by everyone."""
    docs = documents(3)
    expected = {
        "bullyproof-store": ["ca.pem", "store.pem", "store.key"],
        "bullyproof": [
            "ca.pem",
            *(f"node-{i}.{e}" for i in range(1, 8) for e in ("pem", "key")),
            "client.pem",
            "client.key",
        ],
    }  # nodes 1..7: the pods a scale-up may add (--max-nodes)
    for name, files in expected.items():
        pod = _pod(docs, name)
        (volume,) = pod["volumes"]
        assert volume["name"] == "certs" and volume["secret"]["secretName"] == "bullyproof-certs"
        # A Secret made for 3 nodes still mounts: node pods skip the keys it lacks (and node 5 would
        # refuse to start, naming its missing file); the store's own files are required.
        assert volume["secret"].get("optional", False) is (name == "bullyproof")
        assert volume["secret"]["defaultMode"] == 0o440 and pod["securityContext"]["fsGroup"] == 10001
        assert [item["key"] for item in volume["secret"]["items"]] == files
        assert all(item["path"] == item["key"] for item in volume["secret"]["items"])
        args = pod["containers"][0]["args"]
        assert args[args.index("--certs") + 1] == "/certs" and "--insecure" not in args


def test_probes_run_bullyproof_health_with_a_certificate() -> None:
    """Kubernetes' gRPC probes cannot present a client certificate: an exec probe does, as the store
    itself, and for nodes (whose id the template does not know) as the cluster's read-only client."""
    docs = documents(3)
    node, store = _pod(docs, "bullyproof")["containers"][0], _pod(docs, "bullyproof-store")["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert node[probe]["exec"]["command"] == [
            "bullyproof",
            "health",
            "127.0.0.1:7100",
            "--certs",
            "/certs",
            "--as",
            "client",
        ]
        assert store[probe]["exec"]["command"] == [
            "bullyproof",
            "health",
            "127.0.0.1:7200",
            "--certs",
            "/certs",
            "--as",
            "store",
            "--server-name",
            "store.bullyproof",
        ]
        assert node[probe]["timeoutSeconds"] >= 5  # a Python process per probe
    assert store["args"] == k8s_spec(3).store_args("/var/lib/bullyproof/store")  # the one source for the store too


def test_insecure_is_plaintext_with_grpc_probes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    docs = documents(3, insecure=True)
    for name in ("bullyproof", "bullyproof-store"):
        pod = _pod(docs, name)
        container = pod["containers"][0]
        assert "volumes" not in pod and "--insecure" in container["args"] and "--certs" not in container["args"]
        port = 7100 if name == "bullyproof" else 7200
        assert container["readinessProbe"]["grpc"] == {"port": port} and container["livenessProbe"]["grpc"] == {
            "port": port
        }
    assert main(["k8s", "--nodes", "3", "--insecure", "--output", str(tmp_path / "k.yaml")]) == 0
    assert "warning: the manifests run --insecure" in capsys.readouterr().err


def _kinds(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.mark.parametrize("n", range(2, 26))
def test_the_disruption_budget_keeps_a_majority_of_any_size_the_set_is_scaled_to(n: int) -> None:
    """Kubernetes rounds a minAvailable percentage up, of the replicas the StatefulSet runs now."""
    percent = int(documents(3)[-1]["spec"]["minAvailable"].rstrip("%"))
    assert math.ceil(n * percent / 100) == n // 2 + 1


def test_node_pods_may_read_their_statefulset_and_nothing_else() -> None:
    """The preStop hook reads spec.replicas: a ServiceAccount bound to a Role with `get` on the one
    StatefulSet. Only node pods mount a token (the account's default is off); the store's none."""
    docs = _kinds(documents(3))
    role = docs["Role", "bullyproof"]
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["statefulsets"], "resourceNames": ["bullyproof"], "verbs": ["get"]}
    ]
    binding = docs["RoleBinding", "bullyproof"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "bullyproof"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "bullyproof"}]  # in the binding's namespace
    assert docs["ServiceAccount", "bullyproof"]["automountServiceAccountToken"] is False
    node, store = _pod(list(docs.values()), "bullyproof"), _pod(list(docs.values()), "bullyproof-store")
    assert node["serviceAccountName"] == "bullyproof" and node["automountServiceAccountToken"] is True
    assert "serviceAccountName" not in store and store["automountServiceAccountToken"] is False


def test_a_scaled_down_pod_leaves_in_its_prestop_hook_within_its_grace_period() -> None:
    pod = _pod(documents(3), "bullyproof")
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command == [
        "bullyproof",
        "leave",
        "--id-from-hostname",
        "--client-address-template",
        "bullyproof-{ordinal}.bullyproof:7100",
        "--members",
        "1,2,3",
        "--state-dir",
        "/var/lib/bullyproof/state",
        "--statefulset",
        "bullyproof",
        "--timeout-s",
        "40",
        "--certs",
        "/certs",
    ]
    assert command[command.index("--state-dir") + 1] == container["args"][container["args"].index("--state-dir") + 1]
    assert pod["terminationGracePeriodSeconds"] >= int(command[command.index("--timeout-s") + 1]) + 10
    args = build_parser().parse_args(command[1:])  # what the CLI takes
    assert args.statefulset == "bullyproof" and args.members == (1, 2, 3)


def test_a_rolling_update_replaces_one_pod_at_a_time_as_timing_changes_need() -> None:
    """docs/operating.md: change timings one node at a time. RollingUpdate replaces one pod at a time
    (highest ordinal first) once the one before is ready, and ready for minReadySeconds."""
    text = render_k8s(k8s_spec(3, election_timeout_ms=4000), image="img")
    nodes = _kinds(list(yaml.safe_load_all(text)))["StatefulSet", "bullyproof"]["spec"]
    assert nodes["updateStrategy"] == {"type": "RollingUpdate"} and "rollingUpdate" not in nodes["updateStrategy"]
    assert nodes["minReadySeconds"] == 8  # two election timeouts
    assert "replace one pod at a time" in text and "ready\n# for 8s" in text and "--replicas N (N <= 7)" in text


def test_a_timing_change_is_a_change_of_the_pod_template_alone(tmp_path: Path) -> None:
    """`bullyproof k8s --election-timeout-ms 1000` then `kubectl apply`: only the node pods' command
    line differs, so the StatefulSet rolls it out one pod at a time (and nothing else moves)."""
    before, after = tmp_path / "before.yaml", tmp_path / "after.yaml"
    assert main(["k8s", "--nodes", "3", "--output", str(before)]) == 0
    assert (
        main(
            [
                "k8s",
                "--nodes",
                "3",
                "--election-timeout-ms",
                "1000",
                "--heartbeat-interval-ms",
                "200",
                "--output",
                str(after),
            ]
        )
        == 0
    )
    old, new = list(yaml.safe_load_all(before.read_text())), list(yaml.safe_load_all(after.read_text()))
    changed = [(a["kind"], a["metadata"]["name"]) for a, b in zip(old, new, strict=True) if a != b]
    assert changed == [("StatefulSet", "bullyproof")]
    a, b = (_pod(docs, "bullyproof")["containers"][0] for docs in (old, new))
    assert {k for k in a if a[k] != b[k]} == {"args"}
    assert b["args"][b["args"].index("--election-timeout-ms") + 1] == "1000"
    assert main(["k8s", "--nodes", "3", "--election-timeout-ms", "200", "--output", str(after)]) == 2  # < 3 heartbeats


@pytest.mark.parametrize("pod, starts_outside", [(0, False), (2, False), (3, True), (6, True)])
def test_every_pod_runs_the_template_inside_or_outside_the_configuration(pod: int, starts_outside: bool) -> None:
    """The template's flags as node N+1 takes them (insecure: no files to read here): pods below
    --nodes start as voters, any a scale-up adds starts outside and asks (--self-join)."""
    args = _pod(documents(3, insecure=True), "bullyproof")["containers"][0]["args"]
    argv = [a for a in args if a != "--id-from-hostname"] + ["--id", str(pod + 1)]
    settings = node_settings(build_parser().parse_args(argv))
    assert settings.starts_outside is starts_outside and settings.self_join
    assert settings.peer_address(pod + 2) == f"bullyproof-{pod + 1}.bullyproof:7000"
    assert settings.client_address(1) == "bullyproof-0.bullyproof:7100"


def test_modes_that_keep_their_list_do_not_scale(tmp_path: Path) -> None:
    """Ring cannot change members: its pods keep the whole --peers list, and it gets no hook, no
    account and no certificates past --nodes. (Whether a mode scales is its own: mode_info.)"""
    docs = _kinds(documents(3, mode="ring"))
    assert not any(kind in ("Role", "RoleBinding", "ServiceAccount") for kind, _ in docs)
    pod = _pod(list(docs.values()), "bullyproof")
    container = pod["containers"][0]
    assert "lifecycle" not in container and "--self-join" not in container["args"]
    assert container["args"][container["args"].index("--peers") + 1].startswith("1=bullyproof-0.bullyproof:7000,")
    assert len(pod["volumes"][0]["secret"]["items"]) == 1 + 2 * 3 + 2
    assert "keeps its start-up member list" in render_k8s(k8s_spec(3, "ring"))
    with pytest.raises(ConfigError, match="mode ring keeps its start-up list: it cannot grow past --nodes"):
        render_k8s(k8s_spec(3, "ring"), max_nodes=5)


def test_max_nodes_sets_how_far_the_set_may_grow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "k8s.yaml"
    assert main(["k8s", "--nodes", "3", "--max-nodes", "5", "--output", str(out)]) == 0
    docs = list(yaml.safe_load_all(out.read_text()))
    keys = [i["key"] for i in _pod(docs, "bullyproof")["volumes"][0]["secret"]["items"]]
    assert "node-5.key" in keys and "node-6.pem" not in keys and "(N <= 5)" in out.read_text()
    assert main(["k8s", "--nodes", "3", "--max-nodes", "2", "--output", str(out)]) == 2
    assert "--max-nodes must be between --nodes (3) and 25, got 2" in capsys.readouterr().err


def test_the_same_description_as_compose_and_local() -> None:
    """Timings and mode come from the ClusterSpec's node_args, as for local processes and compose."""
    spec = k8s_spec(3, "raft", heartbeat_interval_ms=50, election_timeout_ms=300)
    args = next(
        d for d in k8s_documents(spec, "img") if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "bullyproof"
    )["spec"]["template"]["spec"]["containers"][0]["args"]
    local = spec.node_args(spec.nodes[0], "/var/lib/bullyproof/state", "/var/lib/bullyproof/events.jsonl")
    for flag in (
        "--mode",
        "--heartbeat-interval-ms",
        "--election-timeout-ms",
        "--write-period-ms",
        "--state-dir",
        "--events",
    ):
        assert args[args.index(flag) + 1] == local[local.index(flag) + 1]


@pytest.mark.parametrize(
    "hostname, node_id",
    [("bullyproof-0", 1), ("bullyproof-4", 5), ("bullyproof-12.bullyproof.default.svc.cluster.local", 13)],
)
def test_the_pod_ordinal_is_the_node_id_minus_one(hostname: str, node_id: int) -> None:
    assert id_from_hostname(hostname) == node_id


@pytest.mark.parametrize("hostname", ["bullyproof", "node-x", "web-"])
def test_a_hostname_without_an_ordinal_is_refused(hostname: str) -> None:
    with pytest.raises(ConfigError, match="does not end in -N"):
        id_from_hostname(hostname)


def test_each_pod_drops_its_own_entry_from_the_membership() -> None:
    members = "1=a:7000,2=b:7000,3=c:7000"
    assert parse_peers(_without_self(members, 2), 2) == {1: "a:7000", 3: "c:7000"}


def test_cli_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "k8s.yaml"
    assert main(["k8s", "--nodes", "3", "--output", str(out), "--image", "example/bullyproof:2"]) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(out.read_text())]
    assert kinds.count("StatefulSet") == 2 and "example/bullyproof:2" in out.read_text()
