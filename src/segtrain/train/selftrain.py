"""Self-training: learn from unlabelled images with the network's own confident predictions.

Iteration 0 trains on the labelled data alone. Each iteration ``i`` = 1 .. ``selftrain.iterations``
predicts the unlabelled images with the previous iteration's model (or, with a mean teacher, with
the moving average of its weights), keeps the pixels whose predicted class is at least as probable
as that class's threshold (:func:`thresholds_for`: ``threshold_start`` at iteration 1 moved linearly
to ``threshold_end`` at the last) and trains again on the labelled data plus these pseudo-labels.

How unconfident pixels are ignored: a pseudo-labelled image is an :class:`ArraySource` whose
``known`` mask is the confident pixels and whose per-pixel ``weights`` are ``selftrain.pseudo_weight``.
:func:`segtrain.train.targets.targets_for` multiplies the two into the loss weight of every target
(``known * weights``; an affinity is known only where both its pixels are), and every loss of
:mod:`segtrain.train.losses` multiplies each pixel's term by its weight: an unconfident pixel has
weight 0 and adds nothing to the loss nor to its normalisation.

Each iteration is a run folder ``iterations/NN`` of the self-training run (:class:`RunFolder`): its
config, metrics and checkpoints, ``pseudo_labels.json`` (thresholds, pixels predicted and kept per
class), ``figure.png`` (a validation image | ground truth | prediction | pseudo-label). The run's
``selftrain.json`` lists the iterations; its ``checkpoints/`` holds the last iteration's model.

Resume (``SelfTraining(..., resume=RUN)``, ``segtrain selftrain --resume RUN``): the iterations
``selftrain.json`` lists as done are reused as they are (never trained again); the pseudo-labels
for the next iteration are made again from the last done one's model (the same model, so the same
pseudo-labels); an interrupted iteration continues from its newest full-state checkpoint (a stopped
one from its ``final.ckpt``, a killed one from its last periodic ``step-N.ckpt``), one that was never
started starts afresh. :func:`resume_plan` checks the folder first and refuses, in one sentence and
before anything is written, a folder that is not a self-training run or one that is finished.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segtrain.config import Config, load_config, monitor_metric, selftrain_classes
from segtrain.errors import InputError, SegtrainError
from segtrain.runs import RunFolder
from segtrain.tasks import task_of
from segtrain.targets.masks import labels_from_mask
from segtrain.train.run import ProgressReport, TrainingRun, given_or_configured
from segtrain.train.sources import (
    ArraySource,
    Source,
    whole_volume,
)
from segtrain.io import read_volume
from segtrain.io.atomic import atomic_path
from segtrain.io.read import check_finite
from segtrain.models.build import offsets_for
from segtrain.predict import load_model
from segtrain.predict import predict_array
from segtrain.targets import affinities


def _per_class(value, n: int) -> list[float]:
    return [float(v) for v in value] if isinstance(value, list) else [float(value)] * n


def thresholds_for(config: Config, iteration: int) -> list[float]:
    """Per-class confidence thresholds of self-training ``iteration`` (1 .. ``selftrain.iterations``):
    ``threshold_start`` at iteration 1, ``threshold_end`` at the last, linear in between
    (``schedule: constant`` keeps ``threshold_start``)."""
    s = config.selftrain
    n = selftrain_classes(config)
    start, end = _per_class(s.threshold_start, n), _per_class(s.threshold_end, n)
    if s.schedule == "constant" or s.iterations <= 1:
        return start
    f = min(max((iteration - 1) / (s.iterations - 1), 0.0), 1.0)
    return [round(a + (b - a) * f, 6) for a, b in zip(start, end)]  # 0.93, not 0.9299999999999999


@dataclass
class PseudoLabels:
    """Pseudo-labels of one image: ``labels`` (int64; instances, or class ids for task classes),
    ``known`` (bool: the confident pixels, the only ones with a loss), ``classes`` (the predicted
    class per pixel), pixels ``predicted`` and ``kept`` per class."""

    labels: np.ndarray
    known: np.ndarray
    classes: np.ndarray
    predicted: dict[int, int]
    kept: dict[int, int]


def _components(mask: np.ndarray, stack: bool) -> np.ndarray:
    return labels_from_mask(mask, per_slice=stack)


def pixel_classes(outputs: dict[str, np.ndarray], config: Config) -> tuple[np.ndarray, np.ndarray]:
    """``(class, confidence)`` of each pixel as self-training reads a model's ``outputs``: task
    classes the most probable class and its probability; masks and instances background /
    foreground from the foreground probability ``p`` (confidence ``1 - p`` or ``p``); affinities
    boundary / object from the smallest nearest-neighbour affinity ``a`` (``1 - a`` or ``a``)."""
    task = task_of(config)
    if task.semantic:
        probs = np.asarray(outputs["probabilities"])
        return probs.argmax(axis=0).astype(np.int64), probs.max(axis=0)
    if task.agglomerates:
        p = np.asarray(outputs["affinities"])[_nearest_channels(config)].min(axis=0)
    else:
        p = np.asarray(outputs["probabilities"])[0]
    classes = (p >= 0.5).astype(np.int64)
    return classes, np.where(classes == 1, p, 1 - p)


def _nearest_channels(config: Config) -> list[int]:
    return [i for i, o in enumerate(offsets_for(config)) if sum(abs(v) for v in o) == 1]


def true_classes(labels: np.ndarray, config: Config, known: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(class, known)`` of each pixel of annotated ``labels`` in the classes of
    :func:`pixel_classes`: the class ids (classes), foreground = label not 0 (masks, instances),
    object = every nearest-neighbour affinity of the labels is 1 (affinities; known where those
    affinities are)."""
    labels = np.asarray(labels)
    known = np.ones(labels.shape, bool) if known is None else np.asarray(known, bool)
    task = task_of(config)
    if task.semantic:
        return labels.astype(np.int64), known
    if not task.agglomerates:
        return (labels != 0).astype(np.int64), known

    offsets = [offsets_for(config)[i] for i in _nearest_channels(config)]
    affs, affs_known = affinities(labels, offsets, known=known)
    return (affs.min(axis=0) >= 0.5).astype(np.int64), affs_known.min(axis=0) > 0


THRESHOLD_GRID = tuple(round(0.5 + 0.01 * k, 2) for k in range(50))  # 0.50 ... 0.99


def calibrate_thresholds(outputs: Sequence[dict], labels: Sequence[np.ndarray], config: Config,
                         precision: float = 0.95, known: Sequence[np.ndarray | None] | None = None
                         ) -> tuple[list[float], list[dict]]:
    """Per-class confidence thresholds chosen on annotated images: for each class the lowest
    threshold of :data:`THRESHOLD_GRID` at which the pixels a model predicts as that class with at
    least that confidence (its pseudo-labels) are that class in the ground truth ``precision`` of
    the time or more (0.99 when none is). ``outputs`` are the model's predictions of the annotated
    images, ``labels`` their annotation. Returns the thresholds and per class what they would
    keep there: ``{"threshold", "precision", "kept", "predicted"}``."""
    known = list(known) if known is not None else [None] * len(labels)
    pairs = [(pixel_classes(o, config), true_classes(g, config, k)) for o, g, k in zip(outputs, labels, known)]
    predicted = np.concatenate([c[m].ravel() for (c, _), (_, m) in pairs])
    confidence = np.concatenate([p[m].ravel() for (_, p), (_, m) in pairs])
    right = np.concatenate([(c == t)[m].ravel() for (c, _), (t, m) in pairs])
    thresholds, records = [], []
    for c in range(selftrain_classes(config)):
        mine = predicted == c
        conf, ok = confidence[mine], right[mine]
        chosen, record = THRESHOLD_GRID[-1], None
        for t in THRESHOLD_GRID:
            kept = conf >= t
            share = float(ok[kept].mean()) if kept.any() else 0.0
            if kept.any() and share >= precision:
                chosen, record = t, {"threshold": t, "precision": share, "kept": int(kept.sum())}
                break
        if record is None:
            kept = conf >= chosen
            record = {"threshold": chosen, "precision": float(ok[kept].mean()) if kept.any() else None,
                      "kept": int(kept.sum())}
        thresholds.append(float(chosen))
        records.append({**record, "predicted": int(mine.sum())})
    return thresholds, records


def pseudo_labels(outputs: dict[str, np.ndarray], config: Config, thresholds: Sequence[float],
                  stack: bool = False) -> PseudoLabels:
    """Pseudo-labels from a model's ``outputs`` (:func:`segtrain.predict.predict_array`).

    Each pixel's class and its probability (:func:`pixel_classes`): task classes the most probable
    class; masks and instances background / foreground from the foreground probability ``p``
    (probabilities ``1 - p`` and ``p``); affinities boundary / object from the smallest
    nearest-neighbour affinity ``a`` (probabilities ``1 - a`` and ``a``). A pixel is kept where that
    probability reaches its class's threshold. Labels: the class ids (classes), the instances of the
    segment settings (instances), connected components of the foreground or objects (masks,
    affinities; per image for a stack of 2D images). A kept pixel whose label disagrees with its
    class is dropped.
    """
    task = task_of(config)
    thresholds = np.asarray(thresholds, dtype=np.float32)
    classes, confidence = pixel_classes(outputs, config)
    if task.semantic:
        labels = classes.astype(np.int64)
    elif task.boundary_channel:
        from segtrain.postprocess import OutputSpec, instances

        labels = np.asarray(instances(outputs["probabilities"], config.segment, OutputSpec.of(config)),
                            dtype=np.int64)
    else:
        labels = _components(classes == 1, stack)
    known = confidence >= thresholds[classes]
    if not task.semantic:
        known &= (labels != 0) == (classes == 1)
    n = len(thresholds)
    predicted = np.bincount(classes.reshape(-1), minlength=n)
    kept = np.bincount(classes[known].reshape(-1), minlength=n)
    return PseudoLabels(labels, known, classes, {c: int(predicted[c]) for c in range(n)},
                        {c: int(kept[c]) for c in range(n)})


def pseudo_source(raw, pseudo: PseudoLabels, weight: float, pseudo_weight: float, name: str,
                  voxel_size=None) -> ArraySource:
    """A training source of pseudo-labels: only the confident pixels are known (the others have
    loss weight 0), each with loss weight ``pseudo_weight``."""
    weights = np.full(pseudo.labels.shape, pseudo_weight, np.float32)
    return ArraySource(raw, pseudo.labels, known=pseudo.known, weights=weights, weight=weight, name=name,
                       voxel_size=voxel_size)


@dataclass
class IterationResult:
    """What one self-training iteration did (also in its ``pseudo_labels.json`` and ``selftrain.json``)."""

    iteration: int
    iterations: int
    folder: Path
    thresholds: list[float] | None  # of the pseudo-labels it trained on; None for iteration 0
    predicted: dict[int, int] = field(default_factory=dict)  # pixels per predicted class (unlabelled images)
    kept: dict[int, int] = field(default_factory=dict)  # confident pixels per class: its pseudo-labels
    metrics: dict[str, float] = field(default_factory=dict)  # its last validation
    steps: int = 0
    stopped: bool = False

    def describe(self) -> str:
        """``iteration 1/2: kept class 0 9,120 / 9,500 (96.0 %), class 1 ... ; dice 0.81``."""
        text = f"iteration {self.iteration}/{self.iterations}"
        if self.thresholds is None:
            text += ": labelled data only"
        else:
            parts = []
            for c, kept in self.kept.items():
                total = self.predicted.get(c, 0)
                share = f" ({100 * kept / total:.1f} %)" if total else ""
                parts.append(f"class {c} {kept:,} / {total:,}{share} at {self.thresholds[c]:.3f}")
            text += ": kept " + ", ".join(parts)
        if self.metrics:
            text += "; " + ", ".join(f"{k} {v:.4g}" for k, v in self.metrics.items()
                                     if k in ("loss", "dice", "f1", "voi", "iou"))
        return text

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["folder"] = str(self.folder)
        d["predicted"] = {str(k): v for k, v in self.predicted.items()}
        d["kept"] = {str(k): v for k, v in self.kept.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> IterationResult:
        """The result :meth:`to_dict` wrote (a record of ``selftrain.json``)."""
        return cls(iteration=int(d["iteration"]), iterations=int(d["iterations"]), folder=Path(d["folder"]),
                   thresholds=d.get("thresholds"),
                   predicted={int(k): int(v) for k, v in (d.get("predicted") or {}).items()},
                   kept={int(k): int(v) for k, v in (d.get("kept") or {}).items()},
                   metrics=dict(d.get("metrics") or {}), steps=int(d.get("steps") or 0),
                   stopped=bool(d.get("stopped")))


@dataclass
class ResumePlan:
    """What resuming a self-training run does: its folder and own config, the iterations done
    (reused), and the iteration that continues (``None`` when only the run's final checkpoint is
    missing) with the step it continues from (0: starts afresh)."""

    folder: RunFolder
    config: Config
    done: list[IterationResult]
    next_iteration: int | None
    next_step: int

    def describe(self) -> str:
        """``resuming: iterations 0-1 done (reused); iteration 2 continues from step 4``."""
        n = len(self.done)
        done = "no iteration done" if n == 0 else ("iteration 0 done (reused)" if n == 1
                                                    else f"iterations 0-{n - 1} done (reused)")
        if self.next_iteration is None:
            return f"resuming: {done}; only the run's final checkpoint is missing"
        then = (f"iteration {self.next_iteration} continues from step {self.next_step}" if self.next_step
                else f"iteration {self.next_iteration} starts")
        return f"resuming: {done}; {then}"


def _iteration_step(folder: RunFolder) -> int:
    """The step an interrupted iteration continues from: that of the checkpoint a run resumes from
    (0 when it has none)."""
    if not folder.checkpoint_files():
        return 0
    try:
        return folder.resume_checkpoint().step or 0
    except SegtrainError:
        return 0


def resume_plan(path: str | Path) -> ResumePlan:
    """Check that ``path`` is a self-training run that can be resumed, and say how (nothing is
    written). One sentence (:class:`InputError`) for a missing folder, a folder that is not a run,
    a plain training run, an iteration folder, or a finished run."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"Cannot resume: {path} does not exist; give the folder of a self-training run.")
    if path.is_file():
        owner = RunFolder.of_checkpoint(path)
        if owner is None:
            raise InputError(f"Cannot resume self-training from {path}: give the run's folder, not a file.")
        path = owner.path
    folder = RunFolder(path)
    if not folder.is_run(path):
        raise InputError(f"Cannot resume {path}: it is not a run folder (no config.yaml); give the folder of a "
                         "self-training run.")
    owner = folder.selftrain_run()
    if owner is not None:
        raise InputError(f"Cannot resume {path} on its own: it is iteration {path.name} of the self-training run "
                         f"{owner.path}; resume that one with `segtrain selftrain --resume {owner.path}`.")
    if not folder.is_selftrain():
        raise InputError(f"Cannot resume {path} as self-training: it is a plain training run (no selftrain "
                         f"section); continue it with `segtrain train --config FILE --resume {path}`.")
    config = load_config(folder.config_path)
    n = config.selftrain.iterations
    if n < 1:
        raise InputError(f"Cannot resume {path}: its config has selftrain.iterations 0; it is not a self-training "
                         "run to continue.")
    done = []
    for record in folder.selftrain().get("iterations") or []:
        result = IterationResult.from_dict(record)
        if result.stopped or result.iteration != len(done):
            break
        done.append(result)
    done = done[:n + 1]
    if len(done) == n + 1:
        if folder.checkpoint_files():
            raise InputError(f"Self-training run {path} is finished (iterations 0-{n} done); start a new run to "
                             "train more, e.g. with more selftrain.iterations.")
        return ResumePlan(folder, config, done, None, 0)
    index = len(done)
    return ResumePlan(folder, config, done, index, _iteration_step(folder.iteration(index)))


def _mean_teacher_callback(decay: float, path: Path):
    """A Lightning callback keeping an exponential moving average of the network's weights (updated
    after every step: ``ema = decay * ema + (1 - decay) * weights``), saved to ``path`` at the end."""
    import lightning.pytorch as pl
    import torch

    class MeanTeacher(pl.Callback):
        def __init__(self):
            self.ema: dict[str, torch.Tensor] = {}

        def on_train_start(self, trainer, module):
            self.ema = {k: v.detach().clone() for k, v in module.model.state_dict().items()}

        @torch.no_grad()
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            for k, v in module.model.state_dict().items():
                if v.dtype.is_floating_point:
                    self.ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
                else:
                    self.ema[k].copy_(v)

        def on_train_end(self, trainer, module):
            if trainer.is_global_zero and self.ema:
                with atomic_path(path, overwrite=True) as tmp:
                    torch.save({k: v.cpu() for k, v in self.ema.items()}, tmp)

    return MeanTeacher()


def _read_unlabelled(paths: Sequence[str | Path]) -> list:
    out = []
    for path in paths:
        volume = read_volume(path)
        out.append(np.asarray(volume.data))
        check_finite(out[-1], str(path))  # refused now, not after the first iteration's training
    return out


def _figure(path: Path, volume: dict, outputs: dict, pseudo: PseudoLabels, config: Config, title: str) -> None:
    """image | ground truth | prediction | pseudo-label (grey = ignored) as a PNG (matplotlib Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def middle(a):
        a = np.asarray(a)
        return a[a.shape[0] // 2] if a.ndim == 3 else a

    raw = np.asarray(volume["raw"])
    if raw.ndim == config.ndim + 1 and config.data.in_channels > 1:
        raw = raw[0]
    task = task_of(config)
    prediction = np.asarray(outputs[task.head])
    if task.semantic:
        prediction = prediction.argmax(axis=0).astype(np.float32)
    elif task.agglomerates:
        prediction = prediction[:config.ndim].mean(axis=0)
    else:
        prediction = prediction[0]
    gt = volume["labels"]
    if not task.semantic:
        gt = (np.asarray(gt) != 0).astype(np.float32)
    shown = np.where(pseudo.known, pseudo.classes, np.nan).astype(np.float32)
    figure = Figure(figsize=(12, 3.4), dpi=80)
    FigureCanvasAgg(figure)
    vmax = max(1, selftrain_classes(config) - 1)
    panels = [("image", middle(raw), "gray", None), ("ground truth", middle(gt), "viridis", (0, vmax)),
              ("prediction", middle(prediction), "viridis", (0, vmax if task.semantic else 1)),
              ("pseudo-label (grey: ignored)", middle(shown), "viridis", (0, vmax))]
    for i, (name, image, cmap, limits) in enumerate(panels):
        ax = figure.add_subplot(1, 4, i + 1)
        ax.set_facecolor("0.5")
        ax.imshow(image, cmap=cmap, vmin=None if limits is None else limits[0],
                  vmax=None if limits is None else limits[1], interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    figure.suptitle(title, fontsize=10)
    with atomic_path(path, overwrite=True) as tmp:
        figure.savefig(tmp, format="png")


class SelfTraining:
    """A self-training run (see the module's description).

    Parameters
    ----------
    config
        The config (or a YAML path); its ``selftrain`` section says how many iterations, the
        thresholds and the weights.
    train_sources, val_sources
        Labelled sources (default: the config's ``data.train`` / ``data.val`` files); without
        validation data the last 20 % of each training source is held out, once for all iterations.
    unlabelled
        Images to pseudo-label (arrays, ``(*spatial)`` or a stack of 2D images); default: the files
        of ``selftrain.unlabelled``.
    runs_root, name
        The run folder is ``<runs_root>/<name>-<timestamp>`` (default root: ``segtrain.runs.default_runs_root()``).
    stop_event
        Set it to stop: the current iteration stops as a training run does, and no further one starts.
    resume
        A self-training run folder to continue (:func:`resume_plan`; its own config is used:
        ``config`` may be None, and one given must describe the same model, data and
        self-training); the other arguments give the same data as the first time.
    """

    def __init__(self, config: Config | str | Path | None, train_sources: Sequence[Source] | None = None,
                 val_sources: Sequence[Source] | None = None, unlabelled: Sequence | None = None,
                 runs_root: str | Path | None = None, name: str | None = None,
                 stop_event: threading.Event | None = None, score_in_process: bool = False,
                 voxel_size=None, resume: str | Path | None = None):
        self.plan = resume_plan(resume) if resume is not None else None
        if config is None:
            if self.plan is None:
                raise InputError("Give a config to self-train with, or a run to resume.")
            config = self.plan.config
        if not isinstance(config, Config):
            config = load_config(config)
        if self.plan is not None:
            _check_same_run(config, self.plan)
            config = self.plan.config
        self.config = config.copy().validate()
        if name and self.plan is None:
            self.config.name = name
        s = self.config.selftrain
        if s.iterations < 1:
            raise InputError("selftrain.iterations is 0: set it to the number of self-training iterations (1 or more).")
        if unlabelled is None:
            if not s.unlabelled:
                raise InputError("No unlabelled images to self-train on: list image files in selftrain.unlabelled.")
            unlabelled = _read_unlabelled(s.unlabelled)
        self.unlabelled = list(unlabelled)
        if not self.unlabelled:
            raise InputError("No unlabelled images to self-train on: give at least one image.")
        self.train_sources, self.val_sources = given_or_configured(self.config.data, train_sources, val_sources,
                                                                   "labelled data")
        self.voxel_size = voxel_size
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self.score_in_process = score_in_process
        if self.plan is None:
            self.folder = RunFolder.create(runs_root, self.config.name)
            self.folder.save_config(self.config)
        else:
            self.folder = self.plan.folder
        self.run_dir = self.folder.path
        self.results: list[IterationResult] = list(self.plan.done) if self.plan is not None else []
        self._pseudo: list[PseudoLabels] = []

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def steps(self) -> int:
        return self.config.selftrain.steps or self.config.train.max_steps

    def iteration_config(self, index: int) -> Config:
        config = self.config.copy()
        steps = self.steps
        config.name = f"{self.config.name}-it{index:02d}"
        config.train.max_steps = steps
        config.train.val_every = min(config.train.val_every, steps)
        config.train.checkpoint_every = min(config.train.checkpoint_every, steps)
        config.train.seed = self.config.train.seed + index
        return config.validate()

    def _pseudo_sources(self) -> list[Source]:
        s = self.config.selftrain
        labelled = sum(src.weight for src in self.train_sources)
        usable = [(k, p) for k, p in enumerate(self._pseudo) if p.known.any()]
        if not usable:
            return []
        each = labelled * s.pseudo_fraction / (1 - s.pseudo_fraction) / len(usable)
        return [pseudo_source(self.unlabelled[k], p, each, s.pseudo_weight, f"pseudo-{k}", self.voxel_size)
                for k, p in usable]

    def reports(self) -> Iterator[ProgressReport | IterationResult]:
        """Run every iteration; yields the training runs' :class:`ProgressReport` s (with
        ``iteration`` set) and an :class:`IterationResult` after each iteration."""
        s = self.config.selftrain
        n = s.iterations
        first = len(self.results)  # resumed: the iterations done are reused as they are
        previous: RunFolder | None = self.folder.iteration(first - 1) if first else None
        if previous is not None and first <= n and not self.stop_event.is_set():
            self._pseudo = self._pseudo_labels_of(previous, first)
        for index in range(first, n + 1):
            if self.stop_event.is_set():
                break
            folder = self.folder.iteration(index)
            config = self.iteration_config(index)
            thresholds = None if index == 0 else thresholds_for(self.config, index)
            result = IterationResult(index, n, folder.path, thresholds)
            if index > 0:
                for c in range(len(thresholds)):
                    result.predicted[c] = sum(p.predicted[c] for p in self._pseudo)
                    result.kept[c] = sum(p.kept[c] for p in self._pseudo)
            train = [*self.train_sources, *(self._pseudo_sources() if index > 0 else [])]
            callbacks = [_mean_teacher_callback(s.ema_decay, folder.teacher_path)] if s.mean_teacher else []
            init_from = previous.path if (previous is not None and s.from_previous) else None
            started = folder.checkpoint_files()  # resumed: an interrupted iteration continues
            reached = _iteration_step(folder) if started else 0
            run = None
            if reached < config.train.max_steps:
                run = TrainingRun(config, train, self.val_sources, stop_event=self.stop_event,
                                  score_in_process=self.score_in_process, callbacks=callbacks, fine_tune=False,
                                  **({"resume": folder.path} if started else
                                     {"run_dir": folder.path, "init_from": init_from}))
            folder.write_pseudo_labels({"iteration": index, "thresholds": thresholds,
                                        "predicted": {str(k): v for k, v in result.predicted.items()},
                                        "kept": {str(k): v for k, v in result.kept.items()},
                                        "pseudo_weight": s.pseudo_weight if index else None,
                                        "images": len(self.unlabelled) if index else 0})
            if run is None:  # killed after its training ended: use what it trained
                history = folder.history()
                result.steps = reached
                result.metrics = {k.removeprefix("val/"): v for k, v in (history[-1] if history else {}).items()
                                  if k.startswith("val/")}
            else:
                last = None
                for last in run.reports():
                    yield dataclasses.replace(last, iteration=(index, n))
                result.steps = int(last.step) if last is not None else 0
                result.metrics = dict(last.metrics) if last is not None else {}
            result.stopped = self.stop_event.is_set()
            previous = folder
            if not result.stopped:
                self._after_training(index, folder, config)
            self.results.append(result)
            self._write_summary()
            yield result
        if previous is not None and previous.checkpoint_files():
            self.folder.adopt_checkpoint(previous.model_checkpoint("newest").path)
        if first > n:  # resumed where only the final checkpoint was missing
            self._write_summary()

    def _teacher(self, folder: RunFolder):
        """The model that makes the next pseudo-labels: the iteration's newest checkpoint, or its
        moving average (mean teacher)."""
        import torch

        loaded = load_model(folder.path)
        if self.config.selftrain.mean_teacher and folder.teacher_path.exists():
            state = torch.load(folder.teacher_path, map_location="cpu")
            loaded.model.load_state_dict(state)
        return loaded

    def _pseudo_labels_of(self, folder: RunFolder, index: int, loaded=None) -> list[PseudoLabels]:
        """The pseudo-labels iteration ``index`` trains on: the unlabelled images predicted by the
        model of iteration folder ``folder`` (the one before), at ``index``'s thresholds."""

        loaded = loaded if loaded is not None else self._teacher(folder)
        thresholds = thresholds_for(self.config, index)
        stack = self.config.ndim == 2
        pseudo = []
        for image in self.unlabelled:
            outputs = predict_array(loaded, image, voxel_size=self.voxel_size, tta=1)
            pseudo.append(pseudo_labels(outputs, self.config, thresholds, stack=stack and np.ndim(image) == 3))
        return pseudo

    def _after_training(self, index: int, folder: RunFolder, config: Config) -> None:
        """Pseudo-label the unlabelled images for the next iteration and draw the figure."""

        loaded = self._teacher(folder)
        n = self.config.selftrain.iterations
        thresholds = thresholds_for(self.config, min(index + 1, n))
        stack = self.config.ndim == 2
        if index < n:
            self._pseudo = self._pseudo_labels_of(folder, index + 1, loaded)
        source = next((v for v in self.val_sources if isinstance(v, ArraySource)), None)
        if source is not None:
            d = self.config.data  # prepared by the iteration's run (cached), unless a resume skipped it
            source.prepare(self.config.ndim, d.in_channels, d.normalize, d.ignore_label)
            volume = whole_volume(source, d.in_channels)
            outputs = predict_array(loaded, volume["raw"], voxel_size=self.voxel_size, tta=1)
            pseudo = pseudo_labels(outputs, self.config, thresholds, stack=stack and np.ndim(volume["raw"]) == 3)
            _figure(folder.figure_path, volume, outputs, pseudo, self.config,
                    f"iteration {index}: validation image, pseudo-label at thresholds "
                    + ", ".join(f"{t:.3f}" for t in thresholds))

    def _write_summary(self) -> None:
        monitor, mode = monitor_metric(self.config)
        key = monitor.removeprefix("val/")
        history, step = [], 0
        for r in self.results:
            step += r.steps
            history.append({"step": step, "iteration": r.iteration,
                            **{f"val/{k}": v for k, v in r.metrics.items()}})
        values = [(h[monitor], h["step"]) for h in history if isinstance(h.get(monitor), float)
                  and math.isfinite(h[monitor])]
        best = (min if mode == "min" else max)(values) if values else None
        self.folder.write_metrics({"name": self.run_dir.name, "preset": self.config.preset, "task": self.config.task,
                                   "monitor": monitor, "mode": mode, "best": None if best is None else best[0],
                                   "best_step": None if best is None else best[1], "steps": step,
                                   "max_steps": self.steps * (self.config.selftrain.iterations + 1),
                                   "selftrain": True}, history)
        self.folder.write_selftrain({"iterations": [r.to_dict() for r in self.results], "monitor": key})

    def run(self) -> list[IterationResult]:
        """Every iteration, blocking; the iterations' results."""
        for _ in self.reports():
            pass
        return self.results


def _check_same_run(config: Config, plan: ResumePlan) -> None:
    """A config given beside a run to resume must describe the same self-training (data, model,
    selftrain section, steps per iteration): one sentence naming what differs."""
    ours, theirs = config.to_dict(), plan.config.to_dict()
    differ = [k for k in ("data", "model", "selftrain") if ours.get(k) != theirs.get(k)]
    if (config.selftrain.steps or config.train.max_steps) != (plan.config.selftrain.steps
                                                               or plan.config.train.max_steps):
        differ.append("steps per iteration")
    if differ:
        raise InputError(f"Cannot resume {plan.folder.path} with this config: its {', '.join(differ)} differ from the "
                         "run's own; resume without a config (the run's config.yaml is used).")


def run_selftraining(config: Config | str | Path, **kwargs) -> list[IterationResult]:
    """Self-train as ``config.selftrain`` says (arguments of :class:`SelfTraining`); blocking."""
    return SelfTraining(config, **kwargs).run()
