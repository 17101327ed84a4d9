"""docker-compose.yml and toxiproxy.json: generated from the cluster description, and what they promise.

No containers here (tests/compose runs them); these check the files, the lock the image installs,
the certificates `bullyproof compose` makes and `bullyproof certs install` hands to the containers,
and the `--compose` CLI's errors when no cluster is up.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from chaos.tools import TOXIPROXY_VERSION
from node import channels
from node.cli import main
from node.config import ConfigError
from node.launcher.cluster import STORE, directed_links, link_name
from node.launcher.compose import (
    CLIENT_PORT,
    TOXIPROXY,
    TOXIPROXY_CONFIG,
    Published,
    compose_cluster,
    ensure_certs,
    link_port,
    read_compose_file,
    render_compose,
    render_toxiproxy_config,
    write_files,
)
from node.launcher.ports import free_port
from node.tls import STORE_NAME, Identity, TlsError, identity_in, install_certs, make_cluster_certs, node_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def committed() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_committed_files_match_the_generator() -> None:
    """Drift: the committed compose file and Toxiproxy config are exactly what `bullyproof compose` writes."""
    cc = compose_cluster(5, toxiproxy_version=TOXIPROXY_VERSION)
    assert (ROOT / "docker-compose.yml").read_text() == render_compose(cc)
    assert (ROOT / TOXIPROXY_CONFIG).read_text() == render_toxiproxy_config(cc)


def test_check_fails_on_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "docker-compose.yml"
    assert main(["compose", "--output", str(out)]) == 0
    assert main(["compose", "--output", str(out), "--check"]) == 0
    (tmp_path / TOXIPROXY_CONFIG).write_text("[]\n")
    capsys.readouterr()
    assert main(["compose", "--output", str(out), "--check"]) == 1
    assert TOXIPROXY_CONFIG in capsys.readouterr().err


def test_one_proxy_per_directed_link_and_every_dial_goes_through_it() -> None:
    n = 4
    cc = compose_cluster(n, toxiproxy_version=TOXIPROXY_VERSION)
    proxies = {p["name"]: p for p in json.loads(render_toxiproxy_config(cc))}
    peer_links = {link_name(a, b) for a in range(1, n + 1) for b in range(1, n + 1) if a != b}
    store_links = {link_name(a, STORE) for a in range(1, n + 1)}
    assert set(proxies) == peer_links | store_links  # n(n-1) + n, the same links as a local chaos run
    for node in cc.spec.nodes:
        for peer, address in node.dial.items():
            proxy = proxies[link_name(node.id, peer)]
            assert address == f"{TOXIPROXY}:{proxy['listen'].rsplit(':', 1)[1]}"
            assert proxy["upstream"] == f"node{peer}:7000"
        store_proxy = proxies[link_name(node.id, STORE)]
        assert cc.spec.store_dial[node.id] == f"{TOXIPROXY}:{store_proxy['listen'].rsplit(':', 1)[1]}"
        assert store_proxy["upstream"] == "store:7200"
    assert len({p["listen"] for p in proxies.values()}) == len(proxies)


def test_link_ports_are_distinct_up_to_the_largest_cluster() -> None:
    cc = compose_cluster(25, toxiproxy_version=TOXIPROXY_VERSION)
    ports = [link_port(link) for link in directed_links(cc.spec)]
    assert len(set(ports)) == len(ports) == 25 * 24 + 25 and max(ports) < 65536


def test_services_are_healthchecked_and_wait_for_healthy_dependencies(committed: dict) -> None:
    services = committed["services"]
    assert list(services) == ["certs", "store", TOXIPROXY, *(f"node{i}" for i in range(1, 6))]
    for name, service in services.items():
        if name == "certs":
            assert "healthcheck" not in service and "ports" not in service  # a one-shot copy: it exits
            continue
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD"
        if name == TOXIPROXY:
            assert test[1:] == ["/toxiproxy-cli", "-h", "http://127.0.0.1:8474", "list"]  # its HTTP API
        elif name == "store":  # gRPC health over mutual TLS, as the store itself, verifying the store's name
            assert test[1:] == [
                "bullyproof",
                "health",
                "127.0.0.1:7200",
                "--certs",
                "/certs",
                "--as",
                "store",
                "--server-name",
                STORE_NAME,
            ]
        else:  # a node asks itself as itself (the default server name: any member)
            assert test[1:] == [
                "bullyproof",
                "health",
                "127.0.0.1:7100",
                "--certs",
                "/certs",
                "--as",
                f"node-{name[4:]}",
            ]
        assert all(port.startswith("127.0.0.1:") for port in service["ports"])  # published on loopback only
    copied = {"certs": {"condition": "service_completed_successfully"}}
    assert services["store"]["depends_on"] == copied
    assert services["store"]["volumes"] == ["store-data:/var/lib/bullyproof", "store-certs:/certs:ro"]
    for i in range(1, 6):
        node = services[f"node{i}"]
        assert node["depends_on"] == {
            **copied,
            "store": {"condition": "service_healthy"},
            TOXIPROXY: {"condition": "service_healthy"},
        }
        assert node["volumes"] == [f"node{i}-state:/var/lib/bullyproof", f"node{i}-certs:/certs:ro"]
    assert set(committed["volumes"]) == {
        "store-data",
        "store-certs",
        *(f"node{i}-{v}" for i in range(1, 6) for v in ("state", "certs")),
    }


def test_commands_come_from_the_cluster_spec_with_certificates(committed: dict) -> None:
    """One source for every command line: ClusterSpec.node_args and store_args, with --certs /certs."""
    cc = compose_cluster(5, toxiproxy_version=TOXIPROXY_VERSION)
    services = committed["services"]
    assert cc.spec.certs_dir == "/certs"
    assert services["store"]["command"] == cc.spec.store_args("/var/lib/bullyproof/store")
    for node in cc.spec.nodes:
        command = services[f"node{node.id}"]["command"]
        assert command == cc.spec.node_args(node, "/var/lib/bullyproof/state", "/var/lib/bullyproof/events.jsonl")
        assert command[command.index("--certs") + 1] == "/certs" and "--insecure" not in command


def test_the_certs_service_gives_each_container_only_its_own_key(committed: dict) -> None:
    """Root, no network, the host's certs/ read-only; one volume per holder, mounted where that holder's
    container reads /certs. ca.key, admin and client keys never reach a volume."""
    certs = committed["services"]["certs"]
    assert certs["build"] == {"context": ".", "dockerfile": "Dockerfile"}  # the first service to run the image
    assert "build" not in committed["services"]["store"] and certs["image"] == committed["services"]["store"]["image"]
    assert certs["user"] == "0" and certs["network_mode"] == "none"
    holders = {"store": "store", **{f"node{i}": f"node-{i}" for i in range(1, 6)}}
    assert certs["volumes"] == ["./certs:/host-certs:ro", *(f"{s}-certs:/certs/{h}" for s, h in holders.items())]
    command = certs["command"]
    assert command[:9] == [
        "certs",
        "install",
        "--from",
        "/host-certs",
        "--to",
        "/certs",
        "--owner",
        "10001:10001",
        "--split",
    ]
    assert command[9::2] == ["--holder"] * 6 and command[10::2] == list(holders.values())
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile  # --owner is the image's user


def test_the_record_names_the_certificates_relative_to_the_file(committed: dict) -> None:
    assert committed["x-bullyproof"]["certs"] == "certs"
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/certs/" in ignored  # the host's certificates (and the CA's key) are never checked in
    assert (ROOT / ".dockerignore").read_text().splitlines()[1] == "*"  # nor sent to an image build


def test_insecure_renders_a_plaintext_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "docker-compose.yml"
    assert main(["compose", "--insecure", "--nodes", "3", "--output", str(out)]) == 0
    assert "warning: the compose cluster runs --insecure: plaintext" in capsys.readouterr().err
    assert not (tmp_path / "certs").exists()
    document = yaml.safe_load(out.read_text())
    services = document["services"]
    assert list(services) == ["store", TOXIPROXY, "node1", "node2", "node3"]
    assert services["store"]["build"]["dockerfile"] == "Dockerfile"
    for name in ("store", "node1", "node2", "node3"):
        assert "--insecure" in services[name]["command"]
        assert "--certs" not in services[name]["command"]
        assert services[name]["healthcheck"]["test"][-1] == "--insecure"
        assert not any("certs" in v for v in services[name]["volumes"])
    assert document["x-bullyproof"]["certs"] is None
    assert main(["compose", "--insecure", "--nodes", "3", "--output", str(out), "--check"]) == 0
    assert main(["compose", "--nodes", "3", "--output", str(out), "--check"]) == 1  # TLS is a different file
    record = read_compose_file(out)
    assert record["certs"] is None
    assert record["nodes"][0]["client_address"] not in channels._dial_book  # plaintext


def test_compose_makes_certificates_once_and_check_never_touches_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "docker-compose.yml"
    write_files(compose_cluster(3, toxiproxy_version=TOXIPROXY_VERSION), out)
    assert main(["compose", "--nodes", "3", "--output", str(out), "--check"]) == 0
    assert not (tmp_path / "certs").exists()  # secrets, per machine: never part of --check
    assert main(["compose", "--nodes", "3", "--output", str(out)]) == 0
    assert "made certificates in" in capsys.readouterr().out
    certs = tmp_path / "certs"
    assert {identity_in(certs / f"{h}.pem") for h in ("node-1", "node-2", "node-3", "store", "admin", "client")} == {
        Identity("node", "1"),
        Identity("node", "2"),
        Identity("node", "3"),
        Identity("store"),
        Identity("admin", "admin"),
        Identity("client", "client"),
    }
    for key in certs.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    before = {p.name: p.read_bytes() for p in certs.iterdir()}
    assert main(["compose", "--nodes", "3", "--output", str(out)]) == 0
    assert "kept certificates in" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in certs.iterdir()} == before  # a complete set is left alone
    (certs / "ca.key").unlink()  # an operator who keeps the CA's key elsewhere: still complete
    assert main(["compose", "--nodes", "3", "--output", str(out)]) == 0
    assert "kept certificates in" in capsys.readouterr().out and not (certs / "ca.key").exists()
    (certs / "ca.key").write_bytes(before["ca.key"])
    # A bigger cluster: node-4 is missing, so certificates are made again under the same CA.
    assert main(["compose", "--nodes", "4", "--output", str(out)]) == 0
    assert (certs / "ca.pem").read_bytes() == before["ca.pem"] and (certs / "node-4.pem").exists()
    assert main(["compose", "--nodes", "4", "--output", str(out), "--check"]) == 0


def test_toxiproxy_is_pinned_to_the_version_the_local_setup_builds(committed: dict) -> None:
    toxiproxy = committed["services"][TOXIPROXY]
    assert toxiproxy["image"] == f"bullyproof-toxiproxy:{TOXIPROXY_VERSION}"
    assert toxiproxy["build"]["args"] == {"TOXIPROXY_VERSION": TOXIPROXY_VERSION}
    assert toxiproxy["volumes"] == [f"./{TOXIPROXY_CONFIG}:/etc/toxiproxy/toxiproxy.json:ro"]
    dockerfile = (ROOT / "Dockerfile.toxiproxy").read_text()
    assert "github.com/Shopify/toxiproxy/v2/cmd/server@v${TOXIPROXY_VERSION}" in dockerfile
    assert (
        "-X github.com/Shopify/toxiproxy/v2.Version=${TOXIPROXY_VERSION}" in dockerfile
    )  # as .ci/install-tools stamps it
    script = (ROOT / ".ci" / "install-containers").read_text()
    assert 'TOXIPROXY_VERSION="$(sed -n' in script  # the stand-in image reads the same pin


def test_the_image_is_multi_stage_non_root_and_installs_the_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", dockerfile, re.MULTILINE)
    assert [s[1] for s in stages] == ["build", ""], stages  # the final stage copies from `build` only
    final = dockerfile.split("\nFROM ${PYTHON_IMAGE}\n", 1)[1]
    assert "COPY --from=build /opt/bullyproof /opt/bullyproof" in final and "pip" not in final
    assert re.search(r"^USER 10001:10001$", final, re.MULTILINE)
    assert "--no-deps --only-binary=:all: -r /src/requirements.lock" in dockerfile


def test_the_lock_pins_every_runtime_dependency_at_pyproject_s_version() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"requirements.lock: {line!r} is not NAME==VERSION"
            lock[re.sub(r"[-_.]+", "-", name).lower()] = version
    for dep in deps:
        name, op, version = re.match(r"([A-Za-z0-9_.-]+)\s*(==|>=|<=|~=|>|<)?\s*([^;\s]*)", dep).groups()
        key = re.sub(r"[-_.]+", "-", name).lower()
        assert key in lock, f"{name} is a dependency but not in requirements.lock: run python .ci/lock-requirements"
        if op == "==":
            assert lock[key] == version, f"{name}: pyproject pins {version}, the lock {lock[key]}"


def test_read_compose_file_gives_the_published_addresses(tmp_path: Path) -> None:
    published = Published({1: 17101, 2: 17102, 3: 17103}, {1: 19101, 2: 19102, 3: 19103}, 17200, 18474)
    cc = compose_cluster(3, "classic", toxiproxy_version=TOXIPROXY_VERSION, published=published)
    write_files(cc, tmp_path / "docker-compose.yml")
    ensure_certs(cc, tmp_path / "docker-compose.yml")
    record = read_compose_file(tmp_path / "docker-compose.yml")
    assert record["mode"] == "classic" and record["toxiproxy_api"] == "127.0.0.1:18474"
    assert record["certs"] == str(tmp_path / "certs")  # absolute: the CLI may run from anywhere
    # From now on the published ports are dialled as the admin of certs/, verifying the servers' own names.
    tls, name = channels._dial_book["127.0.0.1:17102"]
    assert (tls.cert, tls.key, tls.ca) == (
        tmp_path / "certs/admin.pem",
        tmp_path / "certs/admin.key",
        tmp_path / "certs/ca.pem",
    )
    assert name == node_name(2) and channels._dial_book["127.0.0.1:17200"][1] == STORE_NAME
    assert record["store"] == {"service": "store", "address": "127.0.0.1:17200"}
    assert [(n["id"], n["service"], n["client_address"]) for n in record["nodes"]] == [
        (i, f"node{i}", f"127.0.0.1:{17100 + i}") for i in (1, 2, 3)
    ]
    ports = yaml.safe_load((tmp_path / "docker-compose.yml").read_text())["services"]["node2"]["ports"]
    assert ports[0] == f"127.0.0.1:17102:{CLIENT_PORT}"


def test_read_compose_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no compose file at"):
        read_compose_file(tmp_path / "missing.yml")
    (tmp_path / "other.yml").write_text("services: {}\n")
    with pytest.raises(ConfigError, match="not written by bullyproof compose"):
        read_compose_file(tmp_path / "other.yml")
    write_files(compose_cluster(2, toxiproxy_version=TOXIPROXY_VERSION), tmp_path / "dc.yml")  # no certs/ yet
    with pytest.raises(
        ConfigError, match=r"runs mutual TLS, but cannot read .*certs/ca.pem.*bullyproof compose --output"
    ):
        read_compose_file(tmp_path / "dc.yml")


@pytest.fixture
def idle_compose_file(tmp_path: Path) -> Path:
    """A compose file whose published ports nothing listens on: a compose cluster that is not up."""
    ids = [1, 2, 3]
    published = Published({i: free_port() for i in ids}, {i: free_port() for i in ids}, free_port(), free_port())
    cc = compose_cluster(3, toxiproxy_version=TOXIPROXY_VERSION, published=published)
    write_files(cc, tmp_path / "dc.yml")
    ensure_certs(cc, tmp_path / "dc.yml")
    return tmp_path / "dc.yml"


@pytest.mark.parametrize(
    "command",
    [["leader"], ["status"], ["resign"], ["transfer", "2"], ["chaos", "heal"], ["chaos", "partition", "1", "/", "2,3"]],
)
def test_compose_commands_say_in_one_line_when_the_cluster_is_not_up(
    idle_compose_file: Path, command: list[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "node.cli", *command, "--compose", str(idle_compose_file)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=idle_compose_file.parent,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2, done
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "up" in done.stderr and str(idle_compose_file) in done.stderr, done.stderr


def test_dir_and_compose_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["leader", "--dir", "x", "--compose", "y"])
    assert "not allowed with" in capsys.readouterr().err


# ---- bullyproof certs install: what the certs service runs ------------------------------------------


@pytest.fixture
def made(tmp_path: Path) -> Path:
    make_cluster_certs(tmp_path / "host", 3)
    return tmp_path / "host"


def _listing(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in sorted(directory.iterdir())}


def test_install_split_gives_each_holder_its_own_directory(made: Path, tmp_path: Path) -> None:
    owner = (os.getuid(), os.getgid())  # chown to ourselves needs no root; the container passes 10001:10001
    dest = tmp_path / "volumes"
    placed = install_certs(made, dest, owner=owner, holders=["store", "node-*"], split=True)
    assert placed == {h: dest / h for h in ("node-1", "node-2", "node-3", "store")}
    assert sorted(p.name for p in dest.iterdir()) == ["node-1", "node-2", "node-3", "store"]  # no admin, no client
    for holder, where in placed.items():
        assert _listing(where) == {"ca.pem": 0o644, f"{holder}.key": 0o600, f"{holder}.pem": 0o644}
        assert (where / f"{holder}.key").read_bytes() == (made / f"{holder}.key").read_bytes()
        assert all((p.stat().st_uid, p.stat().st_gid) == owner for p in where.iterdir())
    # Again (every `up` runs it): replaced in place, no temporary files left behind.
    install_certs(made, dest, holders=["node-1"], split=True)
    assert _listing(dest / "node-1") == {"ca.pem": 0o644, "node-1.key": 0o600, "node-1.pem": 0o644}


def test_install_flat_copies_every_holder_but_never_the_ca_key(made: Path, tmp_path: Path) -> None:
    old = os.umask(0o077)  # whatever the umask, certificates end up 0644
    try:
        install_certs(made, tmp_path / "flat")
    finally:
        os.umask(old)
    listing = _listing(tmp_path / "flat")
    holders = ["admin", "client", "node-1", "node-2", "node-3", "store"]
    assert listing == {
        "ca.pem": 0o644,
        **{f"{h}.{e}": 0o600 if e == "key" else 0o644 for h in holders for e in ("pem", "key")},
    }
    assert "ca.key" not in listing


def test_install_says_in_one_line_what_is_missing(
    made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"  # what compose bind-mounts when certs/ was never made: an empty directory
    empty.mkdir()
    assert main(["certs", "install", "--from", str(empty), "--to", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"no ca.pem in {empty}" in err and "bullyproof compose" in err, err
    assert not (tmp_path / "out").exists()
    with pytest.raises(TlsError, match="no certificate and key for node-9"):
        install_certs(made, tmp_path / "out", holders=["node-9"])
    with pytest.raises(SystemExit):
        main(["certs", "install", "--from", str(made), "--to", str(tmp_path / "out"), "--owner", "bullyproof"])
    assert "expected UID:GID" in capsys.readouterr().err


def test_install_cli_is_the_command_the_certs_service_runs(
    made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "certs"
    owner = f"{os.getuid()}:{os.getgid()}"
    assert (
        main(
            [
                "certs",
                "install",
                "--from",
                str(made),
                "--to",
                str(dest),
                "--owner",
                owner,
                "--split",
                "--holder",
                "store",
                "--holder",
                "node-2",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["holders"] == {
        "node-2": str(dest / "node-2"),
        "store": str(dest / "store"),
    }
    assert identity_in(dest / "node-2" / "node-2.pem") == Identity("node", "2")
