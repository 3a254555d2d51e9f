"""Screenshots of every dock widget (QWidget.grab) into docs/widget_<name>.png.

The workflow tests overwrite them with widgets in the middle of a real run when training is
available; this test makes sure every widget renders on its own."""

from __future__ import annotations

import numpy as np

from segtrain.plugin.widgets.data import DataWidget
from segtrain.plugin.widgets.export import ExportWidget
from segtrain.plugin.widgets.predict import PredictWidget, prediction_layer_args
from segtrain.plugin.widgets.runs import RunsWidget
from segtrain.plugin.widgets.segment import SegmentWidget
from segtrain.plugin.widgets.train import TrainWidget

def test_widget_screenshots(make_napari_viewer, qtbot, synthetic, tmp_path, screenshot):
    viewer = make_napari_viewer()
    from segtrain.plugin.layers import session

    session(viewer).runs_root = tmp_path / "runs"
    labels = synthetic["blocks_labels"]()
    raw = viewer.add_image(labels.astype(np.float32), name="raw")
    viewer.add_labels(labels, name="gt")
    data, kwargs = prediction_layer_args(synthetic["noisy_affinities"](labels, noise=0.3), raw,
                                         "raw affinities", "affinities")
    viewer.add_image(data, **kwargs)
    widgets = {"data": DataWidget(viewer), "train": TrainWidget(viewer),
               "predict": PredictWidget(viewer), "segment": SegmentWidget(viewer),
               "export": ExportWidget(viewer), "runs": RunsWidget(viewer)}
    for widget in widgets.values():
        qtbot.addWidget(widget)
    widgets["data"].gt_combo.set_layer("gt")
    segment = widgets["segment"]
    segment.gt_combo.set_layer("gt")
    segment.seed_spin.setValue(3)
    segment.build()
    qtbot.waitUntil(lambda: segment.tree is not None, timeout=60000)
    for name, widget in widgets.items():
        screenshot(widget, name)
