"""From network outputs to segmentations and scores (used for validation and quality runs).

Affinities: fragments (seeded watershed) -> waterz merge tree -> threshold chosen by a sweep
against ground truth (never a blind default). Masks: connected components. Instances
(foreground + boundary): seeds where foreground is high and boundary low, grown by watershed
into the foreground. Classes: arg-max.
"""

from __future__ import annotations

import numpy as np
from segtrain.config import Config


def _stack_as_3d(affs: np.ndarray) -> np.ndarray:
    """2D affinities of a stack ``(2, N, y, x)`` as 3D ``(3, N, y, x)`` with no z-affinity."""
    return np.concatenate([np.zeros_like(affs[:1]), affs[:2]], axis=0)


def affinity_scores(affs: np.ndarray, gt: np.ndarray, config: Config, voxel_size=None) -> dict[str, float]:
    """Best VOI (split, merge), ARAND and the threshold chosen by the sweep."""
    from segtrain.evaluate import sweep
    from segtrain.segment import MergeTree, make_fragments

    s = config.segment
    per_slice = s.per_slice
    if affs.ndim == 4 and config.ndim == 2:  # a stack of 2D images
        affs = _stack_as_3d(affs)
        per_slice = True
    affs = np.ascontiguousarray(affs[: (3 if affs.ndim == 4 else 2)], dtype=np.float32)
    fragments = make_fragments(affs, s.fragments, boundary_threshold=s.boundary_threshold,
                               min_seed_distance=s.min_seed_distance, min_size=s.min_size,
                               per_slice=per_slice)
    tree = MergeTree.build(affs, fragments, scoring=s.scoring)
    result = sweep(tree, np.asarray(gt).astype(np.uint32), thresholds=s.thresholds)
    best = result.best
    return {"voi": best["voi"], "voi_split": best["voi_split"], "voi_merge": best["voi_merge"],
            "arand": best["arand"], "threshold": best["threshold"]}


def instances_from_outputs(probabilities: np.ndarray, config: Config) -> np.ndarray:
    """Instance labels (uint32) from ``probabilities`` of a masks or instances model."""
    from segtrain.segment import instances_from_foreground_boundary, instances_from_probabilities

    s = config.segment
    if config.task == "masks" or probabilities.shape[0] == 1:
        return instances_from_probabilities(probabilities[0], s.probability_threshold, method=s.instance_method,
                                            min_size=s.min_size, min_seed_distance=s.min_seed_distance)
    return instances_from_foreground_boundary(
        probabilities[0], probabilities[1], s.probability_threshold, s.seed_boundary_max, s.seed_min_size,
        s.min_size, per_slice=probabilities[0].ndim == 3 and config.ndim == 2)


def validation_scores(outputs: dict[str, np.ndarray], gt: np.ndarray, config: Config,
                      known: np.ndarray | None = None) -> dict[str, float]:
    """Segmentation quality of ``outputs`` against ground-truth labels ``gt`` for ``config``'s task.

    ``known`` False voxels are left out (gt set to 0, which every score ignores where it can).
    """
    from segtrain.evaluate import class_iou, instance_scores, mask_scores

    gt = np.asarray(gt).astype(np.int64)
    task = config.task
    if task == "affinities":
        if known is not None:
            gt = np.where(known, gt, 0)
        return affinity_scores(outputs["affinities"], gt, config)
    probabilities = outputs["probabilities"]
    if task in ("masks", "instances"):
        keep = np.ones(gt.shape, bool) if known is None else known
        scores = mask_scores(probabilities[0][keep] > config.segment.probability_threshold, gt[keep] > 0)
        instances = instances_from_outputs(probabilities, config)
        inst = instance_scores(np.where(keep, instances, 0), np.where(keep, gt, 0), iou_threshold=0.5)
        return {"dice": scores["dice"], "iou": scores["iou"], "f1": inst["f1"],
                "precision": inst["precision"], "recall": inst["recall"]}
    pred = probabilities.argmax(axis=0)
    ignore = None
    if known is not None:
        gt = np.where(known, gt, -1)
        ignore = -1
    result = class_iou(pred, np.clip(gt, -1, config.model.n_classes - 1), n_classes=config.model.n_classes,
                       ignore_index=ignore)
    miou = float(result.get("miou", result.get("mean_iou", np.nan)))
    return {"iou": miou, "dice": 2 * miou / (1 + miou) if miou == miou else float("nan")}
