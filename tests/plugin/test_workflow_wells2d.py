"""The 2D well path through the widgets: load -> annotate -> train -> predict probabilities ->
probability-threshold slider -> export TIFF -> reopen and compare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segtrain.plugin import layers as L
from segtrain.plugin.widgets.data import DataWidget
from segtrain.plugin.widgets.export import ExportWidget
from segtrain.plugin.widgets.predict import PredictWidget
from segtrain.plugin.widgets.segment import SegmentWidget
from segtrain.plugin.widgets.train import TrainWidget


@pytest.mark.slow
def test_wells2d_workflow(training_api, make_napari_viewer, qtbot, tmp_path):
    from segtrain.io import read_volume
    from segtrain.synthetic import make_well_image

    viewer = make_napari_viewer()
    image, gt = make_well_image(shape=(128, 128), n_spheroids=6, seed=1)
    viewer.add_image(image, name="well")
    viewer.add_labels(gt.astype(np.uint32), name="spheroids")
    data, train, predict = DataWidget(viewer), TrainWidget(viewer), PredictWidget(viewer)
    segment, export = SegmentWidget(viewer), ExportWidget(viewer)
    for widget in (data, train, predict, segment, export):
        qtbot.addWidget(widget)

    data.image_combo.set_layer("well")
    data.gt_combo.set_layer("spheroids")
    assert data.task() == "masks"  # a 2D image switches away from 3D affinities
    data.set_task("instances")
    annotation = data.create_annotation_layer()
    annotation.data[:] = np.where(gt > 0, gt, L.BACKGROUND_LABEL)  # dense painting
    annotation.data[:, :8] = L.IGNORE_LABEL  # an ignored strip
    annotation.refresh()

    assert train.preset_combo.currentText() == "wells2d_quick"
    train.steps_spin.setValue(4)
    train.val_every_spin.setValue(2)
    train.batch_spin.setValue(2)
    train.patch_edit.setText("64, 64")
    train.runs_root_edit.setText(str(tmp_path / "runs"))
    train.start()
    assert train.run is not None, train.status.text()
    qtbot.waitUntil(lambda: not train.is_running(), timeout=180000)
    assert train.last_report is not None and train.last_report.step > 0, train.status.text()

    predict.image_combo.set_layer("well")
    predict.predict()
    qtbot.waitUntil(lambda: predict.worker is None, timeout=120000)
    assert "probabilities" in predict.result_layers, predict.status.text()
    prob_layer = predict.result_layers["probabilities"]
    assert prob_layer.data.shape[-2:] == image.shape[-2:]

    segment.pred_combo.set_layer(prob_layer)
    segment.gt_combo.set_layer("spheroids")
    segment.build()
    assert segment.seg_layer is not None and segment.probabilities is not None
    from segtrain.segment import instances_from_probabilities

    for t in (0.3, 0.7, 0.5):
        segment.set_threshold(t)
        qtbot.waitUntil(lambda: not segment._instances_timer.isActive(), timeout=5000)
        np.testing.assert_array_equal(
            np.asarray(segment.seg_layer.data),
            instances_from_probabilities(np.asarray(prob_layer.data), t))
    assert "F1" in segment.scores_label.text()
    expected = np.asarray(segment.seg_layer.data)

    export.seg_combo.set_layer(segment.seg_layer)
    export.folder_edit.setText(str(tmp_path / "export"))
    export.format_combo.setCurrentText("TIFF")
    export.export()
    qtbot.waitUntil(lambda: export.worker is None, timeout=60000)
    assert export.written and export.written[0].suffix == ".tif", export.status.text()
    np.testing.assert_array_equal(np.asarray(read_volume(Path(export.written[0])).data), expected)
