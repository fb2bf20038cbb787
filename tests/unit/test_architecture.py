"""The package's layers, read from its source: imports run one way only, no cycles, every layer documented.

The layers, lowest first (docs/ARCHITECTURE.md draws them): the foundation modules at the package root, then
``models -> concepts -> activations -> stats -> analyses -> theory -> suite -> report -> cli``. A module may
import from its own layer and from layers to its left, never from one to its right. Imports are read with
``ast`` (inside functions too), so a lazy import cannot hide a back-edge.
"""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "conceptspace"
LAYERS = ("", "models", "concepts", "activations", "stats", "analyses", "theory", "suite", "report", "cli")
FOUNDATION = ("utils",)  # helpers below the data flow: rank 0, like the root modules


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    """Rank of a ``conceptspace...`` module: its first component below the package, or 0 for the root modules."""
    parts = module.split(".")
    if len(parts) == 1:
        return 0
    head = parts[1]
    if head in FOUNDATION:
        return 0
    return LAYERS.index(head) if head in LAYERS else 0


def imports(path: Path, *, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every ``conceptspace`` import in a file; ``top_level_only`` skips function bodies and
    ``if TYPE_CHECKING:`` blocks (what actually runs at import time, for the cycle check)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = False
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner = False
            if isinstance(child, ast.ImportFrom) and child.module and (top or not top_level_only):
                if child.module == "conceptspace":
                    found.extend((child.lineno, f"conceptspace.{a.name}") for a in child.names)
                elif child.module.startswith("conceptspace."):
                    found.append((child.lineno, child.module))
            if isinstance(child, ast.Import) and (top or not top_level_only):
                found.extend((child.lineno, a.name) for a in child.names if a.name.startswith("conceptspace"))
            visit(child, inner)

    visit(tree, True)
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def back_edges(modules: dict[str, Path]) -> list[str]:
    out = []
    for name, path in sorted(modules.items()):
        for line, target in imports(path):
            if layer_of(target) > layer_of(name):
                out.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name} ({LAYERS[layer_of(name)] or 'root'}) "
                           f"imports {target} ({LAYERS[layer_of(target)]})")
    return out


def cycles(modules: dict[str, Path]) -> list[list[str]]:
    """Strongly connected components (size > 1) of the import-time module graph (Tarjan)."""
    graph = {name: sorted({t for _, t in imports(p, top_level_only=True) if t in modules and t != name})
             for name, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
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
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            strongconnect(v)
    return found


def test_no_import_runs_against_the_data_flow():
    assert back_edges(all_modules()) == []


def test_no_import_cycle():
    assert cycles(all_modules()) == []


def test_the_checks_catch_a_back_edge_and_a_cycle(tmp_path):
    """The two checks above can fail: a models module that imports the report, and two modules importing each
    other, are both reported."""
    fake = tmp_path / "conceptspace"
    (fake / "models").mkdir(parents=True)
    a = fake / "models" / "_a.py"
    b = fake / "models" / "_b.py"
    a.write_text("from conceptspace.models._b import x\nfrom conceptspace.report import write_report\n")
    b.write_text("from conceptspace.models._a import y\n")
    global PACKAGE
    saved = PACKAGE
    PACKAGE = fake
    try:
        modules = {module_name(p): p for p in fake.rglob("*.py")}
        assert any("imports conceptspace.report" in e for e in back_edges(modules))
        assert cycles(modules) == [["conceptspace.models._a", "conceptspace.models._b"]]
    finally:
        PACKAGE = saved


@pytest.mark.parametrize("init", sorted(PACKAGE.rglob("__init__.py")), ids=lambda p: module_name(p))
def test_every_package_says_why_and_what_it_exports(init):
    tree = ast.parse(init.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree)
    assert doc and len(doc.split()) >= 15, f"{init}: a one-paragraph docstring that says why this layer exists"
    if init.parent == PACKAGE:
        return  # the root re-exports lazily through __getattr__; its __all__ is built from a dict
    names = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
             if isinstance(t, ast.Name)]
    names += [node.target.id for node in tree.body if isinstance(node, ast.AnnAssign)
              and isinstance(node.target, ast.Name)]
    assert "__all__" in names, f"{init}: declare the public names in __all__"


def test_every_subpackage_ships_in_the_wheel():
    config = configparser.ConfigParser()
    config.read(PACKAGE.parent / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    on_disk = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert on_disk - listed == set(), "add these packages to setup.cfg [options] packages"


def test_public_names_resolve():
    """Every name in a subpackage's __all__ is importable from it (a stale export fails here, not in a user's
    script)."""
    import importlib

    for init in PACKAGE.rglob("__init__.py"):
        name = module_name(init)
        module = importlib.import_module(name)
        for public in getattr(module, "__all__", []):
            assert hasattr(module, public), f"{name}.__all__ names {public!r}, which it does not define"
