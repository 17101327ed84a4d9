"""Layering, enforced (as trio does): the core is pure, and nothing in node/ reaches into chaos/.

See docs/design.md section 2: node/core has no asyncio, no grpc, no clock, no global random.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "node" / "core"
CORE_FILES = sorted(CORE.glob("*.py"))
NODE_FILES = sorted((ROOT / "node").rglob("*.py"))

# Pure standard-library modules the core may use; anything else needs a reason and a review.
CORE_ALLOWED = {
    "__future__",
    "abc",
    "collections",
    "collections.abc",
    "dataclasses",
    "enum",
    "functools",
    "itertools",
    "math",
    "random",
    "typing",
}
CORE_FORBIDDEN = {"time", "asyncio", "grpc", "socket", "os", "threading", "subprocess"}
# random may appear only as a type and a constructor: seeded generators are passed in.
RANDOM_ALLOWED_ATTRS = {"Random"}


def imported_modules(tree: ast.AST) -> list[tuple[int, str, int]]:
    """(line, module, relative level) for every import statement, wherever it is in the file."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or "", node.level))
    return found


def parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


def test_the_core_exists() -> None:
    assert {p.name for p in CORE_FILES} >= {"__init__.py", "types.py", "bully.py", "votes.py"}


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_only_pure_stdlib(path: Path) -> None:
    for line, module, level in imported_modules(parse(path)):
        where = f"{path.name}:{line}"
        if level:
            assert level == 1, f"{where}: the core must not import from outside node/core ({'.' * level}{module})"
            continue
        top = module.split(".")[0]
        assert top not in CORE_FORBIDDEN, f"{where}: the core must not import {module}"
        assert module in CORE_ALLOWED, f"{where}: {module} is not allowed"


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_uses_no_global_random(path: Path) -> None:
    tree = parse(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            names = {alias.name for alias in node.names}
            assert names <= RANDOM_ALLOWED_ATTRS, f"{path.name}:{node.lineno}: from random import {names}"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
            assert node.attr in RANDOM_ALLOWED_ATTRS, (
                f"{path.name}:{node.lineno}: random.{node.attr} uses the global generator; take a seeded Random"
            )


# The CLI (the node/cli package) is the composition root: its commands may load chaos/ lazily, inside
# a function, so that running a node never imports it. No other node module may, and nobody at module level.
COMPOSITION_ROOTS = {str(p.relative_to(ROOT)) for p in (ROOT / "node" / "cli").glob("*.py")}


def package_imports(tree: ast.AST, package: str) -> list[tuple[int, bool]]:
    """(line, inside a function) for every absolute import of `package`."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                modules = [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module or ""]
                if getattr(child, "level", 0) == 0 and any(m.split(".")[0] == package for m in modules):
                    found.append((child.lineno, in_function))
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(tree, False)
    return found


def chaos_imports(tree: ast.AST) -> list[tuple[int, bool]]:
    """(line, inside a function) for every import of chaos."""
    return package_imports(tree, "chaos")


@pytest.mark.parametrize("path", NODE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_node_never_imports_chaos(path: Path) -> None:
    name = str(path.relative_to(ROOT))
    for line, in_function in chaos_imports(parse(path)):
        assert name in COMPOSITION_ROOTS and in_function, f"{name}:{line}: node/ must not import chaos"


def test_the_checks_would_catch_a_violation() -> None:
    """The scanners above see imports anywhere in a file and calls on the global random module."""
    bad = ast.parse("import chaos.x\ndef f():\n    import time\n    from chaos import y\n    return random.random()\n")
    assert ("time", 0) in [(m, lvl) for _, m, lvl in imported_modules(bad)]
    assert any(isinstance(n, ast.Attribute) and n.attr == "random" for n in ast.walk(bad))
    assert chaos_imports(bad) == [(1, False), (4, True)]


# Only the parts that talk on the network may use asyncio or grpc: the node process, the store, the
# client side (SDK, observer), the one module that makes channels and servers and its interceptor, and
# the generated stubs. The core, the simulator, the launcher and the CLI stay plain Python.
NETWORK_PARTS = (
    "node/runtime/",
    "node/store/",
    "node/client/",
    "node/api/",
    "node/channels.py",
    "node/guard.py",
    "node/observer.py",
)
NETWORK_MODULES = {"asyncio", "grpc", "grpc_health", "grpc_reflection"}


@pytest.mark.parametrize("path", NODE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_network_parts_import_asyncio_or_grpc(path: Path) -> None:
    name = str(path.relative_to(ROOT))
    if name.startswith(NETWORK_PARTS):
        return
    for line, module, level in imported_modules(parse(path)):
        if not level:
            assert module.split(".")[0] not in NETWORK_MODULES, (
                f"{name}:{line}: imports {module}; only {NETWORK_PARTS} may"
            )


def test_the_folders_show_the_parts() -> None:
    assert {p.name for p in (ROOT / "node").iterdir() if p.is_dir() and p.name != "__pycache__"} == {
        "api",
        "core",
        "runtime",
        "store",
        "client",
        "sim",
        "launcher",
        "cli",
    }


# The history contract sits below everything that reads a history (simulator, checkers, CLI,
# launcher, dashboard): plain standard library, nothing from node/ or chaos/, no network.
HISTORY = ROOT / "node" / "history.py"
HISTORY_ALLOWED = {
    "__future__",
    "bisect",
    "collections.abc",
    "dataclasses",
    "functools",
    "json",
    "os",
    "pathlib",
    "threading",
    "time",
    "typing",
    "node.timing",  # the default timing: plain constants, importing nothing
}


def test_the_history_contract_stands_alone() -> None:
    for line, module, level in imported_modules(parse(HISTORY)):
        assert not level and module in HISTORY_ALLOWED, f"history.py:{line}: imports {'.' * level}{module}"


def test_every_reader_judges_by_the_one_history_module() -> None:
    """Agreement and every property are defined once: the readers import the History and its judges
    (the simulator in ticks, the checkers in nanoseconds)."""
    readers = {
        "node/sim/network.py": {
            "agreement",
            "judge",
            "violation_lines",
            "unique_leaders",
            "no_overlap",
            "no_overlap_by_grants",
            "true_answers",
            "late_writes",
        },
        "node/sim/recorder.py": {"History", "TICKS"},
        "chaos/checkers.py": {
            "History",
            "unique_leaders",
            "store_monotonic",
            "no_overlap",
            "no_overlap_by_grants",
            "no_lost_writes",
            "true_answers",
            "recovery",
            "describe",
        },
        "node/observer.py": {"agreement"},
    }
    for name, wanted in readers.items():
        tree = parse(ROOT / name)
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "node.history"
            for alias in node.names
        }
        assert wanted <= imported, f"{name} should take {sorted(wanted - imported)} from node.history"


# The dashboard sits on top of node/ and chaos/ (it uses both); neither may depend on it. The CLI,
# the composition root, starts it lazily, inside a function, like chaos.
CHAOS_FILES = sorted((ROOT / "chaos").rglob("*.py"))


@pytest.mark.parametrize("path", NODE_FILES + CHAOS_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_below_the_dashboard_imports_it(path: Path) -> None:
    name = str(path.relative_to(ROOT))
    for line, in_function in package_imports(parse(path), "dashboard"):
        assert name in COMPOSITION_ROOTS and in_function, (
            f"{name}:{line}: only the CLI may start the dashboard (inside a function)"
        )


def test_the_dashboard_reads_the_history_contract_in_one_place() -> None:
    """node.history and chaos.checkers (the history's schema and readings) are imported by one module."""
    importers = {
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "dashboard").rglob("*.py"))
        for _, module, level in imported_modules(parse(p))
        if not level and module in ("node.history", "chaos.checkers")
    }
    assert importers == {"dashboard/history_feed.py"}


# The fault registry (node/faults.py) sits low: node/sim, chaos/ and dashboard/ all read it, so it
# imports nothing of theirs (only the standard library), and no reader of it climbs up to a CLI.
FAULTS_MODULE = ROOT / "node" / "faults.py"
CLI_MODULES = {"chaos.cli", "node.cli", "node.sim.cli"}


def test_the_fault_registry_imports_only_the_standard_library() -> None:
    for line, module, level in imported_modules(parse(FAULTS_MODULE)):
        assert not level and module.split(".")[0] not in {"node", "chaos", "dashboard", "grpc", "asyncio"}, (
            f"node/faults.py:{line}: imports {module}"
        )


@pytest.mark.parametrize(
    "path", sorted((ROOT / "dashboard").glob("*.py")) + [ROOT / "chaos" / "faults.py"], ids=lambda p: p.name
)
def test_fault_users_never_import_a_cli(path: Path) -> None:
    for line, module, level in imported_modules(parse(path)):
        full = module if not level else f"{path.parent.name}.{module}"
        assert full not in CLI_MODULES and not full.startswith("node.cli."), (
            f"{path.relative_to(ROOT)}:{line}: imports {full}"
        )
