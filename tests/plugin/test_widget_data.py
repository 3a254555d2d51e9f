"""Data panel, driven by clicks and typing: layer choices follow the viewer, the annotation layer,
the Background / Ignore / New object brushes, the voxel size (from the file when it has one),
shape checks."""

from __future__ import annotations

import numpy as np

from segtrain.plugin import layers as L
from segtrain.plugin.widgets.data import DataWidget

PLUGIN = "napari-segtrain"


def test_layers_annotation_layer_and_brushes(docked, gui):
    viewer, dock = docked
    data = DataWidget(viewer)
    dock(data)
    assert data.image_combo.layer() is None
    image = viewer.add_image(np.zeros((4, 16, 16), np.uint8), name="raw", scale=(2, 1, 1),
                             translate=(10, 0, 0))
    assert data.image_combo.currentText() == "raw"
    assert data.voxel_edit.text() == "2, 1, 1"
    gui.click(data.create_button)
    layer = viewer.layers["raw annotation"]
    assert layer.data.shape == (4, 16, 16)
    assert tuple(layer.scale) == (2, 1, 1) and tuple(layer.translate) == (10, 0, 0)
    assert data.annotation_combo.currentText() == "raw annotation"
    assert L.session(viewer).annotation_layer == layer.name
    assert layer.mode == "paint" and layer.selected_label == 1

    gui.click(data.background_button)
    assert layer.selected_label == L.BACKGROUND_LABEL and layer.mode == "paint"
    assert "background" in data.status.text()
    gui.click(data.ignore_button)
    assert layer.selected_label == L.IGNORE_LABEL
    layer.paint((0, 2, 2), L.IGNORE_LABEL, refresh=False)  # the brush, where the user clicks
    layer.data[0, :4, :4] = 3
    layer.data[1, :2, :2] = L.BACKGROUND_LABEL
    layer.refresh()
    gui.click(data.object_button)  # the highest id is looked up in a worker
    gui.wait_until(lambda: layer.selected_label == 4, timeout=5, what="the next object id")
    assert layer.selected_label == 4 and layer.mode == "paint"  # the next unused object id, not 65536
    gui.wait_until(lambda: "20 voxels" in data.annotated_label.text(), timeout=5, what="the count")
    viewer.layers.remove(image)
    assert data.image_combo.layer() is None


def test_voxel_size_typed_and_from_the_file(docked, gui, tmp_path, error_messages):
    import tifffile

    from segtrain.io import Volume, write_volume

    write_volume(tmp_path / "em.zarr", Volume(np.zeros((4, 8, 8), np.uint8), voxel_size=(40, 4, 4), name="raw"))
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((6, 8, 8), np.uint8))  # a TIFF without spacing
    viewer, dock = docked
    data = DataWidget(viewer)
    dock(data)
    viewer.open(str(tmp_path / "plain.tif"), plugin=PLUGIN)
    assert data.voxel_edit.text() == "1, 1, 1"
    assert "stores no voxel size" in data.voxel_note.text()
    viewer.open(str(tmp_path / "em.zarr"), plugin=PLUGIN)
    gui.choose(data.image_combo, "em")
    assert data.voxel_edit.text() == "40, 4, 4" and data.voxel_note.text() == "from the file"
    gui.type(data.voxel_edit, "30, 5, 5")
    assert tuple(viewer.layers["em"].scale) == (30, 5, 5) and L.session(viewer).voxel_size == (30, 5, 5)
    gui.type(data.voxel_edit, "30, 5")
    assert error_messages()[-1] == "Voxel size needs 3 numbers for the 3D image 'em', got 2."
    assert tuple(viewer.layers["em"].scale) == (30, 5, 5)


def test_labels_of_other_shape_notify(docked, gui, error_messages):
    viewer, dock = docked
    data = DataWidget(viewer)
    dock(data)
    viewer.add_image(np.zeros((4, 16, 16), np.uint8), name="raw")
    viewer.add_labels(np.zeros((4, 8, 8), np.uint32), name="small")
    gui.choose(data.gt_combo, "small")
    assert "shape" in data.status.text()
    assert any("shape (4, 8, 8)" in m for m in error_messages())


def test_create_annotation_without_image_notifies(docked, gui, error_messages):
    viewer, dock = docked
    data = DataWidget(viewer)
    dock(data)
    gui.click(data.create_button)
    assert "image layer" in data.status.text() and len(viewer.layers) == 0
    assert error_messages() == [data.status.text()]


def test_ground_truth_is_guessed_from_the_layer_name(docked):
    viewer, dock = docked
    data = DataWidget(viewer)
    dock(data)
    viewer.add_image(np.zeros((4, 16, 16), np.uint8), name="em raw")
    viewer.add_labels(np.zeros((4, 16, 16), np.uint32), name="painted")  # not named like GT
    assert data.gt_combo.layer() is None
    viewer.add_labels(np.zeros((4, 16, 16), np.uint32), name="em labels")
    assert data.gt_combo.currentText() == "em labels"
    assert L.session(viewer).gt_layer == "em labels"


def test_a_typed_voxel_size_leaves_another_image_of_the_same_shape_alone(docked, gui):
    """Apply rescales the chosen image and what lies on it, never a second image of the same shape
    (another acquisition the user opened beside it)."""
    viewer, dock = docked
    data = DataWidget(viewer)
    dock(data)
    viewer.add_image(np.zeros((4, 8, 8), np.uint8), name="A")
    viewer.add_image(np.zeros((4, 8, 8), np.uint8), name="B")
    gui.choose(data.image_combo, "A")
    gui.type(data.voxel_edit, "30, 5, 5")
    assert tuple(viewer.layers["A"].scale) == (30, 5, 5)
    assert tuple(viewer.layers["B"].scale) == (1, 1, 1)
