"""The package's import graph, read from the source with ``ast``: no cycle, lower layers never import higher ones.

Every import statement counts, also those inside functions (only ``if TYPE_CHECKING:`` blocks are
skipped: they never run). ``from pkg import name`` also reaches ``pkg.name`` when that is a module,
and the module a package's lazy ``_LAZY`` table loads ``name`` from.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

import regnet_zoo

ROOT = Path(regnet_zoo.__file__).parent
PKG = "regnet_zoo"
TORCH = {"torch", "torchvision", "timm", "lightning", "pytorch_lightning", "torchmetrics"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@cache
def _lazy_table(package: str) -> dict[str, str]:
    """A package's ``_LAZY = {name: module}`` table (module names absolute)."""
    for node in ast.parse(MODULES[package].read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            table = ast.literal_eval(node.value)
            return {k: v if v.startswith(PKG + ".") else f"{package}.{v}" for k, v in table.items()}
    return {}


def _skipped(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


@cache
def imports(name: str) -> tuple[frozenset[str], frozenset[str]]:
    """(modules of the package, top-level outside packages) that module ``name`` imports directly."""
    tree = ast.parse(MODULES[name].read_text())
    skip = _skipped(tree)
    here = name if _is_package(name) else name.rpartition(".")[0]
    inner, outer = set(), set()

    def add(target: str) -> None:
        if target.split(".")[0] != PKG:
            outer.add(target.split(".")[0])
            return
        for t in [*_ancestors(target), target]:  # importing a.b.c runs a and a.b first
            if t in MODULES and t != name and t not in _ancestors(name):
                inner.add(t)

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*here.split(".")[: len(here.split(".")) - node.level + 1], *filter(None, [base])])
            add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    add(f"{base}.{alias.name}")
                if base in MODULES and alias.name in _lazy_table(base):
                    add(_lazy_table(base)[alias.name])
    return frozenset(inner), frozenset(outer)


def reach(name: str) -> tuple[set[str], set[str]]:
    """(package modules, outside packages) that importing ``name`` on its own may run or import."""
    seen, outer, todo = set(), set(), [*_ancestors(name), name]
    while todo:
        m = todo.pop()
        if m in seen or m not in MODULES:
            continue
        seen.add(m)
        inner, out = imports(m)
        outer |= out
        todo.extend(inner)
    return seen, outer


def test_the_graph_is_read():
    assert {"regnet_zoo.factory", "regnet_zoo.weights.hub", "regnet_zoo.models.anynet"} <= set(MODULES)
    inner, outer = imports("regnet_zoo.weights.resolve")
    assert {"regnet_zoo.weights.hub", "regnet_zoo.weights.origin", "regnet_zoo.weights.apply"} <= inner
    assert "regnet_zoo.factory" in imports("regnet_zoo.detection")[0]
    assert "torch" in imports("regnet_zoo.models.anynet")[1]


def test_no_import_cycle():
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in imports(v)[0]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for m in MODULES:
        if m not in index:
            visit(m)
    assert cycles == []


@pytest.mark.parametrize("name", [m for m in MODULES if m.startswith("regnet_zoo.weights")])
def test_weights_never_import_higher_layers(name):
    higher = ("regnet_zoo.lightning", "regnet_zoo.design_space", "regnet_zoo.cli", "regnet_zoo.benchmark")
    inner, outer = reach(name)
    assert sorted(m for m in inner if m.startswith(higher)) == []
    assert not outer & {"lightning", "pytorch_lightning"}


def test_only_the_resolver_imports_hub_and_origin():
    users = {m for m in MODULES if m.startswith("regnet_zoo.weights")
             and {"regnet_zoo.weights.hub", "regnet_zoo.weights.origin"} & imports(m)[0]}
    assert users == {"regnet_zoo.weights.resolve"}


@pytest.mark.parametrize("name", [m for m in MODULES if m.startswith("regnet_zoo.models")])
def test_models_know_no_weights_hub_or_lightning(name):
    inner, outer = reach(name)
    assert sorted(m for m in inner if m.startswith(("regnet_zoo.weights", "regnet_zoo.lightning"))) == []
    assert not outer & {"huggingface_hub", "lightning", "pytorch_lightning"}


@pytest.mark.parametrize("name", ["regnet_zoo.generator", "regnet_zoo.counting", "regnet_zoo.config",
                                  "regnet_zoo.registry", "regnet_zoo.weights.manifest"])
def test_pure_modules_import_no_torch(name):
    assert reach(name)[1] & TORCH == set()
