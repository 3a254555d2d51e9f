"""Rounds of correct -> fine-tune -> score (benchmarks/finetune_corrections.py): the oracle user
corrects a run's segmentations of unlabelled images (:func:`correct_images`), runs are fine-tuned
from it on the labelled data + the corrections, beside a control on the labelled data alone
(:func:`fine_tuning_plan`, :func:`next_round`, :func:`fine_tune_runs`), and every run is scored
on held-out images: instance F1 at its settings tuned on a labelled image
(:func:`score_instance_runs`) or VOI at the merge threshold chosen on a held-out piece
(:func:`score_affinity_runs`). Each yields typed reports; Qt-free, above training and prediction."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segtrain import evaluate
from segtrain.proofread.oracle import annotation_summary
from segtrain.workflows.correction import CorrectionRound, OracleKind, correction_round, corrections_source, \
    proofreader_of

Image = tuple[np.ndarray, np.ndarray]  # (raw, ground truth)
Metric = Callable[[np.ndarray, np.ndarray], float]  # (segmentation, ground truth) -> score
Log = Callable[[str], None]
GROUND_TRUTH = "ground-truth"  # the scope that trains on an image's full ground truth (an upper bound)


def instance_f1(segmentation: np.ndarray, gt: np.ndarray) -> float:
    """Instance F1 at IoU 0.5 (higher is better)."""
    return evaluate.instance_scores(segmentation, gt)["f1"]


def voi(segmentation: np.ndarray, gt: np.ndarray) -> float:
    """VOI, split + merge (lower is better)."""
    return evaluate.voi(segmentation, gt)["voi"]


# --- correct ----------------------------------------------------------------------------------------

@dataclass
class ImageCorrections:
    """One image corrected by the oracle: the round of edits (None when no scope needed edits), the
    Proofreader that holds the corrected segmentation, and per scope the annotation of the corrections, its summary against the ground truth
    (:func:`~segtrain.proofread.oracle.annotation_summary`) and the training source of it."""

    name: str
    round: CorrectionRound | None
    annotations: dict[str, np.ndarray] = field(default_factory=dict)
    summaries: dict[str, dict] = field(default_factory=dict)
    sources: dict[str, Any] = field(default_factory=dict)
    reader: Any = field(default=None, repr=False)

    def record(self) -> dict:
        """Plain values: the round's summary (score before / after, edits, ops) and the annotation
        summaries per scope."""
        return {**(self.round.summary() if self.round is not None else {}), "annotation": dict(self.summaries)}


def correct_images(loaded, images: Mapping[str, Image], n_edits: int, scopes: Sequence[str], metric: Metric, *,
                   settings=None, threshold: float | None = None, tta: int | None = None, background: bool = False,
                   lower_is_better: bool = False, kind: OracleKind = "score", weight: float = 1.0,
                   existing: Mapping[str, np.ndarray] | None = None,
                   source_name: str = "{image}-corrections-{scope}", **options) -> Iterator[ImageCorrections]:
    """Per image of ``images``: the run's segmentation of it (``settings``, ``threshold``, ``tta``:
    :func:`~segtrain.workflows.correction.proofreader_of`) corrected by up to ``n_edits`` oracle
    edits scored by ``metric``, then per scope its corrections as annotation (added to
    ``existing[image]``; ``options`` go to
    :func:`~segtrain.proofread.annotation.corrections_annotation`) and a training source of
    ``weight`` named ``source_name`` (with ``{image}``, ``{scope}``). Scope :data:`GROUND_TRUTH`
    trains on the image's full ground truth instead (no edits when it is the only scope)."""
    edits = any(scope != GROUND_TRUTH for scope in scopes)
    for name, (raw, gt) in images.items():
        reader = proofreader_of(loaded, raw, settings, threshold, tta=tta)
        done = correction_round(reader, gt, lambda seg, gt=gt: metric(seg, gt), n_edits, background,
                                lower_is_better, kind) if edits else None
        report = ImageCorrections(name, done, reader=reader)
        for scope in scopes:
            if scope == GROUND_TRUTH:
                from segtrain.train.sources import ArraySource

                report.sources[scope] = ArraySource(raw, gt, weight=weight, name=f"{name}-{GROUND_TRUTH}")
                continue
            annotation, source = corrections_source(
                reader, raw, scope, source_name.format(image=name, scope=scope), weight=weight,
                existing=None if existing is None else existing[name], **options)
            report.annotations[scope], report.sources[scope] = annotation, source
            report.summaries[scope] = annotation_summary(annotation, gt)
        yield report


# --- fine-tune --------------------------------------------------------------------------------------

@dataclass
class FineTuning:
    """A fine-tuning run to make: ``parent``'s weights trained on ``sources`` with ``config``.
    ``scope``: the corrections' scope it learns from (None: the control, labelled data alone)."""

    key: str
    parent: Path
    scope: str | None
    seed: int
    config: Any
    sources: list


@dataclass
class FineTuned:
    """A fine-tuning run made: its folder, parent, steps, training seconds and the learning rate
    and warm-up it fine-tuned with (``RunFolder.fine_tune``)."""

    key: str
    run_dir: Path
    parent: Path
    scope: str | None
    seed: int
    steps: int
    seconds: float
    fine_tune: dict | None

    def record(self) -> dict:
        return {"run": str(self.run_dir), "steps": self.steps, "seconds": self.seconds, "seed": self.seed,
                "scope": self.scope, "parent": str(self.parent), "fine_tune": self.fine_tune}


def fine_tuning_plan(parent: str | Path, config_of: Callable[[str | None, int], Any], labelled: Callable[[], Any],
                     corrections: Mapping[str, Sequence], seeds: Sequence[int], scopes: Sequence[str],
                     control: bool = True) -> list[FineTuning]:
    """Per seed: the control ``B`` (``labelled()`` alone; unless not ``control``) and one ``F[scope]``
    per scope (``labelled()`` + ``corrections[scope]``), each from ``parent`` with
    ``config_of(scope or None, seed)``; keys end in ``/seed<N>`` when there are several seeds."""
    parent = Path(parent)
    plans = []
    for seed in seeds:
        suffix = "" if len(seeds) == 1 else f"/seed{seed}"
        if control:
            plans.append(FineTuning(f"B{suffix}", parent, None, seed, config_of(None, seed), [labelled()]))
        plans += [FineTuning(f"F[{scope}]{suffix}", parent, scope, seed, config_of(scope, seed),
                             [labelled(), *corrections[scope]]) for scope in scopes]
    return plans


def next_round(fine_tuned: str | Path, control: str | Path, config_of: Callable[[str, int], Any],
               labelled: Callable[[], Any], corrections: Sequence, seed: int, scope: str = "confirmed"
               ) -> list[FineTuning]:
    """A second round: the control run trained as long again on ``labelled()`` alone
    (``B2 (control, round 2)``, ``config_of("B2", seed)``) and the fine-tuned run fine-tuned again
    on ``labelled()`` + ``corrections`` (both rounds' corrections of its own results;
    ``F2[scope] (round 2)``, ``config_of("F2-<scope>", seed)``)."""
    return [FineTuning("B2 (control, round 2)", Path(control), None, seed, config_of("B2", seed), [labelled()]),
            FineTuning(f"F2[{scope}] (round 2)", Path(fine_tuned), scope, seed, config_of(f"F2-{scope}", seed),
                       [labelled(), *corrections])]


def fine_tune_runs(plans: Sequence[FineTuning], val: Callable[[], Sequence] | None = None,
                   runs_root: str | Path | None = None, log: Log = print) -> Iterator[FineTuning | FineTuned]:
    """Train each plan (:func:`~segtrain.workflows.training.train_sources` from its parent,
    validated on ``val()``; ``log`` gets the run's lines): yields the plan as it starts and its
    :class:`FineTuned` once trained."""
    from segtrain.runs import RunFolder
    from segtrain.workflows.training import run_to_end, train_sources

    for plan in plans:
        yield plan
        ended = run_to_end(train_sources(plan.config, plan.sources, None if val is None else val(), runs_root,
                                         init_from=plan.parent), log)
        yield FineTuned(plan.key, ended.run_dir, plan.parent, plan.scope, plan.seed, plan.config.train.max_steps,
                        ended.seconds, RunFolder(ended.run_dir).fine_tune())


# --- score on held-out images -------------------------------------------------------------------

def tuned_settings(loaded, raw: np.ndarray, gt: np.ndarray):
    """``(settings, TuneResult)``: the run's post-processing settings tuned on one annotated image,
    as ``segtrain tune`` tunes them."""
    from segtrain.workflows.tuning import tune_on_volumes

    result = tune_on_volumes(loaded, [{"raw": raw, "labels": gt}])
    return result.apply(loaded.config.segment), result


@dataclass
class InstanceScores:
    """A mask / instance run on held-out images: instance F1 (IoU 0.5; precision, recall) per image
    and ``mean`` at its settings tuned on a labelled image (``f1``), at the run's own settings
    (``f1_untuned``), at the first scored run's tuned settings (``f1_parent_settings``: the network
    alone), and the best settings in hindsight, tuned on the held-out images themselves."""

    key: str
    run: Path
    tuned: Any  # TuneResult on the labelled image
    settings: Any
    f1: dict[str, float] = field(default_factory=dict)
    precision: dict[str, float] = field(default_factory=dict)
    recall: dict[str, float] = field(default_factory=dict)
    f1_untuned: dict[str, float] = field(default_factory=dict)
    f1_parent_settings: dict[str, float] = field(default_factory=dict)
    f1_hindsight: dict = field(default_factory=dict)

    def record(self) -> dict:
        return {"tuned_on_set01": self.tuned.to_dict(), "f1": self.f1, "f1_untuned": self.f1_untuned,
                "f1_parent_settings": self.f1_parent_settings, "precision": self.precision, "recall": self.recall,
                "f1_hindsight": self.f1_hindsight}


def score_instance_runs(runs: Mapping[str, str | Path], tune_on: Image, held_out: Mapping[str, Image]
                        ) -> Iterator[InstanceScores]:
    """Per run (``{key: run}``; the first is the parent whose settings every run is also scored
    at): :class:`InstanceScores` on ``held_out`` (no test-time transforms), settings tuned on
    ``tune_on``."""
    from segtrain.postprocess import OutputSpec, instances
    from segtrain.postprocess.tune import tune_postprocessing
    from segtrain.predict import load_model, predict_array

    parent_settings = None
    for key, run in runs.items():
        loaded = load_model(run)
        spec = OutputSpec.of(loaded.config)
        settings, tuned = tuned_settings(loaded, *tune_on)
        parent_settings = parent_settings or settings
        report = InstanceScores(key, Path(run), tuned, settings)
        predicted = []
        for name, (raw, gt) in held_out.items():
            probabilities = predict_array(loaded, raw, tta=1)["probabilities"]
            predicted.append(probabilities)
            scores = evaluate.instance_scores(instances(probabilities, settings, spec), gt)
            report.f1[name], report.precision[name], report.recall[name] = \
                scores["f1"], scores["precision"], scores["recall"]
            report.f1_untuned[name] = instance_f1(instances(probabilities, loaded.config.segment, spec), gt)
            report.f1_parent_settings[name] = instance_f1(instances(probabilities, parent_settings, spec), gt)
        for scores in (report.f1, report.f1_untuned, report.f1_parent_settings):
            scores["mean"] = float(np.mean([scores[name] for name in held_out]))
        report.f1_hindsight = tune_postprocessing(predicted, [gt for _, gt in held_out.values()],
                                                  loaded.config.segment, spec).to_dict()
        yield report


def threshold_on(loaded, raw: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """``(threshold, VOI)``: the merge threshold an affinity run's sweep chooses on an annotated
    volume (as its validation does) and the VOI there."""
    from segtrain.postprocess import affinity_scores
    from segtrain.predict import predict_array

    affs = predict_array(loaded, raw)["affinities"]
    scores = affinity_scores(affs, gt, loaded.config.segment, voxel_size=loaded.config.data.voxel_size,
                             model_ndim=loaded.config.ndim)
    return scores["threshold"], scores["voi"]


def settings_at_threshold(loaded, raw: np.ndarray, gt: np.ndarray):
    """``(settings, threshold, VOI)``: the run's settings at the threshold :func:`threshold_on` chooses."""
    threshold, score = threshold_on(loaded, raw, gt)
    return dataclasses.replace(loaded.config.segment, threshold=threshold), threshold, score


@dataclass
class VoiScores:
    """An affinity run on a held-out volume: VOI (split, merge) at the threshold chosen on a
    validation volume (``threshold``, ``val_voi`` there) and the best VOI of the sweep in hindsight."""

    key: str
    run: Path
    threshold: float
    val_voi: float
    voi: float
    voi_split: float
    voi_merge: float
    best_voi: float
    best_threshold: float

    def record(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("key", "run")}


def score_affinity_runs(runs: Mapping[str, str | Path], val: Image, test: Image) -> Iterator[VoiScores]:
    """Per run (``{key: run}``): the threshold chosen on ``val``, then the sweep of its merge tree
    of ``test`` (the run's test-time transforms and thresholds) read at the nearest threshold."""
    from segtrain.evaluate import sweep
    from segtrain.postprocess import segment_affinities
    from segtrain.predict import load_model, predict_array

    test_raw, test_gt = test
    for key, run in runs.items():
        loaded = load_model(run)
        threshold, val_voi = threshold_on(loaded, *val)
        affs = predict_array(loaded, test_raw)["affinities"]
        tree = segment_affinities(affs, loaded.config.segment, voxel_size=loaded.config.data.voxel_size,
                                  model_ndim=loaded.config.ndim)
        result = sweep(tree, test_gt,
                       thresholds=loaded.config.segment.thresholds)
        i = int(np.argmin(np.abs(np.asarray(result.thresholds) - threshold)))
        yield VoiScores(key, Path(run), threshold, val_voi, voi=float(result.voi[i]),
                        voi_split=float(result.voi_split[i]), voi_merge=float(result.voi_merge[i]),
                        best_voi=float(result.best["voi"]), best_threshold=float(result.best["threshold"]))
