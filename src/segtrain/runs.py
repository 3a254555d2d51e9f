"""Run folders: list, compare, load.

A run folder (made by :class:`segtrain.train.TrainingRun`) holds ``config.yaml``,
``metrics.json``/``metrics.csv``, ``checkpoints/`` and ``tensorboard/``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from segtrain.errors import SegtrainError


@dataclass
class RunSummary:
    name: str
    path: Path
    preset: str | None
    task: str | None
    steps: int
    best_metric_name: str | None
    best_metric: float | None
    created: str  # ISO 8601, UTC
    max_steps: int | None = None
    best_step: int | None = None
    checkpoints: list[str] = field(default_factory=list)
    last_metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def is_run_dir(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "config.yaml").is_file()


def _created(path: Path) -> datetime:
    """When the run began: the UTC timestamp in its folder name (``<name>-YYYYmmdd-HHMMSS``), which
    a resume keeps, else the folder's modification time."""
    match = re.search(r"(\d{8}-\d{6})(?:-\d+)?$", path.name)
    if match:
        return datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)


def load_run(path: str | Path) -> RunSummary:
    """Summary of one run folder."""
    path = Path(path)
    if not is_run_dir(path):
        raise SegtrainError(f"{path} is not a segtrain run folder (no config.yaml); pick a folder under runs/.")
    try:
        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    except yaml.YAMLError:
        config = {}
    metrics = {}
    if (path / "metrics.json").is_file():
        try:
            metrics = json.loads((path / "metrics.json").read_text())
        except json.JSONDecodeError:
            metrics = {}
    history = metrics.get("history", [])
    last = history[-1] if history else {}
    best = metrics.get("best")
    created = _created(path)
    checkpoints = sorted(p.name for p in (path / "checkpoints").glob("*.ckpt")) if (path / "checkpoints").is_dir() else []
    return RunSummary(
        name=path.name,
        path=path,
        preset=config.get("preset"),
        task=(config.get("model") or {}).get("task"),
        steps=int(metrics.get("steps", last.get("step", 0)) or 0),
        best_metric_name=metrics.get("monitor"),
        best_metric=None if best is None or (isinstance(best, float) and math.isnan(best)) else float(best),
        created=created.isoformat(timespec="seconds"),
        max_steps=(config.get("train") or {}).get("max_steps"),
        best_step=metrics.get("best_step"),
        checkpoints=checkpoints,
        last_metrics={k: v for k, v in last.items() if k.startswith("val/")},
    )


def list_runs(root: str | Path = "runs") -> list[RunSummary]:
    """Every run folder directly under ``root``, oldest first (empty when ``root`` is missing)."""
    root = Path(root)
    if is_run_dir(root):
        return [load_run(root)]
    if not root.is_dir():
        return []
    runs = [load_run(p) for p in sorted(root.iterdir()) if is_run_dir(p)]
    return sorted(runs, key=lambda r: r.created)


def format_table(runs: list[RunSummary]) -> str:
    """A plain-text table to compare runs side by side."""
    if not runs:
        return "no runs"
    header = ["name", "preset", "task", "steps", "best metric", "best", "at step", "created"]
    rows = []
    for r in runs:
        steps = f"{r.steps}/{r.max_steps}" if r.max_steps else str(r.steps)
        best = "-" if r.best_metric is None else f"{r.best_metric:.4g}"
        rows.append([r.name, r.preset or "-", r.task or "-", steps, (r.best_metric_name or "-").removeprefix("val/"),
                     best, "-" if r.best_step is None else str(r.best_step), r.created])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)
