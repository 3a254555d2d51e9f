"""A run with model.ensemble 2, as a user makes it: trained, validated on the members' mean,
loaded from its checkpoint, exported as a BioImage.IO package that predicts as the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segtrain.cli import main
from segtrain.models.build import Ensemble
from segtrain.postprocess import OutputSpec, validation_scores
from segtrain.predict import load_model, predict_array
from segtrain.predict.model_io import open_model
from segtrain.train import ArraySource, TrainingRun


def test_an_ensemble_run_trains_each_member_and_travels_as_one_model(tmp_path, em_crop, tiny_config):
    raw, gt, vraw, vgt = em_crop
    config = tiny_config(max_steps=6, val_every=3)
    config.model.ensemble = 2
    run = TrainingRun(config, [ArraySource(raw, gt)], [ArraySource(vraw, vgt)], runs_root=tmp_path)
    run.run()

    loaded = load_model(run.run_dir / "checkpoints" / "final.ckpt")
    assert loaded.config.model.ensemble == 2 and isinstance(loaded.model.backbone, Ensemble)
    first, second = (dict(m.named_parameters()) for m in loaded.model.backbone.members)
    assert any(not torch.equal(first[k], second[k]) for k in first)  # two initialisations, two networks
    # the run validated the ensemble it saved: its checkpoint re-scores the VOI recorded at step 6
    history = json.loads((run.run_dir / "metrics.json").read_text())["history"]
    scores = validation_scores(predict_array(loaded, vraw), vgt, loaded.config.segment, OutputSpec.of(loaded.config))
    assert scores["voi"] == pytest.approx(history[-1]["val/voi"], abs=1e-6)

    # a package of the run (bioimageio.core's test passes in export-model) predicts as the run
    from segtrain.io import Volume, write_volume

    image = write_volume(tmp_path / "image.zarr", Volume(data=vraw, voxel_size=(1.0,) * 3, offset=(0.0,) * 3,
                                                       axes=("z", "y", "x"), name="raw"))
    package = tmp_path / "ensemble.zip"
    assert main(["export-model", str(run.run_dir), str(package), "--test-image", str(image)]) == 0
    from_package = open_model(package, device="cpu")
    assert isinstance(from_package.model.backbone, Ensemble)
    expected, got = predict_array(loaded, vraw), predict_array(from_package, vraw)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5)
