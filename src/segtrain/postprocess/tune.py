"""Choose how a mask or instance model's probabilities become instances, on annotated images.

After training, the probability threshold, the seed settings and the smallest object size decide
instance F1 as much as the network does. Like StarDist's threshold optimisation, this module
searches them against annotated images (:func:`segtrain.workflows.tuning.tune_run` stores the result
beside the run as ``postprocess.yaml``, which :func:`segtrain.predict.load_model` then applies).

The search is a coordinate search over a small grid (each setting in turn, the others held, two
passes), scored by the mean instance F1 at IoU 0.5 over the images, exactly the validation metric.
Sizes in the grid are fractions of the median annotated object size, so the grid fits any
magnification. The result also records ``object_size``, the typical object the chosen settings cut from
these predictions: on new images with larger or smaller objects the size settings follow
(:func:`segtrain.postprocess.instances`) and prediction can zoom to match
(:mod:`segtrain.predict.match_size`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from segtrain.config import SegmentConfig
from segtrain.errors import InputError
from segtrain.evaluate import sweep
from segtrain.postprocess.affinities import prediction_fragments, segment_affinities
from segtrain.postprocess.masks import measured_object_size
from segtrain.postprocess.scores import validation_scores
from segtrain.postprocess.spec import OutputSpec
from segtrain.tasks import task_of

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SEED_BOUNDARY = (0.2, 0.3, 0.4, 0.5, 0.6)
SIZE_FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.3)  # of the median annotated object size
SEED_SIZE_FRACTIONS = (0.0, 0.02, 0.05, 0.1, 0.2)
SEED_DISTANCES = (3, 5, 8, 12, 16)  # masks model with instance_method "watershed"


#: how each metric a search optimises is named to the user
METRIC_LABELS = {"f1": "instance F1", "voi": "VOI"}


@dataclass
class TuneResult:
    """The chosen settings, their score (``metric``: mean instance F1, higher is better, or mean
    VOI, lower is better), the score of the settings the search started from, and every setting
    tried."""

    settings: dict[str, float | int | str]
    score: float
    start_score: float  # with the settings the search started from
    start_settings: dict[str, float | int | str]
    rows: list[dict] = field(default_factory=list)  # one per setting tried: settings + scores
    n_images: int = 0
    metric: str = "f1"
    #: affinities: the lowest VOI of the search (the choice may take a lower threshold within
    #: :data:`SPLIT_BIAS` of it); None where the best score is the choice
    lowest: float | None = None

    def apply(self, settings: SegmentConfig) -> SegmentConfig:
        """A copy of ``settings`` with the chosen ones."""
        return dataclasses.replace(settings, **self.settings)

    def describe(self) -> str:
        """``instance F1 0.74 -> 0.88`` / ``VOI 1.20 -> 0.61``."""
        lowest = (f" (the lowest threshold within {self.score - self.lowest:.3f} of the lowest VOI, {self.lowest:.4f})"
                  if self.lowest is not None and self.lowest < self.score else "")
        return f"{METRIC_LABELS[self.metric]} {self.start_score:.4f} -> {self.score:.4f}{lowest}"

    def to_dict(self) -> dict:
        extra = {"lowest_voi": self.lowest} if self.lowest is not None else {}
        return {"segment": dict(self.settings), "metric": self.metric, self.metric: self.score, **extra,
                f"start_{self.metric}": self.start_score, "start_segment": dict(self.start_settings),
                "n_images": self.n_images}


def default_grid(settings: SegmentConfig, spec: OutputSpec, median_size: float) -> dict[str, tuple]:
    """The values each setting may take, for ``spec``'s task and objects of ``median_size`` voxels."""
    sizes = tuple(sorted({int(round(f * median_size)) for f in SIZE_FRACTIONS}))
    grid: dict[str, tuple] = {"probability_threshold": THRESHOLDS}
    if task_of(spec).boundary_channel:
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
    if not task_of(spec).foreground:
        raise InputError(
            f"Tuning is for mask and instance models, not {spec.task!r}; affinity models choose "
            "their merge threshold with `segtrain sweep`."
        )
    if len(probabilities) == 0 or len(probabilities) != len(labels):
        raise InputError("Tuning needs one label image per probability map, and at least one of each.")
    known = list(known) if known is not None else [None] * len(labels)
    settings = dataclasses.replace(settings, object_size=None)  # sizes as they are, measured afresh below
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
    chosen = {k: _plain(current[k]) for k in grid}
    # the size of the objects these settings cut from these predictions: new images whose objects
    # differ from it get size settings (and, with predict.match_object_size, a zoom) to match
    sizes = [measured_object_size(p, dataclasses.replace(settings, **chosen), spec) for p in probabilities]
    sizes = [v for v in sizes if v > 0]
    if sizes:
        chosen["object_size"] = round(float(np.median(sizes)), 1)
    return TuneResult(settings=chosen, score=best["f1"], start_score=start["f1"],
                      start_settings={k: _plain(start[k]) for k in grid}, rows=list(cache.values()),
                      n_images=len(labels))


def _plain(value):
    if isinstance(value, str):
        return value
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


# --- affinities: fragments, scoring and threshold together --------------------------------------

FRAGMENT_VARIANTS = (
    {"fragments": "waterz"},
    *({"fragments": "watershed", "boundary_threshold": b, "min_seed_distance": d}
      for b in (0.3, 0.5, 0.7) for d in (3, 6, 10)),
)
SCORINGS = ("hist_quant_25", "hist_quant_50", "hist_quant_75", "mean")
# Of the settings whose VOI on the tuning data lies within this of the lowest, the one with the lowest
# merge threshold is chosen: a tuning volume is small, its VOI curve is flat and noisy near its
# minimum, and new data (denser, another region) merges at thresholds the tuning data did not punish;
# a split is also one click to fix in proofreading, a merge a repaint. On the em3d far-apart split
# (8 checkpoints of 2 seeds, tuned on one part and scored on the other, both ways: 16 cases) the
# gap to the best in hindsight fell from 0.099 to 0.064 on average, 14 of 16 within 0.15 against
# 13; on 8 cases of a third seed, trained after this was fixed, 0.150 -> 0.097 (docs/training.md,
# "Choosing the threshold for new data"; benchmarks/threshold_rules.py).
SPLIT_BIAS = 0.02


def tune_affinities(
    affinities: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    settings: SegmentConfig,
    spec: OutputSpec,
    voxel_sizes: Sequence[Sequence[float] | None] | None = None,
    known: Sequence[np.ndarray | None] | None = None,
    fragment_variants: Sequence[dict] = FRAGMENT_VARIANTS,
    scorings: Sequence[str] = SCORINGS,
    progress: Callable[[int, int], None] | None = None,
    split_bias: float = SPLIT_BIAS,
) -> TuneResult:
    """Choose the fragment method (and its parameters), the scoring function and the merge
    threshold together for a low mean VOI of ``affinities`` (one ``(C, *spatial)`` array per
    volume) against ``labels`` (ground truth 0 and ``known`` False are ignored). Every combination
    is tried with every threshold of ``settings.thresholds`` (one threshold for all volumes: the
    mean VOI over the volumes at each); of the settings within ``split_bias`` of the lowest VOI the
    one with the lowest threshold is chosen (:data:`SPLIT_BIAS`; 0 = the lowest VOI, as for the
    best in hindsight). Each row of the result is a combination at its own best threshold."""
    if not task_of(spec).agglomerates:
        raise InputError(f"tune_affinities is for affinity models, not {spec.task!r}.")
    if len(affinities) == 0 or len(affinities) != len(labels):
        raise InputError("Tuning needs one ground-truth volume per prediction, and at least one of each.")
    voxel_sizes = list(voxel_sizes) if voxel_sizes is not None else [None] * len(labels)
    known = list(known) if known is not None else [None] * len(labels)
    gts = [np.where(k, np.asarray(g), 0) if k is not None else np.asarray(g) for g, k in zip(labels, known)]
    start_variant = ({"fragments": "waterz"} if settings.fragments == "waterz" else
                     {"fragments": "watershed", "boundary_threshold": settings.boundary_threshold,
                      "min_seed_distance": settings.min_seed_distance})
    variants = [dict(v) for v in fragment_variants]
    if start_variant not in variants:
        variants.insert(0, start_variant)
    scorings = list(dict.fromkeys([settings.scoring, *scorings]))
    rows, total = [], len(variants) * len(scorings)
    for variant in variants:
        trial = dataclasses.replace(settings, **variant)
        frags = []
        for affs, voxel_size in zip(affinities, voxel_sizes):  # once per variant, for every scoring
            frags.append(prediction_fragments(affs, trial, voxel_size, spec.ndim))
        for scoring in scorings:
            trial = dataclasses.replace(settings, **variant, scoring=scoring)
            results = [sweep(segment_affinities(a, trial, voxel_size=v, model_ndim=spec.ndim, fragments=f), g,
                             thresholds=settings.thresholds)
                       for a, v, f, g in zip(affinities, voxel_sizes, frags, gts)]
            voi = np.mean([r.voi for r in results], axis=0)
            i = int(np.argmin(voi))
            rows.append({**variant, "scoring": scoring, "threshold": float(results[0].thresholds[i]),
                         "voi": float(voi[i]),
                         "voi_split": float(np.mean([r.voi_split[i] for r in results])),
                         "voi_merge": float(np.mean([r.voi_merge[i] for r in results])),
                         "voi_by_threshold": [float(v) for v in voi],
                         "split_by_threshold": [float(v) for v in np.mean([r.voi_split for r in results], axis=0)],
                         "merge_by_threshold": [float(v) for v in np.mean([r.voi_merge for r in results], axis=0)],
                         "thresholds": [float(t) for t in results[0].thresholds]})
            if progress is not None:
                progress(len(rows), total)
    best = split_biased_choice(rows, split_bias)
    start = next(r for r in rows if r["scoring"] == settings.scoring and all(r[k] == v for k, v in start_variant.items()))
    start_voi = start["voi"]
    if settings.threshold is not None:  # the start is scored at its own threshold, not the best one
        thresholds = np.asarray(start["thresholds"])
        start_voi = start["voi_by_threshold"][int(np.argmin(np.abs(thresholds - settings.threshold)))]
    keys = ("fragments", "boundary_threshold", "min_seed_distance", "scoring", "threshold")
    chosen = {k: _plain(best[k]) for k in keys if k in best}
    return TuneResult(settings=chosen, score=best["voi"], start_score=start_voi,
                      start_settings={k: _plain(v) for k, v in {**start_variant, "scoring": settings.scoring,
                                                               "threshold": settings.threshold}.items()
                                      if v is not None},
                      rows=rows, n_images=len(labels), metric="voi", lowest=min(r["voi"] for r in rows))


def split_biased_choice(rows: Sequence[dict], split_bias: float = SPLIT_BIAS) -> dict:
    """Of every (row, threshold) of a :func:`tune_affinities` search whose mean VOI lies within
    ``split_bias`` of the lowest, the one with the lowest threshold (then the lower VOI): that row's
    settings at that threshold, with its VOI, split and merge there."""
    lowest = min(r["voi"] for r in rows)
    candidates = [(t, v, n, i) for n, r in enumerate(rows)
                  for i, (t, v) in enumerate(zip(r["thresholds"], r["voi_by_threshold"])) if v <= lowest + split_bias]
    threshold, voi, n, i = min(candidates)
    row = rows[n]
    return {**row, "threshold": threshold, "voi": voi, "voi_split": row["split_by_threshold"][i],
            "voi_merge": row["merge_by_threshold"][i]}
