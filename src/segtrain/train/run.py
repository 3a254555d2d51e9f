"""A training run on PyTorch Lightning, observable as a generator of small progress reports.

``TrainingRun(config, train_sources, val_sources).reports()`` starts ``Trainer.fit`` in a thread
it owns and yields :class:`ProgressReport` s at a bounded rate (one per
``train.report_interval`` seconds, plus one per validation and a final one with ``done=True``).
``stop()`` may be called from any thread: it sets ``trainer.should_stop``; the run ends after the
current step and saves ``checkpoints/final.ckpt``.

The run folder's layout belongs to :class:`segtrain.runs.RunFolder`. Every run (also a resumed
one) validates at its last step, so metrics and ``best.ckpt`` always cover the weights it ends with;
a stopped run skips that validation to stop at once. Checkpoints: ``best.ckpt`` (weights only, best
monitored metric), ``final.ckpt`` (end of each run segment), the newest ``train.keep_checkpoints``
periodic ``step-N.ckpt`` (``last.ckpt`` links the newest). Only the newest checkpoint keeps the
optimizer state (what resume needs); older ones are weights only, one of the same step a hard link
(:meth:`RunFolder.slim_checkpoints`).

Several devices or machines (``train.devices``, ``train.num_nodes``, ``train.strategy``) run
Lightning DDP, one process per device. With ``multiprocess=True`` (the ``segtrain train`` CLI)
Lightning starts the other local processes by running the same command line again with
``LOCAL_RANK`` set; under torchrun or SLURM every process runs the command itself. All processes
share one run folder (handed to Lightning's children in ``SEGTRAIN_RUN_DIR``, or named with
``run_dir`` / ``--run-dir``); only global rank 0 writes ``config.yaml``, ``metrics.*``, the
TensorBoard log and checkpoints. Each rank draws its own training patches (its rank joins the
seed); every rank validates on all validation data, so the monitored metric is the same everywhere.
"""

from __future__ import annotations

import errno
import gc
import logging
import math
import os
import queue
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from segtrain.config import Config, load_config, monitor_metric
from segtrain.errors import ConfigError, InputError, SegtrainError
from segtrain.evaluate.metrics import check_labelled
from segtrain.runs import RunFolder, checkpoint_is_full, checkpoint_step, default_runs_root, fine_tune_note
from segtrain.tasks import task_of
from segtrain.train.sources import (
    ArraySource,
    Source,
    mix_synthetic,
    sources_from_config,
    synthetic_sources,
    whole_volume,
)
from segtrain.train.callbacks import (
    ProgressReport,
    RunState,
    TrainingDiverged,
    atomic_checkpoint_io,
    training_callbacks,
)
from segtrain.warnings_log import warnings_logged


def _from_worker(error: BaseException) -> BaseException:
    """A segtrain error raised in a DataLoader worker process comes back with the worker's
    traceback in its message ("Caught InputError in DataLoader worker process 0. Original
    Traceback ..."): the same kind of error with the original sentence only."""
    text = str(error)
    if not isinstance(error, SegtrainError) or not text.startswith("Caught ") or \
            "DataLoader worker process" not in text.split("\n", 1)[0]:
        return error
    last = text.rstrip().splitlines()[-1]  # "segtrain.errors.InputError: <the sentence>"
    sentence = last.partition(": ")[2] or last
    try:
        return type(error)(sentence)
    except TypeError:  # a kind that takes other arguments
        return error


def choose_run_device(config: Config):
    """The device and precision a run of ``config`` trains with (:func:`segtrain.device.choose_device`)."""
    from segtrain.device import choose_device

    t = config.train
    return choose_device(t.accelerator, t.precision, t.threads)


# ----------------------------------------------------------------------------------------------


# distributed launch: which process is this, and which folder do all processes share

RUN_DIR_ENV = "SEGTRAIN_RUN_DIR"
"""Environment variable naming the run folder every process of a multi-process run uses."""


def _env_int(name: str, default: int = 0) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def launched_externally() -> bool:
    """Whether a launcher (Lightning's own children, torchrun, SLURM with several tasks) started this
    process as one rank of a multi-process run."""
    return "LOCAL_RANK" in os.environ or "RANK" in os.environ or _env_int("SLURM_NTASKS", 1) > 1


def env_rank_zero() -> bool:
    """Whether this process is global rank 0 by the launchers' environment variables (before
    torch.distributed is set up; a process started by no launcher is rank 0)."""
    names = ["RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"]
    if _env_int("SLURM_NTASKS", 1) > 1:
        names += ["SLURM_PROCID", "SLURM_NODEID"]
    return all(_env_int(n) == 0 for n in names)


def _plan_devices(config: Config, multiprocess: bool) -> tuple[int | str, str, int]:
    """``(devices, strategy, num_nodes)`` for the Trainer; a process that cannot start others (the
    napari GUI) trains on one device."""
    t = config.train
    several = t.num_nodes > 1 or (isinstance(t.devices, int) and t.devices > 1)
    if not multiprocess and not launched_externally():
        if several:
            raise ConfigError(
                f"train.devices is {t.devices} and train.num_nodes is {t.num_nodes}, but this process cannot "
                "start one process per device (the napari GUI trains on one device); run "
                "`segtrain train --config FILE` for several devices or machines, or set train.devices and "
                "train.num_nodes to 1."
            )
        return 1, "auto", 1
    strategy = t.strategy
    if strategy == "auto" and several:
        strategy = "ddp"  # not ddp_spawn/ddp_fork: children run the command line, as under torchrun
    return t.devices, strategy, t.num_nodes


def _shared_run_dir_needed(config: Config) -> bool:
    """Whether processes that each ran the command themselves (several machines, torchrun, SLURM)
    must be told one run folder: their timestamps would differ."""
    return (config.train.num_nodes > 1 or _env_int("WORLD_SIZE", 1) > 1
            or _env_int("SLURM_NTASKS", 1) > 1)


def resolve_resume(resume: str | Path) -> tuple[RunFolder, Path, str]:
    """``(run folder, checkpoint, note)`` to continue from: a run folder (its newest readable
    full-state checkpoint, see :meth:`RunFolder.resume_checkpoint`) or a checkpoint file inside one.
    ``note`` says which newer checkpoints were unreadable and skipped ("" when none)."""
    path = Path(resume)
    if not path.exists():
        raise SegtrainError(f"Cannot resume: {path} does not exist; give a run folder or a checkpoint file.")
    if path.is_file():
        folder = RunFolder.of_checkpoint(path) or RunFolder(path.parent)
        if checkpoint_step(path) is None:
            raise SegtrainError(f"Cannot resume from {path}: it cannot be read (truncated or corrupt); "
                                f"resume from the run folder {folder.path} to take its newest readable checkpoint.")
        if not checkpoint_is_full(path):
            raise SegtrainError(f"Cannot resume from {path.name}: it holds the weights only (only the newest "
                                f"checkpoint and one spare keep the optimizer state); resume from the run folder {folder.path}, "
                                "or fine-tune from this checkpoint with --init-from.")
        return folder, path, ""
    folder = RunFolder(path)
    chosen, skipped = folder.resume_plan()
    note = ""
    if skipped:
        note = (f"{', '.join(i.name for i in skipped)} cannot be read (truncated or corrupt); "
                f"resuming from {chosen.describe()}.")
    return folder, chosen.path, note


def resolve_init_from(source: str | Path) -> tuple[Path, Path]:
    """``(parent run folder, checkpoint)`` whose weights a fine-tuning run starts from: a run folder
    (its newest readable checkpoint) or a checkpoint file."""
    path = Path(source)
    if not path.exists():
        raise SegtrainError(f"Cannot fine-tune from {path}: it does not exist; give a run folder or a checkpoint file.")
    if path.is_file():
        if checkpoint_step(path) is None:
            raise SegtrainError(f"Cannot fine-tune from {path}: it cannot be read (truncated or corrupt); "
                                "give its run folder to take the newest readable checkpoint.")
        folder = RunFolder.of_checkpoint(path)
        return (folder.path if folder is not None else path.parent), path
    if RunFolder.of_checkpoints_dir(path) is not None:
        path = path.parent
    if not RunFolder.is_run(path):
        raise SegtrainError(f"Cannot fine-tune from {path}: it is not a run folder (no config.yaml); "
                            "give a run folder or a checkpoint file.")
    return path, RunFolder(path).model_checkpoint("newest").path


def fine_tuning_config(config: Config) -> tuple[Config, dict]:
    """``(config, record)``: what a fine-tuning run (one started from another run's weights) trains
    with: ``train.lr * train.finetune_lr_scale`` and ``train.finetune_warmup_steps`` of warm-up, the
    rest of the schedule (``train.scheduler`` over the run's own ``max_steps``) as configured. The
    config's learning rate is that of training from scratch; continuing from trained weights at it
    (and warming up to it again) undoes much of what the parent learnt. The returned config holds the
    values used, with the scale consumed (1.0), so a run fine-tuned from it again trains at the same
    rate; ``record`` (for run.json) says what was changed."""
    t = config.train
    record = {"lr": t.lr * t.finetune_lr_scale, "lr_scale": t.finetune_lr_scale, "config_lr": t.lr,
              "warmup_steps": t.finetune_warmup_steps, "config_warmup_steps": t.warmup_steps,
              "scheduler": t.scheduler}
    tuned = config.copy()
    tuned.train.lr = record["lr"]
    tuned.train.warmup_steps = t.finetune_warmup_steps
    tuned.train.finetune_lr_scale = 1.0
    return tuned.validate(), record


def load_initial_weights(module, checkpoint: Path, config: Config) -> None:
    """Copy a checkpoint's network weights into ``module`` (a fine-tuning run's start); one
    sentence when the checkpoint's model is not the one ``config`` describes."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    values = ((state.get("hyper_parameters") or {}).get("config") or {}).get("model")
    ours = config.to_dict()["model"]
    if values is not None:
        differ = sorted(k for k in set(values) | set(ours)
                        if k != "encoder_weights" and values.get(k) != ours.get(k))
        if differ:
            raise ConfigError(
                f"Cannot fine-tune from {checkpoint}: its model differs from this config's in "
                f"{', '.join(f'model.{k}' for k in differ)}; use the parent run's model settings.")
    weights = {k: v for k, v in state.get("state_dict", {}).items() if k.startswith("model.")}
    try:
        result = module.load_state_dict(weights, strict=False)
        missing = [k for k in result.missing_keys if k.startswith("model.")]
    except RuntimeError:
        missing = ["(shapes differ)"]
    if missing or not weights:
        raise ConfigError(f"Cannot fine-tune from {checkpoint}: its weights do not fit this config's model; "
                          "use the parent run's model settings.")


def _checkpoint_step(path: Path) -> int:
    step = checkpoint_step(path)
    return -1 if step is None else step


def given_or_configured(data, train_sources=None, val_sources=None, what: str = "training data"
                        ) -> tuple[list[Source], list[Source]]:
    """The training and validation sources: those given, else the files of ``data`` (a
    ``DataConfig``); without validation data, part of each training source (:func:`split_source`)."""
    train_sources = list(sources_from_config(data.train, data) if train_sources is None else train_sources)
    if not train_sources:
        raise InputError(f"No {what}: name image and label files in data.train or pass sources.")
    if val_sources is None and data.val:
        val_sources = sources_from_config(data.val, data)
    if not val_sources:
        pairs = [split_source(s) for s in train_sources]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    return train_sources, list(val_sources)


def split_source(source: Source, fraction: float = 0.2) -> tuple[Source, Source]:
    """Hold out the last ``fraction`` of an array source along its first axis for validation."""
    if not isinstance(source, ArraySource) or source.crop is not None:
        raise InputError("Give validation data explicitly: only uncropped array sources can be split automatically.")
    n = int(source.labels.shape[0])
    cut = max(1, int(round(n * (1 - fraction))))
    if cut >= n:
        raise InputError(f"Source {source.name} is too small to hold out validation data; give validation data.")
    kwargs = dict(known=source.known, voxel_size=source.voxel_size, weights=source.weights,
                  ignore_label=source.ignore_label)
    train = ArraySource(source.raw, source.labels, weight=source.weight, crop=[[0, cut]],
                        name=f"{source.name}[:{cut}]", **kwargs)
    val = ArraySource(source.raw, source.labels, crop=[[cut, n]], name=f"{source.name}[{cut}:]", **kwargs)
    return train, val


class TrainingRun:
    """One training run (new, or resumed from a run folder or checkpoint).

    Parameters
    ----------
    config
        The run's :class:`Config` (or a path to a YAML file).
    train_sources, val_sources
        :class:`Source` objects; default from the config's ``data.train`` / ``data.val`` files.
        Without validation data, the last 20% (first axis) of each training source is held out.
    runs_root
        Folder that holds run folders (default: :func:`segtrain.runs.default_runs_root`).
    name
        Run name (default ``config.name``); the folder is ``<name>-<UTC timestamp>``.
    resume
        A run folder or checkpoint to continue from (same folder, from the saved step).
    run_dir
        Use this folder instead of a new ``<name>-<timestamp>`` one (created if missing; it must not
        hold checkpoints yet). Needed where several machines or torchrun start the processes.
    multiprocess
        Whether Lightning may run this process's command line again once per extra device
        (``train.devices`` > 1): the ``segtrain train`` CLI passes True. False (the napari GUI, or
        Python code not meant to be re-run) trains on one device and rejects several devices with a
        :class:`ConfigError`. Processes started by a launcher (torchrun, SLURM) need not set it.
    stop_event
        A :class:`threading.Event` that asks the run to stop when set (as :meth:`stop` does); lets a
        GUI ask for a stop before the run object exists.
    init_from
        A run folder or checkpoint whose network weights this new run starts from (fine-tuning;
        the optimizer and the step count start afresh). The run records it as its parent.
    score_in_process
        Score affinity validation (waterz, which holds the GIL) in a helper process
        (:mod:`segtrain.parallel`), so that a GUI in this process stays responsive.
    callbacks
        More Lightning callbacks (e.g. self-training's mean teacher).
    fine_tune
        With ``init_from``: train at the fine-tuning learning rate and warm-up
        (:func:`fine_tuning_config`; recorded in run.json as ``fine_tune``, said in
        :attr:`fine_tune_note`). A resumed fine-tuning run keeps them. Self-training's iterations
        pass False and train at the config's rate.

    The config's ``data.synthetic`` sources join the training sources, mixed as
    ``data.synthetic_ratio`` says (:func:`~segtrain.train.sources.mix_synthetic`).
    """

    def __init__(self, config: Config | str | Path, train_sources: Sequence[Source] | None = None,
                 val_sources: Sequence[Source] | None = None, runs_root: str | Path | None = None,
                 name: str | None = None, resume: str | Path | None = None, run_dir: str | Path | None = None,
                 multiprocess: bool = False, stop_event: threading.Event | None = None,
                 score_in_process: bool = False, init_from: str | Path | None = None,
                 callbacks: Sequence = (), fine_tune: bool = True):
        if not isinstance(config, Config):
            config = load_config(config)
        self.config = config.copy().validate()
        if name:
            self.config.name = name
        self.devices, self.strategy, self.num_nodes = _plan_devices(self.config, multiprocess)
        self.device = choose_run_device(self.config)  # no such device: one sentence, before any folder
        self.rank_zero = env_rank_zero()
        self.resume_checkpoint: Path | None = None
        self.extra_callbacks = list(callbacks)
        self.train_sources, self.val_sources = self._sources(train_sources, val_sources)
        self._made_folder = False  # a new <name>-<timestamp> folder of this run (removed if it ends with nothing)
        self._fitting = False  # Trainer.fit has begun: a failure now says which checkpoint is kept
        self._saved_after_error: tuple[Path, int] | None = None  # (checkpoint, step) saved when training failed
        self.resume_note = ""
        if resume is not None and init_from is not None:
            raise InputError("Give either a run to resume or one to fine-tune from (--init-from), not both.")
        self.parent_dir, self.init_checkpoint = (None, None) if init_from is None else resolve_init_from(init_from)
        self.fine_tune: dict | None = None  # the fine-tuning learning rate and warm-up, when they apply
        if resume is not None:
            self.folder, self.resume_checkpoint, self.resume_note = resolve_resume(resume)
            if fine_tune and self.folder.fine_tune():  # a fine-tuning run goes on at its own rate
                self.config, self.fine_tune = fine_tuning_config(self.config)
            if self.folder.config_path.exists() and self.folder.config().model != self.config.model:
                raise ConfigError(f"Cannot resume from {self.folder.path}: its model differs from the one this config "
                                  f"describes; resume with the run's own {self.folder.config_path}.")
            if self.rank_zero:  # what a killed run was writing when it died
                self.folder.remove_stale_temporaries()
        else:
            self.folder = self._new_folder(run_dir, runs_root)
        if fine_tune and self.init_checkpoint is not None:
            self.config, self.fine_tune = fine_tuning_config(self.config)
        self.fine_tune_note = "" if self.fine_tune is None else fine_tune_note(self.fine_tune)
        self.run_dir = self.folder.path
        self.folder.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        if self.rank_zero:
            self.folder.save_config(self.config)
            self.folder.set_info(device=self.device.describe())
            if self.init_checkpoint is not None:
                self.folder.set_info(parent=str(self.parent_dir.resolve()),
                                     init_checkpoint=str(self.init_checkpoint.resolve()),
                                     **({} if self.fine_tune is None else {"fine_tune": self.fine_tune}))
        self.score_in_process = score_in_process
        self._queue: queue.Queue = queue.Queue(maxsize=512)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.start_step = 0 if self.resume_checkpoint is None else max(0, _checkpoint_step(self.resume_checkpoint))
        self.state = RunState(run_dir=self.run_dir,
                              stop=stop_event if stop_event is not None else threading.Event(),
                              push=self._push, write_summary=self._write_summary,
                              save_after_error=self._checkpoint_after_error, best_checkpoint=self._best_checkpoint,
                              records=self._load_records())
        self.trainer = None
        self.final_checkpoint: Path | None = None
        self.world_size = 1  # processes training together (set when training starts)

    def _sources(self, train_sources, val_sources) -> tuple[list[Source], list[Source]]:
        """The training and validation sources (the config's files when none are given; part of
        each training source when there is no validation data; synthetic data mixed in), each
        prepared and checked now: bad data is one sentence before any run folder exists."""
        config, d = self.config, self.config.data
        train_sources, val_sources = given_or_configured(d, train_sources, val_sources)
        if d.synthetic:
            train_sources = mix_synthetic(train_sources, synthetic_sources(d), d.synthetic_ratio)
        for source in [*train_sources, *val_sources]:
            source.prepare(config.ndim, d.in_channels, d.normalize, d.ignore_label)  # cached for training
        if task_of(config).agglomerates:  # VOI / ARAND against nothing labelled: a false perfect score
            for source in val_sources:
                if isinstance(source, ArraySource) and source.known is None:
                    check_labelled(source._labels, f"Validation source {source.name}")
        return train_sources, val_sources

    def _new_folder(self, run_dir, runs_root) -> RunFolder:
        """The folder of a run that is not resumed: ``run_dir`` when given, the one the launching
        process handed down, a SLURM job's shared one, else a new ``<name>-<time>`` under ``runs_root``."""
        handed_down = os.environ.get(RUN_DIR_ENV)
        if run_dir is not None:
            return RunFolder.at(run_dir, create=True)
        if handed_down:
            return RunFolder(handed_down)
        if _shared_run_dir_needed(self.config):
            job = os.environ.get("SLURM_JOB_ID")
            if not job:
                raise ConfigError(
                    "The processes of this multi-machine or torchrun run cannot agree on a new run folder; "
                    "give the same --run-dir DIR (on a shared file system) to every process."
                )
            return RunFolder(Path(runs_root or default_runs_root()) / f"{self.config.name}-slurm{job}")
        self._made_folder = True
        return RunFolder.create(runs_root, self.config.name)

    # -- control ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the run to end after the current step (thread-safe); it saves final.ckpt."""
        self.state.stop.set()
        trainer = self.trainer
        if trainer is not None and self.world_size == 1:  # several ranks agree on the step first
            trainer.should_stop = True

    def run(self) -> ProgressReport:
        """Train to the end (blocking); returns the final report."""
        last = None
        for last in self.reports():
            pass
        return last

    def reports(self) -> Iterator[ProgressReport]:
        """Start training in a background thread and yield its progress reports until it ends.

        Errors of the run (bad data, out of memory) are raised here as :class:`SegtrainError`.
        Leaving the generator early stops the run.
        """
        if self._thread is not None:
            raise RuntimeError("reports() can be iterated only once per TrainingRun")
        self._thread = threading.Thread(target=self._fit, name=f"segtrain-train-{self.run_dir.name}", daemon=True)
        self._thread.start()
        ended = False  # the run's own end (not a consumer leaving early)
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if not self._thread.is_alive() and self._queue.empty():
                        ended = True
                        break
                    continue
                if item is None:
                    ended = True
                    break
                yield item
        finally:
            if self._thread.is_alive():
                if not ended:
                    # only a consumer that leaves early stops the run: after its end, the thread may
                    # still be returning, and a stop event shared with others (self-training's) must
                    # stay clear
                    self.stop()
                self._thread.join()
        if self._error is not None:
            raise self._error

    # -- internals ----------------------------------------------------------------------------
    def _push(self, report: ProgressReport, important: bool) -> None:
        try:
            if important:
                self._queue.put(report, timeout=5)
            else:
                self._queue.put_nowait(report)
        except queue.Full:
            pass  # a consumer that does not keep up misses intermediate reports

    def _load_records(self) -> list[dict]:
        records = self.folder.history()
        if self.resume_checkpoint is not None:
            records = [r for r in records if r.get("step", 0) <= self.start_step]
        return records

    def _write_summary(self, step: int | None = None) -> None:
        """Write metrics.json and metrics.csv (on global rank 0 only); ``step`` = the step reached
        (default: that of the newest validation)."""
        monitor, mode = monitor_metric(self.config)
        values = [(r[monitor], r["step"]) for r in self.state.records if monitor in r and math.isfinite(r[monitor])]
        best = (min if mode == "min" else max)(values) if values else None
        if step is None:
            step = self.state.records[-1]["step"] if self.state.records else 0
        summary = {"name": self.run_dir.name, "preset": self.config.preset, "task": self.config.task,
                   "monitor": monitor, "mode": mode, "best": None if best is None else best[0],
                   "best_step": None if best is None else best[1],
                   "steps": int(step), "max_steps": self.config.train.max_steps,
                   "world_size": self.world_size}
        if self.state.ranks:
            summary["ranks"] = self.state.ranks
        self.folder.write_metrics(summary, self.state.records)

    def _preparing(self, message: str) -> None:
        """A report of what the run is doing before its first step (GUI status)."""
        self._push(ProgressReport(step=self.start_step, max_steps=self.config.train.max_steps, phase="preparing",
                                  message=message, run_dir=self.run_dir), important=False)

    def _best_checkpoint(self) -> Path | None:
        best = self.folder.best_checkpoint
        return best if best.exists() else None

    def _val_volumes(self) -> list[dict]:
        """Whole validation volumes small enough for segmentation metrics at every validation."""
        volumes = []
        limit = self.config.data.val_max_voxels
        for source in self.val_sources:
            if not isinstance(source, ArraySource):
                continue
            if int(np.prod(source.shape)) > limit:
                continue
            volumes.append(whole_volume(source, self.config.data.in_channels))
        return volumes

    def _fit(self) -> None:
        with warnings_logged():  # Lightning's and PyTorch's notes go to the log, not to the user
            self._fit_logged()

    def _fit_logged(self) -> None:
        module = trainer = None
        launch_env = (RUN_DIR_ENV, "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
        previous = {k: os.environ.get(k) for k in launch_env}
        hand_down = False
        try:
            import lightning.pytorch as pl
            from torch.utils.data import DataLoader

            from segtrain.train.dataset import (
                FixedPatches,
                PatchStream,
                loader_options,
                prepare_sources,
                worker_count,
            )

            logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
            logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
            config = self.config
            t = config.train
            if t.threads:
                torch.set_num_threads(t.threads)
            pl.seed_everything(t.seed, workers=True, verbose=False)
            device = self.device
            workers = worker_count(t.num_workers, device.kind)
            self._preparing("preparing the data")
            prepare_sources(self.val_sources, config)
            train_data = PatchStream(self.train_sources, config, seed=t.seed)  # + rank, once DDP is set up
            self.state.train_data = train_data
            val_data = FixedPatches(self.val_sources, config, n=config.data.val_patches, seed=t.seed + 1)
            self.folder.record_data(self.train_sources, self.val_sources, write=self.rank_zero)  # run.json "data"
            module = self._module(config)
            trainer = self._trainer(config, device.precision, device.accelerator)
            self.trainer = trainer
            self.world_size = int(trainer.world_size)
            if self.state.stop.is_set():
                trainer.should_stop = True
            hand_down = self.world_size > 1 and not launched_externally()
            if hand_down:  # Lightning's children run the same command line: same folder for them
                os.environ[RUN_DIR_ENV] = str(self.run_dir.resolve())
            self._preparing("first training step" if self.resume_checkpoint is None
                            else f"loading {self.resume_checkpoint.name}")
            self._fitting = True
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*sync_dist=True.*")  # metrics equal on all ranks
                warnings.filterwarnings("ignore", message=".*does not have many workers.*")
                warnings.filterwarnings("ignore", message=".*IterableDataset.*")
                warnings.filterwarnings("ignore", message=".*resuming from a checkpoint.*")
                warnings.filterwarnings("ignore", message=".*mid-epoch.*")
                trainer.fit(
                    module,
                    # an ensemble's members each take their own batch_size patches of every step
                    train_dataloaders=DataLoader(train_data, batch_size=t.batch_size * config.model.ensemble,
                                                 **loader_options(config, workers, device.pin_memory)),
                    val_dataloaders=DataLoader(val_data, batch_size=t.batch_size, num_workers=0),
                    ckpt_path=str(self.resume_checkpoint) if self.resume_checkpoint else None,
                )
            self._finish(trainer, module, hand_down)
        except BaseException as error:  # hand every failure to the consumer
            self._error = self._user_error(error)
        finally:
            if hand_down:  # Lightning set LOCAL_RANK, WORLD_SIZE... in this process too: undo
                for k, v in previous.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            self.trainer = None
            del module, trainer
            if self.device.kind == "cuda":  # give the GPU memory back now; on the CPU a full
                gc.collect()               # collection would hold the GIL (a 0.4 s GUI stall) for nothing
                torch.cuda.empty_cache()
            self._queue.put(None)

    def _module(self, config: Config):
        """The Lightning module of the run: new weights, or the parent run's when fine-tuning."""
        from segtrain.train.module import SegtrainModule

        self._preparing("building the model")
        module = SegtrainModule(config.to_dict())
        if self.init_checkpoint is not None and self.resume_checkpoint is None:
            self._preparing(f"loading the weights of {self.parent_dir.name}")
            load_initial_weights(module, self.init_checkpoint, config)
        module.val_volumes = self._val_volumes()
        module.stop_requested = self.state.stop.is_set
        module.score_in_process = self.score_in_process
        return module

    def _trainer(self, config: Config, precision: str, accelerator: str):
        """The Lightning Trainer of the run: its steps, validation interval, devices, TensorBoard
        logger, callbacks and atomic checkpoint writes."""
        import lightning.pytorch as pl
        from lightning.pytorch.loggers import TensorBoardLogger

        t = config.train
        return pl.Trainer(
            default_root_dir=str(self.run_dir),
            max_steps=t.max_steps,
            max_epochs=-1,
            val_check_interval=t.val_every,
            check_val_every_n_epoch=None,
            num_sanity_val_steps=0,
            precision=precision,
            accelerator=accelerator,
            devices=self.devices,
            strategy=self.strategy,
            num_nodes=self.num_nodes,
            # every rank validates on all validation data: identical metrics on every rank keep
            # best-checkpoint, early-stopping and plateau decisions in step (no DistributedSampler)
            use_distributed_sampler=False,
            logger=TensorBoardLogger(str(self.folder.tensorboard_dir.parent), name=self.folder.tensorboard_dir.name,
                                     version="", default_hp_metric=False),
            callbacks=[*training_callbacks(config, self.state, self.folder), *self.extra_callbacks],
            plugins=[atomic_checkpoint_io()],
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=max(1, min(50, t.val_every)),
            deterministic=False,
        )

    def _finish(self, trainer, module, hand_down: bool) -> None:
        """After fitting: final.ckpt (every rank calls it; rank 0 writes), last.ckpt, slimmed older
        checkpoints, the children waited for, and the last report (stopped / early stopping / finished)."""
        t = self.config.train
        final = self.folder.final_checkpoint
        trainer.save_checkpoint(str(final))
        self.final_checkpoint = final
        if trainer.is_global_zero:
            self.folder.link_last()
            self.folder.slim_checkpoints(final)  # optimizer state in final.ckpt only
        if hand_down:
            self._wait_for_children(trainer)
        stopped = self.state.stop.is_set()
        message = "stopped" if stopped else ("early stopping" if trainer.global_step < t.max_steps else "finished")
        self._push(ProgressReport(step=int(trainer.global_step), max_steps=t.max_steps,
                                  losses=dict(self.state.losses), metrics=dict(module.last_metrics),
                                  lr=float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else 0.0,
                                  preview=module.last_preview, checkpoint=self._best_checkpoint() or final,
                                  done=True, message=message, phase="done", run_dir=self.run_dir),
                   important=True)

    def _wait_for_children(self, trainer, timeout: float = 120.0) -> None:
        """On the process that started Lightning's children: let them finish before returning."""
        launcher = getattr(trainer.strategy, "launcher", None)
        failed = []
        for proc in getattr(launcher, "procs", []) or []:
            try:
                code = proc.wait(timeout=timeout)
            except Exception:  # subprocess.TimeoutExpired: leave it, report nothing
                continue
            if code:
                failed.append(code)
        if failed:
            raise SegtrainError(f"{len(failed)} training process(es) ended with an error (exit codes {failed}); "
                                "see their messages above.")

    def _checkpoint_after_error(self, trainer, module) -> None:
        """Training failed (an exception in a step, a validation, a callback): save the steps done
        since the newest checkpoint as final.ckpt, so the run can be resumed; only finite weights,
        one process (several would have to agree), and never at the price of another error."""
        step = int(trainer.global_step)
        if step <= max(0, self.start_step, self._newest_checkpoint_step()) or self.world_size != 1 or module is None:
            return
        if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
            return
        final = self.folder.final_checkpoint
        try:
            trainer.save_checkpoint(str(final))
        except BaseException:  # a full disk: nothing saved (the atomic write left nothing behind)
            return
        self.folder.link_last()
        self._saved_after_error = (final, step)

    def _newest_checkpoint_step(self) -> int:
        try:
            info = self.folder.resume_checkpoint()
        except SegtrainError:
            return -1
        return info.step if info.step is not None else -1

    def _remove_if_empty(self) -> bool:
        """Remove the run folder this run made when it holds no checkpoint (and nothing else of
        value: its config, an empty log); whether it did."""
        if not self._made_folder or not self.rank_zero or self.folder.checkpoint_files():
            return False
        import shutil

        shutil.rmtree(self.run_dir, ignore_errors=True)
        return not self.run_dir.exists()

    def _what_is_kept(self) -> str:
        """After a failure: which checkpoint a resume would continue from (only what is true), or
        that there is none (a new run folder holding nothing is then removed)."""
        if self._saved_after_error is not None:
            path, step = self._saved_after_error
            return (f"the {step} steps done are saved in {path.name}: continue with --resume {self.run_dir} once "
                    "the cause is fixed")
        try:
            info = self.folder.resume_checkpoint()
        except SegtrainError:
            if self._remove_if_empty():
                return f"no checkpoint was written, so the run folder {self.run_dir} is removed: start the run again"
            return f"no checkpoint was written to {self.run_dir}, so there is nothing to resume: start the run again"
        return (f"the newest checkpoint, {info.name} (step {info.step}), is intact: continue with --resume "
                f"{self.run_dir} once the cause is fixed")

    def _user_error(self, error: BaseException) -> BaseException:
        error = _from_worker(error)
        text = str(error).lower()
        if isinstance(error, TrainingDiverged):
            return SegtrainError(
                f"{error}; lower train.lr (now {error.lr:.3g}) or check the data for NaN or extreme values; "
                f"{self._what_is_kept()}."
            )
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return SegtrainError(
                f"Writing to the run folder {self.run_dir} failed: the disk is full (or the file too large); free "
                f"some space; {self._what_is_kept()}."
            )
        if isinstance(error, PermissionError) or (isinstance(error, OSError) and error.errno == errno.EROFS):
            return SegtrainError(
                f"Writing to the run folder {self.run_dir} failed: {error.strerror or error} ({error.filename}); "
                f"choose a --runs-root you can write to; {self._what_is_kept()}."
            )
        if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text:
            return SegtrainError(
                f"Training ran out of {'GPU ' if self.device.kind != 'cpu' else ''}memory with batch size "
                f"{self.config.train.batch_size} and patches {tuple(self.config.data.patch_shape)}"
                + (f" for each of {self.config.model.ensemble} ensemble members; reduce model.ensemble, "
                   if self.config.model.ensemble > 1 else "; reduce ")
                + "train.batch_size or data.patch_shape."
            )
        if self.resume_checkpoint is not None and "state_dict" in text:
            return SegtrainError(
                f"Cannot resume from {self.resume_checkpoint}: its model differs from the one this config describes; "
                f"resume with the run's own {self.folder.config_path}."
            )
        if self._fitting or self._saved_after_error is not None:  # training began: say what is kept
            kept = self._what_is_kept()
            if isinstance(error, SegtrainError):
                kind = next(k for k in (InputError, ConfigError, SegtrainError) if isinstance(error, k))
                return kind(f"{str(error).rstrip('.')}; {kept}.")
            error.add_note(f"segtrain: {kept}.")
        elif isinstance(error, SegtrainError):
            self._remove_if_empty()  # a new run that failed before its first checkpoint leaves nothing
        return error
