"""Commands that write files: `certs init|install`, `compose`, `k8s`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from node.argtypes import positive
from node.config import INSECURE_WARNING, ConfigError, check_timings
from node.core import DEFAULT_MODE, mode_names
from node.tls import Identity

from .options import DEFAULT_COMPOSE_FILE, timing_args
from .registry import Command


def certs_arguments(p: argparse.ArgumentParser) -> None:
    ccmd = p.add_subparsers(dest="certs_command", required=True)
    init = ccmd.add_parser(
        "init", help="a cluster CA, a certificate per node and the store, admin and client certificates"
    )
    init.add_argument("--nodes", type=positive, required=True, help="nodes 1..N get node-N.pem and node-N.key")
    init.add_argument("--dir", required=True, help="where to write them (an existing CA there is reused)")
    init.add_argument(
        "--admin",
        action="append",
        default=[],
        metavar="NAME",
        help="an admin certificate NAME.pem (may resign, transfer; default: one named admin)",
    )
    init.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="NAME",
        help="a client certificate NAME.pem (may read; default: one named client)",
    )
    init.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME_OR_IP",
        help="another name nodes and the store answer to (a host name, a compose service, an IP)",
    )
    inst = ccmd.add_parser(
        "install",
        help="copy the CA certificate and holders' certificates and keys (never ca.key) "
        "where processes read them: the compose file's certs service runs it",
    )
    inst.add_argument("--from", dest="source", required=True, metavar="DIR", help="the directory `certs init` wrote")
    inst.add_argument(
        "--to", dest="dest", required=True, metavar="DIR", help="where the processes read them (--certs DIR)"
    )
    inst.add_argument(
        "--owner", type=_owner, metavar="UID:GID", help="owner of the copies (the processes' user; needs root)"
    )
    inst.add_argument(
        "--holder",
        action="append",
        default=[],
        metavar="NAME",
        help="only these holders (shell patterns, repeatable: node-*, store; default every one)",
    )
    inst.add_argument(
        "--split",
        action="store_true",
        help="each holder in its own DIR/NAME (ca.pem, NAME.pem, NAME.key), for one volume per container",
    )


def cmd_certs(args: argparse.Namespace) -> int:
    return cmd_certs_init(args) if args.certs_command == "init" else cmd_certs_install(args)


def cmd_certs_init(args: argparse.Namespace) -> int:
    from node.tls import make_cluster_certs

    admins, clients = args.admin or ["admin"], args.client or ["client"]
    clash = set(admins) & set(clients) | {n for n in admins + clients if n in ("ca", "store") or n.startswith("node-")}
    if clash:
        raise ConfigError(
            f"certificate names {sorted(clash)} are taken (ca, store, node-N, or both --admin and --client)"
        )
    bad = [n for n in admins + clients if Identity.parse(f"bullyproof://client/{n}") is None]
    if bad:
        raise ConfigError(f"certificate names {bad}: use 1 to 64 letters, digits, '.', '_' or '-'")
    made = make_cluster_certs(Path(args.dir), args.nodes, admins=admins, clients=clients, hosts=args.host)
    print(
        json.dumps(
            {
                "dir": str(Path(args.dir).resolve()),
                "ca": "ca.pem",
                "certificates": {name: tls.cert.name for name, tls in made.items()},
            },
            indent=2,
        )
    )
    return 0


def _owner(text: str) -> tuple[int, int]:
    uid, sep, gid = text.partition(":")
    if not (sep and uid.isdigit() and gid.isdigit()):
        raise argparse.ArgumentTypeError(f"expected UID:GID (numbers, as the Dockerfile's USER), got {text!r}")
    return int(uid), int(gid)


def cmd_certs_install(args: argparse.Namespace) -> int:
    from node.tls import install_certs

    made = install_certs(Path(args.source), Path(args.dest), owner=args.owner, holders=args.holder, split=args.split)
    print(json.dumps({"from": args.source, "to": args.dest, "holders": {h: str(d) for h, d in made.items()}}))
    return 0


def compose_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=positive, default=5)
    p.add_argument(
        "--spares",
        type=int,
        default=0,
        metavar="K",
        help="quorum: K more node services (ids after --nodes) that start outside the configuration, to "
        "add with `bullyproof member add N --compose` (default 0)",
    )
    p.add_argument("--mode", choices=mode_names(), default=DEFAULT_MODE)
    p.add_argument("--output", default=DEFAULT_COMPOSE_FILE)
    p.add_argument("--check", action="store_true", help="fail if the files differ from what would be written")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="a plaintext cluster, no certificates (default: mutual TLS with certificates made in certs/ "
        "beside the file)",
    )


def k8s_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=positive, default=5)
    p.add_argument("--mode", choices=mode_names(), default=DEFAULT_MODE)
    p.add_argument(
        "--image", default="bullyproof:local", help="the image built from Dockerfile, pushed where the cluster pulls"
    )
    timing_args(p)
    p.add_argument(
        "--max-nodes",
        type=positive,
        metavar="M",
        help="quorum: how far `kubectl scale` may grow the StatefulSet: the node pods see the certificates "
        "of nodes 1..M (make them with `certs init --nodes M`; default the larger of 7 and --nodes)",
    )
    p.add_argument("--output", default="-", help="file to write (default -: stdout)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext, no certificates (default: mutual TLS from the Secret bullyproof-certs, docs/hosts.md)",
    )


def cmd_compose(args: argparse.Namespace) -> int:
    from chaos.tools import TOXIPROXY_VERSION  # composition root: the pin the local set-up builds
    from node.launcher.compose import compose_cluster, ensure_certs, stale_files, write_files

    if args.spares < 0:
        raise ConfigError(f"--spares must be >= 0, got {args.spares}")
    cc = compose_cluster(
        args.nodes, args.mode, toxiproxy_version=TOXIPROXY_VERSION, insecure=args.insecure, spares=args.spares
    )
    path = Path(args.output)
    if args.check:  # the rendered files only: certificates are per machine, and secret
        stale = stale_files(cc, path)
        again = f"bullyproof compose --output {path}" + (" --insecure" if args.insecure else "")
        for p in stale:
            print(f"{p} is out of date; run: {again}", file=sys.stderr)
        if stale:
            return 1
        print(f"{path} and the Toxiproxy config beside it match the cluster description")
        return 0
    for p in write_files(cc, path):
        print(f"wrote {p}")
    if cc.certs is None:
        print(f"warning: the compose cluster runs {INSECURE_WARNING}", file=sys.stderr)
        return 0
    certs = path.parent / cc.certs
    made = ensure_certs(cc, path)
    print(
        f"{'made' if made else 'kept'} certificates in {certs} (mutual TLS; not checked in: it holds the CA's key). "
        f"The CLI (--compose) acts as {certs / 'admin.pem'}; read-only clients use {certs / 'client.pem'}"
    )
    return 0


def cmd_k8s(args: argparse.Namespace) -> int:
    from node.launcher.k8s import k8s_spec, render_k8s

    check_timings(args.heartbeat_interval_ms, args.election_timeout_ms)  # what every pod would refuse, refused here
    spec = k8s_spec(
        args.nodes,
        args.mode,
        insecure=args.insecure,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        election_timeout_ms=args.election_timeout_ms,
    )
    text = render_k8s(spec, image=args.image, max_nodes=args.max_nodes)
    if args.insecure:
        print(f"warning: the manifests run {INSECURE_WARNING}", file=sys.stderr)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    Path(args.output).write_text(text)
    print(f"wrote {args.output}")
    return 0


COMMANDS = [
    Command(
        "certs",
        "make the cluster CA and certificates for mutual TLS (bullyproof certs init)",
        cmd_certs,
        certs_arguments,
    ),
    Command(
        "compose",
        "write docker-compose.yml (and toxiproxy.json beside it) from the cluster description",
        cmd_compose,
        compose_arguments,
    ),
    Command(
        "k8s", "write Kubernetes manifests (StatefulSet, Services) from the cluster description", cmd_k8s, k8s_arguments
    ),
]
