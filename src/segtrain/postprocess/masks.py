"""Probabilities of a mask or instance model -> a mask or instance labels."""

from __future__ import annotations

import dataclasses

import numpy as np

from segtrain.config import SegmentConfig
from segtrain.errors import InputError
from segtrain.postprocess.spec import OutputSpec
from segtrain.segment import (
    instances_from_foreground_boundary,
    instances_from_probabilities,
)
from segtrain.tasks import task_of


def _channels(probabilities) -> np.ndarray:
    probabilities = np.asarray(probabilities)
    if not np.issubdtype(probabilities.dtype, np.floating):
        raise InputError(f"Probabilities are floating point in [0, 1], not {probabilities.dtype}; "
                         "give the probabilities output of `segtrain predict`.")
    return probabilities


def foreground(probabilities, settings: SegmentConfig) -> np.ndarray:
    """The foreground mask: channel 0 above ``settings.probability_threshold``."""
    return _channels(probabilities)[0] > settings.probability_threshold


SIZE_TOLERANCE = 0.08  # object diameters within 8 % of the model's own count as the same size


def object_size_of(labels: np.ndarray) -> float:
    """The median size in pixels of the objects (non-zero ids) of ``labels``; 0 when there are none."""
    counts = np.bincount(np.asarray(labels).reshape(-1).astype(np.int64))[1:]
    counts = counts[counts > 0]
    return float(np.median(counts)) if counts.size else 0.0


def measured_object_size(probabilities, settings: SegmentConfig, spec: OutputSpec) -> float:
    """:func:`object_size_of` the instances cut from ``probabilities`` with ``settings`` but no
    smallest-object filter (which would hide objects smaller than the model's; the seed size
    stays, so no object is smaller than its seed)."""
    plain = dataclasses.replace(settings, min_size=0, object_size=None)
    return object_size_of(_instances(_channels(probabilities), plain, spec))


def size_ratio(measured: float, object_size: float | None) -> float:
    """How much larger (area) objects of ``measured`` pixels are than ``object_size``: 1 within
    :data:`SIZE_TOLERANCE` in diameter, or when either is unknown."""
    if measured <= 0 or object_size is None or object_size <= 0:
        return 1.0
    ratio = measured / float(object_size)
    return 1.0 if abs(np.sqrt(ratio) - 1) < SIZE_TOLERANCE else ratio


def instances(probabilities, settings: SegmentConfig, spec: OutputSpec) -> np.ndarray:
    """Instance labels (uint32, 0 = background) from ``probabilities`` (channels first) of a masks
    model (one channel: seeded watershed or components of the mask) or an instances model
    (foreground + boundary: seeds where the boundary is low, grown through the foreground). A 2D
    model's prediction of a stack is cut slice by slice (ids unique across the stack).

    With ``settings.object_size`` (the model's object size, from `segtrain tune`), the size
    settings follow the objects of this image: when they (:func:`measured_object_size`) are
    larger or smaller than that, ``min_size`` and ``seed_min_size`` are scaled by the ratio."""
    probabilities = _channels(probabilities)
    if settings.object_size is not None and (settings.min_size > 1 or settings.seed_min_size > 1):
        ratio = size_ratio(measured_object_size(probabilities, settings, spec), settings.object_size)
        if ratio != 1.0:
            settings = scaled_sizes(settings, ratio)
    return _instances(probabilities, settings, spec)


def scaled_sizes(settings: SegmentConfig, ratio: float) -> SegmentConfig:
    """``settings`` with its size settings (pixels) multiplied by ``ratio``."""
    return dataclasses.replace(settings, min_size=int(round(settings.min_size * ratio)),
                               seed_min_size=int(round(settings.seed_min_size * ratio)))


def _instances(probabilities, settings: SegmentConfig, spec: OutputSpec) -> np.ndarray:
    probabilities = _channels(probabilities)
    s = settings
    task = task_of(spec)
    if (task.foreground and not task.boundary_channel) or probabilities.shape[0] == 1:
        return instances_from_probabilities(probabilities[0], s.probability_threshold, method=s.instance_method,
                                            min_size=s.min_size, min_seed_distance=s.min_seed_distance)
    return instances_from_foreground_boundary(
        probabilities[0], probabilities[1], s.probability_threshold, s.seed_boundary_max, s.seed_min_size,
        s.min_size, per_slice=probabilities[0].ndim == 3 and spec.ndim == 2)
