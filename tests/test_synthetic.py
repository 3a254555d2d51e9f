"""Synthetic data generators: shapes, dtypes, determinism, ground-truth sanity."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segtrain.synthetic import make_em_volume, make_well_image


def test_em_volume_cells_membranes_and_determinism():
    raw, labels = make_em_volume(shape=(16, 64, 64), n_cells=25, seed=3)
    assert raw.shape == labels.shape == (16, 64, 64)
    assert raw.dtype == np.uint8 and labels.dtype == np.uint64
    ids = np.unique(labels)
    assert ids[0] == 0 and len(ids) > 10
    membrane = labels == 0
    assert 0.03 < membrane.mean() < 0.4
    assert raw[membrane].mean() < raw[~membrane].mean() - 30  # dark membranes
    for i in ids[1:6]:  # every instance is one connected piece
        assert ndimage.label(labels == i)[1] == 1
    again_raw, again_labels = make_em_volume(shape=(16, 64, 64), n_cells=25, seed=3)
    assert np.array_equal(raw, again_raw) and np.array_equal(labels, again_labels)
    assert not np.array_equal(raw, make_em_volume(shape=(16, 64, 64), n_cells=25, seed=4)[0])


def test_em_volume_anisotropic_and_2d():
    raw, labels = make_em_volume(shape=(8, 48, 48), anisotropy=5.0, n_cells=20)
    assert raw.shape == (8, 48, 48) and labels.max() > 5
    raw2, labels2 = make_em_volume(shape=(64, 64))
    assert raw2.shape == labels2.shape == (64, 64) and labels2.max() > 3


def test_well_image_spheroids():
    image, labels = make_well_image(shape=(128, 160), n_spheroids=6, seed=1)
    assert image.shape == labels.shape == (128, 160)
    assert image.dtype == np.uint16 and labels.dtype == np.uint32
    assert labels.max() == 6 and set(np.unique(labels)) == set(range(7))
    assert image.max() - image.min() > 20000
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.max() > 2 * sizes.min()  # varying sizes
