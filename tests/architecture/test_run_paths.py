"""RunFolder (src/segtrain/runs/) is the only code that names a path inside a run folder: no module
outside runs/ (the source and the benchmarks) holds a string literal naming one of a run folder's files
or folders (``"checkpoints"``, ``"final.ckpt"``, ``"tensorboard"``, ``x / "metrics.json"``, ...); they
ask RunFolder for the path instead (``folder.final_checkpoint``, ``folder.tensorboard_dir``, ...)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "src" / "segtrain" / "runs"
NAMES = {
    "config.yaml", "metrics.json", "metrics.csv", "checkpoints", "final.ckpt", "best.ckpt", "last.ckpt",
    "postprocess.yaml", "run.json", "selftrain.json", "pseudo_labels.json", "figure.png", "teacher.pt",
    "tensorboard", "lightning_logs",
}
ALLOWED = {
    # (file relative to the repository, literal): why it is no path inside a run folder
    ("src/segtrain/plugin/widgets/train.py", "config.yaml"): "the default file name of the Save config dialog",
}


def _offending_literals(path: Path) -> list[tuple[int, str]]:
    """``(line, literal)`` of every string literal (f-string parts included) that is, or has as a
    path component, a run folder name; prose (text with spaces: messages, docstrings) is not a path."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and not re.search(r"\s", node.value):
            if NAMES & set(re.split(r"[/\\]", node.value)):
                found.append((node.lineno, node.col_offset, node.value))
    return [(line, value) for line, _, value in sorted(found)]


def _modules() -> list[Path]:
    files = [*(ROOT / "src" / "segtrain").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    return sorted(p for p in files if RUNS not in p.parents)


def test_only_runfolder_names_paths_inside_a_run_folder():
    offences = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        offences += [f"{rel}:{line}: {value!r}" for line, value in _offending_literals(path)
                     if (rel, value) not in ALLOWED]
    assert not offences, ("paths inside a run folder built outside segtrain.runs (use RunFolder's properties):\n"
                          + "\n".join(offences))


def test_the_check_sees_a_hand_built_path(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('final = run_dir / "checkpoints" / "final.ckpt"\nlog = f"{run_dir}/tensorboard"\n'
                      'message = "checkpoints in the run folder"\n')
    assert [value for _, value in _offending_literals(sample)] == ["checkpoints", "final.ckpt", "/tensorboard"]


def test_allow_list_entries_are_still_needed():
    used = {(p.relative_to(ROOT).as_posix(), v) for p in _modules() for _, v in _offending_literals(p)}
    assert set(ALLOWED) <= used, f"stale allow-list entries: {set(ALLOWED) - used}"
