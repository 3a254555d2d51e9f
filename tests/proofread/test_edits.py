"""Proofreading edits on a real merge tree (FIB-SEM ground truth, noisy affinities) and on real
cell labels: merge, split along the tree, split at seeds, delete, paint, undo/redo, edits kept
across thresholds, the log saved and read back, corrections as annotation."""

from __future__ import annotations

import numpy as np
import pytest

from segtrain.errors import InputError
from segtrain.proofread import Proofreader, boundary_map, corrections_annotation


def two_segments(seg):
    """Points inside the two largest segments."""
    ids, counts = np.unique(seg[seg > 0], return_counts=True)
    a, b = ids[np.argsort(counts)[-2:]]
    pa = np.argwhere(seg == a)[0]
    pb = np.argwhere(seg == b)[0]
    return a, b, pa, pb


def test_merge_delete_undo_redo_and_thresholds(em):
    _gt, _affs, tree = em
    t = 0.3
    reader = Proofreader(tree.fragments, tree, t)
    before = tree.segmentation(t)
    assert np.array_equal(reader.segmentation(), before)  # no edits: the tree's own segmentation
    a, b, pa, pb = two_segments(before)
    reader.merge([pa, pb])
    seg = reader.segmentation()
    both = (before == a) | (before == b)
    assert len(np.unique(seg[both])) == 1 and seg[pa[0], pa[1], pa[2]] not in (a, b)
    assert np.array_equal(seg[~both], before[~both])  # nothing else changed
    # another threshold: the tree is re-cut, the merged fragments stay one segment
    reader.set_threshold(0.2)
    low = tree.segmentation(0.2)
    seg2 = reader.segmentation()
    assert len(np.unique(seg2[both])) == 1
    untouched = ~np.isin(low, np.unique(low[both]))  # segments at 0.2 that share no fragment with the edit
    assert np.array_equal(seg2[untouched], low[untouched])
    reader.set_threshold(t)
    reader.delete(pa)
    assert (reader.segmentation()[both] == 0).all()
    assert reader.undo().op == "delete" and len(np.unique(reader.segmentation()[both])) == 1
    assert reader.undo().op == "merge" and np.array_equal(reader.segmentation(), before)
    assert reader.undo() is None
    reader.redo()
    assert len(np.unique(reader.segmentation()[both])) == 1 and [e.op for e in reader.edits] == ["merge"]
    assert len(reader.redo_stack) == 1
    reader.delete(pb)  # a new edit clears what could be redone
    assert reader.redo_stack == [] and reader.redo() is None
    with pytest.raises(InputError, match="background"):
        reader.merge([pb, pa])  # both deleted now
    other = np.argwhere(reader.segmentation() > 0)[0]
    with pytest.raises(InputError, match="same segment"):
        reader.merge([other, other])


def test_split_one_level_down_follows_the_tree(em):
    _gt, _affs, tree = em
    t = 0.5
    reader = Proofreader(tree.fragments, tree, t)
    seg = tree.segmentation(t)
    ids, counts = np.unique(seg[seg > 0], return_counts=True)
    target = ids[np.argmax(counts)]
    point = np.argwhere(seg == target)[0]
    frags = reader.fragments_of(target)
    edit = reader.split(point)
    groups = [set(g) for g in edit.groups]
    assert len(groups) == 2 and set().union(*groups) == set(frags.tolist())
    # the last merge inside the segment is undone: just below its score, every segment of the
    # tree inside the old segment lies within one of the two parts
    k = tree.n_merges(t)
    inside = np.flatnonzero(np.isin(tree.merges_a[:k], frags) & np.isin(tree.merges_b[:k], frags))
    last = inside[-1]
    lut_before = tree._lut_for(int(last))
    for g in groups:
        rest = set(frags.tolist()) - g
        assert not set(lut_before[list(g)].tolist()) & set(lut_before[list(rest)].tolist())
    after = reader.segmentation()
    assert len(np.unique(after[seg == target])) == 2
    assert np.array_equal(after[seg != target], seg[seg != target])
    reader.undo()
    assert np.array_equal(reader.segmentation(), seg)


def test_split_at_seeds_and_paint_change_voxels_and_undo_exactly(em):
    _gt, affs, tree = em
    t = 0.5
    reader = Proofreader(tree.fragments, tree, t, boundary=boundary_map(affs, "affinities"))
    seg = tree.segmentation(t)
    fragments_before = np.array(tree.fragments, copy=True)
    ids, counts = np.unique(seg[seg > 0], return_counts=True)
    target = ids[np.argmax(counts)]
    where = np.argwhere(seg == target)
    seeds = [where[0], where[-1]]
    reader.split_with_seeds(seeds)
    after = reader.segmentation()
    parts = np.unique(after[seg == target])
    assert len(parts) == 2 and 0 not in parts
    assert after[tuple(seeds[0])] != after[tuple(seeds[1])]
    assert np.array_equal(after[seg != target], seg[seg != target])
    assert np.array_equal(tree.fragments, fragments_before)  # the tree's own array is never written
    mask = np.zeros(seg.shape, bool)
    mask[2:4, 10:20, 10:20] = True
    reader.paint(mask)
    painted = reader.segmentation()
    assert len(np.unique(painted[mask])) == 1 and painted[mask][0] not in np.unique(after)
    reader.undo()
    reader.undo()
    assert np.array_equal(reader.fragments, fragments_before) and np.array_equal(reader.segmentation(), seg)
    reader.redo()
    reader.redo()
    assert np.array_equal(reader.segmentation(), painted)
    with pytest.raises(InputError, match="at least two seeds"):
        reader.split_with_seeds([where[0]])
    with pytest.raises(InputError, match="background"):
        reader.split_with_seeds([where[0], np.argwhere(painted == 0)[0]])
    with pytest.raises(InputError, match="outside"):
        reader.delete([100, 0, 0])


def test_log_saved_and_read_back(tmp_path, em):
    _gt, _affs, tree = em
    reader = Proofreader(tree.fragments, tree, 0.4)
    seg = tree.segmentation(0.4)
    _a, _b, pa, pb = two_segments(seg)
    reader.merge([pa, pb])
    where = np.argwhere(reader.segmentation() == reader.segment_at(pa))
    reader.split_with_seeds([where[0], where[-1]])
    reader.delete(np.argwhere(reader.segmentation() > 0)[-1])
    reader.undo()  # kept on the redo stack
    path = reader.save(tmp_path / "seg_proofreading.npz")
    back = Proofreader.load(path)
    assert np.array_equal(back.segmentation(), reader.segmentation())
    assert back.log() == reader.log() and [e.op for e in back.redo_stack] == ["delete"]
    back.undo()
    back.undo()
    assert np.array_equal(back.segmentation(), seg)  # voxel changes undone from the file
    back.set_threshold(0.2)
    assert np.array_equal(back.segmentation(), tree.segmentation(0.2))
    (tmp_path / "broken.npz").write_bytes(b"not a file")
    with pytest.raises(InputError, match="Cannot read the proofreading file"):
        Proofreader.load(tmp_path / "broken.npz")
    with pytest.raises(InputError, match="already exists"):
        reader.save(path)


def test_instances_without_a_tree_and_corrections_as_annotation(cells_dir):
    import imageio.v3 as iio

    labels = np.asarray(iio.imread(cells_dir / "set01" / "instances_ids.png")).astype(np.uint32)
    reader = Proofreader(labels)
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    a, b = ids[np.argsort(counts)[-2:]]
    pa, pb = np.argwhere(labels == a)[0], np.argwhere(labels == b)[0]
    with pytest.raises(InputError, match="no merge tree"):
        reader.split(pa)
    reader.merge([pa, pb])
    c = ids[np.argsort(counts)[-3]]
    reader.delete(np.argwhere(labels == c)[0])
    seg = reader.segmentation()
    assert seg[tuple(pa)] == seg[tuple(pb)] and (seg[labels == c] == 0).all()
    annotation = corrections_annotation(reader, scope="edited")
    merged = (labels == a) | (labels == b)
    assert (annotation[merged] == 1).all()  # one object, numbered from 1
    assert (annotation[labels == c] == 65534).all()  # deleted: background
    assert (annotation[~merged & (labels != c)] == 0).all()  # elsewhere: not annotated
    existing = np.zeros(labels.shape, np.uint32)
    existing[:5, :5] = 7
    combined = corrections_annotation(reader, scope="edited", existing=existing)
    assert (combined[:5, :5] == 7).all() and (combined[merged] == 8).all()
    whole = corrections_annotation(reader, scope="box", box=[(0, 50), (0, 50)])
    assert (whole[50:, :] == 0).all() and (whole[:50, :50] > 0).all()
    with pytest.raises(InputError, match="No edits"):
        corrections_annotation(Proofreader(labels))


def test_the_oracle_improves_voi_and_f1_edit_by_edit(em, cells_dir):
    """The benchmark's oracle user: each edit it picks from the ground truth puts voxels right."""
    import imageio.v3 as iio

    from segtrain import evaluate
    from segtrain.proofread.oracle import apply_choice, best_edit, oracle_step

    gt, affs, tree = em
    reader = Proofreader(tree.fragments, tree, 0.6, boundary=boundary_map(affs, "affinities"))  # over-merged
    vois = [evaluate.voi(reader.segmentation(), gt)["voi"]]
    for _ in range(6):
        edit, value, _seconds = oracle_step(reader, gt, lambda seg: evaluate.voi(seg, gt)["voi"],
                                            lower_is_better=True)
        assert edit is not None and value < vois[-1]  # the edit kept is one that helps
        assert value == pytest.approx(evaluate.voi(reader.segmentation(), gt)["voi"])
        vois.append(value)
    assert vois[-1] < vois[0] - 0.2, vois
    labels = np.asarray(iio.imread(cells_dir / "set01" / "instances_ids.png")).astype(np.uint32)[:300, :300]
    wrong = labels.copy()
    ids = np.unique(labels[labels > 0])
    wrong[labels == ids[1]] = ids[0]  # a merge error
    wrong[labels == ids[2]] = 0  # a missed cell
    wrong[:20, :20] = 250  # a false object
    reader = Proofreader(wrong)
    f1 = [evaluate.instance_scores(reader.segmentation(), labels)["f1"]]
    ops = []
    for _ in range(3):
        choice = best_edit(reader, labels, background=True)
        ops.append(apply_choice(reader, choice, labels).op)
        f1.append(evaluate.instance_scores(reader.segmentation(), labels)["f1"])
    assert sorted(ops) == ["delete", "paint", "split_seeds"] and f1[-1] == 1.0 and f1[0] < 1.0, (ops, f1)


def test_the_oracle_paints_the_objects_of_an_empty_segmentation():
    """An untrained model's segmentation may hold no object at all, or none on a true object."""
    from segtrain.proofread.oracle import apply_choice, best_edit, candidates

    gt = np.zeros((20, 20), np.uint32)
    gt[5:10, 5:10] = 3
    assert [(c.op, c.args, c.gain) for c in candidates(Proofreader(np.zeros_like(gt)), gt, background=True)] == \
        [("paint", (3,), 25)]
    seg = np.zeros_like(gt)
    seg[12:18, 12:18] = 7  # on background only
    reader = Proofreader(seg)
    assert sorted(c.op for c in candidates(reader, gt, background=True)) == ["delete", "paint"]
    apply_choice(reader, best_edit(reader, gt, background=True), gt)
    assert reader.segmentation()[12:18, 12:18].max() == 0


def test_sparse_huge_ids_are_numbered_without_a_huge_table():
    labels = np.zeros((4, 8, 8), np.uint64)
    labels[:, :4] = 2**40 + 7
    labels[:, 4:] = 2**50 + 3
    reader = Proofreader(labels)
    assert reader.lut.size < 10  # not 2**50 entries
    seg = reader.segmentation()
    assert len(np.unique(seg[:, :4])) == 1 and len(np.unique(seg[:, 4:])) == 1 and seg[0, 0, 0] != seg[0, 5, 0]
    reader.merge([(0, 0, 0), (0, 5, 0)])
    assert len(np.unique(reader.segmentation())) == 1


def test_seeds_checked_one_by_one_and_the_threshold_of_labels_without_a_tree(tmp_path):
    labels = np.zeros((20, 40), np.uint32)
    labels[2:18, 2:18], labels[2:18, 22:38] = 1, 2
    reader = Proofreader(labels, threshold=0.38)  # an instance segmentation made at 0.38
    assert reader.check_seed((5, 5)) == 1 and reader.check_seed((12, 12), [(5, 5)]) == 1
    with pytest.raises(InputError, match="^That seed lies on background"):
        reader.check_seed((0, 0))
    with pytest.raises(InputError, match="^That seed lies in another segment"):
        reader.check_seed((5, 25), [(5, 5)])
    reader.delete((5, 25))
    assert reader.log()[0]["threshold"] == 0.38
    plain = Proofreader(labels, threshold=None)  # labels from a file: no threshold made them
    plain.merge([(5, 5), (5, 25)])
    back = Proofreader.load(plain.save(tmp_path / "p_proofreading.npz"))
    assert back.threshold is None and back.log()[0]["threshold"] is None
    with pytest.raises(InputError, match="needs the threshold"):
        Proofreader(labels, tree=object(), threshold=None)
