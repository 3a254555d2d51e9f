"""The whole 3D loop through the widgets: load -> paint -> train -> predict -> segment -> slider ->
export -> reopen and compare; screenshots of the widgets mid-run go to docs/widget_<name>.png
(the Segment widget's comes from test_widget_screenshots, with affinities that are worth cutting)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segtrain.plugin import layers as L
from segtrain.plugin.widgets.data import DataWidget
from segtrain.plugin.widgets.export import ExportWidget
from segtrain.plugin.widgets.predict import PredictWidget
from segtrain.plugin.widgets.runs import RunsWidget
from segtrain.plugin.widgets.segment import SegmentWidget
from segtrain.plugin.widgets.train import TrainWidget

def paint_from_gt(annotation, gt: np.ndarray, slices) -> None:
    """Paint a few strokes with the Labels layer's own brush, then fill some slices from GT."""
    annotation.brush_size = 3
    for z in slices:
        for y, x in ((10, 10), (30, 40), (50, 20)):
            value = int(gt[z, y, x]) or L.BACKGROUND_LABEL
            annotation.paint((z, y, x), value, refresh=False)
        plane = gt[z].astype(np.uint32)
        plane[plane == 0] = L.BACKGROUND_LABEL
        annotation.data[z] = plane
    annotation.refresh()


@pytest.mark.slow
def test_em3d_workflow(training_api, runs_api, make_napari_viewer, qtbot, tmp_path, screenshot, loop):
    from segtrain.synthetic import make_em_volume

    viewer = make_napari_viewer()
    raw, gt = make_em_volume(shape=(16, 64, 64), seed=0)
    viewer.add_image(raw, name="raw", scale=(1, 1, 1))
    viewer.add_labels(gt.astype(np.uint32), name="gt")
    widgets = {
        "data": DataWidget(viewer), "train": TrainWidget(viewer), "predict": PredictWidget(viewer),
        "segment": SegmentWidget(viewer), "export": ExportWidget(viewer), "runs": RunsWidget(viewer),
    }
    for widget in widgets.values():
        qtbot.addWidget(widget)
    data, train, predict, segment, export, runs = widgets.values()

    # load + paint
    data.image_combo.set_layer("raw")
    data.gt_combo.set_layer("gt")
    assert data.task() == "affinities"
    annotation = data.create_annotation_layer()
    paint_from_gt(annotation, gt, slices=(2, 7, 12))
    data.update_count()
    assert "annotated: " in data.annotated_label.text() and "(0.00 %)" not in data.annotated_label.text()

    # train a few steps
    loop.train(train, "em3d_quick", steps=6, val_every=3, patch="12, 48, 48",
               runs_root=tmp_path / "runs")
    assert Path(train.run.run_dir).exists()
    assert "tensorboard --logdir" in train.tensorboard_command()
    screenshot(data, "data")
    screenshot(train, "train")

    # runs table + load checkpoint
    runs.refresh()
    assert runs.table.rowCount() == 1
    runs.table.selectRow(0)
    runs.load_selected()
    assert Path(predict.checkpoint_edit.text()) == Path(train.run.run_dir)
    screenshot(runs, "runs")

    # predict
    affs_layer = loop.predict(predict, "raw")["affinities"]
    assert affs_layer.rgb and affs_layer.data.shape[:3] == raw.shape
    screenshot(predict, "predict")

    # segment + move the slider (starting from the run's own segmentation settings)
    segment.pred_combo.set_layer(affs_layer)
    assert segment.method_combo.currentText() == train.run.config.segment.fragments
    assert segment.scoring_combo.currentText() == train.run.config.segment.scoring
    tree = loop.build_tree(segment, affs_layer, "gt")
    loop.slide(segment)
    assert segment.sweep is not None and "VOI" in segment.scores_label.text()
    segment.use_best()
    threshold = segment.threshold()

    # export and reopen
    volume = loop.export(export, segment.seg_layer, tmp_path / "export")
    np.testing.assert_array_equal(np.asarray(volume.data), tree.segmentation(threshold))
    assert volume.attrs["threshold"] == pytest.approx(threshold)
    screenshot(export, "export")
