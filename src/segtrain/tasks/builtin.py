"""The four tasks segtrain trains: affinities (+ LSDs), masks, instances, classes."""

from __future__ import annotations

import numpy as np

from segtrain.tasks.base import REGISTRY, Task, default_task, register
from segtrain.tasks.heads import AFFINITIES, LSDS, PROBABILITIES

_BINARY_LOSSES = frozenset({"bce", "focal", "dice", "focal_dice", "bce_dice"})


@register
class Affinities(Task):
    """Nearest-neighbour (and long-range) affinities, optionally with LSDs (MTLSD); segmented by
    fragments + agglomeration; scored by VOI and ARAND."""

    name = "affinities"
    label = "affinities + LSDs (EM)"
    head = AFFINITIES
    target = "affinities"
    losses = frozenset({"mse"})
    default_loss = "mse"
    monitor = ("val/voi", "min")
    agglomerates = True
    tune_split = "val"
    presets = {3: "em3d_quick", 2: "isbi2d_quick"}
    default_for = (3,)

    def heads(self, n_offsets, lsds, ndim, n_classes):
        return [(AFFINITIES, n_offsets, "sigmoid")] + ([(LSDS, 10 if ndim == 3 else 6, "sigmoid")] if lsds else [])


@register
class Masks(Task):
    """One foreground probability; instances by connected components (or a watershed)."""

    name = "masks"
    label = "masks (foreground)"
    losses = _BINARY_LOSSES
    default_loss = "focal_dice"
    monitor = ("val/dice", "max")
    foreground = True
    presets = {2: "wells2d_quick", 3: "em3d_quick"}
    default_for = (2,)

    def heads(self, n_offsets, lsds, ndim, n_classes):
        return [(PROBABILITIES, 1, "sigmoid")]


@register
class Instances(Task):
    """Foreground + boundary probabilities; instances by seeded watershed."""

    name = "instances"
    label = "instances (cells)"
    losses = _BINARY_LOSSES
    default_loss = "focal_dice"
    monitor = ("val/f1", "max")
    foreground = True
    boundary_channel = True
    presets = {2: "wells2d_quick", 3: "em3d_quick"}

    def heads(self, n_offsets, lsds, ndim, n_classes):
        return [(PROBABILITIES, 2, "sigmoid")]  # foreground, boundary

    def probability_layers(self, channels):
        if channels == 2:
            return [("probabilities", 0), ("boundary", 1)]  # foreground, boundary (sigmoid)
        return super().probability_layers(channels)


@register
class Classes(Task):
    """Softmax over ``model.n_classes`` semantic classes; scored by mean IoU and Dice."""

    name = "classes"
    target = "classes"
    losses = frozenset({"ce", "dice", "ce_dice", "focal", "focal_dice"})
    default_loss = "ce_dice"
    monitor = ("val/dice", "max")
    semantic = True

    def heads(self, n_offsets, lsds, ndim, n_classes):
        return [(PROBABILITIES, n_classes, "softmax")]

    def segment_as(self):
        return REGISTRY["masks"]  # the Segment panel thresholds a class's probability as a mask

    def probability_layers(self, channels):
        return [(f"class {c}", c) for c in range(1, channels)]


def suggested_task(labels, ndim: int) -> Task:
    """The task ground truth suggests (the Data panel's choice, which the user may change): 3D
    volumes -> the 3D default (affinities); 2D images -> instances when the labels hold several
    object ids, masks when they hold one foreground value (0/1, 0/255)."""
    if ndim == 3:
        return default_task(3)
    data = np.asarray(labels)
    step = max(1, int(np.ceil((data.size / 1_000_000) ** 0.5)))  # a subsample is enough
    values = np.unique(data[tuple(slice(None, None, step) for _ in data.shape)])
    return REGISTRY[Instances.name if np.count_nonzero(values) > 1 else Masks.name]
