"""Segment panel, driven by clicks and typing: the merge tree in a worker with the prediction's
settings and voxel size, the slider relabels only the displayed slice, probability maps get their
own controls and background instances, warnings where a result is probably wrong."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.gui import EnabledChanges, displayed_slice
from segtrain.plugin import layers as L
from segtrain.plugin.widgets.segment import SegmentWidget


def _affinities_layer(viewer, synthetic, scale=(2, 1, 1), noise=0.1, settings=None):
    labels = synthetic["blocks_labels"]()
    raw = viewer.add_image(labels.astype(np.float32), name="raw", scale=scale)
    info = L.LayerInfo("affinities", task="affinities", model_ndim=3,
                       settings=settings or L.segment_config({"min_seed_distance": 3, "min_size": 5}))
    data, kwargs = L.prediction_layer_args(synthetic["noisy_affinities"](labels, noise=noise), raw,
                                         "raw affinities", "affinities", info=info)
    viewer.add_image(data, **kwargs)
    viewer.add_labels(labels, name="gt", scale=scale)
    return labels


def test_build_without_predictions_notifies(docked, gui, error_messages):
    viewer, dock = docked
    segment = SegmentWidget(viewer)
    dock(segment)
    viewer.add_image(np.zeros((4, 8, 8)), name="raw")  # an image, but no predictions
    gui.click(segment.build_button)
    assert "Predict" in segment.status.text() and segment.seg_layer is None
    assert error_messages() == [segment.status.text()]


def test_merge_tree_slider_relabels_the_displayed_slice(docked, gui, synthetic):
    from segtrain.postprocess import segment_affinities

    viewer, dock = docked
    _affinities_layer(viewer, synthetic)
    segment = SegmentWidget(viewer)
    dock(segment)
    gui.choose(segment.gt_combo, "gt")
    assert segment.pred_combo.currentText() == "raw affinities"
    assert segment.affinity_box.isVisible() and segment.build_button.text() == "Build merge tree"
    assert segment.seed_spin.value() == 3 and segment.size_spin.value() == 5  # the run's settings
    changes = EnabledChanges(segment.build_button)
    gui.click(segment.build_button)
    gui.wait_until(lambda: segment.tree is not None and segment.build_button.isEnabled(), timeout=60)
    assert changes.states == [False, True]  # disabled while it built, enabled again after
    layer = segment.seg_layer
    assert tuple(layer.scale) == (2, 1, 1) and isinstance(layer.data, L.LookupLabels)
    # the same tree the core makes with these settings and this voxel size
    info = L.layer_info(viewer.layers["raw affinities"])
    expected = segment_affinities(info.array, info.settings, voxel_size=(2, 1, 1), model_ndim=3)
    np.testing.assert_array_equal(segment.tree.fragments, expected.fragments)
    tree = segment.tree
    calls = []
    reader = L.layer_info(layer).proofreader  # the tree cut at the threshold, edits on top
    original = reader.relabel
    reader.relabel = lambda region: calls.append(np.shape(region)) or original(region)
    for t in ("0.1", "0.5", "0.9"):
        calls.clear()
        gui.type(segment.threshold_spin, t)
        assert segment.threshold() == pytest.approx(float(t))
        z = viewer.dims.current_step[0]
        np.testing.assert_array_equal(displayed_slice(layer), tree.segmentation(float(t))[z])
        assert calls and all(len(shape) == 2 or shape[0] == 1 for shape in calls), calls  # one slice only
        assert f"segments: {tree.n_segments(float(t)):,}" == segment.segments_label.text()
    assert segment.sweep is not None and segment.best_button.isEnabled() and segment.canvas.isVisible()
    gui.click(segment.best_button)
    assert segment.threshold() == pytest.approx(segment.sweep.best_threshold, abs=1e-3)
    assert "VOI split" in segment.scores_label.text() and "ARAND" in segment.scores_label.text()
    assert L.layer_info(layer).threshold == pytest.approx(segment.threshold())


def test_the_slider_starts_at_the_threshold_validation_chose(docked, gui, synthetic):
    viewer, dock = docked
    _affinities_layer(viewer, synthetic, settings=L.segment_config({"min_seed_distance": 3, "threshold": 0.42}))
    segment = SegmentWidget(viewer)
    dock(segment)
    gui.click(segment.build_button)
    gui.wait_until(lambda: segment.tree is not None, timeout=60)
    assert segment.threshold() == pytest.approx(0.42)
    assert "chosen by the run's validation" in segment.status.text()


def test_best_threshold_that_merges_everything_warns(docked, gui, warning_messages):
    """Affinities that separate nothing (an untrained network): 'best' is one segment, and the
    panel says so instead of applying it silently."""
    viewer, dock = docked
    labels = np.zeros((4, 24, 24), np.uint64)
    labels[:, :, :12], labels[:, :, 12:] = 1, 2
    raw = viewer.add_image(labels.astype(np.float32), name="raw")
    info = L.LayerInfo("affinities", task="affinities", model_ndim=3, settings=L.segment_config({"fragments": "waterz"}))
    data, kwargs = L.prediction_layer_args(np.full((3, 4, 24, 24), 0.9, np.float32), raw, "raw affinities",
                                         "affinities", info=info)
    viewer.add_image(data, **kwargs)
    viewer.add_labels(labels, name="gt")
    segment = SegmentWidget(viewer)
    dock(segment)
    gui.choose(segment.gt_combo, "gt")
    gui.click(segment.build_button)
    gui.wait_until(lambda: segment.tree is not None, timeout=60)
    gui.click(segment.best_button)
    assert any("gives one segment covering everything" in m for m in warning_messages())
    assert "train it longer" in segment.status.text()


def _probability_layer(viewer, prob, task, gt, boundary=None):
    image = viewer.add_image(prob, name="img", scale=(2, 2))
    array = prob[None] if boundary is None else np.stack([prob, boundary])
    info = L.LayerInfo("probabilities", task=task, model_ndim=2,
                       settings=L.segment_config({"probability_threshold": 0.5, "min_size": 0}))
    data, kwargs = L.prediction_layer_args(array, image, "img probabilities", "probabilities", channel=0, info=info)
    viewer.add_image(data, **kwargs)
    viewer.add_labels(gt, name="gt", scale=(2, 2))


def test_mask_slider_hides_affinity_controls_and_scores_in_the_background(docked, gui):
    viewer, dock = docked
    prob = np.random.default_rng(0).random((32, 40)).astype(np.float32)
    _probability_layer(viewer, prob, "masks", (prob > 0.6).astype(np.uint32))
    segment = SegmentWidget(viewer)
    dock(segment)
    gui.choose(segment.gt_combo, "gt")
    gui.choose(segment.pred_combo, "img probabilities")
    assert segment.build_button.text() == "Segment probabilities"
    assert not segment.affinity_box.isVisible()  # fragments, method, scoring: affinities only
    gui.click(segment.build_button)
    assert isinstance(segment.seg_layer.data, L.LookupLabels) and tuple(segment.seg_layer.scale) == (2, 2)
    gui.type(segment.threshold_spin, "0.6")
    np.testing.assert_array_equal(np.asarray(segment.seg_layer.data), (prob >= 0.6).astype(np.uint32))
    gui.wait_until(lambda: not segment.busy() and "Dice 1.000" in segment.scores_label.text(), timeout=10)


def _cells(n=6, size=64):
    """Touching square cells with a foreground and a boundary probability map."""
    from segtrain.targets import boundaries

    gt = np.zeros((size, size), np.uint32)
    k = 1
    for y in range(0, size, size // 2):
        for x in range(0, size, size // 3):
            gt[y + 2:y + size // 2 - 2, x + 2:x + size // 3 - 2] = k
            k += 1
    fg = (gt > 0).astype(np.float32) * 0.9 + 0.05
    bd = boundaries(gt.astype(np.uint64), mode="inner").astype(np.float32)
    return gt, fg, bd


def test_instance_slider_computes_off_the_gui_thread_with_the_core(docked, gui):
    from segtrain.postprocess import OutputSpec, instances

    viewer, dock = docked
    gt, fg, bd = _cells()
    _probability_layer(viewer, fg, "instances", gt, boundary=bd)
    segment = SegmentWidget(viewer)
    dock(segment)
    gui.choose(segment.gt_combo, "gt")
    gui.click(segment.build_button)
    for t in ("0.3", "0.7", "0.5"):
        gui.type(segment.threshold_spin, t)
    # typed faster than computed: only the newest position is computed once the worker is free
    gui.wait_until(lambda: not segment.busy(), timeout=30)
    settings = L.layer_info(segment.seg_layer).settings
    assert settings.probability_threshold == pytest.approx(0.5)
    np.testing.assert_array_equal(np.asarray(segment.seg_layer.data),
                                  instances(np.stack([fg, bd]), settings, OutputSpec("instances", 2)))
    assert segment.scores_label.text().startswith("F1 1.000")
    gui.click(segment.best_button)
    gui.wait_until(lambda: "Tuned on the ground truth" in segment.status.text() and not segment.busy(), timeout=60)
    assert "-> 1.000" in segment.status.text()


def test_f1_that_stays_zero_warns(docked, gui, warning_messages):
    viewer, dock = docked
    gt, fg, bd = _cells()
    wrong = np.roll(gt, 32, axis=1) * 0  # a ground truth with no objects where the cells are
    wrong[:4, :4] = 1
    _probability_layer(viewer, fg, "instances", wrong, boundary=bd)
    segment = SegmentWidget(viewer)
    dock(segment)
    gui.choose(segment.gt_combo, "gt")
    gui.click(segment.build_button)
    gui.wait_until(lambda: not segment.busy() and "F1" in segment.scores_label.text(), timeout=30)
    assert "no object matches the ground truth" in segment.scores_label.text()
    gui.click(segment.best_button)
    gui.wait_until(lambda: not segment.busy() and segment.best_button.isEnabled(), timeout=60)
    assert any("F1 stays 0" in m for m in warning_messages())


def test_a_removed_segmentation_gives_its_arrays_back(docked, gui, synthetic):
    """napari may keep a removed layer object alive: the panels' layers drop their big arrays."""
    viewer, dock = docked
    _affinities_layer(viewer, synthetic)
    segment = SegmentWidget(viewer)
    dock(segment)
    gui.click(segment.build_button)
    gui.wait_until(lambda: segment.tree is not None and segment.build_button.isEnabled(), timeout=60)
    layer, affs = segment.seg_layer, viewer.layers["raw affinities"]
    info, affs_info = L.layer_info(layer), L.layer_info(affs)
    assert info.proofreader is not None and affs_info.array is not None
    viewer.layers.remove(layer)
    viewer.layers.remove(affs)
    assert info.proofreader is None and info.fragments is None and affs_info.array is None
    assert np.asarray(layer.data).size == 1 and np.asarray(affs.data).size <= 3


def test_closing_a_rounds_layers_frees_its_prediction_and_merge_tree(docked, gui, synthetic):
    """A long day in the GUI: after Build, the slider and closing the prediction and segmentation
    layers (clicks in the layer list, its delete button), nothing keeps the prediction array, the
    merge tree or its Proofreader: not the panel, not napari's list of finished workers."""
    import gc
    import weakref

    viewer, dock = docked
    _affinities_layer(viewer, synthetic)
    segment = SegmentWidget(viewer)
    dock(segment)
    gui.choose(segment.gt_combo, "gt")
    gui.click(segment.build_button)
    gui.wait_until(lambda: segment.tree is not None and segment.build_button.isEnabled(), timeout=60)
    for t in ("0.3", "0.6"):
        gui.type(segment.threshold_spin, t)
    layer = segment.seg_layer
    kept = {"prediction": L.layer_info(viewer.layers["raw affinities"]).array, "merge tree": segment.tree,
            "proofreader": L.layer_info(layer).proofreader}
    refs = {what: weakref.ref(obj) for what, obj in kept.items()}
    del kept, layer
    gui.close_layers(viewer, ["raw affinities", "raw segmentation"])
    assert [layer.name for layer in viewer.layers] == ["raw", "gt"]
    gui.wait(0.2)
    gc.collect()
    assert [what for what, ref in refs.items() if ref() is not None] == []
    assert not segment.slider.isEnabled() and not segment.best_button.isEnabled()  # nothing left to move


def test_a_second_prediction_of_the_image_never_replaces_the_firsts_segmentation(docked, gui, synthetic):
    """Segmentations are named after their image ('raw segmentation'): building the tree of a second
    prediction of the same image (another model's) adds a segmentation beside the first one, which
    may hold proofreading, and rebuilding the same prediction replaces only its own."""
    viewer, dock = docked
    labels = _affinities_layer(viewer, synthetic)
    info = L.layer_info(viewer.layers["raw affinities"])
    data, kwargs = L.prediction_layer_args(synthetic["noisy_affinities"](labels, noise=0.2, seed=1),
                                           viewer.layers["raw"], "raw affinities [2]", "affinities", info=info)
    viewer.add_image(data, **kwargs)
    segment = SegmentWidget(viewer)
    dock(segment)

    def build(prediction):
        gui.choose(segment.pred_combo, prediction)
        segment.tree = None
        gui.click(segment.build_button)
        gui.wait_until(lambda: segment.tree is not None and segment.build_button.isEnabled(), timeout=60)
        return segment.seg_layer

    first = build("raw affinities")
    second = build("raw affinities [2]")
    assert first in viewer.layers and second in viewer.layers and first.name != second.name
    assert L.layer_info(first).source == "raw affinities" and L.layer_info(second).source == "raw affinities [2]"
    again = build("raw affinities")  # its own segmentation is rebuilt in place, the other one kept
    assert first not in viewer.layers and again.name == first.name and second in viewer.layers
