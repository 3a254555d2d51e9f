"""Segment panel on a 2D affinity model's prediction of a stack of slices (serial-section EM): the
Build click makes the core's slice-by-slice merge tree; no segment crosses slices; the ground truth
is scored slice by slice as the command line scores it (an id in two slices is two objects)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import relabel_sequential

from segtrain.evaluate import sweep
from segtrain.plugin import layers as L
from segtrain.plugin.widgets.segment import SegmentWidget
from segtrain.targets import affinities
from segtrain.targets.masks import labels_from_mask


def test_build_on_a_2d_models_stack_segments_each_slice(docked, gui, isbi_dir):
    import imageio.v3 as iio

    from segtrain.postprocess import segment_affinities

    viewer, dock = docked
    raw = np.stack([iio.imread(isbi_dir / "image" / f"{z}.png")[:64, :64] for z in range(3)])
    mask = np.stack([iio.imread(isbi_dir / "label" / f"{z}.png")[:64, :64] for z in range(3)])
    gt = labels_from_mask(mask, per_slice=True)
    rng = np.random.default_rng(1)
    affs = np.stack([affinities(g)[0] for g in gt], axis=1).astype(np.float32)  # (2, 3, 64, 64)
    affs = np.clip(0.2 + 0.6 * affs + rng.normal(0, 0.1, affs.shape), 0, 1).astype(np.float32)
    image = viewer.add_image(raw, name="raw")
    info = L.LayerInfo("affinities", task="affinities", model_ndim=2,
                       settings=L.segment_config({"fragments": "waterz"}))
    data, kwargs = L.prediction_layer_args(affs, image, "raw affinities", "affinities", info=info)
    viewer.add_image(data, **kwargs)
    # each slice numbered from 1: the same ids in every slice, other objects
    restarted = np.stack([relabel_sequential(g)[0] for g in gt])
    assert set(np.unique(restarted[0])) & set(np.unique(restarted[1])) - {0}
    viewer.add_labels(restarted, name="gt")
    segment = SegmentWidget(viewer)
    dock(segment)
    gui.choose(segment.gt_combo, "gt")
    gui.click(segment.build_button)
    gui.wait_until(segment.build_button.isEnabled, timeout=60)
    assert segment.tree is not None, segment.status.text()  # no refusal of the (2, z, y, x) array
    expected = segment_affinities(affs, info.settings, model_ndim=2)
    np.testing.assert_array_equal(segment.tree.fragments, expected.fragments)
    for threshold in (0.5, 0.999):
        seg = segment.tree.segmentation(threshold)
        shared = set(np.unique(seg[0])) & set(np.unique(seg[1])) - {0}
        assert not shared, f"segments cross slices at {threshold}"
    assert segment.sweep is not None and np.isfinite(segment.sweep.best["voi"])
    by_slice = sweep(expected, gt, thresholds=info.settings.thresholds)  # ids unique across slices
    assert segment.sweep.best["voi"] == pytest.approx(by_slice.best["voi"], abs=1e-9)
    assert list(segment.sweep.voi) == pytest.approx(list(by_slice.voi), abs=1e-9)
