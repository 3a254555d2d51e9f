"""Run folders: :class:`RunFolder` is the one owner of their layout.

A run folder (``<runs_root>/<name>-<UTC timestamp>/``, made by :class:`segtrain.train.TrainingRun`)::

    config.yaml          the full config the run trained with
    metrics.json         summary (monitor, best, steps, ...) and one record per validation
    metrics.csv          the same records as a table
    checkpoints/         best.ckpt (weights only, best monitored validation metric), final.ckpt
                         (end of every run segment), step-N.ckpt (the newest train.keep_checkpoints
                         periodic ones) and last.ckpt (a link to the newest periodic one)
    tensorboard/         Lightning's TensorBoard log
    postprocess.yaml     segment settings chosen by ``segtrain tune`` (applied whenever the run is loaded)
    run.json             where the run came from: its parent run (fine-tuning), if any

Which checkpoint a model is loaded from (:meth:`RunFolder.model_checkpoint`: the newest readable
one, unless asked for another) and which one a run resumes from
(:meth:`RunFolder.resume_checkpoint`: the newest readable full-state one) is decided here and
nowhere else.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from segtrain.config import load_config, save_config, update_section
from segtrain.errors import ConfigError, InputError, SegtrainError
from segtrain.io.atomic import atomic_path

CONFIG_FILE = "config.yaml"
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
CHECKPOINTS = "checkpoints"
POSTPROCESS_FILE = "postprocess.yaml"
RUN_FILE = "run.json"
FULL_STATE = ("final.ckpt", "last.ckpt")  # written with optimizer state: a run can resume from them
WEIGHTS_ONLY = ("best.ckpt",)


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint file of a run: its step (None when it cannot be read) and size."""

    path: Path
    step: int | None
    size: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def readable(self) -> bool:
        return self.step is not None

    def describe(self) -> str:
        """``final.ckpt (step 15)``."""
        return f"{self.name} (step {self.step})" if self.readable else f"{self.name} (unreadable)"


class _Anything:
    """Stands in for every object a checkpoint's pickle names outside the standard library
    (tensors, numpy arrays, Lightning's enums): called, indexed or given state, it stays itself."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return self

    def __setstate__(self, state):
        pass


class _StepUnpickler(pickle.Unpickler):
    SAFE = ("builtins", "collections", "datetime", "pathlib", "copyreg", "_codecs")

    def find_class(self, module: str, name: str):
        if module.split(".")[0] in self.SAFE:
            return super().find_class(module, name)
        return _Anything

    def persistent_load(self, pid):  # tensor storages: not read
        return _Anything()


def checkpoint_step(path: str | Path) -> int | None:
    """The training step a checkpoint was saved at, or None when it cannot be read (truncated,
    not a checkpoint). Reads only the checkpoint's small pickle (``data.pkl`` of torch's zip
    format), never its tensors and without PyTorch: milliseconds, in any thread."""
    try:
        with zipfile.ZipFile(Path(path)) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            with archive.open(name) as f:
                checkpoint = _StepUnpickler(f).load()
            if archive.testzip() is not None:  # a damaged member (e.g. overwritten bytes)
                return None
        return int(checkpoint.get("global_step", 0))
    except Exception:  # noqa: BLE001 - any unreadable file is "not good"
        return None


def _timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


class RunFolder:
    """A run folder: paths, config, metrics, checkpoints and the choice among them, post-processing
    settings and the parent run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunFolder) and self.path.resolve() == other.path.resolve()

    def __hash__(self) -> int:
        return hash(self.path.resolve())

    # --- making and finding run folders ---------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, name: str) -> RunFolder:
        """A new, empty ``<root>/<name>-<timestamp>`` folder (``-2``, ``-3`` ... when taken)."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        base = f"{name}-{_timestamp()}"
        path = root / base
        k = 1
        while True:
            try:
                path.mkdir()
                break
            except FileExistsError:
                k += 1
                path = root / f"{base}-{k}"
        folder = cls(path)
        folder.checkpoints_dir.mkdir(exist_ok=True)
        return folder

    @classmethod
    def at(cls, path: str | Path, create: bool = False) -> RunFolder:
        """The run folder at ``path`` (created when ``create``; it must hold no checkpoints yet)."""
        folder = cls(path)
        if create:
            if folder.checkpoint_files():
                raise ConfigError(
                    f"Run folder {folder.path} already holds checkpoints; name a new folder, or continue it "
                    f"with --resume {folder.path}."
                )
            folder.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        return folder

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunFolder | None:
        """The run folder a checkpoint file lies in (``<run>/checkpoints/x.ckpt``), or None."""
        parent = Path(checkpoint).parent
        if parent.name == CHECKPOINTS and (parent.parent / CONFIG_FILE).is_file():
            return cls(parent.parent)
        return None

    @staticmethod
    def is_run(path: str | Path) -> bool:
        path = Path(path)
        return path.is_dir() and (path / CONFIG_FILE).is_file()

    # --- paths ----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_JSON

    @property
    def metrics_csv_path(self) -> Path:
        return self.path / METRICS_CSV

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def postprocess_path(self) -> Path:
        return self.path / POSTPROCESS_FILE

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    # --- config and metrics ---------------------------------------------------------------------
    def save_config(self, config) -> Path:
        return save_config(config, self.config_path)

    def config(self):
        """The run's config (with the post-processing settings of ``postprocess.yaml`` applied)."""
        return self.apply_postprocess(load_config(self.config_path))

    def model_config(self, which: str = "newest"):
        """The config a model loaded from this run (``which`` checkpoint) has, without loading it:
        the run's config with the segment settings chosen on validation data for that checkpoint."""
        return self.apply_postprocess(load_config(self.config_path), self.model_checkpoint(which).step)

    def raw_config(self) -> dict:
        """config.yaml as a plain mapping ({} when unreadable): cheap, for tables."""
        try:
            values = yaml.safe_load(self.config_path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return {}
        return values if isinstance(values, dict) else {}

    def metrics(self) -> dict:
        """metrics.json as a mapping ({} when missing or unreadable)."""
        try:
            values = json.loads(self.metrics_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return values if isinstance(values, dict) else {}

    def history(self) -> list[dict]:
        """One record per validation (``step``, ``train/...``, ``val/...``)."""
        return list(self.metrics().get("history", []))

    def write_metrics(self, summary: dict, records: list[dict]) -> None:
        """Write metrics.json (``summary`` + ``history``) and metrics.csv, each atomically."""
        import csv

        with atomic_path(self.metrics_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps({**summary, "history": records}, indent=1, default=float))
        keys: list[str] = []
        for record in records:
            keys += [k for k in record if k not in keys]
        with atomic_path(self.metrics_csv_path, overwrite=True) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(records)

    # --- parent run -----------------------------------------------------------------------------
    def info(self) -> dict:
        try:
            values = json.loads(self.run_file.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return values if isinstance(values, dict) else {}

    def parent(self) -> Path | None:
        """The run this one was initialised from (fine-tuning), if any."""
        parent = self.info().get("parent")
        return Path(parent) if parent else None

    def set_info(self, **values: Any) -> None:
        """Add ``values`` (JSON-able) to run.json, atomically."""
        info = {**self.info(), **values}
        with atomic_path(self.run_file, overwrite=True) as tmp:
            tmp.write_text(json.dumps(info, indent=1, default=str))

    # --- checkpoints ----------------------------------------------------------------------------
    def checkpoint_files(self) -> list[Path]:
        """The checkpoint files (last.ckpt, a link to the newest full-state one, is not listed)."""
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(p for p in self.checkpoints_dir.glob("*.ckpt") if p.is_file() and not p.is_symlink())

    def checkpoints(self) -> list[CheckpointInfo]:
        """Every checkpoint with its step, newest (highest step, then latest written) first;
        unreadable ones last."""
        infos = [CheckpointInfo(p, checkpoint_step(p), p.stat().st_size) for p in self.checkpoint_files()]

        def key(info: CheckpointInfo):
            return (info.readable, info.step or 0, info.path.stat().st_mtime)

        return sorted(infos, key=key, reverse=True)

    def model_checkpoint(self, which: str = "newest") -> CheckpointInfo:
        """The checkpoint a model is loaded from.

        ``newest``: the newest readable checkpoint (what the run reached); ``best``: the best by the
        monitored validation metric; any other value names a file in ``checkpoints/``."""
        infos = self.checkpoints()
        if not infos:
            raise SegtrainError(
                f"Run folder {self.path} has no checkpoints (checkpoints/*.ckpt); train it first or pick another run."
            )
        if which == "newest":
            good = [i for i in infos if i.readable]
            if not good:
                raise SegtrainError(
                    f"No checkpoint of run {self.path} can be read (all truncated or corrupt); train it again."
                )
            return good[0]
        name = "best.ckpt" if which == "best" else which
        for info in infos:
            if info.name == name:
                if not info.readable:
                    raise SegtrainError(f"{info.path} cannot be read (truncated or corrupt); choose another checkpoint.")
                return info
        names = ", ".join(i.name for i in infos)
        raise SegtrainError(f"Run {self.name} has no checkpoint {name!r}; it has {names}.")

    def resume_plan(self) -> tuple[CheckpointInfo, list[CheckpointInfo]]:
        """``(checkpoint to continue training from, newer ones skipped as unreadable)``: the newest
        readable checkpoint with optimizer state (final/last/step-N; best.ckpt holds weights only)."""
        infos = [i for i in self.checkpoints() if i.name not in WEIGHTS_ONLY]
        good = [i for i in infos if i.readable]
        if not good:
            what = "no checkpoints to resume from" if not infos else "no readable checkpoint (all truncated or corrupt)"
            raise SegtrainError(f"Cannot resume: run folder {self.path} has {what}; start a new run instead.")
        newest = good[0].path.stat().st_mtime
        skipped = [i for i in infos if not i.readable and i.path.stat().st_mtime >= newest]
        return good[0], skipped

    def resume_checkpoint(self) -> CheckpointInfo:
        """The checkpoint :meth:`resume_plan` chooses."""
        return self.resume_plan()[0]

    # --- post-processing settings ---------------------------------------------------------------
    def postprocess(self) -> dict:
        """postprocess.yaml as a mapping ({} when there is none)."""
        if not self.postprocess_path.exists():
            return {}
        try:
            values = yaml.safe_load(self.postprocess_path.read_text()) or {}
            if not isinstance(values, dict) or not isinstance(values.get("segment") or {}, dict):
                raise TypeError
        except (OSError, yaml.YAMLError, TypeError):
            raise InputError(
                f"{self.postprocess_path} is not a valid post-processing file; delete it or run `segtrain tune` again."
            ) from None
        return values

    def save_postprocess(self, values: dict) -> Path:
        """Write postprocess.yaml (``{"segment": {...}, ...}``), atomically, replacing an older one."""
        with atomic_path(self.postprocess_path, overwrite=True) as tmp:
            tmp.write_text(yaml.safe_dump(values, sort_keys=False))
        return self.postprocess_path

    def segment_settings(self, step: int | None = None) -> dict:
        """Segment settings chosen on validation data: the merge threshold the run's validation
        sweep chose at ``step`` (``val/threshold`` of that step's record), overridden by those of
        postprocess.yaml (``segtrain tune``)."""
        settings: dict = {}
        if step is not None:
            for record in self.history():
                threshold = record.get("val/threshold")
                if record.get("step") == step and threshold is not None and math.isfinite(threshold):
                    settings["threshold"] = float(threshold)
        settings.update(self.postprocess().get("segment") or {})
        return settings

    def apply_postprocess(self, config, step: int | None = None):
        """``config`` with :meth:`segment_settings` applied (checked like a config file's);
        returns ``config``."""
        segment = self.segment_settings(step)
        try:
            update_section(config, "segment", segment)
        except ConfigError as error:
            raise InputError(
                f"{self.postprocess_path}: {str(error).rstrip('.')}; delete the file or run `segtrain tune` again."
            ) from None
        return config

    # --- size -----------------------------------------------------------------------------------
    def size_on_disk(self) -> int:
        """Bytes the run folder takes (files linked several times counted once, links not followed)."""
        seen: set[tuple[int, int]] = set()
        total = 0
        for root, _, files in os.walk(self.path):
            for name in files:
                st = os.lstat(os.path.join(root, name))
                if (st.st_dev, st.st_ino) in seen or not os.path.isfile(os.path.join(root, name)) \
                        or os.path.islink(os.path.join(root, name)):
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        return total

    # --- summary --------------------------------------------------------------------------------
    def created(self) -> datetime:
        """When the run began: the UTC timestamp in its folder name (``<name>-YYYYmmdd-HHMMSS``), which
        a resume keeps, else the folder's modification time."""
        match = re.search(r"(\d{8}-\d{6})(?:-\d+)?$", self.name)
        if match:
            return datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=timezone.utc)
        return datetime.fromtimestamp(self.path.stat().st_mtime, tz=timezone.utc)

    def summary(self) -> RunSummary:
        if not self.is_run(self.path):
            raise SegtrainError(f"{self.path} is not a segtrain run folder (no config.yaml); pick a folder under runs/.")
        config = self.raw_config()
        metrics = self.metrics()
        history = metrics.get("history", [])
        last = history[-1] if history else {}
        best = metrics.get("best")
        return RunSummary(
            name=self.name,
            path=self.path,
            preset=config.get("preset"),
            task=(config.get("model") or {}).get("task"),
            steps=int(metrics.get("steps", last.get("step", 0)) or 0),
            best_metric_name=metrics.get("monitor") if history else None,
            best_metric=None if best is None or (isinstance(best, float) and math.isnan(best)) else float(best),
            created=self.created().isoformat(timespec="seconds"),
            max_steps=(config.get("train") or {}).get("max_steps"),
            best_step=metrics.get("best_step"),
            checkpoints=[p.name for p in self.checkpoint_files()],
            last_metrics={k: v for k, v in last.items() if k.startswith("val/")},
            size=self.size_on_disk(),
            parent=str(self.parent()) if self.parent() else None,
        )


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
    size: int = 0  # bytes on disk
    parent: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


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
    header = ["name", "preset", "task", "steps", "best metric", "best", "at step", "size", "created"]
    rows = []
    for r in runs:
        steps = f"{r.steps}/{r.max_steps}" if r.max_steps else str(r.steps)
        best = "-" if r.best_metric is None else f"{r.best_metric:.4g}"
        rows.append([r.name, r.preset or "-", r.task or "-", steps, (r.best_metric_name or "-").removeprefix("val/"),
                     best, "-" if r.best_step is None else str(r.best_step), format_size(r.size), r.created])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)
