"""The packages' layers, read from the source with `ast` (nothing is imported): `db` is the bottom layer,
`indexer` builds on it, `search` on both; and no module of the three takes part in an import cycle.

Every import statement counts, wherever it stands: at module level, inside a function (the lazy imports
that keep torch off the cold query path), under `if TYPE_CHECKING:`, and relative imports. A cycle through
lazy imports still ties the modules into one unit that cannot be understood, tested or moved apart, so it is
refused as well. `import a.b.c` counts as an edge to the module `a.b.c` only, not to the packages `a` and
`a.b` whose `__init__` Python runs on the way (as import-linter's graph counts it); otherwise every
package that re-exports its submodules would be a cycle.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("db", "indexer", "search")
# package -> the packages it must never import.
FORBIDDEN = {"db": ("indexer", "search"), "indexer": ("search",)}


def module_name(path: Path, root: Path = ROOT) -> str:
    """`indexer/encoders/__init__.py` -> `indexer.encoders`; `db/catalog.py` -> `db.catalog`."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the three packages, by dotted name."""
    return {module_name(path, root): path
            for package in PACKAGES for path in sorted((root / package).rglob("*.py"))}


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from ... import` names (PEP 328 rules for the leading dots)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    # The level counts from the module's own package: a package's __init__ is its own package.
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, module: str, modules: set[str]) -> dict[str, int]:
    """The project modules that `module` imports -> the line of the first such import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        # `import a.b.c` / `from a.b import c`: the most specific module of the project that the name holds.
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.setdefault(name, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, path.name == "__init__.py")
            for alias in node.names:
                # `from indexer.encoders import registry` imports the submodule; `... import MODELS` the package.
                candidate = f"{source}.{alias.name}"
                add(candidate if candidate in modules else source, node.lineno)
    return found


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """module -> {imported project module: line}."""
    modules = project_modules(root)
    return {name: imports_of(path, name, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as a path `[a, b, ..., a]`, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if start in state:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, {}))))
    return None


def describe(cycle: list[str], graph: dict[str, dict[str, int]], root: Path = ROOT) -> str:
    modules = project_modules(root)
    steps = [f"{a} ({modules[a].relative_to(root)}:{graph[a][b]}) -> {b}" for a, b in itertools.pairwise(cycle)]
    return "import cycle: " + " -> ".join(cycle) + "\n  " + "\n  ".join(steps)


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    return import_graph()


def test_every_package_is_read(graph: dict[str, dict[str, int]]) -> None:
    # A walk that silently found nothing would pass every rule below.
    for package in PACKAGES:
        assert sum(1 for m in graph if m.split(".")[0] == package) > 5
    assert "db.catalog" in graph["indexer.index"]
    assert "indexer.encoders.base" in graph["search.engine"] or "indexer.encoders" in graph["search.engine"]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_never_import_higher_ones(graph: dict[str, dict[str, int]], package: str) -> None:
    modules = project_modules()
    violations = [f"{modules[m].relative_to(ROOT)}:{line} imports {target}"
                  for m, targets in sorted(graph.items()) if m.split(".")[0] == package
                  for target, line in sorted(targets.items(), key=lambda t: t[1])
                  if target.split(".")[0] in FORBIDDEN[package]]
    assert not violations, f"{package} must not import {' or '.join(FORBIDDEN[package])}:\n" + "\n".join(violations)


def test_no_import_cycles(graph: dict[str, dict[str, int]]) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, describe(cycle, graph)


def test_the_check_sees_lazy_relative_and_package_imports(tmp_path: Path) -> None:
    """The reader itself: a cycle made of a function-level import and a relative import is found."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "indexer" / "a.py").write_text("def f():\n    from indexer.b import g\n")
    (tmp_path / "indexer" / "b.py").write_text("from . import a\n")
    (tmp_path / "db" / "c.py").write_text("import indexer.a as x\n")
    found = import_graph(tmp_path)
    assert found["indexer.a"] == {"indexer.b": 2} and found["indexer.b"] == {"indexer.a": 1}
    assert found["db.c"] == {"indexer.a": 1}
    assert find_cycle(found) == ["indexer.a", "indexer.b", "indexer.a"]
    assert describe(["indexer.a", "indexer.b", "indexer.a"], found, tmp_path).splitlines()[1:] == [
        "  indexer.a (indexer/a.py:2) -> indexer.b", "  indexer.b (indexer/b.py:1) -> indexer.a"]
