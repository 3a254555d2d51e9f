"""The outputs a model predicts (its heads), named once. A head's name is also the ``kind`` of the
layer, file dataset and record that hold its prediction. Outside this package no code compares a
head's name: it asks these questions (``is_affinities(kind)``, ``is_prediction(kind)``) or
``task_of_head(kind)`` for the task that reads it.

This module imports nothing; :mod:`segtrain.tasks.base` and the built-in tasks take the names from
here."""

from __future__ import annotations

#: affinities (channels first, channel i: 1 = same object as the voxel at offset i), segmented by
#: fragments + agglomeration; 1 - the mean nearest-neighbour affinity is a boundary map
AFFINITIES = "affinities"
#: local shape descriptors: an auxiliary output trained alongside affinities, never segmented
LSDS = "lsds"
#: probabilities (foreground [, boundary], or one channel per class), segmented by threshold / watershed
PROBABILITIES = "probabilities"

#: every head: the kinds of layer / dataset that hold float network output
HEAD_KINDS: tuple[str, ...] = (AFFINITIES, LSDS, PROBABILITIES)


def is_prediction(kind: str | None) -> bool:
    """A layer / dataset kind that holds a network output (float, channels first), not labels,
    an image or an uncertainty map."""
    return kind in HEAD_KINDS


def is_affinities(kind: str | None) -> bool:
    """An affinity map (segmented by fragments + agglomeration)."""
    return kind == AFFINITIES


def is_lsds(kind: str | None) -> bool:
    """Local shape descriptors (their channel layout: :mod:`segtrain.targets.lsds`)."""
    return kind == LSDS


def is_probabilities(kind: str | None) -> bool:
    """Per-pixel probabilities (foreground [, boundary] or classes)."""
    return kind == PROBABILITIES


def is_auxiliary(kind: str | None) -> bool:
    """An output trained alongside the task's own and never segmented (LSDs): hidden at first."""
    return is_lsds(kind)


def is_segmentable(kind: str | None) -> bool:
    """A prediction a segmentation and a boundary map are made of: affinities or probabilities."""
    return is_prediction(kind) and not is_auxiliary(kind)
