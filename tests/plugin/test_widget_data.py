"""DataWidget: layer choices follow the viewer, annotation layer creation, shape checks."""

from __future__ import annotations

import numpy as np

from segtrain.plugin import layers as L
from segtrain.plugin.widgets.data import DataWidget


def test_data_widget_layers_and_annotation(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = DataWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.image_combo.layer() is None
    image = viewer.add_image(np.zeros((4, 16, 16), np.uint8), name="raw", scale=(2, 1, 1),
                             translate=(10, 0, 0))
    assert widget.image_combo.layer() is image
    assert widget.voxel_edit.text() == "2, 1, 1"
    layer = widget.create_annotation_layer()
    assert layer.data.shape == (4, 16, 16)
    assert tuple(layer.scale) == (2, 1, 1) and tuple(layer.translate) == (10, 0, 0)
    assert widget.annotation_combo.layer() is layer
    assert L.session(viewer).annotation_layer == layer.name
    layer.data[0, :4, :4] = 1
    layer.data[0, 4:8, :4] = L.IGNORE_LABEL
    layer.refresh()
    widget.update_count()
    assert "16 voxels" in widget.annotated_label.text()
    viewer.layers.remove(image)
    assert widget.image_combo.layer() is None


def test_data_widget_labels_of_other_shape_notify(make_napari_viewer, qtbot, error_messages):
    viewer = make_napari_viewer()
    widget = DataWidget(viewer)
    qtbot.addWidget(widget)
    viewer.add_image(np.zeros((4, 16, 16), np.uint8), name="raw")
    viewer.add_labels(np.zeros((4, 8, 8), np.uint32), name="small")
    widget.gt_combo.set_layer("small")
    assert "shape" in widget.status.text()
    assert any("shape (4, 8, 8)" in m for m in error_messages())


def test_create_annotation_without_image_notifies(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = DataWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.create_annotation_layer() is None
    assert "image layer" in widget.status.text()


def test_ground_truth_is_guessed_from_the_layer_name(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = DataWidget(viewer)
    qtbot.addWidget(widget)
    viewer.add_image(np.zeros((4, 16, 16), np.uint8), name="em raw")
    viewer.add_labels(np.zeros((4, 16, 16), np.uint32), name="painted")  # not named like GT
    assert widget.gt_combo.layer() is None
    viewer.add_labels(np.zeros((4, 16, 16), np.uint32), name="em labels")
    assert widget.gt_combo.layer().name == "em labels"
    assert L.session(viewer).gt_layer == "em labels"
