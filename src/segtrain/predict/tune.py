"""Choose how a mask or instance model's probabilities become instances, on annotated images.

After training, the probability threshold, the seed settings and the smallest object size decide
instance F1 as much as the network does. Like StarDist's threshold optimisation, this module
searches them against annotated images and stores the result beside the run
(``<run>/postprocess.yaml``), which :func:`segtrain.predict.load_model` then applies.

The search is a coordinate search over a small grid (each setting in turn, the others held, two
passes), scored by the mean instance F1 at IoU 0.5 over the images, exactly the validation metric.
Sizes in the grid are fractions of the median annotated object size, so the grid fits any
magnification.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segtrain.config import Config
from segtrain.errors import InputError
from segtrain.runs import RunFolder

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SEED_BOUNDARY = (0.2, 0.3, 0.4, 0.5, 0.6)
SIZE_FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.3)  # of the median annotated object size
SEED_SIZE_FRACTIONS = (0.0, 0.02, 0.05, 0.1, 0.2)
SEED_DISTANCES = (3, 5, 8, 12, 16)  # masks model with instance_method "watershed"


@dataclass
class TuneResult:
    """The chosen settings, their score and every setting tried."""

    settings: dict[str, float | int]
    f1: float
    start_f1: float  # with the settings the search started from
    start_settings: dict[str, float | int]
    rows: list[dict] = field(default_factory=list)  # one per setting tried: settings + scores
    n_images: int = 0

    def apply(self, config: Config) -> Config:
        """A copy of ``config`` with the chosen settings in its segment section."""
        out = config.copy()
        for key, value in self.settings.items():
            setattr(out.segment, key, value)
        return out

    def to_dict(self) -> dict:
        return {"segment": dict(self.settings), "f1": self.f1, "start_f1": self.start_f1,
                "start_segment": dict(self.start_settings), "n_images": self.n_images}


def default_grid(config: Config, median_size: float) -> dict[str, tuple]:
    """The values each setting may take, for ``config``'s task and objects of ``median_size`` voxels."""
    sizes = tuple(sorted({int(round(f * median_size)) for f in SIZE_FRACTIONS}))
    grid: dict[str, tuple] = {"probability_threshold": THRESHOLDS}
    if config.task == "instances":
        grid["seed_boundary_max"] = SEED_BOUNDARY
        grid["seed_min_size"] = tuple(sorted({int(round(f * median_size)) for f in SEED_SIZE_FRACTIONS}))
    elif config.segment.instance_method == "watershed":
        grid["min_seed_distance"] = SEED_DISTANCES
    grid["min_size"] = sizes
    return grid


def median_object_size(labels: Sequence[np.ndarray]) -> float:
    """Median voxel count of the non-zero objects (ids as given) over all label arrays."""
    sizes = []
    for lab in labels:
        counts = np.bincount(np.asarray(lab).astype(np.int64).ravel())[1:]
        sizes.append(counts[counts > 0])
    sizes = np.concatenate(sizes) if sizes else np.zeros(0)
    if sizes.size == 0:
        raise InputError("The annotated images hold no objects; tuning needs labelled instances.")
    return float(np.median(sizes))


def tune_postprocessing(
    probabilities: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    config: Config,
    known: Sequence[np.ndarray | None] | None = None,
    grid: dict[str, Sequence] | None = None,
    passes: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> TuneResult:
    """Search the segment settings that maximise mean instance F1 (IoU 0.5) of ``probabilities``
    (one ``(C, *spatial)`` array per image, as predicted) against ``labels`` (instance ids)."""
    from segtrain.predict.postprocess import validation_scores

    if config.task not in ("masks", "instances"):
        raise InputError(
            f"Tuning is for mask and instance models, not {config.task!r}; affinity models choose "
            "their merge threshold with `segtrain sweep`."
        )
    if len(probabilities) == 0 or len(probabilities) != len(labels):
        raise InputError("Tuning needs one label image per probability map, and at least one of each.")
    known = list(known) if known is not None else [None] * len(labels)
    grid = dict(grid) if grid is not None else default_grid(config, median_object_size(labels))
    current = {key: getattr(config.segment, key) for key in grid}
    cache: dict[tuple, dict] = {}
    total = 1 + passes * sum(len(v) for v in grid.values())

    def evaluate(settings: dict) -> dict:
        key = tuple(settings[k] for k in grid)
        if key not in cache:
            trial = config.copy()
            for name, value in settings.items():
                setattr(trial.segment, name, value)
            scores = [validation_scores({"probabilities": p}, gt, trial, k)
                      for p, gt, k in zip(probabilities, labels, known)]
            cache[key] = {**settings, **{m: float(np.mean([s[m] for s in scores]))
                                         for m in ("f1", "precision", "recall", "dice")}}
            if progress is not None:
                progress(len(cache), total)
        return cache[key]

    start = evaluate(current)
    best = start
    for _ in range(passes):
        changed = False
        for name, values in grid.items():
            for value in values:
                row = evaluate({**current, name: value})
                if row["f1"] > best["f1"] + 1e-9:
                    best, current, changed = row, {**current, name: value}, True
        if not changed:
            break
    settings = {k: _plain(current[k]) for k in grid}
    return TuneResult(settings=settings, f1=best["f1"], start_f1=start["f1"],
                      start_settings={k: _plain(start[k]) for k in grid}, rows=list(cache.values()),
                      n_images=len(labels))


def _plain(value):
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def save_postprocess(run_dir: str | Path, result: TuneResult, tuned_on: Sequence[str] = ()) -> Path:
    """Write the run's ``postprocess.yaml`` (atomically, replacing an older one)."""
    return RunFolder(run_dir).save_postprocess({**result.to_dict(), "tuned_on": [str(t) for t in tuned_on]})


def tune_run(model_or_path, entries=None, split: str = "train", save: bool = True,
             progress: Callable[[int, int], None] | None = None) -> tuple[TuneResult, Path | None]:
    """Predict the annotated images of a run (its ``data.train`` or ``data.val`` entries, or the
    given :class:`~segtrain.config.SourceConfig` entries), tune on them and, with ``save``, store
    the result in the run folder. Returns the result and the file written (or None)."""
    from segtrain.predict.infer import _as_loaded, predict_array
    from segtrain.train.sources import sources_from_config, whole_volume

    loaded = _as_loaded(model_or_path)
    config = loaded.config
    if entries is None:
        if split not in ("train", "val"):
            raise InputError(f"Tune on 'train' or 'val' images, not {split!r}.")
        entries = getattr(config.data, split)
        if not entries:
            raise InputError(f"The run's config has no data.{split} images to tune on; name annotated images.")
    probabilities, labels, known = [], [], []
    for source in sources_from_config(entries, config.data):
        source.prepare(config.ndim, config.data.in_channels, config.data.normalize, config.data.ignore_label)
        if int(np.prod(source.shape)) > config.data.val_max_voxels:
            raise InputError(
                f"{source.name} has {int(np.prod(source.shape)):,} voxels, more than data.val_max_voxels "
                f"({config.data.val_max_voxels:,}) that tuning holds in memory; tune on a crop of it."
            )
        volume = whole_volume(source, config.data.in_channels)
        probabilities.append(predict_array(loaded, volume["raw"])["probabilities"])
        labels.append(volume["labels"])
        known.append(volume["known"])
    result = tune_postprocessing(probabilities, labels, config, known, progress=progress)
    written = None
    if save:
        if loaded.run_dir is None:
            raise InputError(f"{loaded.checkpoint} is not inside a run folder; there is nowhere to store the settings.")
        written = save_postprocess(loaded.run_dir, result, [e.raw for e in entries])
    return result, written
