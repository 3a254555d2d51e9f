"""Outside segtrain/tasks/, no code compares a task's or a head's name: every question about a task
is asked of its class (``task_of(config).has_boundary`` and the like) and every question about an
output (head, layer kind) of :mod:`segtrain.tasks.heads` (``is_affinities(kind)``,
``is_prediction(kind)``, ``task_of_head(kind)``), so adding a task or a head is one place in tasks/.
A small AST walk over src/segtrain flags every comparison (==, !=, in, not in, match/case) of a
task- or head-name string literal (the registered task names and ``HEAD_KINDS``, read from
segtrain.tasks), or of a tuple/list/set holding one, with anything; dict literals keyed by task
names; and task names chosen in a conditional expression (``"instances" if several else "masks"``,
or any task name in a conditional expression given to something named ``task``). Names used
otherwise (file names, CLI choices, dict keys, arguments) are not comparisons and are not flagged."""

from __future__ import annotations

import ast
from pathlib import Path

from segtrain.tasks import HEAD_KINDS, REGISTRY, is_auxiliary, is_prediction, is_segmentable, task_names

SRC = Path(__file__).resolve().parents[2] / "src" / "segtrain"
#: the registered task names (chosen or keyed by name: flagged)
NAMES = frozenset(task_names())
#: task and head names (compared with anything: flagged)
COMPARED = NAMES | frozenset(HEAD_KINDS)


def _is_name_literal(node: ast.AST) -> bool:
    """A task-name literal, or a tuple/list/set of them."""
    if isinstance(node, ast.Constant):
        return node.value in NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(isinstance(e, ast.Constant) and e.value in NAMES for e in node.elts)
    return False


def _holds_compared_name(node: ast.AST) -> bool:
    """A task- or head-name literal, or a tuple/list/set holding one (``("affinities", "raw")``)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value in COMPARED
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_holds_compared_name(e) for e in node.elts)
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
    """Line numbers of every comparison with a task or head name, task-keyed dict literal and
    conditional choice of a task name in ``tree``."""
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
                if _holds_compared_name(a) or _holds_compared_name(b):
                    lines.append(node.lineno)
                    break
        elif isinstance(node, ast.Match):
            for case in node.cases:
                for sub in ast.walk(case.pattern):
                    if isinstance(sub, ast.MatchValue) and _holds_compared_name(sub.value):
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
visible = kind != "lsds"
if info.kind in ("affinities", "lsds", "probabilities"): pass
inputs = a if r.kind in ("affinities", "raw") else b
if any(h.name == "lsds" for h in heads): pass
if "probabilities" == layer.metadata["kind"]: pass
if 0 < n == "masks": pass
match head.name:
    case "lsds" | "probabilities": pass
    case "raw": pass
parser.add_argument("--source", choices=("affinities", "raw"))
path = folder / "affinities" / f"{kind}.zarr"
if name == "affinities.zarr" or kind == "raw" or name.endswith("lsds"): pass
out = dict(affinities=1, lsds=2); channels = out["lsds"]
'''
    assert task_string_uses(ast.parse(code)) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 15, 16, 17, 18,
                                                 21, 22, 23, 24, 25, 26, 28, 28]


def test_the_names_come_from_the_tasks():
    """The walk's names are the registered tasks' and the head vocabulary's: a task or head added
    in tasks/ is checked with no edit here."""
    assert NAMES == set(REGISTRY) and COMPARED == NAMES | set(HEAD_KINDS)
    for name in sorted(COMPARED):
        assert task_string_uses(ast.parse(f"if x == {name!r}: pass\nmatch y:\n    case {name!r}: pass")) == [1, 3]


def test_the_head_vocabulary_names_every_head_the_tasks_predict():
    """Every head a registered task's model has is named in tasks/heads.py; the heads some task
    segments (its ``Task.head``) are the segmentable ones, the others (LSDs) auxiliary."""
    predicted = {name for task in REGISTRY.values() for lsds in (False, True)
                 for name, _, _ in task.heads(3, lsds, 3, 3)}
    assert predicted == set(HEAD_KINDS) and all(is_prediction(kind) for kind in predicted)
    segmented = {task.head for task in REGISTRY.values()}
    assert {kind for kind in HEAD_KINDS if is_segmentable(kind)} == segmented
    assert {kind for kind in HEAD_KINDS if is_auxiliary(kind)} == set(HEAD_KINDS) - segmented
    assert not any(is_prediction(kind) for kind in ("segmentation", "uncertainty", "raw", None))


def test_no_task_string_comparison_outside_tasks():
    uses = uses_outside_tasks()
    assert not uses, (f"{sum(map(len, uses.values()))} comparisons of a task or head name outside segtrain/tasks/ "
                      f"(ask the task object or segtrain.tasks.heads instead): {uses}")
