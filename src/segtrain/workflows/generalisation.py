"""Quality on data the model has never seen: train on a far-apart split (or reuse a run), tune on
the split's tuning part, score the far part.

For a :class:`~segtrain.splits.FarSplit` this

1. trains a run on ``split.train`` (validation on ``split.tune`` as it is on disk, so the run's own
   threshold choice also comes from far data) or reuses a finished one (:func:`train_far`);
2. predicts the tuning and scored parts as the far acquisition gives them (``split.transformed``),
   with the run's test-time augmentation and, when asked, size matching;
3. chooses the post-processing on the tuning part (:func:`segtrain.postprocess.tune.tune_affinities`
   / :func:`~segtrain.postprocess.tune.tune_postprocessing`, what `segtrain tune` runs) and scores
   the far part at it (``chosen``), at the run's own settings (``own``: its validation threshold,
   or `segtrain tune`'s ``postprocess.yaml``) and at the best settings for the far part itself
   (``hindsight``; affinities also the best per scoring function).

Returns a typed :class:`FarReport`; :func:`far_apart_reports` yields one per split and setting.
Above prediction, training and tuning, Qt-free."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segtrain.config import Config, SegmentConfig
from segtrain.errors import InputError
from segtrain.evaluate import sweep
from segtrain.postprocess import OutputSpec, validation_scores
from segtrain.postprocess.affinities import segment_affinities
from segtrain.postprocess.tune import TuneResult, split_biased_choice, tune_affinities, tune_postprocessing
from segtrain.splits import FarSplit
from segtrain.tasks import task_of
from segtrain.train.sources import annotated_volumes

Log = Callable[[str], None]


@dataclass
class FarReport:
    """Scores of one run on the far part of a split. ``metric``: ``voi`` (lower is better) or
    ``f1`` (instance F1 at IoU 0.5, higher is better)."""

    split: str
    description: str
    run: str
    step: int | None
    metric: str
    chosen: float  # the far part at the settings chosen on the tuning part
    hindsight: float  # the far part at its own best settings
    own: float  # the far part at the run's own settings (validation / postprocess.yaml)
    tuned: dict  # the settings chosen on the tuning part
    tune_score: float  # their score on the tuning part
    hindsight_settings: dict
    own_settings: dict
    chosen_detail: dict = field(default_factory=dict)  # VOI split / merge, F1 per image, zoom factors
    by_scoring: dict = field(default_factory=dict)  # affinities: best in hindsight per scoring function
    tta: int = 1
    match_size: bool = False
    seconds: float = 0.0

    @property
    def gap(self) -> float:
        """How far the chosen settings fall behind hindsight (>= 0)."""
        return abs(self.chosen - self.hindsight)

    def line(self) -> str:
        extra = ", ".join(f"{k} {v:.3f}" for k, v in self.chosen_detail.items() if isinstance(v, float))
        return (f"{self.split}: {self.metric} chosen {self.chosen:.3f} ({extra}), hindsight {self.hindsight:.3f}, "
                f"run's own settings {self.own:.3f}; tuned {self.tuned}")


def train_far(config: Config, split: FarSplit, run_dir: str | Path, log: Log = print) -> Path:
    """Train (or reuse when finished, or resume) a run of ``config`` on the split's training part
    in ``run_dir``; it validates on the tuning part as stored (far from training too)."""
    from segtrain.workflows.training import run_to_end, train_or_reuse

    config = config.copy()
    config.data.train = list(split.train)
    config.data.val = list(split.tune)
    run_dir = Path(run_dir)
    run_to_end(train_or_reuse(config.validate(), previous=run_dir, run_dir=run_dir), log)
    return run_dir


def _predict(loaded, volumes: Sequence[dict], tta: int) -> tuple[list[dict], list[float]]:
    from segtrain.predict.infer import predict_matched

    outputs, factors = [], []
    for v in volumes:
        out, f = predict_matched(loaded, v["raw"], tta=tta)
        outputs.append(out)
        factors.extend(f)
    return outputs, factors


def _far_volumes(split: FarSplit, config: Config) -> tuple[list[dict], list[dict]]:
    """The split's tuning and far parts as the far acquisition gives them."""
    return split.transformed(annotated_volumes(split.tune, config)), split.transformed(annotated_volumes(split.test, config))


def _far_parts(loaded, split: FarSplit, tta: int, volumes: tuple[list[dict], list[dict]] | None = None
               ) -> tuple[tuple[list[dict], list[dict]], tuple[list[dict], list[dict]]]:
    """``((tune volumes, their outputs), (far volumes, their outputs))``: the split's tuning and far
    parts (``volumes``, read from the split when not given) predicted in the model's plain view (no
    size matching)."""
    loaded.config.predict.match_object_size = False
    tune, far = volumes if volumes is not None else _far_volumes(split, loaded.config)
    return (tune, _predict(loaded, tune, tta)[0]), (far, _predict(loaded, far, tta)[0])


def _gts(volumes: Sequence[dict]) -> list[np.ndarray]:
    return [np.where(v["known"], v["labels"], 0) if v["known"] is not None else v["labels"] for v in volumes]


def tune_outputs(outputs: Sequence[dict], volumes: Sequence[dict], config: Config, hindsight: bool = False) -> TuneResult:
    """The search `segtrain tune` runs, on predictions of annotated volumes (``hindsight``: the
    lowest VOI itself, not the split-biased choice)."""
    spec = OutputSpec.of(config)
    voxel_sizes = [v["voxel_size"] or config.data.voxel_size for v in volumes]
    known = [v["known"] for v in volumes]
    if task_of(spec).agglomerates:
        return tune_affinities([o["affinities"] for o in outputs], [v["labels"] for v in volumes], config.segment,
                               spec, voxel_sizes, known, **({"split_bias": 0.0} if hindsight else {}))
    if not task_of(spec).foreground:
        raise InputError(f"Far-apart scoring is for affinity, mask and instance models, not {spec.task!r}.")
    return tune_postprocessing([o["probabilities"] for o in outputs], [v["labels"] for v in volumes],
                               config.segment, spec, known)


def score_at(outputs: Sequence[dict], volumes: Sequence[dict], settings: SegmentConfig, config: Config) -> dict:
    """Mean scores of predictions at ``settings`` (affinities: at its merge threshold exactly)."""
    spec = OutputSpec.of(config)
    gts = _gts(volumes)
    voxel_sizes = [v["voxel_size"] or config.data.voxel_size for v in volumes]
    if task_of(spec).agglomerates:
        if settings.threshold is None:
            raise InputError("Scoring at the chosen settings needs a merge threshold; tune first.")
        results = [sweep(segment_affinities(o["affinities"], settings, voxel_size=vs, model_ndim=spec.ndim),
                         g, thresholds=[settings.threshold])
                   for o, g, vs in zip(outputs, gts, voxel_sizes)]
        return {"voi": float(np.mean([r.voi[0] for r in results])),
                "voi_split": float(np.mean([r.voi_split[0] for r in results])),
                "voi_merge": float(np.mean([r.voi_merge[0] for r in results]))}
    scores = [validation_scores(o, g, settings, spec, voxel_size=vs) for o, g, vs in zip(outputs, gts, voxel_sizes)]
    return {"f1": float(np.mean([s["f1"] for s in scores])), "per_image_f1": [float(s["f1"]) for s in scores]}


def _by_scoring(result: TuneResult) -> dict:
    best: dict[str, float] = {}
    for row in result.rows:
        best[row["scoring"]] = min(best.get(row["scoring"], np.inf), row["voi"])
    return best


def evaluate_far(run, split: FarSplit, tta: int | None = None, match_size: bool = False,
                 log: Log = print) -> FarReport:
    """Score a trained run (folder, checkpoint or loaded model) on the far part of ``split``: see
    the module docstring. ``tta``: test-time transforms (None = the run's); ``match_size``: predict
    each image zoomed to the model's object size (2D mask / instance models tuned with `segtrain
    tune`)."""
    from segtrain.predict import load_model
    from segtrain.predict.infer import as_loaded

    t0 = time.perf_counter()
    loaded = as_loaded(run) if not isinstance(run, (str, Path)) else load_model(run)
    config = loaded.config
    tta = config.predict.tta if tta is None else int(tta)
    own = dataclasses.replace(config.segment)
    (tune_volumes, tune_out), (test_volumes, test_out) = _far_parts(loaded, split, tta)
    tuned = tune_outputs(tune_out, tune_volumes, config)
    log(f"{split.name}: tuned on {len(tune_volumes)} far volume(s): {tuned.describe()} with {tuned.settings}")
    chosen_settings = tuned.apply(config.segment)
    chosen = score_at(test_out, test_volumes, chosen_settings, config)
    own_score = score_at(test_out, test_volumes, own, config) if own.threshold is not None or \
        not task_of(config).agglomerates else {tuned.metric: float("nan")}
    config.segment = chosen_settings  # the search (one setting at a time for masks) starts from the choice,
    hindsight = tune_outputs(test_out, test_volumes, config, hindsight=True)  # so hindsight is never worse than it
    config.segment = own
    detail = {k: v for k, v in chosen.items() if k != tuned.metric}
    if match_size:
        # the README chain with size matching: the run's own settings (`segtrain tune` on its training
        # images, which records the model's object size) decide the zoom and the cut
        if own.object_size is None:
            raise InputError("Size matching needs the model's object size: run `segtrain tune RUN` first.")
        config.segment, config.predict.match_object_size = own, True
        matched_out, factors = _predict(loaded, test_volumes, tta)
        detail["own_matched"] = score_at(matched_out, test_volumes, own, config)[tuned.metric]
        detail["object_scale"] = [round(float(f), 3) for f in factors]
        config.segment, config.predict.match_object_size = chosen_settings, False
    report = FarReport(
        split=split.name, description=split.description, run=str(loaded.run_dir or loaded.checkpoint),
        step=loaded.step, metric=tuned.metric, chosen=chosen[tuned.metric], hindsight=float(hindsight.score),
        own=float(own_score[tuned.metric]), tuned=dict(tuned.settings), tune_score=float(tuned.score),
        hindsight_settings=dict(hindsight.settings), own_settings=_settings_of(own, tuned.settings),
        chosen_detail=detail, by_scoring=_by_scoring(hindsight) if task_of(config).agglomerates else {}, tta=tta,
        match_size=bool(match_size), seconds=round(time.perf_counter() - t0, 1))
    log(report.line())
    return report


def _settings_of(settings: SegmentConfig, like: dict) -> dict:
    return {k: getattr(settings, k) for k in like}


def far_apart_reports(config: Config | None, splits: Sequence[FarSplit], out: str | Path, run: str | Path | None = None,
                      tta_values: Sequence[int | None] = (None,), match_size: bool = False,
                      log: Log = print) -> Iterator[FarReport]:
    """For each split: train ``config`` on it in ``OUT/<split name>`` (or take ``run``), then one
    :class:`FarReport` per TTA setting."""
    if config is None and run is None:
        raise InputError("Name a config to train on the split, or a run to score.")
    for split in splits:
        run_dir = Path(run) if run is not None else train_far(config, split, Path(out) / split.name, log)
        for tta in tta_values:
            yield evaluate_far(run_dir, split, tta=tta, match_size=match_size, log=log)


# --- how a rule for choosing the merge threshold transfers ---------------------------------------

COMBINATION_KEYS = ("fragments", "boundary_threshold", "min_seed_distance", "scoring")


def threshold_rule_cases(run, split: FarSplit, tta: int | None = None) -> list[tuple[list[dict], list[dict]]]:
    """The unbiased search (every fragment method x scoring x threshold, as `segtrain tune` runs it)
    on the split's tuning part and on its far part, for an affinity run: two cases, one per
    direction (choose on the tuning part and score the far part, and the reverse)."""
    from segtrain.predict import load_model

    loaded = load_model(run)
    config = loaded.config
    if not task_of(config).agglomerates:
        raise InputError("Threshold rules are for affinity runs.")
    parts = _far_parts(loaded, split, config.predict.tta if tta is None else int(tta))
    tune_rows, far_rows = (tune_outputs(outputs, volumes, config, hindsight=True).rows for volumes, outputs in parts)
    return [(tune_rows, far_rows), (far_rows, tune_rows)]


def rule_outcome(chosen_on: Sequence[dict], scored_on: Sequence[dict], split_bias: float) -> tuple[float, float]:
    """``(VOI at the choice, best VOI in hindsight)`` on ``scored_on``'s data for the settings
    :func:`~segtrain.postprocess.tune.split_biased_choice` takes from ``chosen_on``'s rows."""
    choice = split_biased_choice(chosen_on, split_bias)
    same = next(r for r in scored_on if all(r.get(k) == choice.get(k) for k in COMBINATION_KEYS))
    voi = same["voi_by_threshold"][same["thresholds"].index(choice["threshold"])]
    return float(voi), float(min(r["voi"] for r in scored_on))


def rule_summary(cases: Sequence[tuple[Sequence[dict], Sequence[dict]]], split_bias: float, within: float = 0.15) -> dict:
    """Mean VOI at the choice, mean and largest gap to hindsight, and how many cases lie within
    ``within`` of hindsight, for one ``split_bias`` over ``(chosen_on, scored_on)`` cases."""
    outcomes = np.array([rule_outcome(a, b, split_bias) for a, b in cases])
    gaps = outcomes[:, 0] - outcomes[:, 1]
    return {"split_bias": split_bias, "cases": len(cases), "mean_voi": float(outcomes[:, 0].mean()),
            "mean_gap": float(gaps.mean()), "max_gap": float(gaps.max()), "within": int((gaps <= within + 1e-9).sum())}


# --- ensembles of separately trained runs -------------------------------------------------------

def ensemble_outcomes(runs: Sequence, split: FarSplit, sizes: Sequence[int] = (1, 2, 3), tta: int | None = None,
                      log: Log = print) -> list[dict]:
    """For every combination of ``sizes`` runs (folders or checkpoints trained on ``split``): their
    probabilities on the split's tuning and far parts averaged (what ``model.ensemble`` predicts
    from one run), settings chosen on the tuning part as `segtrain tune` chooses them, and the far
    part's figure at that choice and in hindsight. Each run predicts once (TTA ``tta``, default the
    first run's)."""
    from itertools import combinations

    from segtrain.predict import load_model

    loaded = [load_model(run) for run in runs]
    config = loaded[0].config
    tta = config.predict.tta if tta is None else int(tta)
    tune_volumes, test_volumes = volumes = _far_volumes(split, config)  # read once, predicted by every run
    outputs = [[part[1] for part in _far_parts(m, split, tta, volumes)] for m in loaded]  # [run][part][volume]

    def mean_of(members: tuple[int, ...], part: int) -> list[dict]:
        """The members' outputs of each volume of ``part``, averaged head by head."""
        return [{name: np.mean([outputs[m][part][v][name] for m in members], axis=0) for name in first}
                for v, first in enumerate(outputs[members[0]][part])]

    rows = []
    for size in sizes:
        for members in combinations(range(len(runs)), size):
            tune_out, test_out = mean_of(members, 0), mean_of(members, 1)
            tuned = tune_outputs(tune_out, tune_volumes, config)
            chosen = score_at(test_out, test_volumes, tuned.apply(config.segment), config)
            hindsight = tune_outputs(test_out, test_volumes, config, hindsight=True)
            rows.append({"members": [str(runs[m]) for m in members], "size": size, "metric": tuned.metric,
                         "chosen": chosen[tuned.metric], "hindsight": float(hindsight.score),
                         "tuned": dict(tuned.settings), **{k: v for k, v in chosen.items() if k != tuned.metric}})
            log(f"{' + '.join(_run_label(runs[m]) for m in members)}: chosen {rows[-1]['chosen']:.3f}, "
                f"hindsight {rows[-1]['hindsight']:.3f}")
    return rows


def _run_label(run) -> str:
    """A run folder's name; a checkpoint as ``run/step-N``."""
    path = Path(str(run))
    return f"{path.parent.parent.name}/{path.stem}" if path.suffix == ".ckpt" else path.name
