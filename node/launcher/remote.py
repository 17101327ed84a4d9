"""A cluster named by its nodes' client addresses (`--nodes HOST:PORT,...`), for the watchers.

`bullyproof leader`, `status` and `dashboard` read a local run directory (cluster.json) or a compose
file; a cluster on Kubernetes, on other hosts, or anywhere else they can reach over its client ports
is named by those addresses instead, with the certificates to present (`--certs DIR`, as the read-only
client by default) or `--insecure`. The record made here has the shape of cluster.json's nodes (id,
client_address) and nothing else: no pids, no events files, no store, no Toxiproxy; the history comes
over each node's WatchEvents stream.
"""

from __future__ import annotations

from typing import Any

from node.channels import dial_as
from node.config import ConfigError, tls_files
from node.observer import get_leader, refused_handshake
from node.tls import MEMBER_NAME, node_name

NODES_HELP = (
    "a cluster anywhere, by its nodes' client addresses: HOST:PORT,... (or ID=HOST:PORT to name a node "
    "that may be down); read-only, with --certs DIR (presenting DIR/client.pem unless --as) or --insecure"
)


def parse_nodes(text: str) -> list[tuple[int | None, str]]:
    """`HOST:PORT,ID=HOST:PORT,...` as (id or None, address) pairs; ConfigError naming the bad entry."""
    out: list[tuple[int | None, str]] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        ident, eq, address = item.rpartition("=")
        host, colon, port = address.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--nodes: {item!r} is not HOST:PORT or ID=HOST:PORT (a node's client address)")
        if eq and not (ident.isdigit() and int(ident) > 0):
            raise ConfigError(f"--nodes: {item!r}: the id before '=' must be a positive node id")
        if address in (a for _, a in out):
            raise ConfigError(f"--nodes: {address} is given twice")
        out.append((int(ident) if eq else None, address))
    if not out:
        raise ConfigError("--nodes: give at least one HOST:PORT")
    return out


def remote_record(args: Any, require_answer: bool = True) -> dict[str, Any]:
    """The cluster of `args.nodes` as a cluster record ({"nodes": [{"id", "client_address"}], ...}),
    dialled from now on with the TLS files of args (or plaintext under --insecure). A node's id is the
    one given (ID=), else the one it answers with; one that neither names nor answers gets the first
    free id from its place in the list. With `require_answer`, a ConfigError when no node answers."""
    tls = tls_files(args, getattr(args, "holder", None) or "client")
    if tls is not None:
        tls.read()  # one line if a file is missing, not a handshake error later
    given = parse_nodes(args.nodes)
    for nid, address in given:
        dial_as(address, tls, node_name(nid) if nid else (getattr(args, "server_name", None) or MEMBER_NAME))
    ids: dict[str, int | None] = {}
    for nid, address in given:
        if nid is None:
            info = get_leader(address, timeout_s=1.0)
            nid = info.node_id if info is not None and info.node_id else None
        ids[address] = nid
    if require_answer and all(v is None for v in ids.values()) and not any(n for n, _ in given):
        for _, address in given:  # the first may be down: any that refuses us tells why
            if (refused := refused_handshake(address)) is not None:
                raise ConfigError(f"handshake refused: {refused}")
        raise ConfigError(
            f"no node answers at {', '.join(a for _, a in given)}: check the addresses (each node's client "
            "port), and that the cluster is up"
        )
    taken = {v for v in ids.values() if v}
    if len(taken) < sum(1 for v in ids.values() if v):
        twice = sorted({v for v in ids.values() if v and list(ids.values()).count(v) > 1})
        raise ConfigError(f"--nodes: node {', '.join(map(str, twice))} answers at more than one address")
    nodes = []
    for place, (_, address) in enumerate(given, start=1):
        nid = ids[address]
        if nid is None:
            nid = place if place not in taken else next(i for i in range(1, 10_000) if i not in taken)
            taken.add(nid)
        nodes.append({"id": nid, "client_address": address})
    nodes.sort(key=lambda n: n["id"])
    return {"remote": True, "nodes": nodes, "certs": str(tls.cert.parent) if tls else None}


def refuse_stray_tls_flags(args: Any) -> None:
    """--certs, --ca/--cert/--key, --insecure, --as, --server-name go with --nodes only (a run
    directory or a compose file names its own certificates): a ConfigError rather than ignoring them."""
    given = [
        flag
        for flag, name in (("--certs", "certs"), ("--ca", "ca"), ("--cert", "cert"), ("--key", "key"))
        if getattr(args, name, None)
    ]
    given += ["--insecure"] if getattr(args, "insecure", False) else []
    given += ["--server-name"] if getattr(args, "server_name", None) else []
    given += ["--as"] if getattr(args, "holder", "client") != "client" else []
    if given:
        raise ConfigError(
            f"{', '.join(given)} go with --nodes (a cluster by its addresses); a run directory or a compose "
            "file names its own certificates"
        )
