"""Training targets from labels: affinities, local shape descriptors, boundaries, masks."""

from segtrain.targets.affinities import affinities, default_offsets
from segtrain.targets.lsds import local_shape_descriptors, n_descriptor_channels
from segtrain.targets.masks import boundaries, class_masks, foreground, three_class

__all__ = [
    "affinities",
    "default_offsets",
    "local_shape_descriptors",
    "n_descriptor_channels",
    "boundaries",
    "foreground",
    "class_masks",
    "three_class",
]
