"""Test-time augmentation maps every output back exactly: affinities onto the right voxel and
channel, LSDs mirrored and swapped, probabilities transformed back; tiled, stacked and into zarr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from segtrain.config import config_from_dict
from segtrain.errors import ConfigError, InputError
from segtrain.models.build import HeadSpec
from segtrain.predict import LoadedModel, load_model, predict_array, predict_to_zarr
from segtrain.predict.tta import (TestTimeAugmentation, affinity_sources, lsd_sources, map_back, tta_counts,
                                  tta_transforms)
from segtrain.synthetic import make_em_volume
from segtrain.targets import affinities, local_shape_descriptors

OFFSETS_3D = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, -3, 0), (0, 0, -3), (-2, 0, 0),
              (0, -1, -1), (0, 1, -1)]  # long-range and diagonal offsets, each with a mirror partner


def labels_3d(shape=(12, 40, 40)) -> np.ndarray:
    return make_em_volume(shape, n_cells=12, seed=3)[1].astype(np.int64)


def transformed(array: np.ndarray, transform) -> np.ndarray:
    return transform.apply(torch.from_numpy(np.ascontiguousarray(array))[None, None])[0, 0].numpy()


def mapped_back(output: np.ndarray, transform, sources) -> tuple[np.ndarray, np.ndarray]:
    values, weights = map_back(transform.invert(torch.from_numpy(np.ascontiguousarray(output))[None]), sources)
    return values[0].numpy(), weights.numpy().astype(bool)


def test_transform_list_rule():
    assert tta_counts(3) == (1, 2, 4, 8, 16) and tta_counts(2) == (1, 2, 4, 8)
    assert tta_counts(3, (40, 4, 4)) == (1, 2, 4, 8, 16) and tta_counts(3, (4, 4, 8)) == (1, 2, 4, 8)
    flips = [t.flips for t in tta_transforms(8, 3)]
    assert flips == [(), (2,), (1,), (1, 2), (0,), (0, 2), (0, 1), (0, 1, 2)]
    assert not any(t.transpose for t in tta_transforms(8, 3)) and all(t.transpose for t in tta_transforms(16, 3)[8:])
    assert len({(t.flips, t.transpose) for t in tta_transforms(8, 2)}) == 8  # all eight rotations/reflections
    with pytest.raises(InputError, match="equal y and x voxel sizes"):
        tta_transforms(16, 3, (40, 4, 8))
    with pytest.raises(InputError, match="not 3"):
        tta_transforms(3, 3)


@pytest.fixture(params=["synthetic", "em3d-fibsem"])
def labels(request) -> np.ndarray:
    """Synthetic cells, and a crop of the real em3d-fibsem ground truth (skipped without the data)."""
    if request.param == "synthetic":
        return labels_3d()
    from segtrain.io import read_volume

    em3d_dir = request.getfixturevalue("em3d_dir")
    return np.asarray(read_volume(em3d_dir / "train-gt.lzf.h5").data)[:12, :40, :48].astype(np.int64)


def test_flipped_affinities_map_back_onto_the_right_voxel(labels):
    expected, _ = affinities(labels, OFFSETS_3D)
    for transform in tta_transforms(16, 3):
        affs_t, _ = affinities(transformed(labels, transform), OFFSETS_3D)
        sources = affinity_sources(transform, OFFSETS_3D)
        assert len(sources) == len(OFFSETS_3D)  # every offset has its image (or its mirror) among them
        back, filled = mapped_back(affs_t, transform, sources)
        np.testing.assert_array_equal(back[filled], expected[filled])
        for c, o in enumerate(OFFSETS_3D):
            # a channel misses at most the voxels whose partner v + o lies outside the array
            inside = np.prod([s - abs(v) for s, v in zip(labels.shape, o)])
            assert filled[c].all() or filled[c].sum() == inside
        if transform.flips == (2,) and not transform.transpose:
            # the x-nearest-neighbour channel of the x-flipped input is the "+1 neighbour": shifted by one
            raw_back = transform.invert(torch.from_numpy(affs_t)[None])[0].numpy()
            np.testing.assert_array_equal(back[2, :, :, 1:], raw_back[2, :, :, :-1])
            assert not filled[2, :, :, 0].any() and filled[2, :, :, 1:].all()


@pytest.mark.parametrize("ndim", [2, 3])
def test_lsds_of_transformed_labels_map_back_to_the_lsds_of_the_labels(ndim):
    labels = labels_3d((8, 32, 32)) if ndim == 3 else labels_3d((1, 48, 48))[0]
    expected = local_shape_descriptors(labels, sigma=3.0)
    inside = np.broadcast_to(labels > 0, expected.shape)
    for transform in tta_transforms(2 ** (ndim + 1), ndim):
        lsds_t = local_shape_descriptors(transformed(labels, transform), sigma=3.0)
        back, filled = mapped_back(lsds_t, transform, lsd_sources(transform))
        assert filled.all()
        np.testing.assert_allclose(back[inside], expected[inside], atol=1e-4)


class LabelsToTargets(torch.nn.Module):
    """A toy model, exactly equivariant: its input is a label volume, its outputs the affinities and
    LSDs of those labels (computed per tile), or a pointwise function of the input (probabilities)."""

    def __init__(self, config, offsets=None, lsd_sigma=None):
        super().__init__()
        self.offsets, self.lsd_sigma = offsets, lsd_sigma
        self.heads = ([HeadSpec("affinities", len(offsets), "sigmoid")] if offsets else []) + (
            [HeadSpec("lsds", 10 if config.ndim == 3 else 6, "sigmoid")] if lsd_sigma else [])
        if not self.heads:
            self.heads = [HeadSpec("probabilities", 2, "sigmoid")]
        self.unused = torch.nn.Parameter(torch.zeros(()))  # where inference puts the inputs

    def forward(self, x):
        if self.heads[0].name == "probabilities":
            return {"probabilities": torch.cat([torch.sigmoid(x - 0.5), x**2], 1)}
        labels = [sample[0].cpu().numpy().astype(np.int64) for sample in x]
        out = {}
        if self.offsets:
            out["affinities"] = np.stack([affinities(lab, self.offsets)[0] for lab in labels])
        if self.lsd_sigma:
            out["lsds"] = np.stack([local_shape_descriptors(lab, self.lsd_sigma) for lab in labels])
        return {k: torch.from_numpy(v).to(x.device) for k, v in out.items()}

    def activate(self, out):
        return out


def toy(task="affinities", patch_shape=(8, 16, 16), **model):
    preset = "em3d_quick" if len(patch_shape) == 3 else "wells2d_quick"
    values = {"preset": preset, "data": {"patch_shape": list(patch_shape), "normalize": "none"},
              "model": {"task": task, **({"encoder_depth": 3} if len(patch_shape) == 2 else {})}}
    if task == "affinities":
        values["model"]["offsets"] = [list(o) for o in model["offsets"]]
    config = config_from_dict(values)
    return LoadedModel(LabelsToTargets(config, **model).eval(), config, Path("<toy>"), 0)


def test_tta_of_an_equivariant_toy_model_equals_the_plain_prediction_tiled_and_into_zarr(tmp_path):
    import zarr

    labels = labels_3d((12, 40, 40))
    loaded = toy(offsets=OFFSETS_3D, lsd_sigma=2.0)
    tiles = {"tile_shape": [12, 24, 24], "margin": [0, 4, 4]}  # 4 tiles; margins cover offsets up to 3
    plain = predict_array(loaded, labels, **tiles)
    averaged = predict_array(loaded, labels, tta=16, **tiles)
    expected, _ = affinities(labels, OFFSETS_3D)
    np.testing.assert_array_equal(plain["affinities"], expected)
    np.testing.assert_allclose(averaged["affinities"], expected, atol=1e-6)
    inside = np.broadcast_to(labels > 0, plain["lsds"].shape)
    np.testing.assert_allclose(averaged["lsds"][inside], plain["lsds"][inside], atol=1e-4)
    out = predict_to_zarr(loaded, labels, tmp_path / "tta.zarr", tta=8, **tiles)
    np.testing.assert_allclose(zarr.open_group(str(out), mode="r")["affinities"][:], expected, atol=1e-6)


def test_probabilities_of_a_stack_of_2d_images_transform_back():
    loaded = toy("instances", patch_shape=(32, 32))
    images = np.random.default_rng(0).random((2, 30, 44)).astype(np.float32)
    plain = predict_array(loaded, images, tile_shape=[32, 32], margin=[8, 8])
    for n in (2, 4, 8):
        averaged = predict_array(loaded, images, tile_shape=[32, 32], margin=[8, 8], tta=n)
        np.testing.assert_allclose(averaged["probabilities"], plain["probabilities"], atol=1e-6)


def test_a_default_from_the_config_and_clear_errors():
    loaded = toy(offsets=OFFSETS_3D[:3])
    labels = labels_3d((8, 16, 16))
    loaded.config.predict.tta = 4
    assert np.array_equal(predict_array(loaded, labels)["affinities"], affinities(labels)[0])
    with pytest.raises(InputError, match="equal y and x voxel sizes"):
        predict_array(loaded, labels, voxel_size=(8.0, 4.0, 5.0), tta=16)
    with pytest.raises(ConfigError, match=r"predict.tta must be one of 1, 2, 4, 8, 16 .* not 3"):
        config_from_dict({"preset": "em3d_quick", "predict": {"tta": 3}})
    with pytest.raises(ConfigError, match=r"one of 1, 2, 4, 8 \("):
        config_from_dict({"preset": "em3d_quick", "data": {"voxel_size": [8, 4, 5]}, "predict": {"tta": 16}})
    assert config_from_dict({"preset": "isbi2d_quick", "predict": {"tta": 8}}).predict.tta == 8


def test_cli_predict_tta(tmp_path, capsys):
    import zarr

    from segtrain.cli import main
    from segtrain.io import Volume, write_volume
    from segtrain.models import build_model

    torch.manual_seed(0)
    config = config_from_dict({"preset": "em3d_quick", "data": {"patch_shape": [8, 16, 16]},
                               "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0}})
    model = build_model(config)
    checkpoint = tmp_path / "random.ckpt"
    torch.save({"hyper_parameters": {"config": config.to_dict()}, "global_step": 0,
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    raw = make_em_volume((8, 24, 24), n_cells=4, seed=1)[0]
    write_volume(tmp_path / "raw.tif", Volume(data=raw, voxel_size=(1.0, 1.0, 1.0), axes=("z", "y", "x")))
    args = ["predict", "--run", str(checkpoint), str(tmp_path / "raw.tif")]
    assert main([*args, str(tmp_path / "plain.zarr")]) == 0
    assert main([*args, str(tmp_path / "tta.zarr"), "--tta", "16"]) == 0
    plain, averaged = (zarr.open_group(str(tmp_path / f"{n}.zarr"), mode="r") for n in ("plain", "tta"))
    assert averaged["lsds"].shape == plain["lsds"].shape == (10, 8, 24, 24)
    expected = predict_array(load_model(checkpoint), raw, tta=16)  # same device and precision as the CLI
    np.testing.assert_allclose(averaged["affinities"][:], expected["affinities"], atol=1e-5)
    assert not np.allclose(averaged["affinities"][:], plain["affinities"][:])
    capsys.readouterr()
    assert main([*args, str(tmp_path / "bad.zarr"), "--tta", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "TTA needs one of 1, 2, 4, 8, 16 transforms" in err
    assert not (tmp_path / "bad.zarr").exists()


def test_test_time_augmentation_of_one_transform_is_the_model_itself():
    x = torch.rand(1, 1, 4, 6, 6)
    tta = TestTimeAugmentation(tta_transforms(1, 3))
    assert tta(lambda b: {"probabilities": b * 2}, x)["probabilities"].equal(x * 2)
