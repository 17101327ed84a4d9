"""How the project's modules import each other: cycles, imports that run up the layers, the largest modules.

    python .ci/imports.py                      # this checkout, layers from its pyproject.toml
    python .ci/imports.py --root ../other      # another checkout, measured against this one's layers
    python .ci/imports.py --top 20             # more of the largest modules

Plain standard library, no import of the project: every .py file of the top-level packages is parsed,
and each import, wherever it stands (inside a function too, as import-linter counts it), is one edge
from the importing module to the project module it names. The layers are the first `layers` contract
of `[tool.importlinter]` in pyproject.toml (highest first, as import-linter reads them); `make check`
enforces them with lint-imports, and this script only counts, so it can measure a tree that breaks them.
"""

from __future__ import annotations

import argparse
import ast
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def modules_of(root: Path, packages: list[str]) -> dict[str, Path]:
    """Module name -> file, for every .py file under the given top-level packages."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules that `name` imports (a `from X import y` names X.y when that is a module)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".")
                if not is_package:
                    package = package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a package imports a.b.c's nearest module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (a module importing itself is not counted)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components, key=lambda c: (-len(c), c))


def declared_layers(pyproject: Path) -> tuple[list[list[str]], list[str]]:
    """(layers highest first, each a list of module prefixes; the root packages) from the contract."""
    config = tomllib.loads(pyproject.read_text()).get("tool", {}).get("importlinter", {})
    for contract in config.get("contracts", []):
        if contract.get("type") == "layers":
            layers = [
                [m.strip().strip("()") for m in layer.replace("|", ":").split(":")] for layer in contract["layers"]
            ]
            roots = config.get("root_packages") or [config["root_package"]]
            return layers, roots
    sys.exit(f"{pyproject}: no layers contract under [tool.importlinter]")


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    """Index of the layer (0 is the highest) whose module is `module` or one of its parents."""
    for i, layer in enumerate(layers):
        if any(module == m or module.startswith(m + ".") for m in layer):
            return i
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=HERE, help="the checkout to measure (default: this one)")
    parser.add_argument("--layers-from", type=Path, default=HERE / "pyproject.toml", help="pyproject.toml to read")
    parser.add_argument("--top", type=int, default=10, help="how many of the largest modules to list")
    args = parser.parse_args(argv)

    layers, roots = declared_layers(args.layers_from)
    roots = [r for r in roots if (args.root / r).is_dir()]
    known = modules_of(args.root, roots)
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    edges = sum(len(v) for v in graph.values())

    cycles = strongly_connected(graph)
    print(f"{len(known)} modules, {edges} imports among them (packages: {', '.join(roots)})")
    print(f"\nimport cycles (strongly connected components): {len(cycles)}")
    for component in cycles:
        print(f"  {len(component)} modules: {' '.join(component)}")

    upward = []
    for importer, imported in sorted((a, b) for a, targets in graph.items() for b in targets):
        low, high = layer_of(importer, layers), layer_of(imported, layers)
        if low is not None and high is not None and high < low:
            upward.append((importer, imported, layers[low], layers[high]))
    print(f"\nimports running up the declared layers: {len(upward)}")
    for importer, imported, _, to in upward:
        print(f"  {importer} -> {imported}  (up to {' : '.join(to)})")
    unlayered = sorted(m for m in known if layer_of(m, layers) is None and "." in m)
    if unlayered:
        print(f"  (in no layer, not judged: {' '.join(unlayered)})")

    sizes = sorted(((len(path.read_text().splitlines()), name) for name, path in known.items()), reverse=True)
    print(f"\nlargest modules (lines), of {sum(n for n, _ in sizes)} in all:")
    for lines, name in sizes[: args.top]:
        print(f"  {lines:6d}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
