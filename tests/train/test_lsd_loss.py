"""An affinities model trained with LSDs (model.lsds) has an LSD loss, weighted by train.lsd_weight,
that follows its LSD output; without LSDs the loss is the affinities' alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segtrain.config import config_from_dict
from segtrain.models import build_model
from segtrain.train.losses import task_loss
from segtrain.train.sources import Sample
from segtrain.train.targets import targets_for


def _loss(lsds: bool, shift: float = 0.0):
    config = config_from_dict({"preset": "isbi2d_quick", "data": {"patch_shape": [32, 32]},
                               "model": {"task": "affinities", "lsds": lsds}})
    labels = np.zeros((32, 32), np.int64)
    labels[4:16, 4:20], labels[18:30, 6:28] = 1, 2
    sample = Sample(np.random.default_rng(0).random((1, 32, 32), dtype=np.float32), labels,
                    np.ones((32, 32), bool))
    batch = {k: torch.from_numpy(np.ascontiguousarray(v))[None] for k, v in targets_for(sample, config).items()}
    torch.manual_seed(0)
    with torch.no_grad():
        outputs = build_model(config).eval()(batch["raw"])
    if "lsds" in outputs:
        outputs["lsds"] = outputs["lsds"] + shift
    return task_loss(outputs, batch, config), config


def test_the_lsd_loss_is_there_with_lsds_and_follows_their_output():
    (total, parts), config = _loss(lsds=True)
    assert set(parts) == {"affinities", "lsds"} and parts["lsds"] > 0
    assert float(total) == pytest.approx(parts["affinities"] + parts["lsds"], rel=1e-5)
    (_, shifted), _ = _loss(lsds=True, shift=3.0)
    assert shifted["lsds"] != pytest.approx(parts["lsds"]) and shifted["affinities"] == pytest.approx(parts["affinities"])


def test_without_lsds_the_loss_is_the_affinities_alone():
    (total, parts), _ = _loss(lsds=False)
    assert set(parts) == {"affinities"} and float(total) == pytest.approx(parts["affinities"], rel=1e-5)
