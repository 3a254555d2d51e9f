"""Fragments, waterz agglomeration and the merge tree (threshold -> segmentation)."""

from segtrain.segment._waterz import SCORING_FUNCTIONS, quiet_stdout, scoring_type
from segtrain.segment.fragments import fragments_waterz, fragments_watershed, relabel_consecutive
from segtrain.segment.merge_tree import MergeTree
from segtrain.segment.semantic import instances_from_probabilities

__all__ = [
    "SCORING_FUNCTIONS",
    "MergeTree",
    "fragments_waterz",
    "fragments_watershed",
    "instances_from_probabilities",
    "quiet_stdout",
    "relabel_consecutive",
    "scoring_type",
]
