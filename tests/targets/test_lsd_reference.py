"""LSDs match the reference definition: values the reference ``lsd`` package
(``lsds`` 0.1.3, ``lsd.train.local_shape_descriptor.get_local_shape_descriptors``, gaussian mode)
computed on a crop of the em3d-fibsem ground truth, at 3,200 voxels, for an isotropic and an
anisotropic voxel size. The reference package needs gunpowder and zarr 2, so its values are
stored (tests/targets/data/lsd_reference_em3d.npz, made by the snippet in the file's docstring
below) rather than recomputed here.

Made with::

    gt = h5py.File("em3d-fibsem/train-gt.lzf.h5")["stack"][10:30, 20:70, 40:120]
    values = get_local_shape_descriptors(gt, sigma, voxel_size=vs, mode="gaussian")[:, z, y, x]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segtrain.targets import local_shape_descriptors

REFERENCE = Path(__file__).parent / "data" / "lsd_reference_em3d.npz"


@pytest.mark.shared_data
@pytest.mark.parametrize("case", ["isotropic", "anisotropic"])
def test_lsds_match_the_reference_package_on_real_labels(em3d_dir, case):
    import h5py

    ref = np.load(REFERENCE)
    (z0, z1), (y0, y1), (x0, x1) = ref["crop"]
    with h5py.File(em3d_dir / "train-gt.lzf.h5", "r") as f:
        gt = f["stack"][z0:z1, y0:y1, x0:x1].astype(np.uint64)
    ours = local_shape_descriptors(gt, tuple(ref[f"{case}_sigma"]), voxel_size=tuple(ref[f"{case}_voxel_size"]))
    z, y, x = ref["voxels"].T
    values, expected = ours[:, z, y, x], ref[f"{case}_values"]
    assert values.shape == expected.shape == (10, 3200)
    # every channel, the mean offsets included (0.5 + offset / (2 sigma), the reference's scale)
    np.testing.assert_allclose(values, expected, atol=2e-3)
    assert np.abs(values - expected).mean() < 1e-4
    offsets = expected[:3][:, gt[z, y, x] > 0]
    assert offsets.min() < 0.2 and offsets.max() > 0.8  # the offsets use the whole range here
