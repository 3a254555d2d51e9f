import numpy as np
import pytest

from segtrain.errors import InputError
from segtrain.targets import (
    affinities,
    boundaries,
    class_masks,
    foreground,
    local_shape_descriptors,
    three_class,
)


def test_affinities_3d_nearest_neighbours():
    labels = np.zeros((2, 3, 4), dtype=np.uint64)
    labels[:, :, :2] = 1
    labels[:, :, 2:] = 2
    labels[1, 0, 0] = 0
    affs, known = affinities(labels)
    assert affs.shape == (3, 2, 3, 4) and affs.dtype == np.float32
    # x affinity between column 1 and 2 (different objects) is 0, within objects 1
    assert affs[2, 0, 0, 2] == 0 and affs[2, 0, 0, 1] == 1 and affs[2, 0, 0, 3] == 1
    # first voxel along each axis has no neighbour: affinity 0, unknown
    assert np.all(affs[0, 0] == 0) and np.all(known[0, 0] == 0) and np.all(known[0, 1] == 1)
    # background is never affine
    assert affs[0, 1, 0, 0] == 0 and affs[1, 1, 1, 0] == 0 and affs[2, 1, 0, 1] == 0


def test_affinities_2d_long_range_and_known():
    labels = np.ones((6, 6), dtype=np.int32)
    known = np.ones((6, 6), dtype=bool)
    known[0, 0] = False
    affs, aknown = affinities(labels, offsets=[(-1, 0), (0, -1), (-3, 0)], known=known)
    assert affs.shape == (3, 6, 6)
    assert np.all(affs[2, 3:] == 1) and np.all(affs[2, :3] == 0)
    assert aknown[0, 1, 0] == 0 and aknown[0, 1, 1] == 1 and aknown[2, 3, 0] == 0


def test_affinities_bad_input():
    with pytest.raises(InputError):
        affinities(np.zeros((2, 2, 2, 2), dtype=int))
    with pytest.raises(InputError):
        affinities(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(InputError):
        affinities(np.zeros((4, 4), dtype=int), offsets=[(1, 0, 0)])


def test_lsds_shape_range_and_meaning():
    labels = np.zeros((20, 40, 40), dtype=np.uint64)
    labels[:, :, :20] = 7
    labels[:, :, 20:] = 2**40  # large ids are fine
    lsd = local_shape_descriptors(labels, sigma=3.0)
    assert lsd.shape == (10, 20, 40, 40) and lsd.dtype == np.float32
    assert lsd.min() >= 0 and lsd.max() <= 1
    # deep inside an object: no offset, full window, no correlation
    centre = lsd[:, 10, 20, 8]
    assert abs(centre[0] - 0.5) < 0.01 and abs(centre[1] - 0.5) < 0.01
    assert abs(centre[3] - 1.0) < 0.05 and abs(centre[9] - 1.0) < 0.05
    assert np.allclose(centre[6:9], 0.5, atol=0.02)
    # next to the x boundary of the left object: centre of mass lies towards smaller x
    assert lsd[2, 10, 20, 19] < 0.45 and lsd[2, 10, 20, 20] > 0.55
    assert lsd[9, 10, 20, 19] < 0.7


def test_lsds_2d_anisotropic_and_downsample():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.repeat(rng.integers(0, 5, (8, 8)), 8, 0), 8, 1)
    lsd = local_shape_descriptors(labels, sigma=(8.0, 8.0), voxel_size=(2.0, 2.0))
    assert lsd.shape == (6, 64, 64)
    assert np.all(lsd[:, labels == 0] == 0)
    fast = local_shape_descriptors(labels, sigma=8.0, voxel_size=2.0, downsample=2)
    assert fast.shape == lsd.shape
    assert np.abs(fast - lsd)[:, labels > 0].mean() < 0.05
    vol = np.stack([labels] * 4)
    aniso = local_shape_descriptors(vol, sigma=16.0, voxel_size=(40.0, 2.0, 2.0))
    assert aniso.shape == (10, 4, 64, 64)


def test_masks():
    labels = np.zeros((5, 6), dtype=np.uint16)
    labels[1:4, 1:3] = 1
    labels[1:4, 3:5] = 2
    assert foreground(labels).sum() == 12
    b = boundaries(labels)
    assert b.dtype == bool and not b[0, 0] and b[1, 1] and b[2, 2] and b[2, 3]
    tc = three_class(labels)
    assert set(np.unique(tc)) <= {0, 1, 2} and tc[0, 0] == 0
    m = class_masks(np.array([[0, 1], [2, 1]]), 3)
    assert m.shape == (3, 2, 2) and m.sum() == 4
    with pytest.raises(InputError):
        class_masks(np.array([[0, 3]]), 2)


def test_wider_boundaries_grow_inside_each_object_only():
    from scipy import ndimage

    labels = np.zeros((14, 26), dtype=np.uint16)
    labels[2:12, 2:12] = 1
    labels[2:12, 12:22] = 2  # touching object 1 along x = 11 | 12
    np.testing.assert_array_equal(boundaries(labels, width=1), boundaries(labels))
    for width in (2, 3):
        b = boundaries(labels, width=width)
        assert not b[labels == 0].any()  # never in the background
        # on a row through the contact: width pixels each side of it, then interior
        row = b[7]
        assert row[12 - width:12 + width].all() and not row[12 - width - 1] and not row[12 + width]
        # each object's boundary is exactly its pixels within width steps of its own edge
        for obj in (1, 2):
            inside = labels == obj
            depth = ndimage.distance_transform_cdt(np.pad(inside, 1), metric="taxicab")[1:-1, 1:-1]
            np.testing.assert_array_equal(b[inside], depth[inside] <= width)


def _direct_lsd(labels, p, sigma, voxel_size):
    """The descriptors of voxel p summed directly over its object (Gaussian weights, 3 sigma)."""
    sigma = np.asarray(sigma, float)
    vs = np.asarray(voxel_size, float)
    idx = np.argwhere(labels == labels[p]).astype(float)
    d = (idx - np.asarray(p, float)) * vs  # world offsets
    inside = np.all(np.abs(d) <= np.ceil(3 * sigma / vs) * vs + 1e-9, axis=1)
    d = d[inside]
    w = np.exp(-0.5 * ((d / sigma) ** 2).sum(1))
    full = np.array(np.meshgrid(*[np.arange(-np.ceil(3 * s / v), np.ceil(3 * s / v) + 1) * v
                                  for s, v in zip(sigma, vs)], indexing="ij"))
    w_full = np.exp(-0.5 * sum((full[i] / sigma[i]) ** 2 for i in range(len(sigma)))).sum()
    mean = (w[:, None] * d).sum(0) / w.sum()
    cov = ((w[:, None, None] * (d[:, :, None] * d[:, None, :])).sum(0) / w.sum()
           - mean[:, None] * mean[None, :])
    return mean, cov, w.sum() / w_full


def test_lsds_match_direct_sums():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.repeat(np.repeat(rng.integers(1, 4, (3, 4, 4)), 4, 0), 6, 1), 6, 2)
    sigma = (12.0, 6.0, 6.0)
    vs = (4.0, 2.0, 2.0)
    lsd = local_shape_descriptors(labels, sigma=sigma, voxel_size=vs)
    for p in [(5, 10, 13), (2, 3, 20), (9, 17, 7)]:
        mean, cov, size = _direct_lsd(labels, p, sigma, vs)
        got = lsd[:, p[0], p[1], p[2]]
        np.testing.assert_allclose(got[0:3], np.clip(0.5 + mean / (2 * np.array(sigma)), 0, 1),
                                   atol=2e-3)
        np.testing.assert_allclose(got[3:6], np.clip(np.diag(cov) / np.array(sigma) ** 2, 0, 1),
                                   atol=2e-3)
        r = [cov[i, j] / np.sqrt(cov[i, i] * cov[j, j]) if cov[i, i] * cov[j, j] > 1e-9 else 0
             for i, j in [(0, 1), (0, 2), (1, 2)]]
        np.testing.assert_allclose(got[6:9], 0.5 * (np.array(r) + 1), atol=2e-3)
        assert got[9] == pytest.approx(size, abs=0.02)


@pytest.mark.parametrize("shape", [(10, 30, 40), (50, 60)])
def test_lsds_do_not_depend_on_where_the_labels_lie_or_their_ids(shape):
    """Background around the labels, and label ids far apart (renumbered, not used as indices), change
    nothing (float32 window sums relative to each object's box; the definition itself is checked by
    test_lsds_match_direct_sums and the reference package's values)."""
    from segtrain.synthetic import make_em_volume

    _, gt = make_em_volume((10, 30, 40), n_cells=8, seed=4)
    labels = gt if len(shape) == 3 else gt[5, :, :].repeat(2, 0)[:50, :].repeat(2, 1)[:, :60]
    sigma, vs = (3.0,) * len(shape), (2.0,) + (1.0,) * (len(shape) - 1)
    lsd = local_shape_descriptors(labels, sigma=sigma, voxel_size=vs)
    padded = np.pad(labels, 12)
    inner = (slice(None), *(slice(12, -12) for _ in shape))
    np.testing.assert_allclose(local_shape_descriptors(padded, sigma=sigma, voxel_size=vs)[inner], lsd, atol=1e-6)
    far = np.where(labels > 0, labels.astype(np.uint64) * 10**12, 0)  # ids a sort renumbers
    np.testing.assert_allclose(local_shape_descriptors(far, sigma=sigma, voxel_size=vs), lsd, atol=1e-6)
    assert lsd.dtype == np.float32 and lsd[:, labels > 0].std(axis=1).min() > 0.01
