"""No import circles inside cmal: a module may depend on lower ones only.

Every import counts, also those inside functions (a lazy import delays a circle; it does not remove it). A circle
makes both modules harder to change, test and load on their own; this test names the first one it finds.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the cmal modules it imports (``from cmal.x import y`` counts as cmal.x.y when that is a module)."""
    files = {_module_name(p): p for p in (ROOT / "cmal").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in files)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    up = package.split(".")
                    base = ".".join(up[: len(up) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    deps.add(target if target in files else base)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def test_cmal_has_no_import_circles():
    graph = import_graph()
    assert {"cmal", "cmal.hac", "cmal.graph_hac", "cmal.loop", "cmal.session"} <= set(graph)
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        raise AssertionError(f"import circle: {' -> '.join(err.args[1])}") from None
    assert order.index("cmal.tree") < order.index("cmal.hac") and order.index("cmal.tree") < order.index(
        "cmal.graph_hac"
    )


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        assert set(err.args[1]) == {"a", "b", "c"}
    else:
        raise AssertionError("graphlib missed a circle")
