"""Instances from foreground + boundary probabilities (the `instances` task's post-processing)."""

from __future__ import annotations

import numpy as np
import pytest

from segtrain.errors import InputError
from segtrain.segment import instances_from_foreground_boundary


def touching_cells():
    """Two 20x20 cells sharing an edge, a predicted boundary line between them, and a speck."""
    fg = np.zeros((40, 60), np.float32)
    fg[10:30, 10:50] = 0.9
    fg[2:4, 2:4] = 0.9  # a 4-pixel false detection
    boundary = np.zeros_like(fg)
    boundary[10:30, 29:31] = 0.45  # weakly predicted boundary between the two cells
    return fg, boundary


def test_boundary_below_the_seed_maximum_splits_touching_cells():
    fg, boundary = touching_cells()
    split = instances_from_foreground_boundary(fg, boundary, seed_boundary_max=0.4, min_size=10)
    assert split.dtype == np.uint32
    assert len(np.unique(split[10:30, 10:50])) == 2 and split[2, 2] == 0
    left, right = split[20, 15], split[20, 45]
    assert left != right and left > 0 and right > 0
    merged = instances_from_foreground_boundary(fg, boundary, seed_boundary_max=0.5, min_size=10)
    assert len(np.unique(merged[10:30, 10:50])) == 1


def test_small_seeds_are_dropped_and_small_objects_removed():
    fg, boundary = touching_cells()
    kept = instances_from_foreground_boundary(fg, boundary, seed_boundary_max=0.4)
    assert kept[2, 2] > 0 and kept.max() == 3
    no_speck_seed = instances_from_foreground_boundary(fg, boundary, seed_boundary_max=0.4, seed_min_size=5)
    assert no_speck_seed[2, 2] == 0 and no_speck_seed.max() == 2


def test_stack_of_images_keeps_ids_unique():
    fg, boundary = touching_cells()
    stack = instances_from_foreground_boundary(np.stack([fg, fg]), np.stack([boundary, boundary]),
                                               seed_boundary_max=0.4, min_size=10, per_slice=True)
    assert set(np.unique(stack[0])) == {0, 1, 2} and set(np.unique(stack[1])) == {0, 3, 4}


def test_bad_inputs_are_one_sentence():
    fg, boundary = touching_cells()
    with pytest.raises(InputError, match="differ in shape"):
        instances_from_foreground_boundary(fg, boundary[:-1])
    with pytest.raises(InputError, match="seed boundary maximum"):
        instances_from_foreground_boundary(fg, boundary, seed_boundary_max=2)
