"""Model builders: heads by task, any input size, smp without downloads."""

from __future__ import annotations

import pytest
import torch

from segtrain.config import config_from_dict
from segtrain.errors import ConfigError
from segtrain.models import UNet, build_model, head_specs


def tiny3d(**model):
    return config_from_dict({"preset": "em3d_quick", "data": {"patch_shape": [8, 16, 16]},
                             "model": {"num_fmaps": 2, "fmap_inc_factor": 2, **model}})


def test_mtlsd_unet_heads_and_odd_shapes():
    model = build_model(tiny3d())
    out = model(torch.rand(2, 1, 9, 17, 21))
    assert out["affinities"].shape == (2, 3, 9, 17, 21)
    assert out["lsds"].shape == (2, 10, 9, 17, 21)
    probs = model.activate(out)
    assert 0 <= float(probs["lsds"].min()) and float(probs["lsds"].max()) <= 1


def test_anisotropic_levels_convolve_in_plane():
    net = UNet(1, 2, 2, [[1, 2, 2], [1, 2, 2], [2, 2, 2]])
    assert net.down[0][0].kernel_size == (1, 3, 3)
    assert net.down[3][0].kernel_size == (3, 3, 3)
    assert net(torch.rand(1, 1, 4, 16, 16)).shape == (1, 2, 4, 16, 16)


@pytest.mark.parametrize("task, channels", [("masks", 1), ("instances", 2), ("classes", 3)])
def test_smp_heads(task, channels):
    config = config_from_dict({"preset": "wells2d_quick", "data": {"patch_shape": [64, 64]},
                               "model": {"task": task, "n_classes": 3, "encoder_depth": 3}})
    assert [h.channels for h in head_specs(config)] == [channels]
    out = build_model(config)(torch.rand(1, 1, 50, 70))
    assert out["probabilities"].shape == (1, channels, 50, 70)


def test_smp_affinities_and_lsds_2d():
    config = config_from_dict({"preset": "isbi2d_quick", "data": {"patch_shape": [64, 64]},
                               "model": {"encoder_depth": 3}})
    out = build_model(config)(torch.rand(1, 1, 64, 64))
    assert out["affinities"].shape[1] == 2 and out["lsds"].shape[1] == 6


def test_encoder_weights_that_need_a_download_or_a_missing_file(tmp_path, monkeypatch):
    import segmentation_models_pytorch as smp

    def no_internet(*args, **kwargs):
        if kwargs.get("encoder_weights"):
            raise OSError("network unreachable")
        return real(*args, **kwargs)

    real = smp.create_model
    monkeypatch.setattr(smp, "create_model", no_internet)
    config = config_from_dict({"preset": "wells2d_quick", "model": {"encoder_weights": "imagenet"}})
    with pytest.raises(ConfigError, match="downloaded"):
        build_model(config)
    config.model.encoder_weights = str(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="does not exist"):
        build_model(config)


def test_local_encoder_weights_are_loaded(tmp_path):
    config = config_from_dict({"preset": "wells2d_quick", "model": {"encoder_depth": 3},
                               "data": {"patch_shape": [64, 64]}})
    source = build_model(config)
    path = tmp_path / "encoder.pth"
    torch.save(source.backbone.encoder.state_dict(), path)
    config.model.encoder_weights = str(path)
    model = build_model(config)
    a = next(iter(source.backbone.encoder.state_dict().values()))
    b = next(iter(model.backbone.encoder.state_dict().values()))
    assert torch.equal(a, b)
