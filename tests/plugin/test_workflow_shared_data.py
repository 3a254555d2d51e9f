"""The loop through the widgets on real data in ../shared/data, opened with the segtrain reader as
a drag-and-drop would (skipped cleanly without the data)."""

from __future__ import annotations

import numpy as np
import pytest

from segtrain.plugin.widgets.data import DataWidget
from segtrain.plugin.widgets.export import ExportWidget
from segtrain.plugin.widgets.predict import PredictWidget
from segtrain.plugin.widgets.segment import SegmentWidget
from segtrain.plugin.widgets.train import TrainWidget

PLUGIN = "napari-segtrain"


def _widgets(viewer, qtbot):
    widgets = (DataWidget(viewer), TrainWidget(viewer), PredictWidget(viewer),
               SegmentWidget(viewer), ExportWidget(viewer))
    for widget in widgets:
        qtbot.addWidget(widget)
    return widgets


@pytest.mark.shared_data
@pytest.mark.slow
def test_fibsem_volume_loop(em3d_dir, training_api, make_napari_viewer, qtbot, tmp_path, loop):
    viewer = make_napari_viewer()
    viewer.open(str(em3d_dir / "train-image.h5"), plugin=PLUGIN)
    viewer.open(str(em3d_dir / "train-gt.lzf.h5"), plugin=PLUGIN)
    data, train, predict, segment, export = _widgets(viewer, qtbot)
    assert data.image_combo.layer().name == "train-image"
    assert data.gt_combo.layer().name == "train-gt"  # picked without a click
    assert data.task() == "affinities"

    loop.train(train, "em3d_quick", steps=4, val_every=2, patch="16, 48, 48",
               runs_root=tmp_path / "runs")
    affs = loop.predict(predict, "train-image")["affinities"]
    assert affs.data.shape[:3] == (50, 100, 200)
    tree = loop.build_tree(segment, affs, "train-gt")
    loop.slide(segment)
    segment.use_best()
    volume = loop.export(export, segment.seg_layer, tmp_path / "export")
    np.testing.assert_array_equal(np.asarray(volume.data), tree.segmentation(segment.threshold()))


@pytest.mark.shared_data
@pytest.mark.slow
def test_phase_contrast_cells_loop(cells_dir, training_api, make_napari_viewer, qtbot, tmp_path,
                                   loop):
    viewer = make_napari_viewer()
    viewer.open(str(cells_dir / "set01"), plugin=PLUGIN)
    data, train, predict, segment, export = _widgets(viewer, qtbot)
    assert data.image_combo.layer().name == "raw"
    assert data.gt_combo.layer().name == "instances_ids"
    data.set_task("instances")

    loop.train(train, "wells2d_quick", steps=2, val_every=2, batch=1, patch="128, 128",
               runs_root=tmp_path / "runs")
    prob = loop.predict(predict, "raw")["probabilities"]
    assert prob.data.shape == (1022, 1024)
    segment.gt_combo.set_layer("instances_ids")
    loop.slide_instances(segment, prob, thresholds=(0.4, 0.6))
    assert "F1" in segment.scores_label.text()
    volume = loop.export(export, segment.seg_layer, tmp_path / "export", fmt="TIFF")
    np.testing.assert_array_equal(np.asarray(volume.data), np.asarray(segment.seg_layer.data))
