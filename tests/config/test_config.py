"""Typed config: presets, YAML round trip, one-sentence errors."""

from __future__ import annotations

import pytest

from segtrain.config import PRESETS, Config, config_from_dict, load_config, preset, save_config
from segtrain.errors import ConfigError


@pytest.mark.parametrize("name", ["em3d", "em3d_quick", "wells2d", "wells2d_quick"])
def test_presets_round_trip_through_yaml(tmp_path, name):
    config = preset(name)
    assert isinstance(config, Config) and config.preset == name
    path = save_config(config, tmp_path / "config.yaml")
    assert load_config(path) == config


def test_presets_have_the_promised_models():
    em = preset("em3d")
    assert em.task == "affinities" and em.model.architecture == "unet3d" and em.model.lsds
    wells = preset("wells2d")
    assert wells.model.architecture == "smp" and wells.model.encoder == "resnet18"
    assert wells.model.encoder_weights is None
    assert set(PRESETS) >= {"em3d", "em3d_quick", "wells2d", "wells2d_quick"}


def test_override_of_a_preset_keeps_other_settings():
    config = config_from_dict({"preset": "em3d_quick", "train": {"max_steps": 7}})
    assert config.train.max_steps == 7
    assert config.model.num_fmaps == preset("em3d_quick").model.num_fmaps


@pytest.mark.parametrize(
    "values, words",
    [
        ({"train": {"max_step": 3}}, ["Unknown setting train.max_step", "max_steps"]),
        ({"trian": {}}, ["Unknown setting trian", "train"]),
        ({"train": {"lr": "fast"}}, ["train.lr must be a number"]),
        ({"train": {"batch_size": 1.5}}, ["train.batch_size must be an integer"]),
        ({"train": {"batch_size": 0}}, ["train.batch_size must be positive"]),
        ({"model": {"task": "magic"}}, ["model.task must be one of"]),
        ({"preset": "em3d", "data": {"patch_shape": [16, 60, 64]}}, ["divisible"]),
        ({"preset": "wells2d", "model": {"architecture": "unet3d"}}, ["3D"]),
        ({"preset": "nope"}, ["Unknown preset 'nope'", "em3d_quick"]),
        ({"preset": "em3d", "train": {"loss": "bce"}}, ["does not fit task affinities"]),
        ({"preset": "em3d", "train": {"monitor": "accuracy"}}, ["Unknown train.monitor"]),
    ],
)
def test_bad_configs_give_one_sentence(values, words):
    with pytest.raises(ConfigError) as info:
        config_from_dict(values)
    message = str(info.value)
    assert message.count("\n") == 0 and message.endswith(".")
    for word in words:
        assert word in message


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_relative_data_paths_resolve_against_the_config_folder(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: em3d_quick\ndata:\n  train:\n    - raw: img.h5\n      labels: gt.h5\n")
    config = load_config(path)
    assert config.data.train[0].raw == str(tmp_path / "img.h5")
