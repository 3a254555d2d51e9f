"""Targets of sparsely annotated patches (painted strokes, proofreading corrections): what depends
on an unknown neighbourhood carries no loss. An object voxel beside an unknown one may be inside
the object or on its boundary (instances: its boundary target is not known); a voxel's LSDs
describe its object within a Gaussian window (not known where unknown voxels fill part of it).
Fully annotated patches keep every weight."""

from __future__ import annotations

import numpy as np

from segtrain.config import config_from_dict
from segtrain.train.sources import Sample
from segtrain.train.targets import targets_for


def _cells_config():
    return config_from_dict({"preset": "wells2d_quick", "data": {"patch_shape": [64, 64]}})


def test_instance_boundary_beside_unknown_carries_no_loss():
    labels = np.zeros((40, 40), np.int64)
    labels[5:35, 5:35] = 1  # one big cell, annotated only in its left half
    known = np.zeros((40, 40), bool)
    known[:, :20] = True
    out = targets_for(Sample(np.zeros((1, 40, 40), np.float32), labels * known, known), _cells_config())
    fg_w, boundary_w = out["probabilities_weight"]
    boundary = out["probabilities"][1]
    assert boundary[20, 19] == 1  # the labels end there: the target says "boundary" ...
    assert boundary_w[20, 19] == 0 and fg_w[20, 19] == 1  # ... but it is not known to be one
    assert boundary_w[20, 5] == 1 and boundary[20, 5] == 1  # the cell's real edge, beside known background
    assert boundary_w[20, 10] == 1 and boundary[20, 10] == 0  # inside, known
    assert (boundary_w[:, 20:] == 0).all()  # unknown stays unknown
    dense = targets_for(Sample(np.zeros((1, 40, 40), np.float32), labels, np.ones((40, 40), bool)), _cells_config())
    assert (dense["probabilities_weight"] == 1).all()  # fully annotated: every weight kept


def test_lsds_weight_only_where_the_window_is_known(em_crop, tiny_config):
    _, gt, _, _ = em_crop
    labels = gt[:8, :32, :32].astype(np.int64)
    config = tiny_config()
    known = np.ones(labels.shape, bool)
    dense = targets_for(Sample(np.zeros((1, *labels.shape), np.float32), labels, known), config)
    assert (dense["lsds_weight"] == 1).all()
    known[:, :, 16:] = False  # the right half not annotated
    sparse = targets_for(Sample(np.zeros((1, *labels.shape), np.float32), labels * known, known), config)
    w = sparse["lsds_weight"][0]
    sigma = config.model.lsd_sigma  # voxels here (voxel size 1)
    assert (w[:, :, 16:] == 0).all()
    assert (w[:, :, 16 - int(sigma):16] == 0).all()  # the window reaches into the unknown half
    assert (w[:, :, :16 - int(4 * sigma)] == 1).all()  # far enough inside: known
    # affinities need only their two voxels known
    assert (sparse["affinities_weight"][:, 1:, 1:, 1:15] == 1).all()
