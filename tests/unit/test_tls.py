"""Identities and certificate files (node.tls): one canonical spelling per identity, a CA that is
reused and never silently replaced, keys written 0600 and never through a symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from node.tls import Identity, Tls, TlsError, check_holder, identity_in, make_cluster_certs


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("bullyproof://node/3", Identity("node", "3")),
        ("bullyproof://store", Identity("store")),
        ("bullyproof://admin/ops.team-1", Identity("admin", "ops.team-1")),
        ("bullyproof://client/web_2", Identity("client", "web_2")),
        ("bullyproof://node/03", None),  # not the canonical spelling of node 3
        ("bullyproof://node/0", None),
        ("bullyproof://node/3/x", None),
        ("bullyproof://node/\u0663", None),  # an Arabic-Indic 3 is not an ASCII digit
        ("bullyproof://node/\u00b2", None),
        ("bullyproof://node/" + "9" * 5000, None),
        ("bullyproof://admin", None),  # an admin has a name
        ("bullyproof://store/x", None),
        ("bullyproof://client/a b", None),
        ("BULLYPROOF://node/3", None),
        ("spiffe://bullyproof/node/3", None),
    ],
)
def test_each_identity_has_one_spelling(uri: str, expected: Identity | None) -> None:
    assert Identity.parse(uri) == expected
    if expected is not None:
        assert expected.uri == uri


def test_a_certificate_naming_two_identities_names_nobody() -> None:
    assert Identity.of(["bullyproof://admin/y", "bullyproof://node/2"]) is None
    assert Identity.of(["bullyproof://node/2", "bullyproof://node/3"]) is None
    assert Identity.of(["spiffe://elsewhere/x", "bullyproof://node/2"]) == Identity("node", "2")
    assert Identity.of([]) is None


def test_certs_init_names_each_holder_and_keys_are_private(tmp_path: Path) -> None:
    made = make_cluster_certs(tmp_path, 3, admins=["ops"], clients=["web"])
    assert set(made) == {"node-1", "node-2", "node-3", "store", "ops", "web"}
    assert identity_in(made["node-2"].cert) == Identity("node", "2")
    assert identity_in(made["ops"].cert) == Identity("admin", "ops")
    check_holder(made["store"], Identity("store"), "--cert")
    with pytest.raises(TlsError, match="names bullyproof://node/1, but this process is bullyproof://node/2"):
        check_holder(made["node-1"], Identity("node", "2"), "--cert")
    for path in tmp_path.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.suffix == ".key" else 0o644), path


def test_the_ca_is_reused_and_never_silently_replaced(tmp_path: Path) -> None:
    make_cluster_certs(tmp_path, 2)
    ca = (tmp_path / "ca.pem").read_bytes()
    make_cluster_certs(tmp_path, 3)  # a node more: same CA
    assert (tmp_path / "ca.pem").read_bytes() == ca
    (tmp_path / "ca.key").rename(tmp_path / "offline.key")  # kept offline, as one should
    with pytest.raises(TlsError, match="has ca.pem but not ca.key"):
        make_cluster_certs(tmp_path, 3)
    assert (tmp_path / "ca.pem").read_bytes() == ca
    other = tmp_path / "other"
    make_cluster_certs(other, 1)
    (other / "ca.key").replace(tmp_path / "ca.key")  # a key that is not this CA's
    with pytest.raises(TlsError, match="is not the key of"):
        make_cluster_certs(tmp_path, 3)


def test_keys_are_never_written_through_a_symlink_or_left_readable(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    make_cluster_certs(certs, 2)
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    victim.chmod(0o644)
    (certs / "node-2.key").unlink()
    (certs / "node-2.key").symlink_to(victim)
    (certs / "node-1.key").chmod(0o644)
    make_cluster_certs(certs, 2)
    assert victim.read_text() == "untouched"
    assert not (certs / "node-2.key").is_symlink()
    for name in ("node-1.key", "node-2.key"):
        assert stat.S_IMODE((certs / name).stat().st_mode) == 0o600
    assert not [p for p in certs.iterdir() if p.name.startswith(".")], "no temporary files left behind"
    Tls.in_dir(certs, "node-2").read()
    assert os.access(certs / "node-2.key", os.R_OK)
