"""What a training run's Lightning callbacks do and share: the reports a run yields
(:class:`ProgressReport`), the state the callbacks and the run share (:class:`RunState`), the
reporting callback (progress, stop requests, validation records, a diverged loss), the periodic
and best checkpoints and atomic checkpoint writes. Lightning is imported by the functions that
build the callbacks (when a run starts)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segtrain.config import Config, monitor_metric
from segtrain.errors import SegtrainError
from segtrain.io.atomic import atomic_path
from segtrain.runs import RunFolder


@dataclass
class ProgressReport:
    """A small snapshot of a run for a GUI or CLI."""

    step: int
    max_steps: int
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    lr: float = 0.0
    preview: np.ndarray | None = None  # (H, 3W) float32 in [0, 1]: raw | target | prediction
    checkpoint: Path | None = None  # newest best/final checkpoint
    done: bool = False
    message: str = ""
    phase: str = "training"  # preparing | training | validating | done (message says stopped/finished/...)
    run_dir: Path | None = None
    elapsed: float = 0.0
    steps_per_second: float = 0.0
    iteration: tuple[int, int] | None = None  # self-training: (this iteration, the last one)


@dataclass
class RunState:
    """What the training callbacks (:func:`training_callbacks`) and their :class:`TrainingRun` share: the
    callbacks read and write this, never the run's own attributes.

    Data: the stop flag (thread-safe), the step reached, the smoothed training losses, the last
    validation metrics, the validation records, what each rank trained on and the training patch
    stream. The run's reactions: ``push`` a :class:`ProgressReport` (``important``: wait for room in
    the queue), ``write_summary`` (metrics.json, at ``step`` or the newest validation's),
    ``save_after_error`` (final.ckpt of the steps done when training fails) and ``best_checkpoint``
    (best.ckpt, once written)."""

    run_dir: Path
    stop: threading.Event
    push: Callable[[ProgressReport, bool], None]
    write_summary: Callable[[int | None], None]
    save_after_error: Callable[[Any, Any], None]
    best_checkpoint: Callable[[], Path | None]
    records: list[dict] = field(default_factory=list)
    losses: dict[str, float] = field(default_factory=dict)
    ranks: list[dict] = field(default_factory=list)  # per rank: patches drawn and hashes of the first ones
    train_data: Any = None

    def record(self, record: dict, write: bool = True) -> None:
        """Keep a validation's record; ``write``: and write the summary (global rank 0)."""
        self.records.append(record)
        if write:
            self.write_summary(None)


class TrainingDiverged(SegtrainError):
    """The training loss became NaN or infinite (raised before that step's update)."""

    def __init__(self, step: int, loss: float, lr: float):
        self.step, self.loss, self.lr = step, loss, lr
        super().__init__(f"training diverged at step {step}: loss is {loss}")


def atomic_checkpoint_io():
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Lightning's own save goes through a temporary in the system temp folder, which is not a
        rename on the same file system; write beside the target and rename instead."""

        def save_checkpoint(self, checkpoint, path, storage_options=None):
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            with atomic_path(path, overwrite=True) as tmp:
                tmp.write_bytes(buffer.getvalue())

    return AtomicCheckpointIO()


def metric_value(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class _Reporting:
    """The hooks of the run's reporting callback (:func:`_reporter` makes it a Lightning
    callback): pushes ProgressReports into the run's state and honours stop requests."""

    def __init__(self, train, state: RunState):
        self.t = train
        self.state = state
        self.last_time = 0.0
        self.start = time.monotonic()
        self.start_step = None
        self.smoothed: dict[str, float] = {}

    def _lr(self, trainer) -> float:
        try:
            return float(trainer.optimizers[0].param_groups[0]["lr"])
        except (IndexError, AttributeError):
            return 0.0

    def _report(self, trainer, module, important: bool, **extra):
        now = time.monotonic()
        step = int(trainer.global_step)
        if self.start_step is None:
            self.start_step = step
        elapsed = now - self.start
        rate = (step - self.start_step) / elapsed if elapsed > 0 else 0.0
        report = ProgressReport(step=step, max_steps=self.t.max_steps, losses=dict(self.smoothed),
                                metrics=dict(module.last_metrics), lr=self._lr(trainer), elapsed=elapsed,
                                steps_per_second=rate, run_dir=self.state.run_dir, **extra)
        self.state.push(report, important)
        self.last_time = now

    def on_before_backward(self, trainer, module, loss):
        # a non-finite loss would make every weight NaN at this step's update: stop before it
        if not bool(torch.isfinite(loss.detach()).all()):
            raise TrainingDiverged(int(trainer.global_step) + 1, float(loss.detach().float().mean()),
                                   self._lr(trainer))

    def on_exception(self, trainer, module, exception):
        self.state.save_after_error(trainer, module)

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.state.train_data is not None and "raw" in batch:  # what this process trains on
            self.state.train_data.note_batch(batch["raw"])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        step = int(trainer.global_step)
        if step >= self.t.max_steps and step % self.t.val_every:
            # every run validates at its last step (should_stop makes Lightning validate now),
            # so its metrics and best.ckpt cover the weights it ends with
            trainer.should_stop = True
        for k, v in module.last_losses.items():
            self.smoothed[k] = v if k not in self.smoothed else 0.9 * self.smoothed[k] + 0.1 * v
        self.state.losses = dict(self.smoothed)
        if self._stop_requested(trainer):
            trainer.should_stop = True
        if time.monotonic() - self.last_time >= self.t.report_interval:
            self._report(trainer, module, important=False)

    def _stop_requested(self, trainer) -> bool:
        stop = self.state.stop.is_set()
        if trainer.world_size > 1:
            # all ranks stop after the same step (a rank that stepped on alone would hang in the
            # gradient all-reduce): stop when any rank was asked to
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
            if stop:
                self.state.stop.set()
        return stop

    def on_validation_start(self, trainer, module):
        if not trainer.sanity_checking and not self.state.stop.is_set():
            self._report(trainer, module, important=True, phase="validating")

    def on_validation_end(self, trainer, module):
        if trainer.sanity_checking or self.state.stop.is_set():
            return  # the validation Lightning runs on stop is skipped, not recorded
        record = {"step": int(trainer.global_step), "time": round(time.monotonic() - self.start, 2),
                  "lr": self._lr(trainer)}
        record.update({f"train/{k}": v for k, v in self.smoothed.items()})
        record.update({f"val/{k}": metric_value(v) for k, v in module.last_metrics.items()})
        self.state.record(record, write=trainer.is_global_zero)
        best = self.state.best_checkpoint()
        self._report(trainer, module, important=True, preview=module.last_preview, checkpoint=best)

    def on_train_end(self, trainer, module):
        # what each process trained on (collected on rank 0 into metrics.json "ranks")
        data = self.state.train_data
        mine = {"rank": int(trainer.global_rank), "patches": int(getattr(data, "patches", 0)),
                "first_patches": list(getattr(data, "fingerprints", [])),
                "last_metrics": {k: metric_value(v) for k, v in module.last_metrics.items()}}
        ranks = [mine]
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            ranks = [None] * trainer.world_size
            torch.distributed.all_gather_object(ranks, mine)
        self.state.ranks = ranks
        if trainer.is_global_zero:
            self.state.write_summary(int(trainer.global_step))


def _reporter(train, state: RunState):
    """The reporting callback (:class:`_Reporting` as a Lightning callback; Lightning is imported
    by the functions that train)."""
    import lightning.pytorch as pl

    reporter = type("Reporter", (_Reporting, pl.Callback), {})
    return reporter(train, state)


def _periodic_checkpoint(train, folder: RunFolder):
    """The periodic checkpoints: the newest ``keep_checkpoints`` ("step" is the largest for the
    newest), last.ckpt linking the newest (the point a crashed run resumes from). The newest keeps
    the optimizer state, and one spare of an earlier step; each one saved turns the older ones into
    weights-only files (RunFolder.slim_checkpoints)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Periodic(ModelCheckpoint):
        def _save_checkpoint(self, trainer, filepath):
            super()._save_checkpoint(trainer, filepath)
            if trainer.is_global_zero:
                folder.slim_checkpoints(filepath)

    return Periodic(dirpath=folder.checkpoints_dir, filename=RunFolder.PERIODIC_NAME,
                    every_n_train_steps=train.checkpoint_every, monitor="step", mode="max",
                    save_top_k=train.keep_checkpoints, save_last="link", auto_insert_metric_name=False,
                    enable_version_counter=False)


def _weight_average(train):
    """Lightning's exponential moving average of the weights (``EMAWeightAveraging``), in place for
    validation and in every checkpoint, changed for these runs: the average replaces the
    weights from validation's start until the next training step (Lightning swaps them back at
    validation's epoch end, before SegtrainModule's own hook scores the segmentation and before
    best.ckpt, written weights only without the callbacks' hooks, is saved); at the end the training
    weights stay in final.ckpt beside the average (a resumed run goes on from them); nothing is swapped or
    saved before the first update (the average still holds the starting weights); the module's
    validation volumes and stop flag are not copied into the average."""
    from lightning.pytorch.callbacks import EMAWeightAveraging

    class WeightAverage(EMAWeightAveraging):
        swapped = False  # the average is in the module, the training weights in the average model

        def _started(self) -> bool:
            return self._average_model is not None and int(self._average_model.n_averaged) > 0

        def _put(self, pl_module, averaged: bool) -> None:
            if self._started() and self.swapped != averaged:
                self._swap_models(pl_module)
                self.swapped = averaged

        def setup(self, trainer, pl_module, stage):
            kept = {k: pl_module.__dict__.pop(k) for k in ("val_volumes", "stop_requested") if k in pl_module.__dict__}
            try:
                super().setup(trainer, pl_module, stage)
            finally:
                pl_module.__dict__.update(kept)

        def on_validation_epoch_start(self, trainer, pl_module):
            self._put(pl_module, True)

        def on_validation_epoch_end(self, trainer, pl_module):
            pass

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._put(pl_module, False)

        def on_train_end(self, trainer, pl_module):
            # the average in the module for final.ckpt, the training weights kept in it to resume
            # from (Lightning's own copies the average over them)
            self._put(pl_module, True)

        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            if not self._started():
                return
            if not self.swapped:
                return super().on_save_checkpoint(trainer, pl_module, checkpoint)
            state = self._average_model.state_dict()  # the training weights while swapped
            checkpoint["current_model_state"] = {k[7:]: v for k, v in state.items() if k.startswith("module.")}
            checkpoint["averaging_state"] = {k: v for k, v in state.items() if not k.startswith("module.")}

    return WeightAverage(decay=train.ema_decay, update_starting_at_step=int(train.ema_start * train.max_steps))


def training_callbacks(config: Config, state: RunState, folder: RunFolder):
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    t = config.train
    monitor, mode = monitor_metric(config)
    callbacks = [
        _reporter(t, state),
        # best: for inference only, so weights only (a third of a full checkpoint with Adam's state)
        ModelCheckpoint(dirpath=folder.checkpoints_dir, filename=folder.best_checkpoint.stem, monitor=monitor,
                        mode=mode, save_top_k=1, save_weights_only=True, auto_insert_metric_name=False,
                        enable_version_counter=False, save_on_train_epoch_end=False),
        LearningRateMonitor(logging_interval="step"),
    ]
    if t.keep_checkpoints > 0:
        callbacks.insert(2, _periodic_checkpoint(t, folder))
    if t.ema_decay is not None:
        callbacks.append(_weight_average(t))
    if t.early_stopping_patience is not None:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=t.early_stopping_patience,
                                       min_delta=t.early_stopping_min_delta, check_on_train_epoch_end=False,
                                       check_finite=False))
    return callbacks
