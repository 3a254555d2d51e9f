"""The one place that turns network outputs into segmentations and scores them.

Every front end calls it with the same settings object (a :class:`~segtrain.config.SegmentConfig`,
whose defaults are the only defaults) and the voxel size: the Segment panel and its sliders,
``segtrain segment``, ``segtrain sweep``, ``segtrain tune``, validation during training and the
quality script. So a threshold chosen in one place means the same thing in every other.

- :class:`OutputSpec`: what a model predicts (task, spatial dimensions, classes).
- :func:`segment_affinities`: affinities -> fragments (:func:`fragments_of`) -> waterz
  :class:`~segtrain.segment.MergeTree`.
- :func:`instances`, :func:`foreground`: probabilities -> instance labels / a mask.
- :func:`affinity_scores`, :func:`validation_scores`: scores against ground truth (the sweep's best
  threshold for affinities).
"""

from segtrain.postprocess.affinities import (
    check_affinities,
    fragments_of,
    segment_affinities,
)
from segtrain.postprocess.masks import foreground, instances
from segtrain.postprocess.scores import affinity_scores, merge_tree_and_sweep, validation_scores
from segtrain.postprocess.spec import OutputSpec

__all__ = [
    "OutputSpec",
    "affinity_scores",
    "check_affinities",
    "foreground",
    "fragments_of",
    "instances",
    "merge_tree_and_sweep",
    "segment_affinities",
    "validation_scores",
]
