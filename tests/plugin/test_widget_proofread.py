"""Proofread panel, driven by real mouse clicks on the canvas and on its buttons: merge, split
along the merge tree, split at seeds, delete, paint, undo/redo on the shared FIB-SEM volume and on
a cells image; the edits stay on top when the Segment slider moves; Export writes the edited
segmentation and the log, Open reads them back; corrections become annotation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.engine_data import em3d_gt, noisy
from scipy import ndimage

from segtrain.plugin import layers as L
from segtrain.plugin.widgets.export import ExportWidget
from segtrain.plugin.widgets.proofread import PAINT_LAYER, ProofreadWidget
from segtrain.plugin.widgets.segment import SegmentWidget
from segtrain.targets import affinities


def _interior(seg, segment_id, z=None):
    """A voxel of ``segment_id`` far from its border (on slice ``z`` when given)."""
    from scipy import ndimage

    mask = seg == segment_id
    if z is not None:
        only = np.zeros_like(mask)
        only[z] = mask[z]
        mask = only
    depth = ndimage.distance_transform_edt(mask)
    return np.unravel_index(np.argmax(depth), seg.shape)


def _largest(seg, z, n=2, exclude=()):
    ids, counts = np.unique(seg[z][seg[z] > 0], return_counts=True)
    keep = [(c, i) for c, i in zip(counts, ids) if i not in exclude]
    return [int(i) for _, i in sorted(keep, reverse=True)[:n]]


@pytest.fixture
def em_viewer(docked, gui, em3d_dir):
    viewer, dock = docked
    gt = em3d_gt(em3d_dir, (slice(0, 10), slice(0, 96), slice(0, 96)))
    raw = viewer.add_image(gt.astype(np.float32), name="raw")
    affs = noisy(affinities(gt)[0].astype(np.float32), 0.25)
    info = L.LayerInfo("affinities", task="affinities", model_ndim=3,
                       settings=L.segment_config({"min_seed_distance": 3, "min_size": 10}))
    data, kwargs = L.prediction_layer_args(affs, raw, "raw affinities", "affinities", info=info)
    viewer.add_image(data, **kwargs)
    segment, proofread, export = SegmentWidget(viewer), ProofreadWidget(viewer), ExportWidget(viewer)
    dock(segment, proofread, export)
    gui.click(segment.build_button)
    gui.wait_until(lambda: segment.tree is not None and segment.build_button.isEnabled(), timeout=60)
    gui.type(segment.threshold_spin, "0.3")
    return viewer, segment, proofread, export, gui


def _idle(gui, proofread):
    gui.wait_until(lambda: not proofread.busy(), timeout=30, what="the edit")


def test_merge_split_seeds_delete_undo_redo_by_clicks(em_viewer, tmp_path):
    viewer, segment, proofread, export, gui = em_viewer
    layer = segment.seg_layer
    assert proofread.seg_combo.layer() is layer
    tree = segment.tree
    z = 5
    base = tree.segmentation(0.3)
    a, b = _largest(base, z)
    gui.click(proofread.tool_buttons["Merge"])
    gui.click_canvas(viewer, layer, _interior(base, a, z))
    assert "picked" in proofread.status.text()
    gui.click_canvas(viewer, layer, _interior(base, b, z))
    _idle(gui, proofread)
    reader = L.layer_info(layer).proofreader
    seg = np.asarray(layer.data)
    both = (base == a) | (base == b)
    assert len(np.unique(seg[both])) == 1 and [e.op for e in reader.edits] == ["merge"]
    assert np.array_equal(seg[~both], base[~both])
    assert proofread.log_list.count() == 1 and "merged" in proofread.log_list.item(0).text()
    # the Segment slider re-cuts the tree; the merge stays on top (across all slices)
    gui.type(segment.threshold_spin, "0.15")
    seg = np.asarray(layer.data)
    assert len(np.unique(seg[both])) == 1
    low = tree.segmentation(0.15)
    untouched = ~np.isin(low, np.unique(low[both]))
    assert np.array_equal(seg[untouched], low[untouched])
    gui.type(segment.threshold_spin, "0.3")

    # split one level down the tree
    (c,) = _largest(np.asarray(layer.data), z, 1, exclude=np.unique(np.asarray(layer.data)[both]))
    before = np.asarray(layer.data)
    gui.click(proofread.tool_buttons["Split"])
    gui.click_canvas(viewer, layer, _interior(before, c, z))
    _idle(gui, proofread)
    after = np.asarray(layer.data)
    assert reader.edits[-1].op == "split" and len(np.unique(after[before == c])) == 2

    # split at seeds: one seed per part, then the button
    seg = np.asarray(layer.data)
    (d,) = _largest(seg, z, 1)
    where = np.argwhere(seg[z] == d)
    gui.click(proofread.tool_buttons["Seeds"])
    assert proofread.seeds_button.isVisible()
    seeds = [(z, *where[0]), (z, *where[-1])]
    for p in seeds:
        gui.click_canvas(viewer, layer, p)
    assert len(viewer.layers["split seeds"].data) == 2
    gui.click(proofread.seeds_button)
    _idle(gui, proofread)
    seg2 = np.asarray(layer.data)
    assert reader.edits[-1].op == "split_seeds" and len(np.unique(seg2[seg == d])) == 2
    assert 0 not in np.unique(seg2[seg == d])

    # delete
    gui.click(proofread.tool_buttons["Delete"])
    e = _largest(seg2, z, 1)[0]
    gui.click_canvas(viewer, layer, _interior(seg2, e, z))
    _idle(gui, proofread)
    seg3 = np.asarray(layer.data)
    assert (seg3[seg2 == e] == 0).all()
    assert [x.op for x in reader.edits] == ["merge", "split", "split_seeds", "delete"]

    gui.click(proofread.undo_button)
    assert np.array_equal(np.asarray(layer.data), seg2) and proofread.redo_button.isEnabled()
    gui.click(proofread.undo_button)
    assert np.array_equal(np.asarray(layer.data), after)  # the seeded split's voxels restored
    gui.click(proofread.redo_button)
    gui.click(proofread.redo_button)
    assert np.array_equal(np.asarray(layer.data), seg3) and not proofread.redo_button.isEnabled()

    # export: the edited segmentation and its log; open them again
    gui.type(export.folder_edit, str(tmp_path))
    gui.type(export.name_edit, "proofread")
    gui.click(export.export_button)
    gui.wait_until(lambda: export.worker is None, timeout=60, what="the export")
    from segtrain.io import read_volume

    written = read_volume(tmp_path / "proofread.zarr")
    assert np.array_equal(np.asarray(written.data), seg3)
    log = json.loads((tmp_path / "proofread_edit_log.json").read_text())
    assert [x["op"] for x in log["edits"]] == ["merge", "split", "split_seeds", "delete"]
    gui.type(proofread.open_edit, str(tmp_path / "proofread_proofreading.npz"), enter=False)
    gui.click(proofread.open_button)
    opened = viewer.layers["proofread_proofreading"]
    assert proofread.seg_combo.layer() is opened
    assert np.array_equal(np.asarray(opened.data), seg3) and proofread.log_list.count() == 4
    gui.click(proofread.undo_button)
    assert np.array_equal(np.asarray(opened.data), seg2)


def test_cells_proofread_paint_and_corrections_as_annotation(docked, gui, cells_dir, error_messages):
    import imageio.v3 as iio

    viewer, dock = docked
    labels = np.asarray(iio.imread(cells_dir / "set01" / "instances_ids.png")).astype(np.uint32)[:400, :400]
    viewer.add_image(np.asarray(iio.imread(cells_dir / "set01" / "raw.tif"))[:400, :400], name="raw")
    layer = viewer.add_labels(labels, name="cells")
    proofread = ProofreadWidget(viewer)
    dock(proofread)
    assert proofread.seg_combo.currentText() == "(none)"  # labels from a file: chosen by the user only
    gui.choose(proofread.seg_combo, "cells")
    a, b, c = _largest(labels[None], 0, 3)
    gui.click(proofread.tool_buttons["Split"])
    gui.click_canvas(viewer, layer, _interior(labels, a))
    assert "no merge tree" in proofread.status.text() and error_messages()  # one sentence, nothing changed
    assert np.array_equal(np.asarray(layer.data), labels)
    gui.click(proofread.tool_buttons["Merge"])
    gui.click_canvas(viewer, layer, _interior(labels, a))
    gui.click_canvas(viewer, layer, _interior(labels, b))
    _idle(gui, proofread)
    gui.click(proofread.tool_buttons["Delete"])
    gui.click_canvas(viewer, layer, _interior(labels, c))
    _idle(gui, proofread)
    seg = np.asarray(layer.data)
    assert seg[_interior(labels, a)] == seg[_interior(labels, b)] and (seg[labels == c] == 0).all()
    # paint a missing object with napari's brush (a click on the canvas), then add it
    gui.click(proofread.tool_buttons["Paint"])
    scratch = viewer.layers[PAINT_LAYER]
    assert viewer.layers.selection.active is scratch and scratch.mode == "paint"
    empty = np.argwhere(labels == 0)
    spot = empty[len(empty) // 2]
    gui.click_canvas(viewer, scratch, spot)
    assert np.asarray(scratch.data).any()
    painted = np.asarray(scratch.data) > 0
    gui.click(proofread.paint_button)
    _idle(gui, proofread)
    seg = np.asarray(layer.data)
    new = np.unique(seg[painted])
    assert len(new) == 1 and new[0] not in np.unique(labels)
    assert not np.asarray(scratch.data).any()
    # corrections -> annotation, by default what the edits confirmed: around the merge's clicks
    # (and the boundary it removed), the deleted cell as background, the painted object; unknown elsewhere
    assert proofread.scope_combo.currentText() == "what the edits confirmed" and proofread.radius_spin.isEnabled()
    gui.type(proofread.radius_spin, "5")
    assert not proofread.membranes_check.isEnabled()  # no affinities under these labels: no membranes to read
    gui.click(proofread.annotate_button)
    _idle(gui, proofread)
    name = L.session(viewer).annotation_layer
    annotation = np.asarray(viewer.layers[name].data)
    merged = (labels == a) | (labels == b)
    near_clicks = np.zeros(labels.shape, bool)
    for point in (_interior(labels, a), _interior(labels, b)):
        near_clicks[point] = True
    near_clicks = ndimage.distance_transform_edt(~near_clicks) <= 5
    contact = ndimage.binary_dilation(labels == a) & (labels == b) | ndimage.binary_dilation(labels == b) & (labels == a)
    objects = (annotation > 0) & (annotation < L.BACKGROUND_LABEL)
    assert (annotation[merged & near_clicks] == annotation[_interior(labels, a)]).all()  # one object there
    if not contact.any():  # a and b do not touch: nothing else of them is confirmed
        assert not (objects & merged & ~near_clicks).any()
    assert 0 < np.count_nonzero(objects & merged) < merged.sum()  # not the merged cells whole
    assert (annotation[labels == c] == L.BACKGROUND_LABEL).all()
    assert len(np.unique(annotation[painted])) == 1 and annotation[painted][0] != annotation[_interior(labels, a)]
    far = ndimage.distance_transform_edt(~(merged | painted | (labels == c))) > 5
    assert (annotation[far] == 0).all()
    assert "corrected objects" in proofread.status.text()
    # the edited objects whole (the other scope), into a fresh annotation layer
    gui.close_layers(viewer, [name])
    assert name not in viewer.layers
    gui.choose(proofread.scope_combo, "edited objects")
    assert not proofread.radius_spin.isEnabled()
    gui.click(proofread.annotate_button)
    _idle(gui, proofread)
    annotation = np.asarray(viewer.layers[L.session(viewer).annotation_layer].data)
    assert len(np.unique(annotation[merged])) == 1 and annotation[merged][0] not in (0, L.BACKGROUND_LABEL)
    assert (annotation[labels == c] == L.BACKGROUND_LABEL).all()
    assert len(np.unique(annotation[painted])) == 1 and annotation[painted][0] != annotation[merged][0]
    untouched = ~merged & (labels != c) & ~painted
    assert (annotation[untouched] == 0).all()


def test_corrections_of_an_affinity_segmentation_take_the_predicted_membranes_as_background(em_viewer):
    """A merge confirms its objects; ticked (not the default), "Predicted membranes as background"
    turns their voxels where the affinities show a membrane into background, and nothing else;
    unticked, the objects stay whole."""
    from segtrain.proofread import boundary_map
    from segtrain.proofread.annotation import MEMBRANES

    viewer, segment, proofread, export, gui = em_viewer
    layer = segment.seg_layer
    base = segment.tree.segmentation(0.3)
    z = 5
    a, b = _largest(base, z)
    gui.click(proofread.tool_buttons["Merge"])
    gui.click_canvas(viewer, layer, _interior(base, a, z))
    gui.click_canvas(viewer, layer, _interior(base, b, z))
    _idle(gui, proofread)
    assert proofread.membranes_check.isEnabled() and not proofread.membranes_check.isChecked()
    affs = L.layer_info(viewer.layers["raw affinities"]).array  # channels first, as predicted
    membranes = boundary_map(affs, "affinities") > MEMBRANES
    annotations = {}
    for ticked in (True, False):
        if proofread.membranes_check.isChecked() != ticked:
            gui.click(proofread.membranes_check)
        gui.click(proofread.annotate_button)
        _idle(gui, proofread)
        name = L.session(viewer).annotation_layer
        annotations[ticked] = np.array(viewer.layers[name].data)
        gui.close_layers(viewer, [name])  # the next one into a fresh layer
    whole, with_membranes = annotations[False], annotations[True]
    objects = (whole > 0) & (whole < L.BACKGROUND_LABEL)
    assert objects.any() and not (objects & (whole == L.BACKGROUND_LABEL)).any()
    became_background = objects & (with_membranes == L.BACKGROUND_LABEL)
    assert became_background.any()
    np.testing.assert_array_equal(became_background, objects & membranes)
    np.testing.assert_array_equal(with_membranes[~became_background], whole[~became_background])


def test_next_uncertain_region_moves_the_view(docked, gui, error_messages):
    viewer, dock = docked
    raw = viewer.add_image(np.zeros((20, 128, 128), np.float32), name="raw")
    viewer.add_labels(np.ones((20, 128, 128), np.uint32), name="segmentation")
    proofread = ProofreadWidget(viewer)
    dock(proofread)
    gui.click(proofread.next_button)
    assert "Uncertainty ticked" in proofread.status.text() and error_messages()
    uncertainty = np.zeros((20, 128, 128), np.float32)
    uncertainty[12:18, 70:100, 20:50] = 0.5  # the most uncertain place
    uncertainty[2:6, 10:40, 90:120] = 0.2  # the next one
    data, kwargs = L.uncertainty_layer_args(uncertainty, raw, "raw uncertainty")
    viewer.add_image(data, **kwargs)
    assert proofread.uncertainty_combo.currentText() == "raw uncertainty"
    gui.click(proofread.next_button)
    gui.wait_until(lambda: proofread.regions, timeout=30, what="the ranking")
    first = proofread.regions[0].center
    assert 12 <= first[0] < 18 and 70 <= first[1] < 100 and 20 <= first[2] < 50
    assert viewer.dims.point[0] == pytest.approx(first[0], abs=1)
    assert np.allclose(viewer.camera.center[-2:], first[1:], atol=1)
    assert proofread.status.text().startswith("Region 1 of")
    gui.click(proofread.next_button)
    second = proofread.regions[1].center
    assert 2 <= second[0] < 6 and viewer.dims.point[0] == pytest.approx(second[0], abs=1)
    assert proofread.status.text().startswith("Region 2 of")
