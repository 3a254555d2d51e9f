"""Segmentation quality of network outputs against ground truth, the way validation, tuning, the
sweep and the quality script all score it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segtrain.config import SegmentConfig
from segtrain.evaluate import class_iou, instance_scores, mask_scores, stack_labels, sweep
from segtrain.postprocess.affinities import segment_affinities
from segtrain.postprocess.masks import foreground, instances
from segtrain.postprocess.spec import OutputSpec
from segtrain.tasks import task_of


def affinity_scores(affs, gt, settings: SegmentConfig, voxel_size: Sequence[float] | None = None,
                    model_ndim: int | None = None) -> dict[str, float]:
    """The best VOI (split, merge), ARAND and the threshold the sweep (``settings.thresholds``)
    chose, for the merge tree :func:`segment_affinities` makes; ground truth 0 is ignored (a 2D
    model's stack is scored slice by slice: :func:`segtrain.evaluate.sweep`)."""
    tree = segment_affinities(affs, settings, voxel_size=voxel_size, model_ndim=model_ndim)
    result = sweep(tree, np.asarray(gt).astype(np.uint32), thresholds=settings.thresholds)
    best = result.best
    return {"voi": best["voi"], "voi_split": best["voi_split"], "voi_merge": best["voi_merge"],
            "arand": best["arand"], "threshold": best["threshold"]}


def merge_tree_and_sweep(affs, settings: SegmentConfig, voxel_size: Sequence[float] | None = None,
                         model_ndim: int | None = None, fragments=None, gt=None):
    """``(merge tree, sweep against gt or None)``: what the Segment panel builds (waterz holds the
    GIL while it agglomerates, so the panel runs this in another process)."""
    tree = segment_affinities(affs, settings, voxel_size=voxel_size, model_ndim=model_ndim, fragments=fragments)
    return tree, None if gt is None else sweep(tree, np.asarray(gt), thresholds=settings.thresholds)


def validation_scores(outputs: dict[str, np.ndarray], gt, settings: SegmentConfig, spec: OutputSpec,
                      voxel_size: Sequence[float] | None = None, known=None) -> dict[str, float]:
    """Scores of ``outputs`` (the model's heads by name) against ground-truth labels ``gt``:
    affinities -> VOI, ARAND and the chosen threshold; masks / instances -> Dice, IoU and instance
    F1 (precision, recall) at IoU 0.5; classes -> mean IoU and Dice, and per class IoU and F1
    (:func:`per_class_scores`). ``known`` False voxels are
    left out (gt set to 0, which every score ignores where it can). A 2D model's stack is scored
    slice by slice: an id in two slices is two objects (:func:`segtrain.evaluate.stack_labels`)."""
    gt = np.asarray(gt).astype(np.int64)
    task = task_of(spec)
    if task.agglomerates:
        if known is not None:
            gt = np.where(known, gt, 0)
        return affinity_scores(outputs["affinities"], gt, settings, voxel_size=voxel_size, model_ndim=spec.ndim)
    probabilities = outputs["probabilities"]
    if task.foreground:
        keep = np.ones(gt.shape, bool) if known is None else known
        scores = mask_scores(foreground(probabilities, settings)[keep], gt[keep] > 0)
        labels = instances(probabilities, settings, spec)
        objects = stack_labels(np.where(keep, gt, 0), spec.ndim)  # a 2D model's stack: each slice's own
        inst = instance_scores(np.where(keep, labels, 0), objects, iou_threshold=0.5)
        return {"dice": scores["dice"], "iou": scores["iou"], "f1": inst["f1"],
                "precision": inst["precision"], "recall": inst["recall"]}
    pred = np.asarray(probabilities).argmax(axis=0)
    ignore = None
    if known is not None:
        gt = np.where(known, gt, -1)
        ignore = -1
    result = class_iou(pred, np.clip(gt, -1, spec.n_classes - 1), n_classes=spec.n_classes, ignore_index=ignore)
    miou = float(result.get("miou", result.get("mean_iou", np.nan)))
    scores = {"iou": miou, "dice": 2 * miou / (1 + miou) if miou == miou else float("nan")}
    scores.update(per_class_scores(result["per_class"]))
    return scores


def per_class_scores(iou: Sequence[float]) -> dict[str, float]:
    """``iou_class<k>`` and ``f1_class<k>`` (F1 = Dice = 2 IoU / (1 + IoU) of class k against the
    rest) for every class; NaN where the class is in neither prediction nor ground truth."""
    scores = {}
    for k, value in enumerate(iou):
        value = float(value)
        scores[f"iou_class{k}"] = value
        scores[f"f1_class{k}"] = 2 * value / (1 + value) if not np.isnan(value) else float("nan")
    return scores
