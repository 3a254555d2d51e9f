"""The proofreading tests' merge tree: FIB-SEM ground truth, noisy affinities, its real tree."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from helpers.engine_data import em3d_gt, noisy

from segtrain.config import SegmentConfig
from segtrain.postprocess import segment_affinities
from segtrain.targets import affinities


@functools.lru_cache(maxsize=1)
def _em(em3d_dir):
    gt = em3d_gt(em3d_dir, (slice(0, 12), slice(0, 96), slice(0, 96)))
    affs = noisy(affinities(gt)[0].astype(np.float32), 0.25)
    settings = SegmentConfig(fragments="watershed", boundary_threshold=0.5, min_seed_distance=3, min_size=10)
    tree = segment_affinities(affs, settings)
    return gt, affs, tree


@pytest.fixture
def em(em3d_dir):
    return _em(em3d_dir)
