"""Choose how a mask or instance model's probabilities become instances, on annotated images.

After training, the probability threshold, the seed settings and the smallest object size decide
instance F1 as much as the network does. Like StarDist's threshold optimisation, this module
searches them against annotated images (:func:`segtrain.tuning.tune_run` stores the result
beside the run as ``postprocess.yaml``, which :func:`segtrain.predict.load_model` then applies).

The search is a coordinate search over a small grid (each setting in turn, the others held, two
passes), scored by the mean instance F1 at IoU 0.5 over the images, exactly the validation metric.
Sizes in the grid are fractions of the median annotated object size, so the grid fits any
magnification.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from segtrain.config import SegmentConfig
from segtrain.errors import InputError
from segtrain.postprocess.scores import validation_scores
from segtrain.postprocess.spec import OutputSpec

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

    def apply(self, settings: SegmentConfig) -> SegmentConfig:
        """A copy of ``settings`` with the chosen ones."""
        return dataclasses.replace(settings, **self.settings)

    def to_dict(self) -> dict:
        return {"segment": dict(self.settings), "f1": self.f1, "start_f1": self.start_f1,
                "start_segment": dict(self.start_settings), "n_images": self.n_images}


def default_grid(settings: SegmentConfig, spec: OutputSpec, median_size: float) -> dict[str, tuple]:
    """The values each setting may take, for ``spec``'s task and objects of ``median_size`` voxels."""
    sizes = tuple(sorted({int(round(f * median_size)) for f in SIZE_FRACTIONS}))
    grid: dict[str, tuple] = {"probability_threshold": THRESHOLDS}
    if spec.task == "instances":
        grid["seed_boundary_max"] = SEED_BOUNDARY
        grid["seed_min_size"] = tuple(sorted({int(round(f * median_size)) for f in SEED_SIZE_FRACTIONS}))
    elif settings.instance_method == "watershed":
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
    settings: SegmentConfig,
    spec: OutputSpec,
    known: Sequence[np.ndarray | None] | None = None,
    grid: dict[str, Sequence] | None = None,
    passes: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> TuneResult:
    """Search the segment settings that maximise mean instance F1 (IoU 0.5) of ``probabilities``
    (one ``(C, *spatial)`` array per image, as predicted) against ``labels`` (instance ids),
    starting from ``settings``."""
    if spec.task not in ("masks", "instances"):
        raise InputError(
            f"Tuning is for mask and instance models, not {spec.task!r}; affinity models choose "
            "their merge threshold with `segtrain sweep`."
        )
    if len(probabilities) == 0 or len(probabilities) != len(labels):
        raise InputError("Tuning needs one label image per probability map, and at least one of each.")
    known = list(known) if known is not None else [None] * len(labels)
    grid = dict(grid) if grid is not None else default_grid(settings, spec, median_object_size(labels))
    current = {key: getattr(settings, key) for key in grid}
    cache: dict[tuple, dict] = {}
    total = 1 + passes * sum(len(v) for v in grid.values())

    def evaluate(values: dict) -> dict:
        key = tuple(values[k] for k in grid)
        if key not in cache:
            trial = dataclasses.replace(settings, **values)
            scores = [validation_scores({"probabilities": p}, gt, trial, spec, known=k)
                      for p, gt, k in zip(probabilities, labels, known)]
            cache[key] = {**values, **{m: float(np.mean([s[m] for s in scores]))
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
    return TuneResult(settings={k: _plain(current[k]) for k in grid}, f1=best["f1"], start_f1=start["f1"],
                      start_settings={k: _plain(start[k]) for k in grid}, rows=list(cache.values()),
                      n_images=len(labels))


def _plain(value):
    return int(value) if isinstance(value, (int, np.integer)) else float(value)
