"""The runtime's jobs see the node through their ports (node/runtime/port.py), and the ports fit.

Both sides: NodeRuntime has every member of every port (and the transport and the observation have
what the other jobs use of them), and each job's module uses exactly the members its port names, so a
port can neither fall behind its job nor name what no job uses. That the jobs never import node.py
is import-linter's to check (pyproject.toml's contracts, `make check`).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Protocol

import pytest

from node.config import NodeSettings
from node.core import Mode
from node.runtime import port
from node.runtime.node import NodeRuntime
from node.runtime.peers import PeerState

RUNTIME = Path(__file__).resolve().parents[2] / "node" / "runtime"
JOBS = {
    "peers": port.PeersNode,
    "observe": port.ObserveNode,
    "leadership": port.LeadershipNode,
    "duty": port.DutyNode,
    "joining": port.JoiningNode,
}
# What other jobs reach through the node, and the port that names it.
SHARED = {"transport": port.Links, "observe": port.Views}


def members(protocol: type) -> set[str]:
    """The names a Protocol declares: annotated attributes and methods, its bases' included."""
    names: set[str] = set()
    for cls in protocol.__mro__:
        if cls in (Protocol, object) or not getattr(cls, "_is_protocol", False):
            continue
        names |= set(cls.__dict__.get("__annotations__", {}))
        names |= {n for n, v in cls.__dict__.items() if callable(v) and not n.startswith("_")}
    return names


def used(job: str) -> tuple[set[str], dict[str, set[str]]]:
    """What the job's module reads of `node` (or `self.node`), and of node.transport / node.observe."""
    tree = ast.parse((RUNTIME / f"{job}.py").read_text())

    def is_node(e: ast.AST) -> bool:
        if isinstance(e, ast.Name):
            return e.id == "node"
        return (
            isinstance(e, ast.Attribute) and e.attr == "node" and isinstance(e.value, ast.Name) and e.value.id == "self"
        )

    top: set[str] = set()
    nested: dict[str, set[str]] = {name: set() for name in SHARED}
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and is_node(n.value):
            top.add(n.attr)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and is_node(n.value.value):
            if n.value.attr in SHARED:
                nested[n.value.attr].add(n.attr)
    return top, nested


@pytest.mark.parametrize("job", JOBS)
def test_each_job_uses_exactly_what_its_port_names(job: str) -> None:
    top, _ = used(job)
    declared = members(JOBS[job])
    assert top - declared == set(), f"{job}.py uses {sorted(top - declared)} of the node: name them in its port"
    assert declared - top == set(), f"{job}.py's port names {sorted(declared - top)}, which it does not use"


@pytest.mark.parametrize("shared", SHARED)
def test_the_shared_jobs_ports_name_what_the_others_use(shared: str) -> None:
    wanted = set().union(*(used(job)[1][shared] for job in JOBS))
    assert wanted == members(SHARED[shared])


def test_the_jobs_import_their_port_and_not_the_node() -> None:
    for job in JOBS:
        text = (RUNTIME / f"{job}.py").read_text()
        assert "node.runtime.node" not in text and f"from node.runtime.port import {JOBS[job].__name__}" in text


def test_the_node_and_its_jobs_fit_the_ports(tmp_path: Path) -> None:
    settings = NodeSettings(
        node_id=1,
        peer_listen="127.0.0.1:0",
        client_listen="127.0.0.1:0",
        peers={2: "127.0.0.1:1"},
        mode=Mode.QUORUM,
        state_dir=tmp_path,
        tick_ms=10,
    )
    node = NodeRuntime(settings)
    try:
        for protocol in JOBS.values():
            missing = {m for m in members(protocol) if not hasattr(node, m)}
            assert not missing and isinstance(node, protocol), f"NodeRuntime lacks {sorted(missing)}"
        assert isinstance(node.transport, port.Links)
        assert isinstance(node.observe, port.Views)
        assert isinstance(PeerState("127.0.0.1:1", None, None), port.Link)  # type: ignore[arg-type]
    finally:
        node.events.close()
