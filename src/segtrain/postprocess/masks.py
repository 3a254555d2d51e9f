"""Probabilities of a mask or instance model -> a mask or instance labels."""

from __future__ import annotations

import numpy as np

from segtrain.config import SegmentConfig
from segtrain.errors import InputError
from segtrain.postprocess.spec import OutputSpec
from segtrain.segment import (
    instances_from_foreground_boundary,
    instances_from_probabilities,
)


def _channels(probabilities) -> np.ndarray:
    probabilities = np.asarray(probabilities)
    if not np.issubdtype(probabilities.dtype, np.floating):
        raise InputError(f"Probabilities are floating point in [0, 1], not {probabilities.dtype}; "
                         "give the probabilities output of `segtrain predict`.")
    return probabilities


def foreground(probabilities, settings: SegmentConfig) -> np.ndarray:
    """The foreground mask: channel 0 above ``settings.probability_threshold``."""
    return _channels(probabilities)[0] > settings.probability_threshold


def instances(probabilities, settings: SegmentConfig, spec: OutputSpec) -> np.ndarray:
    """Instance labels (uint32, 0 = background) from ``probabilities`` (channels first) of a masks
    model (one channel: seeded watershed or components of the mask) or an instances model
    (foreground + boundary: seeds where the boundary is low, grown through the foreground). A 2D
    model's prediction of a stack is cut slice by slice (ids unique across the stack)."""
    probabilities = _channels(probabilities)
    s = settings
    if spec.task == "masks" or probabilities.shape[0] == 1:
        return instances_from_probabilities(probabilities[0], s.probability_threshold, method=s.instance_method,
                                            min_size=s.min_size, min_seed_distance=s.min_seed_distance)
    return instances_from_foreground_boundary(
        probabilities[0], probabilities[1], s.probability_threshold, s.seed_boundary_max, s.seed_min_size,
        s.min_size, per_slice=probabilities[0].ndim == 3 and spec.ndim == 2)
