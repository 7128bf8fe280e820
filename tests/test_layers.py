"""The package's imports go one way: no cycles, and no module imports a layer above its own.

Every ``import pixelgroup...`` / ``from pixelgroup... import ...`` is read with ``ast``, at
module level and inside functions alike, so an import hidden in a function body counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pixelgroup"

# From the bottom: a module may import its own unit (package) and units of a lower rank.
RANKS = {
    "errors": 0,
    "_checks": 1,
    "_atomic": 1,
    "_memory": 1,
    "_native": 1,
    "_config_io": 1,
    "config": 2,
    "ops": 3,
    "losses": 4,
    "models": 5,
    "postprocess": 6,
    "baselines": 6,
    "metrics": 7,
    "data": 8,
    "viz": 9,
    "analysis": 10,
    "tasks": 11,
    "engine": 12,
    "cli": 13,
    "__init__": 14,
    "__main__": 14,
}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """``{module: {pixelgroup modules it imports}}`` for every ``.py`` file under ``root``."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in files else node.module)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for module, targets in graph.items():
        for target in targets:
            a, b = unit(module), unit(target)
            if a == b:
                continue
            if a not in RANKS or b not in RANKS:
                out.append(f"{module} -> {target}: unit without a rank in RANKS")
            elif RANKS[b] >= RANKS[a]:
                out.append(f"{module} ({a}) imports {target} ({b}): not a lower layer")
    return sorted(out)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_unit_has_a_rank():
    units = {unit(m) for m in import_graph(PACKAGE)}
    assert units <= set(RANKS), f"add these to RANKS: {sorted(units - set(RANKS))}"


def test_no_import_goes_up_the_layers():
    assert layer_violations(import_graph(PACKAGE)) == []


def test_no_import_cycles():
    assert cycles(import_graph(PACKAGE)) == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pixelgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pixelgroup"


@pytest.mark.parametrize("where", ["module level", "inside a function"])
def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path, where):
    body = "from pixelgroup.tasks import TASKS\n"
    if where == "inside a function":
        body = "def f():\n    " + body
    root = _write(
        tmp_path,
        {
            "__init__.py": "",
            "tasks/__init__.py": "from pixelgroup.engine.predict import run\n",
            "engine/__init__.py": "",
            "engine/predict.py": body,
        },
    )
    graph = import_graph(root)
    assert cycles(graph) == [["pixelgroup.engine.predict", "pixelgroup.tasks"]]
    assert layer_violations(graph) == [
        "pixelgroup.tasks (tasks) imports pixelgroup.engine.predict (engine): not a lower layer"
    ]


def test_the_boundary_benchmark_imports_no_dataset_nor_torchvision():
    """``pixelgroup eval-boundaries`` starts in seconds: its evaluator imports the metrics and
    the ``.mat`` reader, not every task, dataset and torchvision's transforms."""
    import subprocess
    import sys

    code = (
        "import sys, pixelgroup.cli.eval_boundaries, pixelgroup.data.boundary_maps; "
        "print(sorted(m for m in ('torchvision', 'pixelgroup.tasks', 'pixelgroup.data.transforms')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
