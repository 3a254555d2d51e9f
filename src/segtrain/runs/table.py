"""The runs table: list, sort and format runs side by side (``segtrain runs``, the Runs panel)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segtrain.errors import InputError
from segtrain.runs.folder import RunFolder
from segtrain.runs.root import default_runs_root
from segtrain.runs.summary import RunSummary, _finite


def format_megabytes(size: int) -> str:
    """Bytes as megabytes, the runs table's size column: ``172``, ``1.5``, ``0.02``."""
    value = size / 1e6
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def format_size(size: int) -> str:
    """``172 MB``, ``1.2 GB``."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "kB", "MB") or value >= 100 else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def is_run_dir(path: str | Path) -> bool:
    return RunFolder.is_run(path)


def load_run(path: str | Path) -> RunSummary:
    """Summary of one run folder."""
    return RunFolder(path).summary()


def list_runs(root: str | Path | None = None) -> list[RunSummary]:
    """Every run folder directly under ``root`` (default: :func:`default_runs_root`), oldest first
    (empty when ``root`` is missing)."""
    root = Path(root) if root is not None else default_runs_root()
    if is_run_dir(root):
        return [load_run(root)]
    if not root.is_dir():
        return []
    runs = [load_run(p) for p in sorted(root.iterdir()) if is_run_dir(p)]
    return sorted(runs, key=lambda r: r.created)


# --- the runs table ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """A column of the runs table: ``key`` (for ``--sort``, the CSV header), ``title`` (the text
    table, Markdown and the Runs panel) and the value of a run (None = missing)."""

    key: str
    title: str
    value: Any  # RunSummary -> value (number or text) or None


def _patch_text(run: RunSummary) -> str | None:
    return "x".join(str(p) for p in run.patch) if run.patch else None


BASE_COLUMNS = [
    Column("name", "name", lambda r: r.name),
    Column("preset", "preset", lambda r: r.preset),
    Column("task", "task", lambda r: r.task),
    Column("model", "model", lambda r: r.model),
    Column("steps", "steps", lambda r: r.steps),
    Column("status", "status", lambda r: r.status),
    Column("max_steps", "planned", lambda r: r.max_steps),
    Column("lr", "lr", lambda r: r.lr),
    Column("batch", "batch", lambda r: r.batch_size),
    Column("patch", "patch", _patch_text),
    Column("metric", "metric", lambda r: (r.best_metric_name or "").removeprefix("val/") or None),
    Column("best", "best", lambda r: r.best_metric),
    Column("best_step", "at step", lambda r: r.best_step),
    Column("final", "final", lambda r: r.final_metric),
]
TAIL_COLUMNS = [
    Column("parent", "parent", lambda r: Path(r.parent).name if r.parent else None),
    Column("data", "data seen", lambda r: r.data),
    Column("size", "MB", lambda r: r.size),
    Column("created", "date", lambda r: r.created),
]


def _class_key(key: str) -> tuple:
    metric, _, k = key.rpartition("_class")
    return (int(k), metric != "iou", metric)


def run_columns(runs: Sequence[RunSummary]) -> list[Column]:
    """The columns of the runs table: the base ones, a column per per-class metric some run has
    (``iou_class1``, ``f1_class1``: its last validation), then parent, data seen, size and date."""
    keys = sorted({k for r in runs for k in r.class_metrics}, key=_class_key)
    per_class = [Column(k, k, lambda r, k=k: _finite(r.class_metrics.get(k))) for k in keys]
    return BASE_COLUMNS + per_class + TAIL_COLUMNS


METRIC_COLUMNS = ("best", "final")
"""Columns of the monitored metric: better is lower or higher as each run's ``mode`` says."""

SORT_ORDERS = ("default", "asc", "desc")


def is_metric_column(key: str) -> bool:
    """Whether the column ``key`` holds a validation metric (sorted by quality, best first)."""
    return key in METRIC_COLUMNS or bool(re.fullmatch(r"\w+_class\d+", key))


def sort_value(column: Column, run: RunSummary):
    """What ``run`` is ordered by in ``column`` (None: no value, always last). Metric columns order
    by quality, the better the smaller: ``(metric name, value)`` for a metric where lower is better
    (VOI, ARAND, loss), ``(metric name, -value)`` where higher is (F1, IoU, Dice, the per-class
    columns); runs monitoring different metrics are grouped by metric. Other columns: numbers as
    numbers, text case-insensitively."""
    value = column.value(run)
    if value is None:
        return None
    if is_metric_column(column.key) and isinstance(value, (int, float)):
        if column.key in METRIC_COLUMNS:
            name = run.best_metric_name or ""
            higher = run.mode == "max" if run.mode else not _lower_is_better(name)
        else:
            name, higher = column.key, True
        return (name, -value if higher else value)
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value).lower())


def _lower_is_better(metric: str) -> bool:
    return any(word in metric for word in ("voi", "arand", "loss", "error"))


def sort_runs(runs: Sequence[RunSummary], key: str, order: str = "default") -> list[RunSummary]:
    """``runs`` ordered by the column ``key``; runs without a value come last in every order.

    Metric columns (``best``, ``final``, per-class metrics like ``iou_class1``) order by quality,
    whichever way the metric runs (VOI: lower is better; F1: higher is): ``order`` "default" or
    "desc" (down from the best) gives the best run first, "asc" the worst first. Other columns:
    "default" or "asc" from the smallest value (earliest date, first name), "desc" from the
    largest. An unknown key or order raises :class:`InputError` naming the valid ones."""
    columns = {c.key: c for c in run_columns(runs)}
    if key not in columns:
        raise InputError(f"Unknown sort key {key!r}; valid keys are: {', '.join(columns)}.")
    if order not in SORT_ORDERS:
        raise InputError(f"Unknown sort order {order!r}; choose one of {', '.join(SORT_ORDERS)}.")
    column = columns[key]
    present = [r for r in runs if sort_value(column, r) is not None]
    missing = [r for r in runs if sort_value(column, r) is None]
    reverse = order == ("asc" if is_metric_column(key) else "desc")
    return sorted(present, key=lambda r: sort_value(column, r), reverse=reverse) + missing


def cell_text(column: Column, run: RunSummary) -> str:
    """A value as the text table, Markdown and the Runs panel show it."""
    value = column.value(run)
    if value is None:
        return "-"
    if column.key == "size":
        return format_megabytes(value)
    if column.key == "lr":
        return f"{value:.3g}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def format_table(runs: Sequence[RunSummary]) -> str:
    """A plain-text table to compare runs side by side."""
    if not runs:
        return "no runs"
    columns = run_columns(runs)
    header = [c.title for c in columns]
    rows = [[cell_text(c, r) for c in columns] for r in runs]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def format_csv(runs: Sequence[RunSummary]) -> str:
    """The runs as CSV: a header of column keys, full-precision numbers, sizes in bytes, empty
    cells for missing values, parent as its full path."""
    columns = run_columns(runs)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for r in runs:
        writer.writerow([(r.parent or "") if c.key == "parent" else _csv_cell(c.value(r)) for c in columns])
    return out.getvalue()


def format_markdown(runs: Sequence[RunSummary]) -> str:
    """The runs as a Markdown table: header row, separator, one line per run."""
    columns = run_columns(runs)

    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    lines = [line(c.title for c in columns), "|" + "|".join("---" for _ in columns) + "|"]
    lines += [line(cell_text(c, r) for c in columns) for r in runs]
    return "\n".join(lines) + "\n"


FORMATS = {"table": format_table, "csv": format_csv, "markdown": format_markdown}


def format_runs(runs: Sequence[RunSummary], fmt: str = "table") -> str:
    """``runs`` as a text table, CSV or Markdown (``fmt``)."""
    if fmt not in FORMATS:
        raise InputError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    return FORMATS[fmt](runs)


def fine_tune_note(record: dict) -> str:
    """One line for the user: the learning rate and warm-up of a fine-tuning run (its run.json
    ``fine_tune`` record)."""
    scale = "" if record["lr_scale"] == 1 else f" ({record['lr_scale']:g} x the config's {record['config_lr']:g})"
    warmup = f"{record['warmup_steps']} warm-up steps" if record["warmup_steps"] else "no warm-up"
    return (f"fine-tuning at learning rate {record['lr']:g}{scale}, {warmup} (train.finetune_lr_scale, "
            "train.finetune_warmup_steps)")
