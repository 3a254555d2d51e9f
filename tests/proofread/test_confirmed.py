"""Corrections as annotation, scope "confirmed" (the default): only what each edit decided becomes
annotation (near a split's new boundary and its seeds, near a merge's removed boundary and its
clicks, deleted areas, painted objects, the background around them), unknown elsewhere; replayed
edit by edit, so later edits neither hide nor move what an earlier one confirmed."""

from __future__ import annotations

import numpy as np
import pytest

from segtrain.annotation import BACKGROUND_LABEL
from segtrain.errors import InputError
from segtrain.proofread import Proofreader, boundary_map, corrections_annotation
from segtrain.proofread.oracle import annotation_summary, apply_choice, best_edit


def _bar():
    """A bar over two true objects (x 10-39 and 40-69) segmented as one, a false object apart, and a
    boundary map with the true boundary at x = 39/40."""
    seg = np.zeros((60, 80), np.uint32)
    seg[10:30, 10:70] = 1
    seg[44:52, 60:68] = 2
    boundary = np.zeros(seg.shape, np.float32)
    boundary[:, 39:41] = 1.0
    return seg, boundary


def test_a_split_confirms_its_cut_and_seeds_not_the_whole_parts():
    seg, boundary = _bar()
    reader = Proofreader(seg, boundary=boundary)
    reader.split_with_seeds([(20, 15), (20, 65)])
    a = corrections_annotation(reader, radius=4)  # the default scope
    assert a[20, 39] != a[20, 40] and {a[20, 39], a[20, 40]} <= set(range(1, BACKGROUND_LABEL))  # the cut
    assert a[20, 36] == a[20, 39] and a[20, 43] == a[20, 40]  # within 4 of it
    assert a[20, 15] == a[20, 39] and a[20, 12] == a[20, 15]  # the seed and around it
    assert a[20, 25] == 0 and a[20, 55] == 0  # the parts far from cut and seeds: unknown
    assert a[8, 40] == BACKGROUND_LABEL and a[8, 25] == 0  # background beside the cut's end, not elsewhere
    assert (a[44:52, 60:68] == 0).all()  # untouched segments: unknown
    # the model's own outline left unknown (3 pixels in from the segmentation's background), no ring
    inner = corrections_annotation(reader, radius=4, outline=3, ring=False)
    assert inner[20, 39] != inner[20, 40] and (inner[10:13, 36:44] == 0).all() and (inner[13, 36:44] > 0).all()
    assert not (inner == BACKGROUND_LABEL).any()
    edited = corrections_annotation(reader, scope="edited")  # the old scope: the parts whole
    assert (edited[10:30, 10:70] > 0).all() and edited[20, 25] != edited[20, 55]
    assert np.count_nonzero(a) < np.count_nonzero(edited) + 40  # far less object, a little background


def test_merge_delete_paint_and_edits_on_top_of_edits():
    seg, boundary = _bar()
    reader = Proofreader(seg, boundary=boundary)
    reader.split_with_seeds([(20, 15), (20, 65)])
    reader.merge([(20, 15), (20, 65)])  # taken back by a merge: its removed boundary is confirmed as inside
    a = corrections_annotation(reader, radius=4)
    assert a[20, 39] == a[20, 40] == a[20, 15] and a[20, 25] == 0
    reader.split_with_seeds([(20, 15), (20, 65)])
    reader.split_with_seeds([(20, 45), (20, 65)])  # the right part cut again, at the boundary map's level
    reader.delete((48, 64))
    painted = np.zeros(seg.shape, bool)
    painted[40:50, 10:20] = True
    reader.paint(painted)
    a = corrections_annotation(reader, radius=4)
    final = reader.segmentation()
    # every cut stays taught with the final ids, the first one too
    assert a[20, 39] != a[20, 40] and a[20, 39] > 0
    assert len(np.unique(a[20, 36:44])) == 2 and np.array_equal(a[20, 36:44] > 0, np.ones(8, bool))
    assert (a[44:52, 60:68] == BACKGROUND_LABEL).all()  # deleted: background
    assert len(np.unique(a[painted])) == 1 and a[painted][0] not in (0, BACKGROUND_LABEL)  # painted: whole
    assert (a[55:, :] == 0).all()  # far from every edit
    known = a > 0
    assert (final[known & (a < BACKGROUND_LABEL)] > 0).all() and (final[a == BACKGROUND_LABEL] == 0).all()
    reader.undo()  # the paint undone: no longer annotated
    assert (corrections_annotation(reader, radius=4)[painted] == 0).all()


def test_confirmed_corrections_are_purer_than_the_edited_objects(em):
    """Oracle splits on an over-merged FIB-SEM tree: the parts are often still merged far from the
    cut. Annotating near the cuts is purer than annotating the parts whole (which teaches those
    merges), and annotates less."""
    gt, affs, tree = em
    reader = Proofreader(tree.fragments, tree, 0.9, boundary=boundary_map(affs, "affinities"))  # over-merged
    ops = []
    for _ in range(3):
        choice = best_edit(reader, gt)
        if choice is None:
            break
        ops.append(apply_choice(reader, choice, gt).op)
    assert ops == ["split_seeds"] * 3, ops
    confirmed = annotation_summary(corrections_annotation(reader, radius=4), gt)
    edited = annotation_summary(corrections_annotation(reader, scope="edited"), gt)
    assert confirmed["voxels_objects"] < edited["voxels_objects"]
    assert confirmed["purity"] > 0.95 and edited["purity"] < 0.85, (confirmed, edited)
    # the segmentation covers the membranes (ground truth 0); as background they teach no merges
    annotation = corrections_annotation(reader, radius=4, boundary_background=0.5)
    membranes = annotation_summary(annotation, gt)
    assert membranes["objects_on_gt_0"] < 0.5 * confirmed["objects_on_gt_0"], (membranes, confirmed)
    assert membranes["background_right"] > 0.6  # noisy affinities: some membranes are not there
    assert (annotation[reader.boundary > 0.5][annotation[reader.boundary > 0.5] > 0] == BACKGROUND_LABEL).all()


def test_confirmed_scope_refuses_bad_requests():
    seg, boundary = _bar()
    reader = Proofreader(seg, boundary=boundary)
    with pytest.raises(InputError, match="No edits"):
        corrections_annotation(reader)
    reader.delete((48, 64))
    with pytest.raises(InputError, match="radius"):
        corrections_annotation(reader, radius=0)
    with pytest.raises(InputError, match="voxel size per axis"):
        corrections_annotation(reader, sampling=(1.0,))
    with pytest.raises(InputError, match="Scope is one of"):
        corrections_annotation(reader, scope="nearby")
    with pytest.raises(InputError, match="no boundary map"):
        corrections_annotation(Proofreader(seg), scope="all", boundary_background=0.5)
