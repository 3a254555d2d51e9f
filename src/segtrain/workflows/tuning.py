"""`segtrain tune` on a run: predict its annotated images, choose the post-processing settings on
them (:mod:`segtrain.postprocess.tune`) and store them in the run folder (``postprocess.yaml``),
which :func:`segtrain.predict.load_model` then applies. Above both prediction and training (it
predicts the run's training or validation sources)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.evaluate.metrics import check_labelled
from segtrain.postprocess import OutputSpec
from segtrain.postprocess.tune import TuneResult, tune_affinities, tune_postprocessing
from segtrain.predict.infer import as_loaded, predict_array
from segtrain.runs import RunFolder
from segtrain.tasks import task_of
from segtrain.train.sources import annotated_volumes
from segtrain.postprocess import validation_scores


def save_postprocess(run_dir: str | Path, result: TuneResult, tuned_on: Sequence[str] = ()) -> Path:
    """Write the run's ``postprocess.yaml`` (atomically, replacing an older one)."""
    return RunFolder(run_dir).save_postprocess({**result.to_dict(), "tuned_on": [str(t) for t in tuned_on]})


def tune_on_volumes(model_or_path, volumes: Sequence[dict], progress: Callable[[int, int], None] | None = None
                    ) -> TuneResult:
    """The post-processing settings of a run chosen on annotated arrays (dicts of ``raw``,
    ``labels``, ``known`` (or None) and ``voxel_size`` (or None for the run's), as
    :func:`~segtrain.train.sources.annotated_volumes` gives), predicted as the model sees them:
    tuning measures the model's own object size (no size matching). Nothing is stored."""
    loaded = as_loaded(model_or_path)
    config = loaded.config
    task = task_of(config)
    labels = [v["labels"] for v in volumes]
    known = [v.get("known") for v in volumes]
    if not any(np.any(l if k is None else np.where(k, l, 0)) for l, k in zip(labels, known)):
        check_labelled(labels[0] if labels else np.zeros(1), "The ground truth to tune on")
    outputs = [predict_array(loaded, v["raw"], match_size=False)[task.head] for v in volumes]
    if task.agglomerates:
        voxel_sizes = [v.get("voxel_size") or config.data.voxel_size for v in volumes]
        return tune_affinities(outputs, labels, config.segment, OutputSpec.of(config), voxel_sizes, known,
                               progress=progress)
    return tune_postprocessing(outputs, labels, config.segment, OutputSpec.of(config), known, progress=progress)


def tune_run(model_or_path, entries=None, split: str = "auto", save: bool = True,
             progress: Callable[[int, int], None] | None = None) -> tuple[TuneResult, Path | None]:
    """Predict the annotated images of a run (its ``data.train`` or ``data.val`` entries, or the
    given :class:`~segtrain.config.SourceConfig` entries), tune on them and, with ``save``, store
    the result in the run folder. Returns the result and the file written (or None).

    Affinity runs choose fragments, scoring and merge threshold together
    (:func:`~segtrain.postprocess.tune.tune_affinities`), on the validation data by default (where
    their threshold is chosen anyway); mask and instance runs choose threshold, seeds and sizes
    (:func:`~segtrain.postprocess.tune.tune_postprocessing`) on the training data by default, which
    keeps their validation scores honest."""
    loaded = as_loaded(model_or_path)
    config = loaded.config
    if entries is None:
        if split == "auto":
            split = task_of(config).tune_split
        if split not in ("train", "val"):
            raise InputError(f"Tune on 'train' or 'val' images, not {split!r}.")
        entries = getattr(config.data, split)
        if not entries:
            raise InputError(f"The run's config has no data.{split} images to tune on; name annotated images.")
    volumes = annotated_volumes(entries, config, max_voxels=config.data.val_max_voxels)
    result = tune_on_volumes(loaded, volumes, progress=progress)
    written = None
    if save:
        if loaded.run_dir is None:
            raise InputError(f"{loaded.checkpoint} is not inside a run folder; there is nowhere to store the settings.")
        written = save_postprocess(loaded.run_dir, result, [e.raw for e in entries])
    return result, written


def score_settings(model_or_path, volumes: Sequence[dict], variants: dict[str, dict], tta: int | None = None
                   ) -> tuple[dict[str, dict[str, float]], list[float]]:
    """The validation scores (:func:`~segtrain.postprocess.validation_scores`, mean over
    ``volumes``) of a run's predictions segmented with its settings changed by each of
    ``variants`` (name -> segment settings to change), and the seconds each prediction took."""
    import dataclasses
    import time

    loaded = as_loaded(model_or_path)
    config = loaded.config
    outputs, seconds = [], []
    for volume in volumes:
        start = time.perf_counter()
        outputs.append(predict_array(loaded, volume["raw"], tta=tta))
        seconds.append(time.perf_counter() - start)
    results = {}
    for name, overrides in variants.items():
        settings = dataclasses.replace(config.segment, **overrides)
        scores = [validation_scores(out, v["labels"], settings, OutputSpec.of(config),
                                    voxel_size=v.get("voxel_size") or config.data.voxel_size)
                  for out, v in zip(outputs, volumes)]
        results[name] = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
    return results, seconds
