"""Outside segtrain/tasks/, no code compares the task string: every question about a task is asked
of its class (``task_of(config).has_boundary`` and the like), so adding a task is one class in
tasks/. A small AST walk over src/segtrain flags comparisons (==, !=, in, not in, match/case) of a
task expression (a name or attribute containing ``task``, ``x.get("task")``, ``x["task"]``) with a
task-name string literal or a tuple/list/set of them, dict literals keyed by task names, and task
names chosen in a conditional expression (``"instances" if several else "masks"``, or any task name
in a conditional expression given to something named ``task``)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "segtrain"
NAMES = {"affinities", "masks", "instances", "classes"}


def _is_name_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(isinstance(e, ast.Constant) and e.value in NAMES for e in node.elts)
    return False


def _mentions_task(node: ast.AST) -> bool:
    """An expression that reads a task: ``task``, ``spec.task``, ``self.session.task``, ``model_task``,
    ``attrs.get("task")``, ``model["task"]``."""
    if isinstance(node, ast.Name):
        return "task" in node.id.lower()
    if isinstance(node, ast.Attribute):
        return "task" in node.attr.lower()
    if isinstance(node, ast.Call):  # self.task(), attrs.get("task")
        return _mentions_task(node.func) or any(isinstance(a, ast.Constant) and a.value == "task" for a in node.args)
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "task"
    return False


def _dict_key_is_task(key: ast.AST | None) -> bool:
    if isinstance(key, ast.Constant):
        return key.value in NAMES
    if isinstance(key, ast.Tuple) and key.elts:  # ("affinities", 3): ...
        return isinstance(key.elts[0], ast.Constant) and key.elts[0].value in NAMES
    return False


def _is_task_choice(node: ast.AST) -> bool:
    """A conditional expression that picks a task name (``"instances" if ... else "masks"``)."""
    return isinstance(node, ast.IfExp) and _is_name_literal(node.body) and _is_name_literal(node.orelse)


def _names_task(node: ast.AST) -> bool:
    """An assignment target or keyword named like a task (``task``, ``self.task``, ``model_task``)."""
    return _mentions_task(node) if isinstance(node, (ast.Name, ast.Attribute)) else False


def _picks_a_name(node: ast.AST) -> bool:
    return isinstance(node, ast.IfExp) and (_is_name_literal(node.body) or _is_name_literal(node.orelse))


def task_string_uses(tree: ast.AST) -> list[int]:
    """Line numbers of every task-string comparison, task-keyed dict literal and conditional choice
    of a task name in ``tree``."""
    lines = []
    for node in ast.walk(tree):
        if _is_task_choice(node):
            lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and _picks_a_name(node.value) \
                and not _is_task_choice(node.value) \
                and any(_names_task(t) for t in (node.targets if isinstance(node, ast.Assign) else [node.target])):
            lines.append(node.lineno)
        elif isinstance(node, ast.keyword) and node.arg and "task" in node.arg.lower() and _picks_a_name(node.value) \
                and not _is_task_choice(node.value):
            lines.append(node.value.lineno)
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            for (a, b), op in zip(zip(sides, sides[1:]), node.ops):
                if not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)):
                    continue
                if (_is_name_literal(a) and _mentions_task(b)) or (_is_name_literal(b) and _mentions_task(a)):
                    lines.append(node.lineno)
        elif isinstance(node, ast.Match) and _mentions_task(node.subject):
            for case in node.cases:
                for sub in ast.walk(case.pattern):
                    if isinstance(sub, ast.MatchValue) and _is_name_literal(sub.value):
                        lines.append(sub.lineno)
        elif isinstance(node, ast.Dict):
            if sum(_dict_key_is_task(k) for k in node.keys) >= 2:
                lines.append(node.lineno)
    return sorted(lines)


def uses_outside_tasks() -> dict[str, list[int]]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        if "tasks" in path.relative_to(SRC).parts[:1]:
            continue
        lines = task_string_uses(ast.parse(path.read_text()))
        if lines:
            out[str(path.relative_to(SRC))] = lines
    return out


def test_the_walk_finds_each_form():
    code = '''
if spec.task == "affinities": pass
if "masks" != config.model.task: pass
if task in ("masks", "instances"): pass
if info.task not in ["classes"]: pass
if attrs.get("task") in {"masks", "classes"}: pass
if model["task"] == "classes": pass
if self.task() == "masks": pass
MONITOR = {"affinities": 1, "masks": 2}
PRESETS = {("affinities", 3): "a", ("masks", 2): "b"}
match cfg.task:
    case "instances": pass
if kind == "affinities": pass
heads = {"affinities": 1, "raw": 2}
if "affinities" not in heads: pass
kind = "instances" if several else "masks"
task = name if known else "affinities"
config(task=other if three_d else "affinities")
head = found.head if found else "affinities"
mode = "mask" if floating else "instances"
'''
    assert task_string_uses(ast.parse(code)) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16, 17, 18]


def test_no_task_string_comparison_outside_tasks():
    uses = uses_outside_tasks()
    assert not uses, (f"{sum(map(len, uses.values()))} comparisons of the task string outside segtrain/tasks/ "
                      f"(ask the task object instead): {uses}")
