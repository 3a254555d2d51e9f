"""Scores: VOI, ARAND, mask scores, instance matching, class IoU, threshold sweeps."""

from segtrain.evaluate.metrics import (
    Contingency,
    arand,
    auc,
    class_iou,
    contingency,
    instance_scores,
    mask_scores,
    scores_from_table,
    segmentation_scores,
    stack_labels,
    voi,
)
from segtrain.evaluate.sweep import SweepResult, default_thresholds, sweep

__all__ = [
    "Contingency",
    "arand",
    "auc",
    "class_iou",
    "contingency",
    "instance_scores",
    "mask_scores",
    "scores_from_table",
    "segmentation_scores",
    "stack_labels",
    "voi",
    "SweepResult",
    "default_thresholds",
    "sweep",
]
