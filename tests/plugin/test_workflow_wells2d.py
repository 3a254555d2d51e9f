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
def test_wells2d_workflow(training_api, make_napari_viewer, qtbot, tmp_path, loop):
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
    loop.train(train, "wells2d_quick", steps=4, val_every=2, batch=2, patch="64, 64",
               runs_root=tmp_path / "runs")
    prob_layer = loop.predict(predict, "well")["probabilities"]
    assert prob_layer.data.shape == image.shape

    segment.gt_combo.set_layer("spheroids")
    loop.slide_instances(segment, prob_layer)
    assert "F1" in segment.scores_label.text()

    # "Use best" on the instance path tunes threshold, seeds and sizes on the ground truth
    f1_before = float(segment.scores_label.text().split()[1].rstrip(","))
    assert segment.best_button.isEnabled()
    segment.use_best()
    qtbot.waitUntil(lambda: "Tuned on the ground truth" in segment.status.text(), timeout=120000)
    qtbot.waitUntil(lambda: not segment._instances_timer.isActive(), timeout=5000)
    f1_after = float(segment.scores_label.text().split()[1].rstrip(","))
    assert f1_after >= f1_before
    assert f"-> {f1_after:.3f}" in segment.status.text()
    tuned = segment.instance_config.segment
    assert segment.threshold() == pytest.approx(tuned.probability_threshold)
    assert segment.seg_layer.metadata["segtrain"]["settings"]["instances"]["seed_boundary_max"] == tuned.seed_boundary_max
    expected = np.asarray(segment.seg_layer.data)

    volume = loop.export(export, segment.seg_layer, tmp_path / "export", fmt="TIFF")
    assert Path(export.written[0]).suffix == ".tif"
    np.testing.assert_array_equal(np.asarray(volume.data), expected)
