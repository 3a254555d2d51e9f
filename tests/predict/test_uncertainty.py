"""Uncertainty = the disagreement between test-time augmented predictions: 0 for an equivariant
model, > 0 for one that is not, equal to numpy's std of the stacked members; the ranked patches
and objects; the CLI writes it."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from segtrain.config import config_from_dict
from segtrain.errors import InputError
from segtrain.models.build import HeadSpec
from segtrain.predict import LoadedModel, load_model, predict_array
from segtrain.predict.tta import (
    ChannelSource,
    TestTimeAugmentation,
    affinity_sources,
    map_back,
    tta_transforms,
)
from segtrain.predict.uncertainty import rank_objects, rank_patches
from segtrain.synthetic import make_em_volume
from segtrain.targets import affinities

OFFSETS = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, -3, 0), (0, 1, -1)]


class Toy(torch.nn.Module):
    """``equivariant``: the input is a label volume and the output its affinities (exactly
    equivariant to flips and transposes); else a fixed random 3x3(x3) convolution + sigmoid, which
    is not."""

    def __init__(self, ndim: int, head: str, channels: int, equivariant: bool):
        super().__init__()
        self.ndim, self.equivariant = ndim, equivariant
        self.heads = [HeadSpec(head, channels, "sigmoid")]
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn((channels, 1) + (3,) * ndim, generator=generator))

    def forward(self, x):
        if self.equivariant:
            labels = [sample[0].cpu().numpy().astype(np.int64) for sample in x]
            return {"affinities": torch.from_numpy(np.stack([affinities(lab, OFFSETS)[0] for lab in labels]))}
        conv = torch.nn.functional.conv3d if self.ndim == 3 else torch.nn.functional.conv2d
        return {self.heads[0].name: torch.sigmoid(conv(x, self.weight, padding=1))}

    def activate(self, out):
        return out


def toy(equivariant: bool, ndim: int = 3, task: str = "affinities") -> LoadedModel:
    values = {"preset": "em3d_quick" if ndim == 3 else "wells2d_quick",
              "data": {"patch_shape": [8, 16, 16] if ndim == 3 else [32, 32], "normalize": "none"},
              "model": {"task": task, **({"offsets": [list(o) for o in OFFSETS]} if task == "affinities" else {}),
                        **({"encoder_depth": 3} if ndim == 2 else {})}}
    config = config_from_dict(values)
    head, channels = ("affinities", len(OFFSETS)) if task == "affinities" else ("probabilities", 2)
    return LoadedModel(Toy(ndim, head, channels, equivariant).eval(), config, Path("<toy>"), 0)


def test_uncertainty_is_zero_for_an_equivariant_model_and_positive_for_one_that_is_not():
    labels = make_em_volume((12, 40, 40), n_cells=12, seed=3)[1].astype(np.int64)
    tiles = {"tile_shape": [12, 24, 24], "margin": [0, 4, 4]}
    out = predict_array(toy(True), labels, tta=16, uncertainty=True, **tiles)
    assert out["uncertainty"].shape == (1, 12, 40, 40) and out["uncertainty"].dtype == np.float32
    assert np.abs(out["uncertainty"]).max() < 1e-6
    plain = predict_array(toy(True), labels, tta=16, **tiles)
    assert "uncertainty" not in plain
    np.testing.assert_array_equal(out["affinities"], plain["affinities"])  # the mean is what TTA alone gives

    raw = np.random.default_rng(0).random((12, 40, 40)).astype(np.float32)
    out = predict_array(toy(False), raw, tta=8, uncertainty=True, **tiles)
    assert (out["uncertainty"] > 1e-3).mean() > 0.95
    np.testing.assert_array_equal(out["affinities"], predict_array(toy(False), raw, tta=8, **tiles)["affinities"])


def test_a_stack_of_2d_images_gets_one_uncertainty_map_per_image():
    images = np.random.default_rng(1).random((2, 30, 44)).astype(np.float32)
    out = predict_array(toy(False, ndim=2, task="instances"), images, tile_shape=[32, 32], margin=[8, 8], tta=8,
                        uncertainty=True)
    assert out["uncertainty"].shape == (1, 2, 30, 44) and (out["uncertainty"] > 0).mean() > 0.95


def members(forward, x, transforms, sources_of):
    """Every transform's mapped-back prediction and where it has a value: ``(T, C, *spatial)`` twice."""
    values, weights = [], []
    for transform in transforms:
        back = transform.invert(forward(transform.apply(x)))
        v, w = map_back(back, sources_of(transform, back.shape[1]))
        values.append(v[0].numpy())
        weights.append(w.numpy())
    return np.stack(values), np.stack(weights).astype(bool)


@pytest.mark.parametrize("head", ["probabilities", "affinities"])
def test_running_welford_variance_equals_numpy_std_of_the_stacked_members(head):
    torch.manual_seed(0)
    weight = torch.randn(len(OFFSETS), 1, 3, 3, 3)

    def forward(batch):
        return torch.sigmoid(torch.nn.functional.conv3d(batch, weight, padding=1))

    x = torch.rand(1, 1, 6, 10, 12)
    transforms = tta_transforms(8, 3)
    if head == "probabilities":
        def sources_of(transform, channels):
            return [ChannelSource(c, c) for c in range(channels)]
    else:
        def sources_of(transform, channels):
            return affinity_sources(transform, OFFSETS)
    values, filled = members(forward, x, transforms, sources_of)
    tta = TestTimeAugmentation(transforms, OFFSETS if head == "affinities" else None, uncertainty=True)
    out = tta(lambda b: {head: forward(b)}, x)
    if head == "probabilities":
        assert filled.all()
        expected = values.std(axis=0).mean(axis=0)  # numpy's std over members, mean over channels
    else:
        # the members that fill each voxel and channel (a shifted partner misses the border)
        masked = np.ma.masked_array(values, ~filled)
        std = masked.std(axis=0)
        two = filled.sum(axis=0) >= 2
        expected = np.ma.masked_array(std.filled(0), ~two).mean(axis=0).filled(0)
        assert not filled.all() and two.any(axis=0).all()
    np.testing.assert_allclose(out["uncertainty"][0, 0].numpy(), expected, atol=1e-6)
    assert float(out["uncertainty"].min()) >= 0 and float(out["uncertainty"].max()) > 0.01


def test_uncertainty_without_test_time_augmentation_is_a_clear_error():
    with pytest.raises(InputError, match="test-time augmentation with 2 or more"):
        predict_array(toy(False), np.zeros((8, 16, 16), np.float32), tta=1, uncertainty=True)


def overlaps(a, b) -> bool:
    return all(x.start < y.stop and y.start < x.stop for x, y in zip(a, b))


@pytest.mark.parametrize("shape,patch", [((70, 90), (16, 16)), ((13, 50, 61), (4, 16, 16))])
def test_rank_patches_finds_a_planted_hot_spot_in_order_without_overlap(shape, patch):
    rng = np.random.default_rng(2)
    u = rng.random(shape).astype(np.float32) * 0.1
    hot = tuple(slice(s // 2 - 1, s // 2 + 2) for s in shape)  # smaller than a patch
    u[hot] += 1.0
    ranked = rank_patches(u[None], patch, n=6)
    assert len(ranked) == 6
    assert all(a.score >= b.score for a, b in itertools.pairwise(ranked))
    assert not any(overlaps(a.box, b.box) for a, b in itertools.combinations(ranked, 2))
    for p in ranked:
        assert p.score == pytest.approx(float(u[p.box].mean()), rel=1e-5)
        assert all(b.stop - b.start <= q for b, q in zip(p.box, patch))
        assert all(b.start <= c < b.stop for b, c in zip(p.box, p.center))
    top = ranked[0]
    assert all(b.start <= h.start and h.stop <= b.stop for b, h in zip(top.box, hot))  # the whole hot spot
    # the best of every stride-aligned window, by brute force
    stride = [q // 4 for q in patch]
    best = max(float(u[tuple(slice(i, i + q) for i, q in zip(start, patch))].mean())
               for start in itertools.product(*[range(0, s, st) for s, st in zip(shape, stride)]))
    assert top.score == pytest.approx(best, rel=1e-5)


def test_rank_patches_of_a_regular_tiling_covers_the_map_once():
    u = np.random.default_rng(3).random((50, 70)).astype(np.float32)
    tiles = rank_patches(u, (16, 16), n=None, stride=(16, 16))
    assert len(tiles) == 4 * 5
    covered = np.zeros(u.shape, int)
    for t in tiles:
        covered[t.box] += 1
    assert (covered == 1).all()
    with pytest.raises(InputError, match="stride"):
        rank_patches(u, (16, 16), stride=(5, 5))


def test_rank_objects_orders_objects_by_mean_uncertainty():
    labels = np.zeros((20, 30), np.uint64)
    labels[2:6, 2:8] = 7
    labels[10:18, 10:20] = 3
    labels[1:4, 20:29] = 2**40  # large ids are fine
    u = np.full(labels.shape, 0.9, np.float32)  # background: uncertain, but not an object
    u[labels == 7] = 0.2
    u[labels == 3] = 0.5
    u[labels == 2**40] = 0.1
    u[11, 11] = 1.5
    ranked = rank_objects(u, labels)
    assert [o.label for o in ranked] == [3, 7, 2**40]
    assert ranked[0].score == pytest.approx((0.5 * 79 + 1.5) / 80) and ranked[0].size == 80
    assert ranked[0].box == (slice(10, 18), slice(10, 20)) and ranked[0].center == (14, 14)
    assert [o.label for o in rank_objects(u, labels, n=1)] == [3]


def test_cli_predict_writes_the_uncertainty_array(tmp_path, capsys):
    import zarr

    from segtrain.cli import main
    from segtrain.io import Volume, write_volume
    from segtrain.models import build_model

    torch.manual_seed(0)
    config = config_from_dict({"preset": "em3d_quick", "data": {"patch_shape": [8, 16, 16]},
                               "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0},
                               "predict": {"tta": 1}})
    model = build_model(config)
    checkpoint = tmp_path / "random.ckpt"
    torch.save({"hyper_parameters": {"config": config.to_dict()}, "global_step": 0,
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    raw = make_em_volume((8, 24, 24), n_cells=4, seed=1)[0]
    write_volume(tmp_path / "raw.tif", Volume(data=raw, voxel_size=(1.0, 1.0, 1.0), axes=("z", "y", "x")))
    args = ["predict", "--run", str(checkpoint), str(tmp_path / "raw.tif")]
    assert main([*args, str(tmp_path / "u.zarr"), "--tta", "8", "--uncertainty"]) == 0
    assert "uncertainty" in capsys.readouterr().out
    group = zarr.open_group(str(tmp_path / "u.zarr"), mode="r")
    assert group["uncertainty"].shape == (1, 8, 24, 24)
    assert group["uncertainty"].attrs["kind"] == "uncertainty" and group["uncertainty"].attrs["tta"] == 8
    expected = predict_array(load_model(checkpoint), raw, tta=8, uncertainty=True)
    np.testing.assert_allclose(group["uncertainty"][:], expected["uncertainty"], atol=1e-5)
    np.testing.assert_allclose(group["affinities"][:], expected["affinities"], atol=1e-5)
    assert group["uncertainty"][:].max() > 0
    # opened in napari: one magma layer, not a channel stack
    from segtrain.plugin.reader import read_layers

    (data, kwargs, _), = [layer for layer in read_layers(str(tmp_path / "u.zarr")) if layer[1]["name"] == "uncertainty"]
    assert np.shape(data) == (8, 24, 24) and kwargs["colormap"] == "magma"
    assert kwargs["metadata"]["segtrain"].kind == "uncertainty"
    assert main([*args, str(tmp_path / "bad.zarr"), "--uncertainty"]) == 2  # the run predicts without TTA
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--uncertainty needs test-time augmentation" in err and "--tta 8" in err
    assert not (tmp_path / "bad.zarr").exists()
