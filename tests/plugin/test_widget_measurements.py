"""Measurements panel, driven by clicks: Measure fills a sortable table and the labels layer's
features; clicking a row selects that object in the viewer, clicking an object in the viewer
selects its row; a header click sorts; the histogram follows the chosen measurement; a Proofread
merge made by clicks updates the measurements."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from scipy import ndimage
from skimage.measure import regionprops

from segtrain.plugin import layers as L
from segtrain.plugin.widgets.measurements import MeasurementsWidget
from segtrain.plugin.widgets.proofread import ProofreadWidget


def _cells(cells_dir, size=320):
    labels = np.asarray(iio.imread(cells_dir / "set01" / "instances_ids.png"))[:size, :size].astype(np.uint32)
    raw = np.asarray(iio.imread(cells_dir / "set01" / "raw.tif"))[:size, :size]
    return labels, raw


def _interior(labels, label):
    depth = ndimage.distance_transform_edt(labels == label)
    return np.unravel_index(np.argmax(depth), labels.shape)


def _column(panel, name):
    return panel.model.columns.index(name)


def _shown(panel, name):
    """The values of column ``name`` in the table's rows as shown."""
    c = _column(panel, name)
    return [panel.proxy.index(r, c).data(Qt.DisplayRole) for r in range(panel.proxy.rowCount())]


def _click_row(panel, gui, row):
    index = panel.proxy.index(row, 0)
    panel.table.scrollTo(index)
    gui.process()
    QTest.mouseClick(panel.table.viewport(), Qt.LeftButton, Qt.NoModifier, panel.table.visualRect(index).center())
    gui.process()


def _click_header(panel, gui, name):
    header = panel.table.horizontalHeader()
    c = _column(panel, name)
    panel.table.scrollTo(panel.proxy.index(0, c))
    gui.process()
    x = header.sectionViewportPosition(c) + header.sectionSize(c) // 2
    QTest.mouseClick(header.viewport(), Qt.LeftButton, Qt.NoModifier, header.rect().center().__class__(x, 5))
    gui.process()


def _selected_label(panel):
    rows = panel.table.selectionModel().selectedRows()
    assert len(rows) == 1
    return int(panel.frame.iloc[panel.source_row(rows[0].row())]["label"])


@pytest.fixture
def measured(docked, gui, cells_dir):
    viewer, dock = docked
    labels, raw = _cells(cells_dir)
    viewer.add_image(raw, name="set01 raw")
    layer = viewer.add_labels(labels, name="set01 segmentation", metadata={L.META: L.LayerInfo("segmentation")})
    panel = MeasurementsWidget(viewer)
    dock(panel)
    panel.resize(600, 900)
    assert panel.labels_combo.layer() is layer
    gui.choose(panel.image_combo, "set01 raw")
    gui.click(panel.measure_button)
    gui.wait_until(lambda: panel.frame is not None and not panel.busy(), timeout=60, what="the measurements")
    return viewer, panel, layer, labels, raw, gui


def test_table_features_row_and_object_selection_sorting_histogram(measured):
    viewer, panel, layer, labels, raw, gui = measured
    regions = {r.label: r for r in regionprops(labels, intensity_image=raw)}
    # napari's own features of the layer: one row per object, keyed by label ("index")
    features = layer.features
    assert sorted(features["index"]) == sorted(regions)
    for _, row in features.iterrows():
        r = regions[int(row["index"])]
        assert row["area_px"] == r.area and row["mean_intensity"] == pytest.approx(r.intensity_mean)
    assert panel.proxy.rowCount() == len(regions)
    assert f"{len(regions)} objects" in panel.status.text()

    # a row clicked: that object is selected in the viewer and the view centres on it
    _click_row(panel, gui, 3)
    label = _selected_label(panel)
    assert layer.selected_label == label
    centre = regions[label].centroid
    assert tuple(viewer.camera.center[-2:]) == pytest.approx(tuple(layer.data_to_world(centre)), abs=1e-3)

    # an object clicked in the viewer: its row is selected
    other = next(i for i in sorted(regions, key=lambda i: -regions[i].area) if i != label)
    gui.click_canvas(viewer, layer, _interior(labels, other))
    assert _selected_label(panel) == other and layer.selected_label == other

    # a header click sorts by that column (numbers as numbers), a second click the other way
    _click_header(panel, gui, "area_px")
    first = _shown(panel, "area_px")
    _click_header(panel, gui, "area_px")
    second = _shown(panel, "area_px")
    assert _selected_label(panel) == other  # the highlighted row is still the selected object's
    assert sorted(first) in (first, second) and sorted(first, reverse=True) in (first, second) and first != second
    _click_row(panel, gui, 0)  # the largest or the smallest object, by the sort order
    assert regions[layer.selected_label].area == second[0] and layer.selected_label == _selected_label(panel)

    # the histogram shows the measurement chosen
    assert panel.plot_box.isVisible() and panel.axes.get_xlabel() == "area_px"
    gui.choose(panel.column_combo, "circularity")
    assert panel.axes.get_xlabel() == "circularity"
    heights = sum(patch.get_height() for patch in panel.axes.patches)
    assert heights == np.isfinite(layer.features["circularity"]).sum()


def test_measurements_follow_a_proofreading_merge_made_by_clicks(measured, docked):
    viewer, panel, layer, labels, raw, gui = measured
    _, dock = docked
    proofread = ProofreadWidget(viewer)
    dock(proofread)
    proofread.seg_combo.set_layer(layer)
    regions = {r.label: r for r in regionprops(labels)}
    a, b = sorted(regions, key=lambda i: -regions[i].area)[:2]
    before = len(panel.frame)
    gui.click(proofread.tool_buttons["Merge"])
    gui.click_canvas(viewer, layer, _interior(labels, a))
    gui.click_canvas(viewer, layer, _interior(labels, b))
    gui.wait_until(lambda: not proofread.busy(), timeout=30, what="the merge")
    gui.wait_until(lambda: len(panel.frame) == before - 1 and not panel.busy(), timeout=60,
                   what="the measurements after the merge")
    merged = np.asarray(layer.data)[_interior(labels, a)]
    table = panel.frame.set_index("label")
    assert table.loc[merged, "area_px"] == regions[a].area + regions[b].area
    assert len(layer.features) == before - 1 and panel.proxy.rowCount() == before - 1
    assert sorted(layer.features["index"]) == sorted(np.unique(np.asarray(layer.data)[np.asarray(layer.data) > 0]))


def test_empty_labels_are_one_sentence_not_an_empty_table(docked, gui, error_messages):
    viewer, dock = docked
    layer = viewer.add_labels(np.zeros((32, 32), np.uint8), name="empty segmentation")
    panel = MeasurementsWidget(viewer)
    dock(panel)
    gui.click(panel.measure_button)
    gui.wait_until(lambda: not panel.busy() and panel.measure_button.isEnabled(), timeout=60)
    messages = error_messages()
    assert len(messages) == 1 and "holds no objects" in messages[0] and messages[0] in panel.status.text()
    assert panel.frame is None and panel.proxy.rowCount() == 0 and "area_px" not in layer.features


def test_an_image_of_another_shape_is_one_sentence(docked, gui, cells_dir, error_messages):
    viewer, dock = docked
    labels, raw = _cells(cells_dir, 128)
    viewer.add_image(raw[:100], name="other raw")
    layer = viewer.add_labels(labels, name="cells segmentation", metadata={L.META: L.LayerInfo("segmentation")})
    panel = MeasurementsWidget(viewer)
    dock(panel)
    gui.choose(panel.image_combo, "other raw")
    gui.click(panel.measure_button)
    gui.wait_until(lambda: not panel.busy() and panel.measure_button.isEnabled(), timeout=60)
    messages = error_messages()
    assert len(messages) == 1 and "shape (100, 128)" in messages[0] and "Traceback" not in messages[0]
    assert messages[0] in panel.status.text() and panel.frame is None and panel.proxy.rowCount() == 0
    assert "area_px" not in layer.features


def test_a_2d_models_stack_row_goes_to_its_slice(docked, gui):
    viewer, dock = docked
    stack = np.zeros((4, 48, 48), np.uint32)
    stack[:, 4:14, 4:14] = 1  # id 1 on every slice: four objects for a 2D model
    stack[2, 30:44, 26:46] = 2
    info = L.LayerInfo("segmentation", model_ndim=2)
    layer = viewer.add_labels(stack, name="stack segmentation", scale=(50, 4, 4), metadata={L.META: info})
    panel = MeasurementsWidget(viewer)
    dock(panel)
    gui.click(panel.measure_button)
    gui.wait_until(lambda: panel.frame is not None and not panel.busy(), timeout=60, what="the measurements")
    assert panel.proxy.rowCount() == 5 and list(panel.frame.z) == [0, 1, 2, 2, 3]
    assert list(panel.frame.area_cal) == [1600.0, 1600.0, 1600.0, 280 * 16.0, 1600.0]  # 4 x 4 pixels
    assert sorted(layer.features["index"]) == [1, 2]
    row = panel.row_of(1, z=3)
    _click_row(panel, gui, row)
    assert layer.selected_label == 1 and viewer.dims.current_step[0] == 3
    _click_row(panel, gui, panel.row_of(2))
    assert layer.selected_label == 2 and viewer.dims.current_step[0] == 2
    # a click on the object on slice 3 selects the row of slice 3
    gui.click_canvas(viewer, layer, (3, 8, 8))
    assert _selected_label(panel) == 1 and panel.table.selectionModel().selectedRows()[0].row() == row


def test_save_table_by_typing_a_name(measured, tmp_path, error_messages):
    from segtrain.measure import read_table

    viewer, panel, layer, labels, raw, gui = measured
    path = tmp_path / "cells.csv"
    gui.type(panel.save_edit, str(path), enter=False)
    gui.click(panel.save_button)
    gui.wait_until(lambda: not panel.busy(), timeout=30, what="the table to be written")
    table, header = read_table(path)
    assert list(table.label) == list(panel.frame.label) and header["labels"] == "napari layer 'set01 segmentation'"
    assert header["image"] == "napari layer 'set01 raw'" and header["made_with"]["kind"] == "segmentation"
    assert "Saved the measurements" in panel.status.text()
    before = path.read_bytes()
    gui.click(panel.save_button)  # the same name again: refused, the file unchanged
    gui.wait_until(lambda: not panel.busy(), timeout=30)
    assert "already exists; type a new file name" in error_messages()[-1] and path.read_bytes() == before
