"""The network faults of node.faults's registry on a running cluster, by name: checked, done through
Toxiproxy (ChaosCluster) and recorded in its harness history.

`bullyproof chaos NAME ...` (chaos/cli.py) and the dashboard's buttons (dashboard/actions.py) both call
`network_fault`: one implementation of each fault. Which faults exist, their parameters, defaults and
descriptions, is the registry's; this module only turns what a person typed into the cluster's terms
(node ids checked, link specs such as `3->*` expanded) and calls the ChaosCluster method.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.argtypes import DEFAULT_RUN_DIR
from node.config import ConfigError
from node.faults import FAULTS, cli_commands

if TYPE_CHECKING:
    from .harness import ChaosCluster

DEFAULT_DIR = DEFAULT_RUN_DIR
DEFAULT_COMPOSE_DIR = "runs/compose"


# ---- what a person types, by parameter type (node.faults.PARAM_TYPES) -----------------------------------


def parse_ms(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 200ms or 1.5s")
    value = float(m.group(1)) * (1000 if m.group(2) == "s" else 1)
    return int(value)


def parse_group(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"group {text!r} is not a comma-separated list of node ids") from None
    if not ids:
        raise ConfigError("empty group in partition")
    return ids


def parse_groups(text: str) -> list[list[int]]:
    """'1,2 / 3,4,5' -> [[1, 2], [3, 4, 5]]."""
    return [parse_group(g) for g in text.split("/")]


def parse_links(text: str, ids: list[int]) -> list[tuple[int, int]]:
    """'3->1' one link; '3->*' every link out of 3; '*->3' into 3; '*' every peer link."""
    if text == "*":
        return [(a, b) for a in ids for b in ids if a != b]
    src, arrow, dst = text.partition("->")
    if not arrow:
        raise ConfigError(f"link {text!r} is not SRC->DST (use * for all)")

    def side(part: str) -> list[int]:
        if part == "*":
            return ids
        try:
            node = int(part)
        except ValueError:
            raise ConfigError(f"{part!r} in link {text!r} is not a node id or *") from None
        if node not in ids:
            raise ConfigError(f"no node {node} in this cluster (nodes: {', '.join(map(str, ids))})")
        return [node]

    links = [(a, b) for a in side(src) for b in side(dst) if a != b]
    if not links:
        raise ConfigError(f"link {text!r} names no link between two different nodes")
    return links


def parse_nodes(text: str) -> list[int]:
    return parse_group(text) if text else []


# How a command line's word becomes a value, per parameter type (links stay text: they need the cluster).
PARSERS: dict[str, Callable[[str], Any]] = {
    "node": int,
    "groups": parse_groups,
    "links": str,
    "nodes": parse_nodes,
    "ms": parse_ms,
    "int": int,
}


# ---- one function per fault kind the CLI and the page offer ---------------------------------------------


def _check_node(cc: ChaosCluster, node: int) -> None:
    if node not in cc.ids:
        raise ConfigError(f"no node {node} in this cluster (nodes: {', '.join(map(str, cc.ids))})")


def _link_names(links: list[tuple[int, int]]) -> list[str]:
    return [f"{a}->{b}" for a, b in links]


def partition(cc: ChaosCluster, groups: list[list[int]]) -> dict[str, Any]:
    """Cut every link between the groups; nodes not named form a group of their own."""
    named = [n for g in groups for n in g]
    unknown = sorted(set(named) - set(cc.ids))
    if unknown:
        _check_node(cc, unknown[0])
    if len(set(named)) != len(named):
        raise ConfigError("a node appears in two groups")
    if any(not g for g in groups):
        raise ConfigError("empty group in partition")
    rest = [n for n in cc.ids if n not in named]
    groups = [list(g) for g in groups] + ([rest] if rest else [])
    if len(groups) < 2:
        raise ConfigError("a partition needs at least two groups")
    cc.partition(groups)
    return {"groups": groups}


def heal(cc: ChaosCluster) -> dict[str, Any]:
    cc.heal()
    return {}


def blackhole(cc: ChaosCluster, node: int) -> dict[str, Any]:
    _check_node(cc, node)
    cc.blackhole(node)
    return {"node": node}


def refuse(cc: ChaosCluster, node: int) -> dict[str, Any]:
    _check_node(cc, node)
    cc.refuse(node)
    return {"node": node}


def one_way(cc: ChaosCluster, node: int, to: list[int] | tuple[int, ...] = ()) -> dict[str, Any]:
    _check_node(cc, node)
    for other in to:
        _check_node(cc, other)
    dsts = [n for n in (to or cc.ids) if n != node]
    if not dsts:
        raise ConfigError("one-way needs a peer other than the node itself")
    cc.one_way(node, dsts)
    return {"from": node, "to": dsts}


def cut(cc: ChaosCluster, links: str) -> dict[str, Any]:
    pairs = parse_links(links, cc.ids)
    cc.cut(pairs)
    return {"links": _link_names(pairs)}


def latency(cc: ChaosCluster, links: str, latency_ms: int, jitter_ms: int = 0) -> dict[str, Any]:
    if latency_ms < 0 or jitter_ms < 0:
        raise ConfigError("latency and jitter must not be negative")
    pairs = parse_links(links, cc.ids)
    cc.latency(pairs, latency_ms, jitter_ms)
    return {"links": _link_names(pairs), "latency": latency_ms, "jitter": jitter_ms}


def _degrade(
    cc: ChaosCluster, action: str, links: str, type_: str, attrs: dict[str, Any], streams: tuple[str, ...]
) -> dict[str, Any]:
    pairs = parse_links(links, cc.ids)
    cc.degrade(action, pairs, type_, attrs, streams)
    return {"links": _link_names(pairs), **attrs}


def bandwidth(cc: ChaosCluster, links: str, rate_kbps: int) -> dict[str, Any]:
    return _degrade(cc, "bandwidth", links, "bandwidth", {"rate": rate_kbps}, ("upstream", "downstream"))


def slicer(cc: ChaosCluster, links: str) -> dict[str, Any]:
    attrs = {"average_size": 16, "size_variation": 8, "delay": 500}
    return _degrade(cc, "slicer", links, "slicer", attrs, ("upstream", "downstream"))


def reset_peer(cc: ChaosCluster, links: str) -> dict[str, Any]:
    return _degrade(cc, "reset-peer", links, "reset_peer", {"timeout": 0}, ("upstream",))


# Every `bullyproof chaos` fault command of the registry, done here; nothing more, nothing less.
NETWORK_FAULTS: dict[str, Callable[..., dict[str, Any]]] = {
    "partition": partition,
    "cut": cut,
    "one-way": one_way,
    "blackhole": blackhole,
    "refuse": refuse,
    "latency": latency,
    "bandwidth": bandwidth,
    "slicer": slicer,
    "reset-peer": reset_peer,
    "heal": heal,
}
if set(NETWORK_FAULTS) != {k.name for k in cli_commands()}:
    raise ImportError(
        "chaos.faults and node.faults disagree on the CLI's faults: "
        f"{sorted(set(NETWORK_FAULTS) ^ {k.name for k in cli_commands()})}"
    )


def open_cluster(directory: Path | None, compose: str | None = None) -> ChaosCluster:
    """The running cluster in `directory` (or, with `compose`, the compose cluster of that file,
    through its published Toxiproxy API), its faults recorded in its harness history."""
    from .harness import ChaosCluster

    if compose:
        from node.launcher.compose import read_compose_file

        data = read_compose_file(Path(compose))
        return ChaosCluster.from_record(
            data,
            directory or Path(DEFAULT_COMPOSE_DIR),
            f"is the compose cluster up? docker compose -f {data['compose_file']} up -d",
        )
    return ChaosCluster.attach(directory or Path(DEFAULT_DIR))


def network_fault(directory: Path | None, action: str, compose: str | None = None, **params: Any) -> dict[str, Any]:
    """One network fault of the registry (NETWORK_FAULTS) on the cluster in `directory` (see
    open_cluster), with its parameters by name (the registry's defaults for those left out).
    Returns what was done (the JSON the CLI prints after "fault")."""
    if action not in NETWORK_FAULTS:
        raise ConfigError(f"unknown network fault {action!r}; one of {', '.join(NETWORK_FAULTS)}")
    kind = FAULTS[action]
    known = {p.name for p in kind.params}
    if unknown := sorted(set(params) - known):
        raise ConfigError(f"{action} takes no {', '.join(unknown)} (it takes: {', '.join(sorted(known)) or 'nothing'})")
    if missing := [p.name for p in kind.params if p.required and p.name not in params]:
        raise ConfigError(f"{action} needs {', '.join(missing)}")
    cc = open_cluster(directory, compose)
    try:
        return NETWORK_FAULTS[action](cc, **{**kind.defaults(), **params})
    finally:
        if cc.history:
            cc.history.close()
