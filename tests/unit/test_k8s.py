"""`bullyproof k8s`: manifests from the cluster description, valid against Kubernetes' own schemas.

kubernetes-validate ships the schemas (no cluster, no network): strict validation rejects unknown
fields too, so a misspelt key fails here rather than being silently ignored by the API server.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from node.cli import _without_self, id_from_hostname, main
from node.config import ConfigError, parse_peers
from node.launcher.k8s import k8s_documents, k8s_spec, render_k8s

K8S_VERSION = kubernetes_validate.latest_version()


def documents(n: int, mode: str = "quorum", insecure: bool = False) -> list[dict]:
    return list(yaml.safe_load_all(render_k8s(k8s_spec(n, mode, insecure=insecure), image="example/bullyproof:1")))


@pytest.mark.parametrize("insecure", [False, True])
@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_every_manifest_is_valid_against_the_kubernetes_schemas(n: int, insecure: bool) -> None:
    for doc in documents(n, insecure=insecure):
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
    assert container["volumeMounts"] == [{"name": "data", "mountPath": "/var/lib/bullyproof"},
                                         {"name": "certs", "mountPath": "/certs", "readOnly": True}]
    args = container["args"]
    assert args[:2] == ["node", "--id-from-hostname"] and "--id" not in args
    assert args[args.index("--peers") + 1] == ",".join(f"{i}=bullyproof-{i - 1}.bullyproof:7000" for i in range(1, 6))
    assert args[args.index("--store") + 1] == "bullyproof-store:7200"
    assert docs["StatefulSet", "bullyproof-store"]["spec"]["replicas"] == 1
    assert docs["PodDisruptionBudget", "bullyproof"]["spec"]["minAvailable"] == 3  # a majority of 5


def _pod(docs: list[dict], name: str) -> dict:
    return next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == name)["spec"]["template"]["spec"]


def test_every_process_reads_only_its_own_files_from_the_secret() -> None:
    """--certs /certs from the Secret bullyproof-certs; the volume's items keep ca.key, the admin's key
    and other holders' files out of each pod, whatever the Secret holds. Keys are readable by the
    pod's group (fsGroup 10001: the image's user), not by everyone."""
    docs = documents(3)
    expected = {"bullyproof-store": ["ca.pem", "store.pem", "store.key"],
                "bullyproof": ["ca.pem", *(f"node-{i}.{e}" for i in (1, 2, 3) for e in ("pem", "key")), "client.pem", "client.key"]}
    for name, files in expected.items():
        pod = _pod(docs, name)
        (volume,) = pod["volumes"]
        assert volume["name"] == "certs" and volume["secret"]["secretName"] == "bullyproof-certs"
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
        assert node[probe]["exec"]["command"] == ["bullyproof", "health", "127.0.0.1:7100", "--certs", "/certs", "--as", "client"]
        assert store[probe]["exec"]["command"] == ["bullyproof", "health", "127.0.0.1:7200", "--certs", "/certs", "--as",
                                                   "store", "--server-name", "store.bullyproof"]
        assert node[probe]["timeoutSeconds"] >= 5  # a Python process per probe
    assert store["args"] == k8s_spec(3).store_args("/var/lib/bullyproof/store")  # the one source for the store too


def test_insecure_is_plaintext_with_grpc_probes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    docs = documents(3, insecure=True)
    for name in ("bullyproof", "bullyproof-store"):
        pod = _pod(docs, name)
        container = pod["containers"][0]
        assert "volumes" not in pod and "--insecure" in container["args"] and "--certs" not in container["args"]
        port = 7100 if name == "bullyproof" else 7200
        assert container["readinessProbe"]["grpc"] == {"port": port} and container["livenessProbe"]["grpc"] == {"port": port}
    assert main(["k8s", "--nodes", "3", "--insecure", "--output", str(tmp_path / "k.yaml")]) == 0
    assert "warning: the manifests run --insecure" in capsys.readouterr().err


def test_the_same_description_as_compose_and_local() -> None:
    """Timings and mode come from the ClusterSpec's node_args, as for local processes and compose."""
    spec = k8s_spec(3, "raft", heartbeat_interval_ms=50, election_timeout_ms=300)
    args = next(d for d in k8s_documents(spec, "img") if d["kind"] == "StatefulSet"
                and d["metadata"]["name"] == "bullyproof")["spec"]["template"]["spec"]["containers"][0]["args"]
    local = spec.node_args(spec.nodes[0], "/var/lib/bullyproof/state", "/var/lib/bullyproof/events.jsonl")
    for flag in ("--mode", "--heartbeat-interval-ms", "--election-timeout-ms", "--write-period-ms", "--state-dir", "--events"):
        assert args[args.index(flag) + 1] == local[local.index(flag) + 1]


@pytest.mark.parametrize("hostname, node_id", [("bullyproof-0", 1), ("bullyproof-4", 5),
                                                ("bullyproof-12.bullyproof.default.svc.cluster.local", 13)])
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
