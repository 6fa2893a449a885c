"""The package layering: each package imports only packages below it, and no modules import
each other in a circle (lazy, function-level imports included; imports for type annotations
only, under ``if TYPE_CHECKING:``, are not imports at run time and are left out)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# lowest first; a package may import packages of a lower rank (or its own)
LAYERS: list[set[str]] = [
    {"errors"},
    {"_units", "_config", "_frames"},
    {"spec", "store", "artifacts", "scheduler"},
    {"sdk"},
    {"tune"},
    {"tracking"},
    {"datasets"},
    {"train"},
    {"executor"},
    {"engine"},
    {"models"},
    {"serving"},
    {"client"},
    {"_results", "endpoints"},
    {"<root>"},
    {"ui", "notebooks"},
    {"server"},
    {"testing", "demo", "cli", "__main__"},
]
RANK = {p: i for i, layer in enumerate(LAYERS) for p in layer}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in (SRC / "insitu").rglob("*.py"):
        name = ".".join(p.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        tree = ast.parse(p.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and ast.unparse(block.test).endswith("TYPE_CHECKING")
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # annotations only: no import at run time
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                targets = subs if len(subs) == len(node.names) else [base, *subs]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != m and t.startswith("insitu"):
                    graph[m].add(t)
    return graph


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def test_every_package_has_a_layer() -> None:
    assert {_package(m) for m in _modules()} <= set(RANK)


def test_packages_import_only_lower_layers() -> None:
    graph = _imports(_modules())
    upward = sorted(f"{m} imports {t}" for m, ts in graph.items() for t in ts
                    if RANK[_package(t)] > RANK[_package(m)])
    assert upward == []


def test_no_import_cycles() -> None:
    graph = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []
