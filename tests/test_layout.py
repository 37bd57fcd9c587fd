"""The library's shape, read from its own imports (every import, those inside functions included): no import
cycles, and no arrow from a lower floor to a higher one. The floors (README, 'Layout'), lowest first:

0. ``yolox`` (the package), ``errors``, ``files``, ``console``: leaf helpers, no project imports beyond them.
1. ``ops``: boxes, letterbox, decode and anchor points, NMS, drawing; thresholds and strides passed in.
2. ``models``: the model table, the network, checkpoints, the metadata a model file carries.
3. ``config`` (params), ``assets`` (names of datasets and weights, the download cache).
4. ``lineage`` (data, params and code versions).
5. ``inference`` (open a model file, run it), ``data`` (read, validate, prepare, load), ``tracking`` (MLflow runs,
   store, journal).
6. ``evaluate``.
7. ``train``, ``export`` (+ benchmark), ``serve``: stages side by side, none imports another.
8. ``registry`` (register, gate, promotion): above the stages it measures and serves.
9. ``pipeline``: composes the stages.  10. ``cli``.

A module may import its own package and any lower floor; never a higher floor, nor another package of its floor.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "yolox"

FLOORS: list[set[str]] = [
    {"yolox", "yolox.errors", "yolox.files", "yolox.console"},
    {"yolox.ops"},
    {"yolox.models"},
    {"yolox.config", "yolox.assets"},
    {"yolox.lineage"},
    {"yolox.inference", "yolox.data", "yolox.tracking"},
    {"yolox.evaluate"},
    {"yolox.train", "yolox.export", "yolox.serve"},
    {"yolox.registry"},
    {"yolox.pipeline"},
    {"yolox.cli"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Project modules ``name`` imports anywhere in its file (``from a import b``: ``a``, and ``a.b`` when a module)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in MODULES and m != name}


def _unit(module: str) -> str:
    """The floor member a module belongs to: its package (``yolox.data.stage`` -> ``yolox.data``) or itself."""
    for floor in FLOORS:
        for unit in sorted(floor, key=len, reverse=True):
            if module == unit or (unit != "yolox" and module.startswith(unit + ".")):
                return unit
    raise AssertionError(f"{module} is on no floor: add it to tests/test_layout.py FLOORS and the README's Layout")


def _floor(unit: str) -> int:
    return next(i for i, floor in enumerate(FLOORS) if unit in floor)


def test_every_module_has_a_floor() -> None:
    for module in MODULES:
        _unit(module)


def test_no_arrow_goes_up_or_sideways() -> None:
    bad = []
    for module in sorted(MODULES):
        mine = _unit(module)
        for target in sorted(_imports(module)):
            theirs = _unit(target)
            if theirs == mine:
                continue
            if _floor(theirs) > _floor(mine):
                bad.append(f"{module} -> {target} (floor {_floor(mine)} imports floor {_floor(theirs)})")
            elif _floor(theirs) == _floor(mine) and _floor(mine) > 0:   # floor 0: leaf helpers, side by side
                bad.append(f"{module} -> {target} (two packages of floor {_floor(mine)})")
    assert not bad, "imports against the layout:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over the module graph: every component is one module."""
    graph = {m: _imports(m) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("low", ["yolox.ops", "yolox.models"])
def test_lowest_floors_import_no_stage(low: str) -> None:
    """The issue's words: ``ops`` and ``models`` import nothing from data, train, evaluate, export, registry,
    tracking, pipeline or cli (nor config: thresholds and strides are passed in)."""
    stages = ("data", "train", "evaluate", "export", "registry", "tracking", "pipeline", "cli", "config", "serve")
    found = sorted(f"{m} -> {t}" for m in MODULES if _unit(m) == low for t in _imports(m)
                   if t.split(".")[1] in stages)
    assert not found, found
