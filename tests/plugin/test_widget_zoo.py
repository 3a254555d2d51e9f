"""BioImage.IO in the GUI, by clicks and typing: the Runs panel exports a real tiny 3D affinity+LSD run
as a package (in a worker, tested with bioimageio.core); the Predict panel loads that package and
predicts exactly what the run predicts; the Segment panel's slider and the Export panel work on the
package's predictions as on a run's."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtWidgets import QLineEdit

from helpers.gui import displayed_slice
from helpers.zoo_runs import em_run, repack  # noqa: F401 - fixture
from segtrain.plugin import layers as L
from segtrain.plugin.widgets.export import ExportWidget
from segtrain.plugin.widgets.predict import PredictWidget
from segtrain.plugin.widgets.runs import RunsWidget
from segtrain.plugin.widgets.segment import SegmentWidget


def _type_file_name(gui, dialog, path) -> None:
    """Type a file name into the (Qt) file dialog and press Enter, again while the dialog stays open:
    Enter can land in the name field's completion list instead, which Qt opens when its file system
    model has read the folder (in a thread of its own); a person sees the list and presses Enter again."""
    import time

    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    assert dialog is not None and dialog.isVisible()
    edit = dialog.findChild(QLineEdit, "fileNameEdit")
    gui.type(edit, str(path))
    pressed = [time.perf_counter()]

    def accepted() -> bool:
        if dialog.isVisible() and time.perf_counter() - pressed[0] > 0.5:
            popup = edit.completer().popup() if edit.completer() is not None else None
            if popup is not None and popup.isVisible():
                popup.hide()
            QTest.keyClick(edit, Qt.Key_Return)
            pressed[0] = time.perf_counter()
        return not dialog.isVisible()

    gui.wait_until(accepted, timeout=30, what="the file dialog to take the name")


def test_export_a_run_then_predict_segment_and_export_with_its_package(docked, gui, em_run, tmp_path):  # noqa: F811
    from segtrain.io import read_volume
    from segtrain.predict import load_model, predict_array
    from segtrain.runs import RunFolder

    viewer, dock = docked
    runs, predict = RunsWidget(viewer), PredictWidget(viewer)
    segment, export = SegmentWidget(viewer), ExportWidget(viewer)
    dock(runs, predict, segment, export)
    gui.type(runs.root_edit, str(em_run.parent))
    assert runs.table.rowCount() == 1
    rect = runs.table.visualItemRect(runs.table.item(0, 0))
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    QTest.mouseClick(runs.table.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())
    gui.click(runs.export_button)
    package = tmp_path / "em-model.zip"
    _type_file_name(gui, runs.export_dialog, package)
    assert not runs.export_button.isEnabled()  # the export runs in a worker
    gui.wait_until(lambda: runs.export_worker is None, timeout=600, what="the export")
    assert package.exists() and runs.status.text().startswith(f"Wrote {package}"), runs.status.text()

    source = RunFolder(em_run).data()["val"][0]
    raw = np.asarray(read_volume(source["raw"]["path"]).data)[35:45, :48, :56]
    viewer.add_image(raw, name="em")
    gui.click(predict.zoo_button)
    _type_file_name(gui, predict.zoo_dialog, package)
    assert predict.checkpoint_edit.text() == str(package)
    gui.wait_until(lambda: predict.which_combo.count() == 1, timeout=60, what="the package")
    gui.choose(predict.image_combo, "em")
    gui.click(predict.predict_button)
    gui.wait_until(lambda: predict.worker is None, timeout=300, what="the prediction")
    assert "BioImage.IO package em-model.zip" in predict.model_label.text()
    expected = predict_array(load_model(em_run), raw)
    shown = L.layer_info(predict.result_layers["affinities"])
    np.testing.assert_allclose(shown.array, expected["affinities"], atol=1e-5)
    assert shown.task == "affinities" and shown.settings.threshold == load_model(em_run).config.segment.threshold

    gui.choose(segment.pred_combo, "em affinities")
    gui.click(segment.build_button)
    gui.wait_until(lambda: segment.tree is not None and segment.build_button.isEnabled(), timeout=120,
                   what="the merge tree")
    gui.type(segment.threshold_spin, "0.3")
    assert segment.threshold() == pytest.approx(0.3)
    z = viewer.dims.current_step[0]
    np.testing.assert_array_equal(displayed_slice(segment.seg_layer), segment.tree.segmentation(0.3)[z])
    gui.choose(export.seg_combo, "em segmentation")
    gui.type(export.folder_edit, str(tmp_path / "out"))
    gui.click(export.export_button)
    gui.wait_until(lambda: export.worker is None, timeout=120, what="the export")
    written = read_volume(tmp_path / "out" / "segmentation.zarr")
    np.testing.assert_array_equal(np.asarray(written.data), segment.tree.segmentation(0.3))

    # a zoo model segtrain did not write (no config.segtrain): bioimageio.core runs it, its outputs lie on
    # the image they were predicted for, a volume placed elsewhere in the world included
    foreign = repack(package, tmp_path / "foreign.zip", lambda rdf: rdf["config"].pop("segtrain"))
    placed = viewer.add_image(np.ascontiguousarray(raw[:8, :48, :40]), name="placed", scale=(2.0, 1.0, 1.0),
                              translate=(10.0, 5.0, 3.0))
    gui.click(predict.zoo_button)
    _type_file_name(gui, predict.zoo_dialog, foreign)
    gui.choose(predict.image_combo, "placed")
    gui.click(predict.predict_button)
    gui.wait_until(lambda: predict.worker is None, timeout=300, what="the zoo model's prediction")
    assert predict.result_layers and set(predict.result_layers) >= {"affinities"}
    for layer in predict.result_layers.values():
        channels = layer.data.ndim - 3
        assert tuple(layer.scale) == (1.0,) * channels + (2.0, 1.0, 1.0)
        assert tuple(layer.translate) == (0.0,) * channels + (10.0, 5.0, 3.0), layer.name
    assert placed in viewer.layers
    assert written.attrs["checkpoint"] == str(package)
