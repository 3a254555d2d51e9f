"""Training workflows: which kind of run a request starts (plain or self-training), the config of
a resumed or fine-tuned run, the run of the Train panel's layers, and train-or-reuse of a config.

Every front end calls these: the Train panel (:func:`training_reports` in its worker), ``segtrain
train`` (:func:`selftrain_root`, :func:`selftraining_wanted`), cross-validation and the benchmarks
(:func:`train_or_reuse`, :func:`train_sources`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
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


def selftrain_root(path: str | Path) -> Path | None:
    """The self-training run that ``path`` (a run folder, a checkpoint in one, or an iteration
    folder) belongs to, which is resumed as a whole; None for a plain run."""
    folder = RunFolder.of_checkpoint(path) if Path(path).is_file() else RunFolder(path)
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
    folder = RunFolder.of_checkpoint(parent) if Path(parent).is_file() else RunFolder(parent)
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


def training_reports(job: TrainingJob) -> Iterator:
    """Start, resume, fine-tune or self-train ``job``'s run and yield its reports; a ``str`` is a
    "preparing" message from before the run exists."""
    yield "loading PyTorch"
    from segtrain.train import ArraySource, TrainingRun

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
    train = [ArraySource(job.raw, job.labels, known=job.known, voxel_size=job.voxel_size)]
    if job.init_from is not None:
        old, note = parent_sources(job.config)
        train += old
        if note:
            yield note
    val = None if job.val_labels is None else [ArraySource(job.raw, job.val_labels, voxel_size=job.voxel_size)]
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
    from segtrain.train import ArraySource
    from segtrain.train.selftrain import SelfTraining, resume_plan

    yield "reading the layers"
    train = [ArraySource(job.raw, job.labels, known=job.known, voxel_size=job.voxel_size)]
    val = None if job.val_labels is None else [ArraySource(job.raw, job.val_labels, voxel_size=job.voxel_size)]
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
    its last progress report (None when reused or self-training)."""

    run_dir: Path
    seconds: float
    reused: bool
    last: Any = None


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
        yield RunEnded(Path(run.run_dir), time.perf_counter() - start, reused=False)
        return
    resume = previous if previous is not None and any(RunFolder(previous).checkpoints_dir.glob("*.ckpt")) else None
    run = TrainingRun(config, runs_root=runs_root, resume=resume, run_dir=None if resume else run_dir)
    yield RunStarted(Path(run.run_dir), resumed=resume is not None, start_step=run.start_step)
    last = None
    for last in run.reports():
        yield last
    yield RunEnded(Path(run.run_dir), time.perf_counter() - start, reused=False, last=last)


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
