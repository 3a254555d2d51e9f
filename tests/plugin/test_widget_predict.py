"""Predict panel, driven by clicks: a checkpoint file, test-time augmentation ticked, layers half
transparent over the image and carrying what the model recorded."""

from __future__ import annotations

import numpy as np
import torch

from segtrain.config import config_from_dict
from segtrain.plugin import layers as L
from segtrain.plugin.widgets.predict import PredictWidget


def _random_checkpoint(path):
    from segtrain.models import build_model

    torch.manual_seed(0)
    config = config_from_dict({"preset": "em3d_quick", "data": {"patch_shape": [8, 16, 16]},
                               "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0}})
    model = build_model(config)
    torch.save({"hyper_parameters": {"config": config.to_dict()}, "global_step": 7,
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def test_predict_with_test_time_augmentation(docked, gui, tmp_path, warning_messages):
    from segtrain.predict import load_model, predict_array
    from segtrain.synthetic import make_em_volume

    checkpoint = _random_checkpoint(tmp_path / "random.ckpt")
    viewer, dock = docked
    raw = make_em_volume((8, 24, 24), n_cells=4, seed=1)[0]
    viewer.add_image(raw, name="raw")
    predict = PredictWidget(viewer)
    dock(predict)
    gui.type(predict.checkpoint_edit, str(checkpoint))
    gui.wait_until(lambda: predict.which_combo.count() == 1, timeout=30, what="the checkpoint")
    gui.click(predict.tta_check)
    gui.click(predict.predict_button)
    gui.wait_until(lambda: predict.worker is None, timeout=120, what="the prediction")
    assert predict.model_label.text() == "model: random.ckpt (step 7), test-time augmentation x16"
    assert "trained for only 7 steps" in warning_messages()[-1]
    layer = predict.result_layers["affinities"]
    info = L.layer_info(layer)
    expected = predict_array(load_model(checkpoint), raw, tta=16)["affinities"]
    np.testing.assert_allclose(info.array, expected, atol=1e-5)
    assert info.task == "affinities" and info.checkpoint == str(checkpoint) and info.settings is not None
    assert layer.blending == "translucent" and layer.opacity == L.PREDICTION_OPACITY
    assert not predict.result_layers["lsds"].visible and viewer.layers["raw"].visible


def test_uncertainty_checkbox_turns_on_tta_and_adds_the_uncertainty_layer(docked, gui, tmp_path):
    from segtrain.predict import load_model, predict_array
    from segtrain.synthetic import make_em_volume

    checkpoint = _random_checkpoint(tmp_path / "random.ckpt")
    viewer, dock = docked
    raw = make_em_volume((8, 24, 24), n_cells=4, seed=1)[0]
    viewer.add_image(raw, name="raw", scale=(2.0, 1.0, 1.0))
    predict = PredictWidget(viewer)
    dock(predict)
    gui.type(predict.checkpoint_edit, str(checkpoint))
    gui.wait_until(lambda: predict.which_combo.count() == 1, timeout=30, what="the checkpoint")
    assert not predict.tta_check.isChecked()
    gui.click(predict.uncertainty_check)
    assert predict.uncertainty_check.isChecked() and predict.tta_check.isChecked()  # uncertainty needs TTA
    gui.click(predict.tta_check)  # TTA off: no uncertainty either
    assert not predict.uncertainty_check.isChecked() and not predict.tta_check.isChecked()
    gui.click(predict.uncertainty_check)
    gui.click(predict.predict_button)
    gui.wait_until(lambda: predict.worker is None, timeout=120, what="the prediction")
    layer = predict.result_layers["uncertainty"]
    assert layer is viewer.layers["raw uncertainty"]
    info = L.layer_info(layer)
    assert info.kind == "uncertainty" and info.checkpoint == str(checkpoint) and info.source == "raw"
    expected = predict_array(load_model(checkpoint), raw, voxel_size=(2.0, 1.0, 1.0), tta=16,
                             uncertainty=True)["uncertainty"][0]
    np.testing.assert_allclose(layer.data, expected, atol=1e-5)
    assert layer.data.max() > 0
    assert layer.colormap.name == "magma" and layer.blending == "additive" and not layer.visible
    assert tuple(layer.scale) == (2.0, 1.0, 1.0)
    assert viewer.layers.selection.active is predict.result_layers["affinities"]
    assert predict.model_label.text().endswith("test-time augmentation x16")
    # predicting again without uncertainty leaves no stale uncertainty of the previous prediction
    gui.click(predict.tta_check)
    gui.click(predict.predict_button)
    gui.wait_until(lambda: predict.worker is None, timeout=120, what="the prediction")
    assert "uncertainty" not in predict.result_layers and "raw uncertainty" not in viewer.layers


def test_match_object_size_zooms_a_tuned_cells_model_and_unticking_it_predicts_plainly(docked, gui, tmp_path):
    """A 2D instance model whose tuning recorded an object size far larger than the image's objects:
    unticked (the default: matching lowered F1 on real new dishes) the plain prediction; ticked, the
    image is predicted zoomed (the most the matching allows, 4x) and the layer holds exactly what the
    core's size-matched prediction gives; unticked again, the plain one."""
    from segtrain.plugin._compat import avoid_triton_llvm_clash

    avoid_triton_llvm_clash()  # the viewer's OpenGL is up: smp's import must not load triton here either
    from segtrain.models import build_model
    from segtrain.predict import load_model, predict_array
    from segtrain.predict.infer import predict_matched

    torch.manual_seed(0)
    config = config_from_dict({"preset": "wells2d_quick", "data": {"patch_shape": [32, 32]},
                               "model": {"encoder_depth": 3},
                               "segment": {"object_size": 1e6, "seed_min_size": 0, "min_size": 0},
                               "predict": {"tile_shape": None, "margin": None}})
    model = build_model(config)
    checkpoint = tmp_path / "cells.ckpt"
    torch.save({"hyper_parameters": {"config": config.to_dict()}, "global_step": 9,
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    raw = np.random.default_rng(2).random((48, 40)).astype(np.float32)
    viewer, dock = docked
    viewer.add_image(raw, name="cells")
    predict = PredictWidget(viewer)
    dock(predict)
    gui.type(predict.checkpoint_edit, str(checkpoint))
    gui.wait_until(lambda: predict.which_combo.count() == 1, timeout=30, what="the checkpoint")
    assert not predict.match_check.isChecked()
    gui.click(predict.predict_button)
    gui.wait_until(lambda: predict.worker is None, timeout=120, what="the prediction")
    loaded = load_model(checkpoint)
    plain = predict_array(loaded, raw, match_size=False)["probabilities"]
    np.testing.assert_allclose(L.layer_info(predict.result_layers["probabilities"]).array, plain, atol=1e-5)
    assert "objects matched" not in predict.model_label.text()
    gui.click(predict.match_check)
    gui.click(predict.predict_button)
    gui.wait_until(lambda: predict.worker is None, timeout=120, what="the prediction")
    expected, factors = predict_matched(loaded, raw, match_size=True)
    assert factors == [4.0]
    assert predict.model_label.text().endswith("objects matched to the model's size (image zoomed 4.00x)")
    shown = L.layer_info(predict.result_layers["probabilities"]).array
    np.testing.assert_allclose(shown, expected["probabilities"], atol=1e-5)
    gui.click(predict.match_check)
    gui.click(predict.predict_button)
    gui.wait_until(lambda: predict.worker is None, timeout=120, what="the prediction")
    plain = predict_array(loaded, raw, match_size=False)["probabilities"]
    shown = L.layer_info(predict.result_layers["probabilities"]).array
    np.testing.assert_allclose(shown, plain, atol=1e-5)
    assert not np.allclose(plain, expected["probabilities"], atol=1e-3)
    assert "objects matched" not in predict.model_label.text()


def test_a_library_warning_during_predict_is_logged_not_notified(docked, gui, tmp_path, warning_messages, caplog,
                                                                 monkeypatch):
    """napari relays every warning a worker raises as a notification; a library's note (here a
    deprecation raised inside the prediction, as PyTorch or a reader does) goes to the log instead."""
    import logging
    import warnings

    from segtrain.predict import infer
    from segtrain.synthetic import make_em_volume

    prepare = infer._prepare

    def prepare_and_warn(*args, **kwargs):  # a library deprecation raised inside the real prediction
        warnings.warn("torch.some_function is deprecated (a library's note)", DeprecationWarning, stacklevel=1)
        return prepare(*args, **kwargs)

    monkeypatch.setattr(infer, "_prepare", prepare_and_warn)
    checkpoint = _random_checkpoint(tmp_path / "random.ckpt")
    viewer, dock = docked
    viewer.add_image(make_em_volume((8, 24, 24), n_cells=4, seed=1)[0], name="raw")
    predict = PredictWidget(viewer)
    dock(predict)
    gui.type(predict.checkpoint_edit, str(checkpoint))
    gui.wait_until(lambda: predict.which_combo.count() == 1, timeout=30, what="the checkpoint")
    with caplog.at_level(logging.INFO, logger="segtrain.library"):
        gui.click(predict.predict_button)
        gui.wait_until(lambda: predict.worker is None, timeout=120, what="the prediction")
        gui.process()
    assert "raw affinities" in viewer.layers
    assert not [m for m in warning_messages() if "deprecated" in m], warning_messages()
    assert any("torch.some_function is deprecated" in r.getMessage() for r in caplog.records), caplog.records
