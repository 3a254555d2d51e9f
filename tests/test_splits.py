"""Far-apart splits (segtrain.splits): disjoint, separated by the network's field of view, and
the held-out acquisitions change what they say they change."""

import numpy as np
import pytest
import torch

from segtrain.config import SourceConfig, preset
from segtrain.errors import InputError
from segtrain.models.unet import UNet
from segtrain.splits import (HELD_OUT_DISHES, Acquisition, acquired, em_far_blocks, em_far_split, field_of_view,
                             gap_between, recontrast, sets_far_split)


def _measured_field(factors, size=128) -> int:
    """The widest extent of input voxels one output voxel depends on (gradients of a random net)."""
    torch.manual_seed(0)
    net = UNet(1, 2, 1, [f[-2:] for f in factors])
    for p in net.parameters():
        torch.nn.init.uniform_(p, 0.1, 0.2)
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    widest = 0
    for c in range(size // 2 - 4, size // 2 + 4):  # every alignment to the pooling grid
        (grad,) = torch.autograd.grad(net(x)[0, 0, c, c], x)
        used = (grad[0, 0].abs().sum(0) > 0).nonzero().flatten()
        widest = max(widest, int(used.max() - used.min() + 1))
    return widest


@pytest.mark.parametrize("name", ["em3d_quick", "em3d"])
def test_field_of_view_bounds_what_the_network_sees(name):
    model = preset(name).model
    measured = _measured_field(model.downsample_factors)
    assert measured <= field_of_view(model) <= measured + 4


def _voxels(box):
    return {(z, y, x) for z in range(*box[0]) for y in range(*box[1]) for x in range(*box[2])}


def test_em_far_split_blocks_are_disjoint_opposite_and_a_field_of_view_apart():
    model = preset("em3d_quick").model
    split = em_far_split(SourceConfig(raw="raw.h5", labels="gt.h5", crop=[[0, 5]]), (50, 100, 200), model)
    train, tune, test = (tuple(map(tuple, s[0].crop)) for s in (split.train, split.tune, split.test))
    fov = field_of_view(model)
    assert gap_between(train, test) >= fov and gap_between(train, tune) >= fov
    assert split.gap >= fov
    # diagonally opposite corners in (y, x)
    assert train[1][0] == 0 and train[2][0] == 0 and test[1][1] == 100 and test[2][1] == 200
    # tuning and scored parts do not overlap, and cover the far block
    assert tune[0][1] <= test[0][0] and tune[1:] == test[1:]
    # enough voxels to train on (the preset's patch fits) and to score
    patch = preset("em3d_quick").data.patch_shape
    assert all(hi - lo >= p for (lo, hi), p in zip(train, patch))
    assert np.prod([hi - lo for lo, hi in test]) >= 50_000


def test_em_far_blocks_disjoint_on_a_tiny_volume_and_refuse_too_small():
    train, tune, test = em_far_blocks((4, 10, 30), gap=6)
    assert not (_voxels(train) & _voxels(test)) and not (_voxels(train) & _voxels(tune))
    assert not (_voxels(tune) & _voxels(test))
    assert gap_between(train, test) >= 6
    with pytest.raises(InputError, match="too small"):
        em_far_blocks((4, 10, 30), gap=20)
    with pytest.raises(InputError, match="field of view"):
        em_far_split(SourceConfig(raw="r", labels="l"), (50, 100, 200), preset("em3d_quick").model, gap=10)


def test_sets_far_split_leaves_sets_out():
    entries = [SourceConfig(raw=f"set{i}/raw.tif", labels=f"set{i}/gt.png") for i in range(10)]
    split = sets_far_split(entries, n_tune=2, n_test=2)
    names = [[e.raw for e in part] for part in (split.train, split.tune, split.test)]
    assert sum(map(len, names)) == 10 and len(set(sum(names, []))) == 10
    assert names[2] == ["set8/raw.tif", "set9/raw.tif"]
    with pytest.raises(InputError, match="cannot make"):
        sets_far_split(entries[:3], n_tune=2, n_test=2)


def test_acquisition_resamples_and_recontrasts():
    rng = np.random.default_rng(0)
    labels = np.zeros((100, 120), np.int64)
    labels[10:50, 10:50] = 1
    labels[60:90, 70:110] = 2
    raw = (rng.random((100, 120)) * 1000 + 3000).astype(np.float32)
    volume = {"raw": raw, "labels": labels, "known": None, "voxel_size": None}
    out = acquired(volume, HELD_OUT_DISHES[0])
    assert out["raw"].shape == out["labels"].shape == (58, 70)
    area = np.bincount(out["labels"].ravel())[1:]
    assert np.allclose(area / np.bincount(labels.ravel())[1:], 0.58**2, rtol=0.1)
    assert set(np.unique(out["labels"])) == {0, 1, 2}
    # an illumination gradient: one side brighter than the other, the image's own range kept
    noise = rng.random((50, 50)) * 100 + 100
    ramp = recontrast(noise, Acquisition(gradient=0.3, angle=0.0))
    flat = recontrast(np.tile(np.linspace(0, 200, 50), (50, 1)), Acquisition())
    assert ramp[:, -10:].mean() > 1.1 * ramp[:, :10].mean()
    assert abs(noise[:, -10:].mean() - noise[:, :10].mean()) < 10
    assert np.allclose(flat, np.tile(np.linspace(0, 200, 50), (50, 1)), atol=2)
    assert acquired(volume, Acquisition()) is volume or np.array_equal(acquired(volume, Acquisition())["raw"], raw)
