"""Size matching: an image whose objects are smaller or larger than the model's is predicted zoomed
so they match (a first pass measures them), outputs come back on the image's grid, and the size
settings of the instance cut follow the objects; images at the model's size are not touched."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from segtrain.config import config_from_dict
from segtrain.models.build import HeadSpec
from segtrain.postprocess import OutputSpec, instances
from segtrain.postprocess.masks import object_size_of
from segtrain.predict import LoadedModel, predict_array, predict_to_zarr
from segtrain.predict.infer import predict_matched
from segtrain.predict.match_size import matching_applies


def discs(shape=(96, 128), radius=4.0, spacing=16) -> np.ndarray:
    """Instance labels: separate discs on a grid."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int64)
    n = 0
    for cy in range(spacing // 2, shape[0] - spacing // 4, spacing):
        for cx in range(spacing // 2, shape[1] - spacing // 4, spacing):
            n += 1
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = n
    return labels


class ForegroundIsTheImage(torch.nn.Module):
    """A 2D instance model that sees objects perfectly at any scale: foreground = the image,
    boundary = 0 (so its instances are the image's connected bright regions)."""

    heads = [HeadSpec("probabilities", 2, "sigmoid")]

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return {"probabilities": torch.cat([x.clamp(0, 1), torch.zeros_like(x)], 1)}

    def activate(self, out):
        return out


def model(object_size=None, min_size=0, seed_min_size=0, match=True) -> LoadedModel:
    config = config_from_dict({
        "preset": "wells2d_quick", "data": {"patch_shape": [32, 32], "normalize": "none"},
        "model": {"encoder_depth": 3},
        "segment": {"object_size": object_size, "min_size": min_size, "seed_min_size": seed_min_size,
                    "probability_threshold": 0.5, "seed_boundary_max": 0.5},
        "predict": {"match_object_size": match, "tile_shape": None, "margin": None}})
    return LoadedModel(ForegroundIsTheImage().eval(), config, Path("<toy>"), 0)


def test_small_objects_are_zoomed_to_the_models_size_and_come_back_on_the_images_grid():
    labels = discs(radius=4.0)
    image = (labels > 0).astype(np.float32)
    small = object_size_of(labels)
    loaded = model(object_size=4 * small)  # the model's objects are twice as wide
    outputs, factors = predict_matched(loaded, image)
    assert len(factors) == 1 and abs(factors[0] - 2.0) < 0.2
    assert outputs["probabilities"].shape == (2, *image.shape)
    cut = instances(outputs["probabilities"], loaded.config.segment, OutputSpec.of(loaded.config))
    assert cut.max() == labels.max()  # every disc, one object each
    # the zoomed-back foreground is the image's own (up to interpolation at the rims)
    assert np.mean((outputs["probabilities"][0] > 0.5) == (image > 0.5)) > 0.97


def test_objects_at_the_models_size_are_not_zoomed_and_predict_exactly_as_before():
    labels = discs(radius=4.0)
    image = (labels > 0).astype(np.float32)
    loaded = model(object_size=object_size_of(labels) * 1.1)  # within the tolerance
    outputs, factors = predict_matched(loaded, image)
    assert factors == [1.0]
    np.testing.assert_array_equal(outputs["probabilities"], predict_array(loaded, image, match_size=False)["probabilities"])
    # off by the config, by the argument, for models without a known size, and for affinity models
    assert not matching_applies(model(object_size=10.0, match=False).config)
    assert not matching_applies(model(object_size=10.0).config, match=False)
    assert not matching_applies(model(object_size=None).config)
    assert not matching_applies(config_from_dict({"preset": "em3d_quick", "segment": {"object_size": 10}}))


def test_each_image_of_a_stack_is_matched_on_its_own():
    big, small = discs(radius=8.0, spacing=32), discs(radius=4.0)
    stack = np.stack([(big > 0), (small > 0)]).astype(np.float32)
    loaded = model(object_size=object_size_of(big))
    outputs, factors = predict_matched(loaded, stack)
    assert factors[0] == 1.0 and abs(factors[1] - 2.0) < 0.2
    assert outputs["probabilities"].shape == (2, 2, *big.shape)


def test_size_settings_follow_the_objects_of_the_image():
    labels = discs(radius=4.0)  # about 50 pixels each
    probabilities = np.stack([(labels > 0), np.zeros(labels.shape, bool)]).astype(np.float32)
    spec = OutputSpec("instances", 2)
    tuned = model(object_size=4 * object_size_of(labels), min_size=120).config.segment  # tuned on 4x larger objects
    assert instances(probabilities, dataclasses.replace(tuned, object_size=None), spec).max() == 0  # all too small
    assert instances(probabilities, tuned, spec).max() == labels.max()  # min_size scaled to these objects
    at_size = dataclasses.replace(tuned, object_size=object_size_of(labels), min_size=30)
    np.testing.assert_array_equal(instances(probabilities, at_size, spec),
                                  instances(probabilities, dataclasses.replace(at_size, object_size=None), spec))


def test_a_matched_prediction_into_zarr_records_its_zoom(tmp_path):
    import zarr

    labels = discs(radius=4.0)
    image = (labels > 0).astype(np.float32)
    loaded = model(object_size=4 * object_size_of(labels))
    out = zarr.open_group(str(predict_to_zarr(loaded, image, tmp_path / "p.zarr")), mode="r")
    assert out["probabilities"].shape == (2, *image.shape)
    assert abs(out.attrs["object_scale"][0] - 2.0) < 0.2
    np.testing.assert_allclose(out["probabilities"][:], predict_array(loaded, image)["probabilities"])


def test_tuning_records_the_models_object_size():
    from segtrain.postprocess.tune import tune_postprocessing

    labels = discs(radius=5.0)
    probabilities = np.stack([(labels > 0), np.zeros(labels.shape, bool)]).astype(np.float32)
    settings = model(object_size=999.0).config.segment  # an older size is measured afresh
    result = tune_postprocessing([probabilities], [labels], settings, OutputSpec("instances", 2))
    assert result.settings["object_size"] == pytest.approx(object_size_of(labels))
    assert result.apply(settings).object_size == pytest.approx(object_size_of(labels))


def test_cli_predict_matches_sizes_only_when_asked(tmp_path, capsys):
    import zarr

    from segtrain.cli import main
    from segtrain.io import Volume, write_volume
    from segtrain.models import build_model

    torch.manual_seed(0)
    config = config_from_dict({"preset": "wells2d_quick", "data": {"patch_shape": [32, 32]},
                               "model": {"encoder_depth": 3},
                               "segment": {"object_size": 1e6, "seed_min_size": 0, "min_size": 0},
                               "predict": {"tile_shape": None, "margin": None}})
    checkpoint = tmp_path / "cells.ckpt"
    torch.save({"hyper_parameters": {"config": config.to_dict()}, "global_step": 3,
                "state_dict": {f"model.{k}": v for k, v in build_model(config).state_dict().items()}}, checkpoint)
    raw = np.random.default_rng(2).random((48, 40)).astype(np.float32)
    write_volume(tmp_path / "raw.tif", Volume(data=raw, voxel_size=(1.0, 1.0), axes=("y", "x")))
    args = ["predict", "--run", str(checkpoint), str(tmp_path / "raw.tif")]
    assert main([*args, str(tmp_path / "matched.zarr"), "--match-size"]) == 0
    assert "objects matched to the model's size: image zoomed 4.00x" in capsys.readouterr().out
    assert main([*args, str(tmp_path / "plain.zarr")]) == 0  # off by default: it lowered F1 on real new dishes
    assert "objects matched" not in capsys.readouterr().out
    assert main([*args, str(tmp_path / "plain2.zarr"), "--no-match-size"]) == 0
    assert "objects matched" not in capsys.readouterr().out
    matched, plain = (zarr.open_group(str(tmp_path / f"{n}.zarr"), mode="r") for n in ("matched", "plain"))
    assert matched.attrs["object_scale"] == [4.0] and "object_scale" not in plain.attrs
    assert matched["probabilities"].shape == plain["probabilities"].shape == (2, 48, 40)
    assert not np.allclose(matched["probabilities"][:], plain["probabilities"][:], atol=1e-3)
