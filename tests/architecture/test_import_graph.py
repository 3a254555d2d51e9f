"""The import graph of segtrain has no cycles, between modules nor between its parts (config, io,
segment, postprocess, train, predict, plugin, ...), counting imports inside functions too; and the
core never imports Qt or napari (a small AST walk over src/segtrain)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
QT = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy")


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "segtrain").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(segtrain modules imported, other top-level packages imported) by the file, anywhere in it."""
    ours, others = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        for name in names:
            if name.split(".")[0] == "segtrain":
                while name not in modules:
                    name = name.rsplit(".", 1)[0]
                ours.add(name)
            else:
                others.add(name.split(".")[0])
    return ours, others


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "segtrain"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _graphs():
    modules = _modules()
    graph, parts, foreign = {}, {}, {}
    for name, path in modules.items():
        ours, others = _imports(path, modules)
        # a package's own __init__ importing its modules is how packages work, not a cycle
        graph[name] = {m for m in ours if m != name and not (name.startswith(m + ".") and modules[m].name == "__init__.py")}
        foreign[name] = others
        for m in ours:
            if _part(m) != _part(name) and _part(name) != "segtrain" and _part(m) != "segtrain":
                parts.setdefault(_part(name), set()).add(_part(m))
    return graph, parts, foreign


def test_modules_import_no_cycle():
    graph, _, _ = _graphs()
    assert len(graph) > 60
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_parts_depend_one_way():
    _, parts, _ = _graphs()
    assert _cycle(parts) is None, " -> ".join(_cycle(parts))
    # the layering of docs/DESIGN: the front ends on top, the post-processing layer below training
    # and prediction, segment and evaluate below it
    assert "postprocess" in parts["train"] and "postprocess" not in parts.get("segment", set())
    assert "train" not in parts["predict"] and "predict" not in parts["postprocess"]
    # the workflow layer sits between the front ends and training / prediction / proofreading
    assert "workflows" in parts["plugin"] and "workflows" in parts["commands"]
    assert not any("workflows" in parts.get(p, set())
                   for p in ("train", "predict", "postprocess", "proofread", "segment", "evaluate", "io"))


def test_the_core_never_imports_qt():
    _, _, foreign = _graphs()
    for name, others in foreign.items():
        if _part(name) != "plugin" and name not in ("segtrain.commands.gui",):
            assert not (others & set(QT)), f"{name} imports {sorted(others & set(QT))}"
