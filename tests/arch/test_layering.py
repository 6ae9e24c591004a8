"""The package's import graph: no cycles, and the architecture layer at the bottom.

Built with ``ast`` from the source (nothing is imported): every ``import`` and ``from
... import`` of a kdumpy module counts, at module level, inside functions (an import
hidden there to dodge a cycle is still a dependency) and under ``TYPE_CHECKING`` (a type
that needs the module above it is a dependency too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import kdumpy

SRC = Path(kdumpy.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def imports_of(name: str, path: Path) -> set[str]:
    """The kdumpy modules ``name`` imports (a package's submodule when one is named)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_the_finder_sees_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert strongly_connected(GRAPH) == []


def test_arch_imports_nothing_above_it() -> None:
    # kdumpy.tables: passes over a dump's tables (C, or Python); it imports nothing of kdumpy.
    allowed = {"kdumpy.errors", "kdumpy.tables"}
    for name, deps in GRAPH.items():
        if name == "kdumpy.arch" or name.startswith("kdumpy.arch."):
            above = {d for d in deps if not d.startswith("kdumpy.arch") and d not in allowed}
            assert not above, f"{name} imports {sorted(above)}"


def test_the_layer_is_used_below_everything_that_reads_dumps() -> None:
    # The dump reader chooses its architecture: vmcore depends on arch, never the reverse.
    assert "kdumpy.arch.select" in GRAPH["kdumpy.vmcore.base"]
    assert not any(d.startswith("kdumpy.vmcore") for d in GRAPH["kdumpy.arch.base"])
