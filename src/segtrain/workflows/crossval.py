"""Cross-validation of a config: train on K-1 folds, tune on them, score the held-out fold.

Figures that transfer to new data need settings chosen without the data they are scored on. Per
fold (:mod:`segtrain.evaluate.folds`) this trains a run on the training part (validation during
training watches part of that same training data, never the held-out part), chooses the
post-processing with :func:`segtrain.tuning.tune_run` on the training part, and scores the
held-out part three ways:

- ``chosen``: at the settings chosen on the training part (what a user gets on new data);
- ``best_threshold`` (affinities): the chosen fragments and scoring at the best threshold for the
  held-out part (threshold transfer: the gap between the two);
- ``best``: the best settings of the whole search, chosen on the held-out part itself.

Above training, prediction and tuning, like :mod:`segtrain.tuning`."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from segtrain.config import Config, load_config
from segtrain.evaluate import stack_labels, sweep
from segtrain.evaluate import voi as voi_of
from segtrain.evaluate.folds import Fold, make_folds
from segtrain.io.atomic import atomic_path
from segtrain.postprocess import OutputSpec, validation_scores
from segtrain.postprocess.affinities import segment_affinities
from segtrain.postprocess.tune import tune_affinities, tune_postprocessing
from segtrain.predict import load_model, predict_array
from segtrain.tasks import task_of
from segtrain.train.sources import annotated_volumes
from segtrain.workflows.training import run_to_end, train_or_reuse
from segtrain.workflows.tuning import tune_run
from segtrain.io import read_volume
from segtrain.predict.infer import predict_matched
from segtrain.predict.match_size import matching_applies

Log = Callable[[str], None]


def fold_config(config: Config, fold: Fold, steps: int | None = None) -> Config:
    """The config of a fold's run: trains on the fold's training part and watches the first two
    of its sources during training (the held-out part stays unseen)."""
    config = config.copy()
    config.data.train = [e for e in fold.train]
    config.data.val = [e for e in fold.train[:2]]
    config.name = f"{config.name}-fold{fold.index}"
    if steps is not None:
        config.train.max_steps = int(steps)
    return config.validate()


def _volume_length(entry) -> int:
    return int(read_volume(entry.labels, dataset=entry.labels_dataset).data.shape[0])


def train_fold(config: Config, run_dir: Path, log: Log = print) -> Path:
    """Train (or resume, or reuse when finished) the fold's run in ``run_dir``."""
    run_to_end(train_or_reuse(config, previous=run_dir, run_dir=run_dir), lambda line: log(f"{run_dir.name}: {line}"))
    return run_dir


def _heldout_volumes(config: Config, fold: Fold) -> list[dict]:
    return annotated_volumes(fold.heldout, config)


def zoomed_volumes(volumes: list[dict], zoom: float) -> list[dict]:
    """2D held-out images resampled in-plane by ``zoom`` (:func:`segtrain.splits.resample`: image
    linear, labels and known mask nearest): the same cells larger or smaller, as another
    magnification or denser cultures give."""
    from segtrain.splits import resample

    return [resample(v, zoom) for v in volumes]


def score_heldout(loaded, settings, volumes: list[dict], tta: int, slab: int | None = None) -> dict:
    """The three scores of the module docstring for predictions with ``tta`` transforms; for a
    size-matched model (``predict.match_object_size``) also ``chosen_unmatched``, the chosen
    settings on plain predictions, and the zoom factors used. ``slab`` (affinities): also ``per_slab_voi``, the VOI of the chosen segmentation of the first
    volume per ``slab`` slices (the spread of the score)."""

    config = loaded.config
    spec = OutputSpec.of(config)
    t0 = time.perf_counter()
    matched = [predict_matched(loaded, v["raw"], tta=tta) for v in volumes]
    outputs = [m[0] for m in matched]
    predict_s = time.perf_counter() - t0
    gts = [np.where(v["known"], v["labels"], 0) if v["known"] is not None else v["labels"] for v in volumes]
    voxel_sizes = [v["voxel_size"] or config.data.voxel_size for v in volumes]
    if task_of(spec).agglomerates:
        gts = [stack_labels(g, spec.ndim) for g in gts]  # a 2D model's stack: scored slice by slice
        trees = [segment_affinities(o["affinities"], settings, voxel_size=vs, model_ndim=spec.ndim)
                 for o, vs in zip(outputs, voxel_sizes)]
        at = [sweep(t, g, thresholds=[settings.threshold]) for t, g in zip(trees, gts)]
        grid = [sweep(t, g, thresholds=settings.thresholds) for t, g in zip(trees, gts)]
        voi = np.mean([s.voi for s in grid], axis=0)
        best_all = tune_affinities([o["affinities"] for o in outputs], gts, settings, spec, voxel_sizes, split_bias=0.0)
        if slab:
            seg, gt = trees[0].segmentation(settings.threshold), gts[0]
            result = {"per_slab_voi": [float(voi_of(seg[z:z + slab], gt[z:z + slab])["voi"])
                                       for z in range(0, len(seg) - slab + 1, slab)]}
        else:
            result = {}
        return {**result, "metric": "voi", "chosen": float(np.mean([s.voi[0] for s in at])),
                "chosen_split": float(np.mean([s.voi_split[0] for s in at])),
                "chosen_merge": float(np.mean([s.voi_merge[0] for s in at])),
                "best_threshold": float(voi.min()),
                "best_threshold_at": float(np.asarray(grid[0].thresholds)[int(np.argmin(voi))]),
                "best": best_all.score, "best_settings": best_all.settings, "predict_seconds": round(predict_s, 2)}
    scores = [validation_scores(o, g, settings, spec, voxel_size=vs) for o, g, vs in zip(outputs, gts, voxel_sizes)]
    result = {"metric": "f1", **{k: float(np.mean([s[k] for s in scores])) for k in scores[0]},
              "per_image_f1": [float(s["f1"]) for s in scores]}
    if task_of(spec).foreground:
        best = tune_postprocessing([o["probabilities"] for o in outputs], gts, settings, spec)
        result.update(chosen=result["f1"], best=best.score, best_settings=best.settings)
    if matching_applies(config):
        result["object_scale"] = [round(float(f), 3) for m in matched for f in m[1]]
        plain = [predict_array(loaded, v["raw"], tta=tta, match_size=False) for v in volumes]
        unmatched = dataclasses.replace(settings, object_size=None)
        result["chosen_unmatched"] = float(np.mean([validation_scores(o, g, unmatched, spec, voxel_size=vs)["f1"]
                                                    for o, g, vs in zip(plain, gts, voxel_sizes)]))
    result["predict_seconds"] = round(predict_s, 2)
    return result


def tuned_heldout_scores(run_dir: str | Path, test_volumes, slab: int | None = None) -> dict:
    """Tune a run on its own annotated images as ``segtrain tune`` does (stored in the run) and score
    ``test_volumes`` (``test_volumes(config)`` gives them: :func:`annotated_volumes` of held-out
    entries) at those settings, with the run's test-time transforms (:func:`score_heldout`), plus
    what was tuned, the checkpoint and the seconds it took."""

    start = time.perf_counter()
    loaded = load_model(run_dir)
    tuned, _ = tune_run(loaded)
    settings = tuned.apply(loaded.config.segment)
    loaded.config.segment = settings  # predictions (size matching) and segmentation use the same settings
    volumes = test_volumes(loaded.config)
    tta = loaded.config.predict.tta
    scores = score_heldout(loaded, settings, volumes, tta, slab=slab)
    scores.update(tuned_settings=tuned.settings, tuned_score=tuned.score, tuned_start_score=tuned.start_score,
                  tuned_metric=tuned.metric, tta=tta, checkpoint=str(loaded.checkpoint), checkpoint_step=loaded.step)
    scores["score_seconds"] = round(time.perf_counter() - start, 1)
    return scores


def evaluate_fold(run_dir: Path, config: Config, fold: Fold, tta_values: list[int], log: Log = print,
                  zooms: tuple[float, ...] = (1.0,)) -> dict:
    """Tune the fold's run on its training part (stored in the run, as `segtrain tune` does, for
    plain predictions) and score the held-out part, once per TTA setting, and once per ``zooms``
    factor other than 1 on the held-out images resampled by it (key ``tta{N}_zoom{Z}``)."""
    volumes = _heldout_volumes(config, fold)
    record = {"fold": fold.index, "train": [_entry(e) for e in fold.train],
              "heldout": [_entry(e) for e in fold.heldout], "run": str(run_dir)}
    for tta in tta_values:
        loaded = load_model(run_dir)
        loaded.config.predict.tta = tta
        t0 = time.perf_counter()
        result, _ = tune_run(loaded, split="train", save=tta == 1)
        settings = result.apply(loaded.config.segment)
        loaded.config.segment = settings  # predictions (size matching) and segmentation use the same settings
        for zoom in zooms:
            scores = score_heldout(loaded, settings, zoomed_volumes(volumes, zoom), tta)
            scores.update(tuned=result.settings, tuned_on_train_score=result.score,
                          seconds=round(time.perf_counter() - t0, 1))
            key = f"tta{tta}" if zoom == 1.0 else f"tta{tta}_zoom{zoom:g}"
            record[key] = scores
            log(f"fold {fold.index} {key}: held-out {scores['metric']} {scores['chosen']:.4f} at the settings chosen "
                f"on training ({result.settings}); best in hindsight {scores['best']:.4f}"
                + (f", best threshold for the chosen method {scores['best_threshold']:.4f}"
                   if "best_threshold" in scores else "")
                + (f"; without size matching {scores['chosen_unmatched']:.4f} (zoom factors "
                   f"{scores['object_scale']})" if "chosen_unmatched" in scores else ""))
    return record


def _entry(entry) -> str:
    return f"{entry.raw}" + (f" crop {entry.crop}" if entry.crop else "")


def summarise(records: list[dict], tta_values: list[int]) -> dict:
    """Mean, standard deviation, minimum and maximum over the folds of each score, per TTA setting
    (and zoom), and the largest gap between the chosen and the best-in-hindsight score."""
    summary = {}
    keys = [k for k in dict.fromkeys(k for r in records for k in r)
            if k.startswith("tta") and k.split("_")[0] in {f"tta{t}" for t in tta_values}]
    for key in keys:
        rows = [r[key] for r in records if key in r]
        if not rows:
            continue
        entry = {}
        for name in ("chosen", "chosen_unmatched", "best_threshold", "best"):
            values = [row[name] for row in rows if name in row]
            if values:
                entry[name] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                               "min": float(np.min(values)), "max": float(np.max(values)),
                               "per_fold": [float(v) for v in values]}
        entry["max_gap_to_best"] = float(max(abs(row["chosen"] - row["best"]) for row in rows))
        summary[key] = entry
    return summary


def _recorded_folds(out: Path, k: int, steps: int) -> list[dict]:
    """The fold records already in ``OUT/folds.json`` for the same K and steps (else none)."""
    try:
        earlier = json.loads((out / "folds.json").read_text())
    except (OSError, ValueError):
        return []
    if earlier.get("k") != k or earlier.get("steps") != steps:
        return []
    return list(earlier.get("folds", []))


def cross_validate(config_path: str | Path, k: int, out: str | Path, steps: int | None = None,
                   tta: int | None = None, folds: list[int] | None = None, log: Log = print,
                   zooms: tuple[float, ...] = (1.0,)) -> dict:
    """Run the whole protocol; writes ``OUT/folds.json`` after every fold (atomically) and returns
    ``{"folds": [...], "summary": {...}}``."""
    config = load_config(config_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    all_folds = make_folds([*config.data.train, *config.data.val], k, first_axis_length=_volume_length)
    tta_values = [1] if not tta or tta <= 1 else [1, int(tta)]
    result = None
    for fold in all_folds:
        if folds is not None and fold.index not in folds:
            continue
        log(fold.describe())
        fconfig = fold_config(config, fold, steps)
        run_dir = train_fold(fconfig, out / f"fold{fold.index}", log)
        record = evaluate_fold(run_dir, fconfig, fold, tta_values, log, zooms=tuple(zooms))
        # folds run by other processes into the same folder (--fold) are kept: read just before writing
        records = [r for r in _recorded_folds(out, k, fconfig.train.max_steps) if r["fold"] != fold.index]
        records = sorted([*records, record], key=lambda r: r["fold"])
        result = {"config": str(config_path), "k": k, "steps": fconfig.train.max_steps, "folds": records,
                  "summary": summarise(records, tta_values)}
        with atomic_path(out / "folds.json", overwrite=True) as tmp:
            tmp.write_text(json.dumps(result, indent=1))
    if result is None:
        raise ValueError(f"no fold among {folds} of {k}")
    for key, entry in result["summary"].items():
        parts = [f"{name} {v['mean']:.4f} +- {v['std']:.4f} (min {v['min']:.4f}, max {v['max']:.4f})"
                 for name, v in entry.items() if isinstance(v, dict)]
        log(f"{key}: " + "; ".join(parts) + f"; largest gap chosen vs best {entry['max_gap_to_best']:.4f}")
    return result
