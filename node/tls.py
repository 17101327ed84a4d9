"""Who is who: the cluster's certificates, the identities they name, and gRPC credentials from them.

One cluster CA signs every certificate. An identity is a URI in the certificate's subject
alternative names:

    bullyproof://node/3       node 3 (peer messages from it must say src=3; it may write to the store)
    bullyproof://store        the fenced store
    bullyproof://admin/NAME   an operator: Resign, TransferLeadership, the dashboard's fault buttons
    bullyproof://client/NAME  any other service: GetLeader, GetStatus, WatchLeader

Servers also carry DNS names that a dialler verifies: "node-3.bullyproof" only in node 3's
certificate (peers dial each other through Toxiproxy, and must verify the node behind the proxy,
not the proxy's address), "store.bullyproof" in the store's, and "member.bullyproof" in every
node's (a client that asks any member). `bullyproof certs init` writes them all (make_cluster_certs).
gRPC credentials from these files, and reading who is calling, are node.channels' job.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEME = "bullyproof"
MEMBER_NAME = "member.bullyproof"  # in every node's certificate: "any member of this cluster"
STORE_NAME = "store.bullyproof"
KINDS = ("node", "store", "admin", "client")
ADMIN = ("admin",)


def node_name(node_id: int) -> str:
    """The DNS name only node `node_id`'s certificate carries: what its peers verify."""
    return f"node-{node_id}.bullyproof"


@dataclass(frozen=True)
class Identity:
    kind: str  # one of KINDS
    name: str = ""  # node id as text for nodes, the holder's name for admins and clients

    @property
    def uri(self) -> str:
        return f"{SCHEME}://{self.kind}/{self.name}" if self.name else f"{SCHEME}://{self.kind}"

    @property
    def node_id(self) -> int | None:
        return int(self.name) if self.kind == "node" else None

    def __str__(self) -> str:
        return self.uri

    @staticmethod
    def parse(uri: str) -> Identity | None:
        """The identity a URI names, in its one canonical spelling only (node/3, not node/03 or
        node/3/x; names of letters, digits, '.', '_', '-'), else None."""
        match = _IDENTITY_URI.fullmatch(uri)
        if match is None:
            return None
        kind, name = match.group("kind"), match.group("name") or ""
        if (
            (kind == "node") != bool(_NODE_ID.fullmatch(name))
            or (kind in ("admin", "client") and not name)
            or (kind == "store" and name)
        ):
            return None
        return Identity(kind, name)

    @staticmethod
    def of(uris: Iterable[str]) -> Identity | None:
        """The identity of a certificate with these URI SANs: exactly one bullyproof URI, and a valid
        one; a certificate naming two (say, an admin and a node) names nobody."""
        ours = [u for u in uris if u.startswith(f"{SCHEME}:")]
        return Identity.parse(ours[0]) if len(ours) == 1 else None


_IDENTITY_URI = re.compile(
    rf"{SCHEME}://(?P<kind>node|store|admin|client)(?:/(?P<name>[A-Za-z0-9._-]{{1,64}}))?", re.ASCII
)
_NODE_ID = re.compile(r"[1-9][0-9]{0,8}", re.ASCII)


# ---- files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    """One identity's files: the cluster CA's certificate, a certificate and its private key (PEM)."""

    ca: Path
    cert: Path
    key: Path

    @staticmethod
    def in_dir(directory: Path, holder: str) -> Tls:
        """The files `bullyproof certs init` wrote for `holder` (node-3, store, admin, client)."""
        return Tls(directory / "ca.pem", directory / f"{holder}.pem", directory / f"{holder}.key")

    def read(self) -> tuple[bytes, bytes, bytes]:
        try:
            return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()
        except OSError as exc:
            raise TlsError(f"cannot read {exc.filename}: {exc.strerror}") from None

    def stamp(self) -> tuple:
        """Size and mtime of the three files, to notice a rotation; () while any is missing."""
        try:
            return tuple((st.st_mtime_ns, st.st_size) for st in (p.stat() for p in (self.ca, self.cert, self.key)))
        except OSError:
            return ()

    def as_dict(self) -> dict[str, str]:
        return {"ca": str(self.ca), "cert": str(self.cert), "key": str(self.key)}

    @staticmethod
    def from_dict(d: dict[str, str]) -> Tls:
        return Tls(Path(d["ca"]), Path(d["cert"]), Path(d["key"]))


class TlsError(Exception):
    """Certificate files missing or unreadable (the CLI reports it as a configuration error)."""


def identity_in(cert_path: Path) -> Identity | None:
    """The bullyproof identity a certificate file names (None: none, or not a certificate)."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
    except (OSError, ValueError, x509.ExtensionNotFound):
        return None
    return Identity.of(uris)


def check_holder(tls: Tls, expected: Identity, flag: str) -> None:
    """Refuse to start with files that cannot work: unreadable, or naming someone else."""
    tls.read()
    found = identity_in(tls.cert)
    if found != expected:
        named = found.uri if found else "no bullyproof identity"
        raise TlsError(f"{flag}: {tls.cert} names {named}, but this process is {expected.uri}")


# ---- making certificates ---------------------------------------------------------------------------

CERT_DAYS = 825  # the usual upper bound for TLS server certificates


def make_cluster_certs(
    directory: Path,
    nodes: int,
    *,
    admins: Iterable[str] = ("admin",),
    clients: Iterable[str] = ("client",),
    hosts: Iterable[str] = (),
) -> dict[str, Tls]:
    """A cluster CA and a certificate per node, the store, each admin and each client, in `directory`.

    Node and store certificates also name localhost, 127.0.0.1 and `hosts` (compose service names,
    say). Keys are written 0600. An existing CA in the directory is reused (so new certificates
    join an existing cluster); returns every holder's files by name ("node-1", "store", "admin", ...).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_cert_path, ca_key_path = directory / "ca.pem", directory / "ca.key"

    def write_key(path: Path, key: Any) -> None:
        data = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_new(path, data, 0o600)

    if ca_cert_path.exists() or ca_key_path.exists():
        # Reuse the CA, never replace it: running nodes trust only it, and keep their own outgoing
        # certificates until they restart, so a new CA here would cut them off from each other.
        try:
            ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
            ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        except FileNotFoundError as exc:
            raise TlsError(
                f"{directory} has {'ca.pem' if ca_cert_path.exists() else 'ca.key'} but not {Path(exc.filename).name}: "
                "certificates must come from the CA the cluster trusts (restore it, or use a new directory "
                "for a new cluster)"
            ) from None
        except ValueError as exc:
            raise TlsError(f"cannot read the CA in {directory}: {exc}") from None
        if ca_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != ca_cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise TlsError(f"{ca_key_path} is not the key of {ca_cert_path}")
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bullyproof cluster CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=10 * 365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write_key(ca_key_path, ca_key)
        _write_new(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)

    local_names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for host in hosts:
        try:
            local_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            local_names.append(x509.DNSName(host))

    def issue(holder: str, identity: Identity, dns: list[str], server: bool) -> Tls:
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri), *map(x509.DNSName, dns)]
        if server:
            names += local_names
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, holder)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        tls = Tls.in_dir(directory, holder)
        write_key(tls.key, key)
        _write_new(tls.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return tls

    made = {
        f"node-{i}": issue(f"node-{i}", Identity("node", str(i)), [node_name(i), MEMBER_NAME], True)
        for i in range(1, nodes + 1)
    }
    made["store"] = issue("store", Identity("store"), [STORE_NAME], True)
    for name in admins:
        made[name] = issue(name, Identity("admin", name), [], False)
    for name in clients:
        made[name] = issue(name, Identity("client", name), [], False)
    return made


def _write_new(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Write a fresh file with exactly `mode` (and `owner`, uid and gid) and swap it in: never through
    a symlink someone left at `path`, never keeping an old file's looser permissions; a reader (a node
    re-reading its files) sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            os.fchmod(f.fileno(), mode)  # the umask may have narrowed it; never widened
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---- handing certificates to processes -----------------------------------------------------------


def install_certs(
    source: Path, dest: Path, *, owner: tuple[int, int] | None = None, holders: Iterable[str] = (), split: bool = False
) -> dict[str, Path]:
    """Copy what processes need of `bullyproof certs init`'s files from `source` into `dest`.

    ca.pem, and each holder's HOLDER.pem and HOLDER.key: every holder in `source`, or those whose name
    matches one of `holders` (shell patterns: "node-*"). Never ca.key: a process that can read it could
    sign itself any identity. With `split`, each holder gets its own directory DEST/HOLDER (holding
    ca.pem and its own two files), so a container that mounts one sees no one else's key; otherwise
    all go flat into `dest`. Keys are 0600, certificates 0644, owned by `owner` (uid, gid) if given;
    each file is written beside its place and renamed into it, so a process that re-reads its files
    (rotation) never sees half of one. Returns each holder's directory.
    """
    import fnmatch

    ca = source / "ca.pem"
    if not ca.is_file():
        raise TlsError(
            f"no ca.pem in {source}: make the certificates first (bullyproof certs init --nodes N --dir DIR, "
            "or bullyproof compose beside a compose file)"
        )
    present = sorted(p.stem for p in source.glob("*.pem") if p.stem != "ca" and p.with_suffix(".key").is_file())
    patterns = list(holders)
    chosen = [h for h in present if not patterns or any(fnmatch.fnmatchcase(h, pat) for pat in patterns)]
    unmatched = [pat for pat in patterns if not any(fnmatch.fnmatchcase(h, pat) for h in present)]
    if unmatched:
        raise TlsError(
            f"no certificate and key for {', '.join(unmatched)} in {source} (it has: {', '.join(present) or 'none'})"
        )

    def read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise TlsError(f"cannot read {path}: {exc.strerror}") from None

    def place(data: bytes, path: Path, mode: int) -> None:
        try:
            _write_new(path, data, mode, owner)
        except OSError as exc:
            raise TlsError(f"cannot write {path}: {exc.strerror}") from None

    ca_pem = read(ca)
    done: dict[str, Path] = {}
    for where in [dest / h for h in chosen] if split else [dest]:
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TlsError(f"cannot create {where}: {exc.strerror}") from None
        place(ca_pem, where / "ca.pem", 0o644)
    for holder in chosen:
        where = dest / holder if split else dest
        place(read(source / f"{holder}.pem"), where / f"{holder}.pem", 0o644)
        place(read(source / f"{holder}.key"), where / f"{holder}.key", 0o600)
        done[holder] = where
    return done
