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
