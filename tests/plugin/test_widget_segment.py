"""SegmentWidget: merge tree in a worker, the live slider relabels the displayed slice."""

from __future__ import annotations

import numpy as np

from segtrain.plugin import layers as L
from segtrain.plugin.widgets.predict import prediction_layer_args
from segtrain.plugin.widgets.segment import SegmentWidget


def test_segment_without_predictions_notifies(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    qtbot.addWidget(widget)
    viewer.add_image(np.zeros((4, 8, 8)), name="raw")  # an image, but no predictions
    widget.build()
    assert "Predict" in widget.status.text()


def test_segment_slider_follows_tree(make_napari_viewer, qtbot, synthetic):
    blocks_labels, noisy_affinities = synthetic["blocks_labels"], synthetic["noisy_affinities"]
    viewer = make_napari_viewer()
    labels = blocks_labels()
    raw = viewer.add_image(labels.astype(np.float32), name="raw", scale=(2, 1, 1))
    data, kwargs = prediction_layer_args(noisy_affinities(labels), raw, "raw affinities",
                                         "affinities")
    viewer.add_image(data, **kwargs)
    viewer.add_labels(labels, name="gt", scale=(2, 1, 1))
    widget = SegmentWidget(viewer)
    qtbot.addWidget(widget)
    widget.gt_combo.set_layer("gt")
    widget.seed_spin.setValue(3)
    widget.size_spin.setValue(5)
    assert widget.pred_combo.layer().name == "raw affinities"
    widget.build()
    qtbot.waitUntil(lambda: widget.tree is not None, timeout=60000)
    layer = widget.seg_layer
    assert tuple(layer.scale) == (2, 1, 1)
    assert isinstance(layer.data, L.LookupLabels)
    tree = widget.tree
    for t in (0.1, 0.5, 0.9):
        widget.set_threshold(t)
        z = viewer.dims.current_step[0]
        np.testing.assert_array_equal(np.asarray(layer._slice.image.raw),
                                      tree.segmentation(t)[z])
        assert str(tree.n_segments(t)) in widget.segments_label.text().replace(",", "")
    assert widget.sweep is not None and widget.best_button.isEnabled()
    assert widget.canvas.isVisible() or not widget.isVisible()
    widget.use_best()
    assert abs(widget.threshold() - float(widget.sweep.best_threshold)) <= 1e-3
    assert "VOI split" in widget.scores_label.text() and "ARAND" in widget.scores_label.text()


def test_mask_probability_slider(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    prob = rng.random((32, 40)).astype(np.float32)
    image = viewer.add_image(prob, name="img", scale=(2, 2))
    data, kwargs = prediction_layer_args(prob[None], image, "img probabilities", "probabilities",
                                         channel=0)
    kwargs["metadata"][L.META]["task"] = "masks"
    viewer.add_image(data, **kwargs)
    viewer.add_labels((prob > 0.6).astype(np.uint32), name="gt")
    widget = SegmentWidget(viewer)
    qtbot.addWidget(widget)
    widget.gt_combo.set_layer("gt")
    widget.pred_combo.set_layer("img probabilities")
    assert widget.build_button.text() == "Segment probabilities"
    widget.build()
    assert isinstance(widget.seg_layer.data, L.LookupLabels)
    assert tuple(widget.seg_layer.scale) == (2, 2)
    widget.set_threshold(0.6)
    np.testing.assert_array_equal(np.asarray(widget.seg_layer.data), (prob >= 0.6).astype(np.uint32))
    qtbot.waitUntil(lambda: "Dice" in widget.scores_label.text(), timeout=3000)
