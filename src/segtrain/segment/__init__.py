"""Fragments, waterz agglomeration and the merge tree (threshold -> segmentation)."""

from segtrain.segment._waterz import SCORING_FUNCTIONS, quiet_stdout, scoring_type
from segtrain.segment.fragments import (
    FRAGMENT_METHODS,
    fragments_waterz,
    fragments_watershed,
    make_fragments,
    relabel_consecutive,
)
from segtrain.segment.merge_tree import MergeTree
from segtrain.segment.semantic import instances_from_foreground_boundary, instances_from_probabilities, remove_small

__all__ = [
    "FRAGMENT_METHODS",
    "SCORING_FUNCTIONS",
    "MergeTree",
    "fragments_waterz",
    "fragments_watershed",
    "instances_from_foreground_boundary",
    "instances_from_probabilities",
    "make_fragments",
    "quiet_stdout",
    "relabel_consecutive",
    "remove_small",
    "scoring_type",
]
