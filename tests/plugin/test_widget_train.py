"""TrainWidget: the config form, YAML round trip, and bad actions that must notify."""

from __future__ import annotations

import numpy as np

from segtrain.plugin.widgets.data import DataWidget
from segtrain.plugin.widgets.train import TrainWidget


def test_train_without_image_notifies(make_napari_viewer, qtbot, error_messages):
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    qtbot.addWidget(widget)
    widget.start()
    assert widget.run is None and not widget.is_running()
    assert "No image layer" in widget.status.text()
    assert any("No image layer" in m for m in error_messages())


def test_train_with_labels_of_other_shape_notifies(make_napari_viewer, qtbot, error_messages):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 32, 32), np.uint8), name="raw")
    viewer.add_labels(np.ones((8, 16, 16), np.uint32), name="gt")
    data = DataWidget(viewer)
    qtbot.addWidget(data)
    data.gt_combo.set_layer("gt")
    widget = TrainWidget(viewer)
    qtbot.addWidget(widget)
    widget.start()
    assert widget.run is None
    assert "shape" in widget.status.text()
    assert any("has shape (8, 16, 16)" in m for m in error_messages())


def test_config_form_yaml_round_trip(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    qtbot.addWidget(widget)
    widget.preset_combo.setCurrentText("em3d_quick")
    widget.steps_spin.setValue(123)
    widget.lr_spin.setValue(0.0005)
    widget.patch_edit.setText("16, 64, 64")
    widget.save_yaml(tmp_path / "c.yaml")
    widget.preset_combo.setCurrentText("wells2d_quick")
    assert widget.steps_spin.value() != 123
    widget.load_yaml(tmp_path / "c.yaml")
    config = widget.current_config()
    assert config.train.max_steps == 123 and config.data.patch_shape == [16, 64, 64]
    assert abs(config.train.lr - 0.0005) < 1e-9
    widget.patch_edit.setText("sixteen")
    widget.save_yaml(tmp_path / "bad.yaml")
    assert "not a list of numbers" in widget.status.text()


def _well_viewer(make_napari_viewer, qtbot, tmp_path):
    from segtrain.synthetic import make_well_image

    viewer = make_napari_viewer()
    image, labels = make_well_image(shape=(96, 96), n_spheroids=4, seed=2)
    viewer.add_image(image, name="well")
    viewer.add_labels(labels.astype(np.uint32), name="gt")
    data = DataWidget(viewer)
    qtbot.addWidget(data)
    data.gt_combo.set_layer("gt")
    widget = TrainWidget(viewer)
    qtbot.addWidget(widget)
    widget.preset_combo.setCurrentText("wells2d_quick")
    widget.batch_spin.setValue(1)
    widget.patch_edit.setText("64, 64")
    widget.runs_root_edit.setText(str(tmp_path / "runs"))
    return viewer, widget


def test_stop_then_resume(training_api, make_napari_viewer, qtbot, tmp_path):
    import time
    from pathlib import Path

    viewer, widget = _well_viewer(make_napari_viewer, qtbot, tmp_path)
    widget.steps_spin.setValue(100000)
    widget.val_every_spin.setValue(100000)
    widget.start()
    assert widget.is_running() and widget.stop_button.isEnabled()
    qtbot.waitUntil(lambda: widget.last_report is not None and widget.last_report.step > 0,
                    timeout=120000)
    t0 = time.perf_counter()
    widget.stop()
    qtbot.waitUntil(lambda: not widget.is_running(), timeout=60000)
    assert time.perf_counter() - t0 < 30
    first = widget.last_report
    assert first.done and widget.session.checkpoint is not None
    assert Path(widget.session.checkpoint).exists()
    run_dir = widget.run.run_dir
    assert widget.resume_button.isEnabled()

    widget.resume()
    assert widget.is_running() and widget.run.run_dir == run_dir
    qtbot.waitUntil(lambda: widget.last_report is not None and widget.last_report.step > first.step,
                    timeout=120000)
    widget.stop()
    qtbot.waitUntil(lambda: not widget.is_running(), timeout=60000)
    assert widget.start_button.isEnabled()


def test_training_error_becomes_a_notification(training_api, make_napari_viewer, qtbot, tmp_path,
                                               error_messages, monkeypatch):
    import torch

    from segtrain.train import module

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(module.SegtrainModule, "training_step", out_of_memory)
    viewer, widget = _well_viewer(make_napari_viewer, qtbot, tmp_path)
    widget.steps_spin.setValue(5)
    widget.start()
    qtbot.waitUntil(lambda: not widget.is_running(), timeout=120000)
    messages = error_messages()
    assert messages, widget.status.text()
    assert "memory" in messages[-1], messages
    assert "\n" not in messages[-1] and "Traceback" not in messages[-1]
    assert widget.start_button.isEnabled()
