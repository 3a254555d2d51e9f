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
    run.json             where the run came from: its parent run (fine-tuning), if any, and the data it
                         saw (:meth:`RunFolder.record_data`: per source paths, shapes, dtypes, content
                         hashes and voxels per class)
    selftrain.json       self-training runs: one record per iteration (thresholds, pixels kept per
                         class, metrics, checkpoint); ``checkpoints/`` then holds the last iteration's
                         model (a hard link, or a copy)
    iterations/NN/       self-training runs: iteration NN's own run folder (config, metrics,
                         checkpoints) plus pseudo_labels.json (the thresholds and the pixels kept per
                         class of the pseudo-labels it trained on), figure.png (a validation image |
                         ground truth | prediction | pseudo-label) and, with a mean teacher,
                         teacher.pt (the averaged weights that made the next pseudo-labels)

Which checkpoint a model is loaded from (:meth:`RunFolder.model_checkpoint`: the newest readable
one, unless asked for another) and which one a run resumes from
(:meth:`RunFolder.resume_checkpoint`: the newest readable full-state one) is decided here and
nowhere else.

:func:`list_runs`, :func:`sort_runs` and :func:`format_runs` (a text table, CSV or Markdown) compare
runs side by side (``segtrain runs``, the Runs panel).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import pickle
import re
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from segtrain.config import load_config, save_config, update_section
from segtrain.errors import ConfigError, InputError, SegtrainError
from segtrain.io.atomic import atomic_path
from segtrain.tasks import find_task

CONFIG_FILE = "config.yaml"
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
CHECKPOINTS = "checkpoints"
POSTPROCESS_FILE = "postprocess.yaml"
RUN_FILE = "run.json"
SELFTRAIN_FILE = "selftrain.json"
ITERATIONS = "iterations"
PSEUDO_LABELS_FILE = "pseudo_labels.json"
FIGURE_FILE = "figure.png"
TEACHER_FILE = "teacher.pt"
STATUSES = ("finished", "stopped", "incomplete", "empty")
FULL_STATE = ("final.ckpt", "last.ckpt")  # written with optimizer state: a run can resume from them
WEIGHTS_ONLY = ("best.ckpt",)


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint file of a run: its step (None when it cannot be read), size and whether it
    holds the full training state (optimizer, schedulers, callbacks: a run can resume from it) or
    the weights only (prediction, fine-tuning)."""

    path: Path
    step: int | None
    size: int
    full: bool = False

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


def _checkpoint_header(path: str | Path, verify: bool = True) -> tuple[int, bool] | None:
    """``(global step, holds optimizer state)`` of a checkpoint, or None when it cannot be read
    (``verify``: also checks every member's checksum, which reads the whole file)."""
    try:
        with zipfile.ZipFile(Path(path)) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            with archive.open(name) as f:
                checkpoint = _StepUnpickler(f).load()
            if verify and archive.testzip() is not None:  # a damaged member (e.g. overwritten bytes)
                return None
        return int(checkpoint.get("global_step", 0)), bool(checkpoint.get("optimizer_states"))
    except Exception:  # noqa: BLE001 - any unreadable file is "not good"
        return None


def checkpoint_step(path: str | Path) -> int | None:
    """The training step a checkpoint was saved at, or None when it cannot be read (truncated,
    not a checkpoint). Reads only the checkpoint's small pickle (``data.pkl`` of torch's zip
    format), never its tensors and without PyTorch: milliseconds, in any thread."""
    header = _checkpoint_header(path)
    return None if header is None else header[0]


def checkpoint_is_full(path: str | Path) -> bool:
    """Whether a checkpoint holds the optimizer state (a run can resume from it)."""
    header = _checkpoint_header(path)
    return header is not None and header[1]


TRAINING_STATE = ("optimizer_states", "lr_schedulers", "callbacks", "loops", "MixedPrecision", "native_amp_scaling_state")
"""What a checkpoint holds beyond the weights: needed to resume, not to predict or fine-tune."""


def weights_only(path: str | Path) -> None:
    """Rewrite a full checkpoint as a weights-only one (what Lightning's ``save_weights_only``
    writes: step, epoch, weights, hyper-parameters), atomically; about a third of the size with
    Adam's state gone."""
    import torch

    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=False)
    slim = {k: v for k, v in checkpoint.items() if k not in TRAINING_STATE}
    buffer = io.BytesIO()
    torch.save(slim, buffer)
    with atomic_path(Path(path), overwrite=True) as tmp:
        tmp.write_bytes(buffer.getvalue())


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
    def create(cls, root: str | Path | None, name: str) -> RunFolder:
        """A new, empty ``<root>/<name>-<timestamp>`` folder (``-2``, ``-3`` ... when taken); ``root``
        None: :func:`default_runs_root`; a name that would leave ``root`` (``../x``, ``/tmp/x``) is
        refused."""
        from segtrain.config import plain_name_problem

        problem = plain_name_problem(str(name))
        if problem:
            raise ConfigError(f"The run name {problem}")
        root = Path(root) if root is not None else default_runs_root()
        blocked = next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), None)
        if blocked is not None:
            raise ConfigError(f"The runs folder {root} cannot be made: {blocked} is a file; choose another runs folder.")
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

    # --- self-training --------------------------------------------------------------------------
    def iteration(self, index: int) -> RunFolder:
        """Self-training iteration ``index``'s own run folder (``iterations/NN``)."""
        return RunFolder(self.path / ITERATIONS / f"{int(index):02d}")

    def iterations(self) -> list[RunFolder]:
        """The self-training iterations' folders that exist, in order."""
        folder = self.path / ITERATIONS
        if not folder.is_dir():
            return []
        return [RunFolder(p) for p in sorted(folder.iterdir()) if p.is_dir() and p.name.isdigit()]

    def is_selftrain(self) -> bool:
        """Whether this is a self-training run: it has ``selftrain.json`` or ``iterations/``, or its
        config has a ``selftrain`` section with iterations."""
        if self.selftrain_path.is_file() or (self.path / ITERATIONS).is_dir():
            return True
        iterations = (self.raw_config().get("selftrain") or {}).get("iterations")
        return isinstance(iterations, int) and iterations > 0

    def selftrain_run(self) -> RunFolder | None:
        """The self-training run this folder is an iteration of (``<run>/iterations/NN``), or None."""
        parent = self.path.parent
        if parent.name == ITERATIONS and self.path.name.isdigit() and self.is_run(parent.parent):
            return RunFolder(parent.parent)
        return None

    def selftrain_root(self) -> RunFolder | None:
        """The self-training run this folder is, or is an iteration of; None for other folders."""
        owner = self.selftrain_run()
        if owner is not None:
            return owner
        return self if self.is_run(self.path) and self.is_selftrain() else None

    @property
    def pseudo_labels_path(self) -> Path:
        return self.path / PSEUDO_LABELS_FILE

    @property
    def figure_path(self) -> Path:
        return self.path / FIGURE_FILE

    @property
    def teacher_path(self) -> Path:
        return self.path / TEACHER_FILE

    @property
    def selftrain_path(self) -> Path:
        return self.path / SELFTRAIN_FILE

    def _read_json(self, path: Path) -> dict:
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return values if isinstance(values, dict) else {}

    def _write_json(self, path: Path, values: dict) -> None:
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(values, indent=1, default=float))

    def pseudo_labels(self) -> dict:
        """An iteration's pseudo_labels.json ({} when missing)."""
        return self._read_json(self.pseudo_labels_path)

    def write_pseudo_labels(self, record: dict) -> None:
        self._write_json(self.pseudo_labels_path, record)

    def selftrain(self) -> dict:
        """A self-training run's selftrain.json ({} when missing)."""
        return self._read_json(self.selftrain_path)

    def write_selftrain(self, record: dict) -> None:
        self._write_json(self.selftrain_path, record)

    def adopt_checkpoint(self, checkpoint: Path, name: str = "final.ckpt") -> Path:
        """Put ``checkpoint`` (e.g. the last self-training iteration's) into this run's checkpoints
        as ``name``: a hard link where the file system allows, else a copy (atomically)."""
        import shutil

        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        target = self.checkpoints_dir / name
        tmp = self.checkpoints_dir / f".{name}.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        try:
            os.link(Path(checkpoint).resolve(), tmp)
        except OSError:
            shutil.copyfile(checkpoint, tmp)
        os.replace(tmp, target)
        return target

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

    def fine_tune(self) -> dict | None:
        """The learning rate and warm-up this run fine-tuned with (see
        :func:`segtrain.train.run.fine_tuning_config`), or None for a run trained from scratch."""
        record = self.info().get("fine_tune")
        return record if isinstance(record, dict) else None

    def set_info(self, **values: Any) -> None:
        """Add ``values`` (JSON-able) to run.json, atomically."""
        info = {**self.info(), **values}
        with atomic_path(self.run_file, overwrite=True) as tmp:
            tmp.write_text(json.dumps(info, indent=1, default=str))

    def data(self) -> dict:
        """What :meth:`record_data` recorded ({} when nothing was)."""
        data = self.info().get("data")
        return data if isinstance(data, dict) else {}

    def record_data(self, train: Sequence, val: Sequence = (), n_classes: int | None = None,
                    write: bool = True) -> dict:
        """Record the data the run trains and validates on in run.json (``"data"``) and return it.

        Per source (a :class:`segtrain.train.sources.Source`): its kind, name, mixing weight and
        crop, the file paths (and datasets) it was read from where it has them, and for the image
        and the labels the shape, dtype and a content hash (:func:`array_fingerprint`: the whole
        array when it is at most :data:`HASH_FULL_BYTES`, else a strided sample of about
        :data:`HASH_SAMPLE_ELEMENTS` elements plus the shape; ``hashed`` says which), of the region
        the source covers (its crop). ``class_counts``: voxels per class of the labels (counted on
        the same full array or sample), classes being the label values up to ``n_classes - 1`` for
        task classes (default: ``model.n_classes`` of the run's config when its task is classes),
        else 0 = background and 1 = foreground. Sources made on the fly (synthetic data) have no
        arrays to hash. Where class-weighted patch sampling is on, the class probabilities.

        ``fingerprint`` is a short hash of all sources' hashes (the "data seen" of the runs table).
        A resumed run records again; an earlier record that differs is kept in ``earlier_data``.
        ``write`` False: only return the record (processes other than global rank 0).
        """
        if n_classes is None:
            model = self.raw_config().get("model") or {}
            task = find_task(model)
            if task is not None and task.semantic:
                n_classes = int(model.get("n_classes") or 2)
        record = {"train": [_safe_source_record(s, n_classes) for s in train],
                  "val": [_safe_source_record(s, n_classes) for s in val]}
        hashes = [part.get("hash", "") for split in ("train", "val") for s in record[split]
                  for part in (s.get("raw") or {}, s.get("labels") or {})]
        record["fingerprint"] = hashlib.blake2b("/".join(hashes).encode(), digest_size=4).hexdigest()
        record["recorded"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if write:
            previous = self.data()
            values: dict[str, Any] = {"data": record}
            if previous and previous.get("fingerprint") != record["fingerprint"]:
                values["earlier_data"] = [*(self.info().get("earlier_data") or []), previous]
            self.set_info(**values)
        return record

    # --- checkpoints ----------------------------------------------------------------------------
    def remove_stale_temporaries(self) -> list[str]:
        """Remove the temporaries an interrupted write left in ``checkpoints/`` (a process killed
        while it saved: ``.<name>.tmp-<random>``, never taken for a checkpoint); their names."""
        stale = sorted(p for p in self.checkpoints_dir.glob(".*.tmp-*") if p.is_file())
        for path in stale:
            path.unlink(missing_ok=True)
        return [p.name for p in stale]

    def checkpoint_files(self) -> list[Path]:
        """The checkpoint files (last.ckpt, a link to the newest full-state one, is not listed)."""
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(p for p in self.checkpoints_dir.glob("*.ckpt") if p.is_file() and not p.is_symlink())

    def checkpoints(self, verify: bool = True) -> list[CheckpointInfo]:
        """Every checkpoint with its step, newest (highest step, then latest written, then
        final.ckpt) first; unreadable ones last. ``verify`` False: the steps only, without reading
        the whole files to check them (milliseconds, for tables)."""
        infos = []
        for p in self.checkpoint_files():
            step, full = _checkpoint_header(p, verify) or (None, False)
            infos.append(CheckpointInfo(p, step, p.stat().st_size, full))

        def key(info: CheckpointInfo):  # final.ckpt before its hard-linked step-N twin (same time)
            return (info.readable, info.step or 0, info.path.stat().st_mtime, info.name == "final.ckpt")

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
        readable checkpoint with optimizer state (:meth:`slim_checkpoints` keeps it in the newest
        one; best.ckpt and older ones hold weights only)."""
        infos = [i for i in self.checkpoints() if i.name not in WEIGHTS_ONLY]
        good = [i for i in infos if i.readable and i.full]
        if not good:
            if any(i.readable for i in infos):
                what = "checkpoints with weights only (no optimizer state)"
                raise SegtrainError(f"Cannot resume: run folder {self.path} has {what}; fine-tune from it "
                                    "(--init-from, or Fine-tune in the Train panel) instead.")
            what = "no checkpoints to resume from" if not infos else "no readable checkpoint (all truncated or corrupt)"
            raise SegtrainError(f"Cannot resume: run folder {self.path} has {what}; start a new run instead.")
        newest = good[0].path.stat().st_mtime
        skipped = [i for i in infos if not i.readable and i.path.stat().st_mtime >= newest]
        return good[0], skipped

    def slim_checkpoints(self, newest: str | Path) -> list[str]:
        """Keep the training state (optimizer, schedulers) in ``newest`` only, the checkpoint just
        written: every other periodic or final checkpoint of the same step becomes a hard link to it
        (no second copy), every older full one is rewritten with weights only (best.ckpt is always
        weights only)
        (:func:`weights_only`). A run resumes from the newest; the others still load for
        prediction and fine-tuning. A file that cannot be rewritten (a full disk) stays as it was.
        Returns the names changed."""
        newest = Path(newest)
        header = _checkpoint_header(newest)
        if header is None or not header[1]:
            return []
        changed = []
        for info in self.checkpoints():
            path = info.path
            if not info.readable or path.resolve() == newest.resolve() or path.samefile(newest):
                continue
            if info.step == header[0] and info.name not in WEIGHTS_ONLY:
                tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
                try:
                    tmp.unlink(missing_ok=True)
                    os.link(newest, tmp)
                    os.replace(tmp, path)
                    changed.append(path.name)
                    continue
                except OSError:  # no hard links here: slim it instead
                    tmp.unlink(missing_ok=True)
            if info.full:
                try:
                    weights_only(path)
                except Exception:  # noqa: BLE001 - e.g. a full disk: the file stays as it was (atomic write)
                    continue
                changed.append(path.name)
        return changed

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

    # --- progress -------------------------------------------------------------------------------
    def progress(self, metrics: dict | None = None, checkpoints: list[CheckpointInfo] | None = None,
                 max_steps: int | None = None) -> tuple[int, str]:
        """``(steps done, status)``. Steps: the most of metrics.json's ``steps`` (written at each
        validation and at the end), its newest validation and the newest readable checkpoint, so a
        run killed before it wrote a summary still shows the steps it saved. Status (:data:`STATUSES`):
        ``finished`` (final.ckpt is the newest checkpoint and reached ``train.max_steps``), ``stopped``
        (final.ckpt is the newest but earlier: Stop or early stopping), ``incomplete`` (no final.ckpt
        newer than the last periodic checkpoint or validation: killed, crashed or still training),
        ``empty`` (no checkpoint and no validation yet)."""
        metrics = self.metrics() if metrics is None else metrics
        checkpoints = self.checkpoints(verify=False) if checkpoints is None else checkpoints
        if max_steps is None:
            max_steps = metrics.get("max_steps") or (self.raw_config().get("train") or {}).get("max_steps")
        history = metrics.get("history") or [{}]
        saved = [c.step for c in checkpoints if c.readable]
        candidates = [metrics.get("steps"), history[-1].get("step"), *saved]
        steps = max((int(v) for v in candidates if isinstance(v, (int, float))), default=0)
        final = next((c for c in checkpoints if c.name == "final.ckpt" and c.readable), None)
        if final is None or final.step < steps:
            status = "incomplete" if steps or checkpoints else "empty"
        elif isinstance(max_steps, int) and final.step >= max_steps:
            status = "finished"
        else:
            status = "stopped"
        return steps, status

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
        monitor = metrics.get("monitor") if history else None
        final = last.get(monitor) if monitor else None
        train, data = config.get("train") or {}, self.data()
        checkpoints = self.checkpoints(verify=False)
        steps, status = self.progress(metrics, checkpoints, (config.get("train") or {}).get("max_steps"))
        return RunSummary(
            name=self.name,
            path=self.path,
            preset=config.get("preset"),
            task=(config.get("model") or {}).get("task"),
            steps=steps,
            status=status,
            mode=metrics.get("mode") if metrics.get("mode") in ("min", "max") else None,
            best_metric_name=metrics.get("monitor") if history else None,
            best_metric=None if best is None or (isinstance(best, float) and math.isnan(best)) else float(best),
            created=self.created().isoformat(timespec="seconds"),
            max_steps=(config.get("train") or {}).get("max_steps"),
            best_step=metrics.get("best_step"),
            checkpoints=sorted(c.name for c in checkpoints),
            last_metrics={k: v for k, v in last.items() if k.startswith("val/")},
            size=self.size_on_disk(),
            parent=str(self.parent()) if self.parent() else None,
            model=_model_text(config.get("model") or {}),
            lr=train.get("lr"),
            batch_size=train.get("batch_size"),
            patch=list((config.get("data") or {}).get("patch_shape") or []) or None,
            final_metric=_finite(final),
            class_metrics={k.removeprefix("val/"): v for k, v in last.items() if _is_class_metric(k)},
            data=_data_text(data),
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
    model: str | None = None  # "smp Unet resnet18", "unet3d 8x2"
    lr: float | None = None
    batch_size: int | None = None
    patch: list[int] | None = None
    final_metric: float | None = None  # the monitored metric at the last validation
    class_metrics: dict[str, float] = field(default_factory=dict)  # iou_class<k>, f1_class<k> at the last validation
    data: str | None = None  # data seen, short: "2+1 sources 3f9a1c2d"
    status: str = "incomplete"  # one of STATUSES (RunFolder.progress)
    mode: str | None = None  # "min" or "max": which way the monitored metric (best, final) is better

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def _finite(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _is_class_metric(key: str) -> bool:
    return bool(re.fullmatch(r"val/\w+_class\d+", key))


def _model_text(model: dict) -> str | None:
    if model.get("architecture") == "smp":
        return f"smp {model.get('smp_architecture', 'Unet')} {model.get('encoder', '')}".strip()
    if model.get("architecture") == "unet3d":
        return f"unet3d {model.get('num_fmaps')}x{model.get('fmap_inc_factor')}"
    return model.get("architecture")


def _data_text(data: dict) -> str | None:
    if not data:
        return None
    return f"{len(data.get('train') or [])}+{len(data.get('val') or [])} sources {data.get('fingerprint', '')}".strip()


# --- the data a run saw ------------------------------------------------------------------------

HASH_FULL_BYTES = 64 * 2**20
"""Arrays up to this size are hashed whole; larger ones by a strided sample."""
HASH_SAMPLE_ELEMENTS = 2**20
"""About this many elements of a larger array are hashed (a regular grid, every s-th along each axis)."""


def _sample_slices(shape: Sequence[int], crop: Sequence[Sequence[int]] | None, limit: int):
    """``(slices, hashed)``: the region ``crop`` covers, every s-th voxel along each axis (s the
    smallest step giving at most ``limit`` elements), or whole (``hashed`` "full") when it fits."""
    crop = list(crop or [])
    bounds = [(int(crop[i][0]), int(crop[i][1])) if i < len(crop) else (0, int(n)) for i, n in enumerate(shape)]
    sizes = [max(0, b - a) for a, b in bounds]
    step = 1
    while math.prod(-(-n // step) for n in sizes) > limit:
        step += 1
    return tuple(slice(a, b, step) for a, b in bounds), "full" if step == 1 else f"strided sample (every {step}th)"


def array_fingerprint(array, crop: Sequence[Sequence[int]] | None = None) -> tuple[dict, np.ndarray]:
    """``({"shape", "dtype", "hash", "hashed"}, the values hashed)`` of an array (numpy, dask,
    zarr, HDF5), restricted to ``crop`` (``[start, stop]`` per leading axis). The hash is a
    BLAKE2b digest of the shape, dtype and values: of all values when the array (crop) is at most
    :data:`HASH_FULL_BYTES`, else of a strided sample of about :data:`HASH_SAMPLE_ELEMENTS`
    elements (a few milliseconds, and no full read of a large file; a change between the sampled
    voxels goes unnoticed)."""
    shape = tuple(int(n) for n in array.shape)
    dtype = np.dtype(array.dtype)
    crop = list(crop or [])
    full_shape = [int(crop[i][1]) - int(crop[i][0]) if i < len(crop) else n for i, n in enumerate(shape)]
    limit = max(1, HASH_FULL_BYTES // dtype.itemsize)
    if math.prod(full_shape) > limit:
        limit = HASH_SAMPLE_ELEMENTS
    index, hashed = _sample_slices(shape, crop, limit)
    values = np.ascontiguousarray(np.asarray(array[index]))
    digest = hashlib.blake2b(digest_size=8)
    digest.update(repr((full_shape, dtype.str, hashed)).encode())
    digest.update(values.tobytes())
    return {"shape": list(shape), "dtype": dtype.name, "hash": digest.hexdigest(), "hashed": hashed}, values


def source_record(source, n_classes: int | None = None) -> dict:
    """What :meth:`RunFolder.record_data` records of one training source."""
    record: dict[str, Any] = {"kind": type(source).__name__, "name": getattr(source, "name", None),
                              "weight": getattr(source, "weight", None)}
    crop = getattr(source, "crop", None)
    if crop is not None:
        record["crop"] = [[int(a), int(b)] for a, b in crop]
    raw, labels = getattr(source, "raw", None), getattr(source, "labels", None)
    for part, array in (("raw", raw), ("labels", labels)):
        if array is None or not hasattr(array, "shape"):
            continue
        entry: dict[str, Any] = {}
        path = getattr(source, f"{part}_path", None)
        if path:
            entry["path"] = str(Path(path).resolve())
            if getattr(source, f"{part}_dataset", None):
                entry["dataset"] = getattr(source, f"{part}_dataset")
        part_crop = crop
        if crop is not None and part == "raw" and labels is not None and array.ndim > labels.ndim:
            part_crop = [[0, array.shape[0]], *crop]  # channels first
        fingerprint, values = array_fingerprint(array, part_crop)
        entry.update(fingerprint)
        record[part] = entry
        if part == "labels" and (np.issubdtype(values.dtype, np.integer) or values.dtype == bool):
            classes = values.astype(np.int64).reshape(-1)
            classes = np.clip(classes, 0, n_classes - 1) if n_classes else (classes > 0).astype(np.int64)
            counts = np.bincount(classes, minlength=n_classes or 2)
            record["class_counts"] = {str(k): int(v) for k, v in enumerate(counts)}
            record["class_counts_of"] = fingerprint["hashed"]
    if getattr(source, "class_p", None):
        record["class_sampling"] = {str(k): round(v, 6) for k, v in source.class_p.items()}
    return record


def _safe_source_record(source, n_classes: int | None) -> dict:
    """:func:`source_record`, or what is known and the error (a record never stops a run)."""
    try:
        return source_record(source, n_classes)
    except Exception as error:  # noqa: BLE001 - unreadable data shows up in training itself
        return {"kind": type(source).__name__, "name": getattr(source, "name", None), "error": str(error)}


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


RUNS_ENV = "SEGTRAIN_RUNS"
RUNS_ROOT_TIP = ("Folder that holds the run folders. Default: $SEGTRAIN_RUNS when set, else segtrain/runs in "
                 "your user data folder (~/.local/share/segtrain/runs on Linux), wherever napari was started.")


def default_runs_root() -> Path:
    """Where run folders go unless a runs folder is named (CLI, GUI and Python alike):
    ``$SEGTRAIN_RUNS`` when set, else ``segtrain/runs`` in the user's data folder
    (``$XDG_DATA_HOME``, by default ``~/.local/share``, on Linux; ``~/Library/Application Support``
    on macOS; ``%LOCALAPPDATA%`` on Windows), never the folder a program happened to start in."""
    named = os.environ.get(RUNS_ENV, "").strip()
    if named:
        return Path(named).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "segtrain" / "runs"


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
