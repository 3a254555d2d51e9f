"""RunFolder: the one owner of a run folder's layout (see :mod:`segtrain.runs`)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from segtrain.config import load_config, save_config, update_section
from segtrain.errors import ConfigError, InputError, SegtrainError
from segtrain.io.atomic import atomic_path, dead_temporaries
from segtrain.runs.checkpoints import CheckpointInfo, _checkpoint_header, weights_only
from segtrain.runs.fingerprints import _safe_source_record
from segtrain.runs.layout import (
    BEST_CKPT, CHECKPOINTS, CONFIG_FILE, FIGURE_FILE, FINAL_CKPT, LAST_CKPT, PERIODIC_CHECKPOINT, ITERATIONS,
    METRICS_CSV, METRICS_JSON, POSTPROCESS_FILE, PSEUDO_LABELS_FILE, RUN_FILE, SELFTRAIN_FILE, TEACHER_FILE,
    TENSORBOARD, WEIGHTS_ONLY,
)
from segtrain.runs.root import default_runs_root
from segtrain.runs.summary import RunSummary, _data_text, _finite, _is_class_metric, _model_text
from segtrain.tasks import find_task
from segtrain.config import plain_name_problem


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

    @classmethod
    def of_checkpoints_dir(cls, path: str | Path) -> RunFolder | None:
        """The run folder whose ``checkpoints/`` folder ``path`` is, or None."""
        path = Path(path)
        return cls(path.parent) if path.name == CHECKPOINTS and cls.is_run(path.parent) else None

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

    PERIODIC_NAME = PERIODIC_CHECKPOINT
    """Lightning's file name template of the periodic checkpoints (``step-N.ckpt``)."""

    def checkpoint_path(self, name: str) -> Path:
        """``checkpoints/<name>`` (``final.ckpt``, ``best.ckpt``, ``step-N.ckpt``)."""
        return self.checkpoints_dir / name

    @property
    def final_checkpoint(self) -> Path:
        """``checkpoints/final.ckpt``: written at the end of every run segment (full state)."""
        return self.checkpoint_path(FINAL_CKPT)

    @property
    def best_checkpoint(self) -> Path:
        """``checkpoints/best.ckpt``: the best monitored validation metric (weights only)."""
        return self.checkpoint_path(BEST_CKPT)

    @property
    def tensorboard_dir(self) -> Path:
        """``tensorboard/``: Lightning's TensorBoard log."""
        return self.path / TENSORBOARD

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

    def link_last(self) -> None:
        """Point last.ckpt at final.ckpt (Lightning may have written a full copy of the same state
        at the end); where links are impossible, last.ckpt stays what it is."""
        last = self.checkpoint_path(LAST_CKPT)
        tmp = self.checkpoint_path(f".{LAST_CKPT}.tmp-{os.getpid()}")
        try:
            tmp.unlink(missing_ok=True)
            os.symlink(FINAL_CKPT, tmp)
            os.replace(tmp, last)
        except OSError:
            tmp.unlink(missing_ok=True)

    def adopt_checkpoint(self, checkpoint: Path, name: str = FINAL_CKPT) -> Path:
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
        while it saved: ``.<name>.tmp-<pid>...``, never taken for a checkpoint); their names. A
        live process's temporary (a writer still saving) is kept (:func:`~segtrain.io.atomic.dead_temporaries`)."""
        if not self.checkpoints_dir.is_dir():
            return []
        stale = [name for name in dead_temporaries(os.listdir(self.checkpoints_dir))
                 if (self.checkpoints_dir / name).is_file()]
        for name in stale:
            (self.checkpoints_dir / name).unlink(missing_ok=True)
        return stale

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
            return (info.readable, info.step or 0, info.path.stat().st_mtime, info.name == FINAL_CKPT)

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
        name = BEST_CKPT if which == "best" else which
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
        one and a spare of an earlier step; best.ckpt and older ones hold weights only)."""
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
        """Keep the training state (optimizer, schedulers) in ``newest``, the checkpoint just
        written, and in one spare, the newest checkpoint of an earlier step (a run whose newest file
        was damaged resumes from it): every other periodic or final checkpoint of the same step as
        ``newest`` becomes a hard link to it (no second copy), every other older full one is
        rewritten with weights only (:func:`weights_only`). best.ckpt holds weights only, except
        when the run ends (``newest`` is final.ckpt) at best.ckpt's step: then it is a hard link to
        final.ckpt (a default 30-step cells run: 172 MB instead of 229; the next save of a resumed
        run slims it again; Lightning replaces files by renaming, never writing into them). A run
        resumes from the newest; the others still load for prediction and fine-tuning. A file that
        cannot be rewritten (a full disk) stays as it was. Returns the names changed."""
        newest = Path(newest)
        header = _checkpoint_header(newest, verify=False)  # just written by this process
        if header is None or not header[1]:
            return []
        changed = []
        spare = None  # the spare's step: checkpoints() lists the newest first (its same-step twins are kept too)
        # headers only, and the whole file read (checksums) just for the few this acts on: verifying
        # every checkpoint read all of them, hundreds of MB, at every periodic save
        for info in self.checkpoints(verify=False):
            path = info.path
            if not info.readable or path.resolve() == newest.resolve() or path.samefile(newest):
                continue
            twin = info.step == header[0] and (info.name not in WEIGHTS_ONLY or newest.name == FINAL_CKPT)
            acted_on = info.full or twin
            if acted_on and _checkpoint_header(path) is None:  # damaged: left as it is
                continue
            if twin:
                tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
                try:
                    tmp.unlink(missing_ok=True)
                    os.link(newest, tmp)
                    os.replace(tmp, path)
                    changed.append(path.name)
                    continue
                except OSError:  # no hard links here: slim it instead
                    tmp.unlink(missing_ok=True)
            if info.full and info.name not in WEIGHTS_ONLY and (info.step or 0) < header[0] \
                    and spare in (None, info.step):
                spare = info.step
                continue
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
        final = next((c for c in checkpoints if c.name == FINAL_CKPT and c.readable), None)
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
