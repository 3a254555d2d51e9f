"""Training workflows: which kind of run a request starts (plain or self-training), the config of
a resumed or fine-tuned run, the run of the Train panel's layers, and train-or-reuse of a config.

Every front end calls these: the Train panel (:func:`training_reports` in its worker), ``segtrain
train`` (:func:`selftrain_root`, :func:`selftraining_wanted`), cross-validation and the benchmarks
(:func:`train_or_reuse`, :func:`train_sources`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segtrain.config import Config, load_config
from segtrain.errors import InputError
from segtrain.runs import RunFolder


# --- choices and configs -------------------------------------------------------------------------

def set_max_steps(config: Config, max_steps: int, checkpoints: bool = False) -> Config:
    """``config`` (changed in place) training ``max_steps`` steps; validation (and with
    ``checkpoints`` the periodic checkpoints) at least once within them."""
    t = config.train
    t.max_steps = max_steps
    t.val_every = min(t.val_every, max_steps)
    if checkpoints:
        t.checkpoint_every = min(t.checkpoint_every, max_steps)
    return config


def _folder_of(path: str | Path) -> RunFolder | None:
    """The run folder ``path`` is (a run or iteration folder) or holds (a checkpoint in one)."""
    return RunFolder.of_checkpoint(path) if Path(path).is_file() else RunFolder(path)


def selftrain_root(path: str | Path) -> Path | None:
    """The self-training run that ``path`` (a run folder, a checkpoint in one, or an iteration
    folder) belongs to, which is resumed as a whole; None for a plain run."""
    folder = _folder_of(path)
    root = None if folder is None else folder.selftrain_root()
    return None if root is None else root.path


def selftraining_wanted(config: Config | None, resume: Any = None, init_from: Any = None,
                        run_dir: Any = None) -> bool:
    """Whether a new run of ``config`` self-trains: its selftrain section asks for iterations and
    the run is neither a resume, a fine-tuning nor one in a given run folder."""
    return (config is not None and bool(config.selftrain.iterations) and resume is None and init_from is None
            and run_dir is None)


def resume_config(run_dir: Path, max_steps: int) -> Config:
    """The run's own config with ``max_steps``, which must exceed the step it reached."""
    folder = RunFolder(run_dir)
    config = folder.config()
    reached = folder.resume_checkpoint().step or 0
    if max_steps <= reached:
        raise InputError(f"The run already reached step {reached}; set Steps above {reached} to "
                         "continue it, then press Resume.")
    return set_max_steps(config, max_steps).validate()


def fine_tune_config(parent: Path, max_steps: int) -> Config:
    """The parent run's own config (same model), ``max_steps`` of fine-tuning, named after it."""
    folder = _folder_of(parent)
    if folder is None or not folder.config_path.exists():
        raise ValueError(f"{parent} is not a run (no config.yaml beside it); pick a run in Runs to fine-tune.")
    config = folder.config()
    config.name = f"{config.name}-ft"  # the parent's own name (its folder adds the time)
    return set_max_steps(config, max_steps, checkpoints=True).validate()


def parent_sources(config: Config) -> tuple[list, str]:
    """The training files the parent run named (its old annotations), when they can still be read;
    ``(sources, note)``."""
    from segtrain.train.sources import sources_from_config

    if not config.data.train:
        return [], ""
    try:
        return list(sources_from_config(config.data.train, config.data)), "with the parent run's training files"
    except Exception:  # noqa: BLE001 - moved or deleted files: train on the layers alone, and say so
        return [], "the parent run's training files cannot be read; fine-tuning on the layers alone"


# --- a run of arrays (the Train panel's layers) ---------------------------------------------------

@dataclass
class TrainingJob:
    """A run of in-memory arrays (the Train panel's Start): the config (None to continue ``resume``
    with its own config and ``max_steps``), the arrays and a stop flag."""

    config: Any
    raw: np.ndarray
    labels: np.ndarray
    known: np.ndarray | None
    val_labels: np.ndarray | None
    voxel_size: tuple[float, ...]
    runs_root: Path
    name: str | None = None
    resume: Path | None = None
    max_steps: int | None = None
    init_from: Path | None = None  # fine-tuning: the parent run (or checkpoint) whose weights start the run
    stop: threading.Event = field(default_factory=threading.Event)
    #: more images that train beside ``raw``, each with its own labels: (raw, labels, known, voxel_size)
    more: list = field(default_factory=list)

    def sources(self) -> tuple[list, list | None]:
        """``(training sources, validation sources or None)`` of the arrays: the annotation
        trains, the validation labels (when given) validate on the same image."""
        from segtrain.train import ArraySource

        train = [ArraySource(self.raw, self.labels, known=self.known, voxel_size=self.voxel_size)]
        train += [ArraySource(raw, labels, known=known, voxel_size=voxel_size)
                  for raw, labels, known, voxel_size in self.more]
        val = None if self.val_labels is None else [ArraySource(self.raw, self.val_labels, voxel_size=self.voxel_size)]
        return train, val


def training_reports(job: TrainingJob) -> Iterator:
    """Start, resume, fine-tune or self-train ``job``'s run and yield its reports; a ``str`` is a
    "preparing" message from before the run exists."""
    yield "loading PyTorch"
    from segtrain.train import TrainingRun

    if selftraining_wanted(job.config, job.resume, job.init_from):
        yield from selftraining_reports(job)
        return
    if job.resume is not None:
        root = selftrain_root(job.resume)  # the panel's run is the iteration it showed last
        if root is not None:
            yield from selftraining_reports(job, resume=root)
            return

    if job.config is None:
        yield f"reading run {job.resume.name}"
        job.config = resume_config(job.resume, job.max_steps)
    yield "reading the layers"
    train, val = job.sources()
    if job.init_from is not None:
        old, note = parent_sources(job.config)
        train += old
        if note:
            yield note
    run = TrainingRun(job.config, train, val_sources=val, runs_root=job.runs_root, name=job.name,
                      resume=job.resume, stop_event=job.stop, score_in_process=True, init_from=job.init_from)
    if run.resume_note:
        yield run.resume_note
    yield from run.reports()


def selftraining_reports(job: TrainingJob, resume: Path | None = None) -> Iterator:
    """A self-training run of ``job`` (the config's selftrain section): the arrays are the
    labelled data; the unlabelled images are the files of ``selftrain.unlabelled``, else the image
    itself (its pseudo-labels fill what the annotation leaves out). ``resume``: continue that
    self-training run with its own config (its done iterations reused; ``max_steps`` does not apply)."""
    from segtrain.train.selftrain import SelfTraining, resume_plan

    yield "reading the layers"
    train, val = job.sources()
    config = job.config if resume is None else resume_plan(resume).config
    unlabelled = None if config.selftrain.unlabelled else [job.raw]
    run = SelfTraining(job.config, train, val, unlabelled=unlabelled, runs_root=job.runs_root, name=job.name,
                       stop_event=job.stop, score_in_process=True, voxel_size=job.voxel_size, resume=resume)
    if run.plan is not None:
        yield run.plan.describe()
    yield from run.reports()


# --- train, resume or reuse a config's run --------------------------------------------------------

@dataclass
class RunStarted:
    """The run folder exists (new or resumed); ``note``: what was resumed (a self-training plan)."""

    run_dir: Path
    resumed: bool
    start_step: int = 0
    note: str = ""


@dataclass
class RunEnded:
    """The run ended (``reused``: it had finished earlier and was not trained again); ``last``:
    its last progress report (None when reused or self-training); ``finished``: it reached the
    end its config asks for (False: stopped early; resuming continues it)."""

    run_dir: Path
    seconds: float
    reused: bool
    last: Any = None
    finished: bool = True


def run_finished(run_dir: str | Path, config: Config, selftraining: bool | None = None) -> bool:
    """Whether the run in ``run_dir`` trained ``config`` to its end (every self-training iteration,
    or final.ckpt at ``train.max_steps``); ``selftraining``: whether it self-trains (default: when
    the config has a selftrain section)."""
    folder = RunFolder(run_dir)
    if config.selftrain.iterations if selftraining is None else selftraining:
        records = folder.selftrain().get("iterations") or []
        return len(records) == config.selftrain.iterations + 1 and not any(r.get("stopped") for r in records)
    return folder.final_checkpoint.exists() and \
        folder.metrics().get("steps", 0) >= config.train.max_steps


def train_or_reuse(config: Config | str | Path, previous: str | Path | None = None, runs_root: str | Path | None = None,
                   run_dir: str | Path | None = None) -> Iterator:
    """Train ``config`` (a Config or a YAML file), or resume ``previous`` (a run folder of it) where
    it stopped, or reuse it when it finished. Yields :class:`RunStarted`, the run's own reports
    (ProgressReport, and IterationResult when self-training) and :class:`RunEnded`. The new run's
    folder is ``run_dir`` when given (a plain run, as ``segtrain train --run-dir``), else a new one
    under ``runs_root``."""
    from segtrain.train import TrainingRun
    from segtrain.train.selftrain import SelfTraining

    loaded = config if isinstance(config, Config) else load_config(config)
    selftraining = selftraining_wanted(loaded, run_dir=run_dir)
    previous = Path(previous) if previous is not None and RunFolder.is_run(previous) else None
    if previous is not None and run_finished(previous, loaded, selftraining):
        yield RunEnded(previous, 0.0, reused=True)
        return
    start = time.perf_counter()
    if selftraining:
        run = SelfTraining(config, runs_root=runs_root, resume=previous)
        yield RunStarted(Path(run.run_dir), resumed=previous is not None,
                         note="" if run.plan is None else run.plan.describe())
        yield from run.reports()
        yield RunEnded(Path(run.run_dir), time.perf_counter() - start, reused=False,
                       finished=run_finished(run.run_dir, loaded, True))
        return
    resume = previous if previous is not None and any(RunFolder(previous).checkpoints_dir.glob("*.ckpt")) else None
    run = TrainingRun(config, runs_root=runs_root, resume=resume, run_dir=None if resume else run_dir)
    yield RunStarted(Path(run.run_dir), resumed=resume is not None, start_step=run.start_step)
    last = None
    for last in run.reports():
        yield last
    yield RunEnded(Path(run.run_dir), time.perf_counter() - start, reused=False, last=last,
                   finished=run_finished(run.run_dir, loaded, False))


def train_sources(config: Config, sources: Sequence, val: Sequence | None = None, runs_root: str | Path | None = None,
                  init_from: str | Path | None = None) -> Iterator:
    """A new run of ``config`` on the given training sources (arrays), fine-tuning ``init_from``'s
    weights when given. Yields :class:`RunStarted` (its ``note``: the fine-tuning rate), the run's
    progress reports and :class:`RunEnded`."""
    from segtrain.train import TrainingRun

    start = time.perf_counter()
    run = TrainingRun(config, sources, val, runs_root=runs_root, init_from=init_from)
    yield RunStarted(Path(run.run_dir), resumed=False, note=run.fine_tune_note)
    last = None
    for last in run.reports():
        yield last
    yield RunEnded(Path(run.run_dir), time.perf_counter() - start, reused=False, last=last)


# --- following a run to its end -------------------------------------------------------------------

Log = Callable[[str], None]


def _describe(report: Any, logged: set) -> str | None:
    """The line a script prints for one report of :func:`train_or_reuse` / :func:`train_sources`
    (None for the many progress reports between checkpoints)."""
    from segtrain.train.run import ProgressReport
    from segtrain.train.selftrain import IterationResult

    if isinstance(report, RunStarted):
        return f"run folder {report.run_dir}" + (f"; {report.note}" if report.note else "") + \
            (f"; resumed from step {report.start_step}" if report.resumed and not report.note else "")
    if isinstance(report, IterationResult):
        return report.describe()
    if isinstance(report, ProgressReport) and report.metrics and report.checkpoint is not None \
            and report.step not in logged:
        logged.add(report.step)
        return f"step {report.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in report.metrics.items()
                                                    if k in ("voi", "f1", "loss"))
    if isinstance(report, RunEnded):
        if report.reused:
            return f"{report.run_dir.name}: finished earlier, reused"
        done = f"{report.last.message} at step {report.last.step}; " if report.last is not None else ""
        return f"{done}trained {report.run_dir.name} in {report.seconds:.0f} s"
    return None


def run_to_end(reports: Iterator, log: Log = print, started: Callable[[Path], None] | None = None) -> RunEnded:
    """Follow a training workflow (:func:`train_or_reuse`, :func:`train_sources`) to its end:
    ``log`` gets its run folder, each self-training iteration, the metrics at each checkpoint and
    the end; ``started(run folder)`` is called once the folder exists. Returns its :class:`RunEnded`."""
    logged: set = set()
    for report in reports:
        if isinstance(report, RunStarted) and started is not None:
            started(report.run_dir)
        line = _describe(report, logged)
        if line:
            log(line)
        if isinstance(report, RunEnded):
            return report
    raise RuntimeError("the training workflow ended without its last report")


# --- self-training: calibrated thresholds, the iterations' record ---------------------------------

def calibrated_thresholds(run_dir: str | Path, split: str, precision: float) -> dict:
    """Per-class pseudo-label thresholds chosen on a self-training run's labelled ``split`` ("train"
    or "val") with its iteration-0 model (trained on the labelled data only), predicted as
    pseudo-labels are (no test-time transforms): ``{"thresholds", "precision_target", "per_class",
    "model", "on"}`` (:func:`~segtrain.train.selftrain.calibrate_thresholds`)."""
    from segtrain.predict import load_model, predict_array
    from segtrain.train.selftrain import calibrate_thresholds
    from segtrain.train.sources import annotated_volumes

    loaded = load_model(RunFolder(run_dir).iteration(0).path)
    entries = getattr(loaded.config.data, split)
    volumes = annotated_volumes(entries, loaded.config)
    outputs = [predict_array(loaded, v["raw"], tta=1) for v in volumes]
    thresholds, per_class = calibrate_thresholds(outputs, [v["labels"] for v in volumes], loaded.config,
                                                 precision=precision, known=[v["known"] for v in volumes])
    return {"thresholds": thresholds, "precision_target": precision, "per_class": per_class,
            "model": str(loaded.checkpoint), "on": [e.raw + (f" crop {e.crop}" if e.crop else "") for e in entries]}


def selftrain_iterations(run_dir: str | Path) -> list[dict]:
    """Per iteration of a self-training run: thresholds, pixels predicted / kept per class, steps
    and its last validation."""
    return [{k: r.get(k) for k in ("iteration", "thresholds", "predicted", "kept", "steps", "metrics")}
            for r in RunFolder(run_dir).selftrain().get("iterations") or []]
