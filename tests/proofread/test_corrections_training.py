"""Corrections become training data: an oracle session on a cells crop, turned into annotation with
``corrections_annotation(scope="edited")``, trains (known = the annotated pixels only) in a
fine-tuning run that records its parent."""

from __future__ import annotations

import json

import numpy as np

from segtrain.annotation import BACKGROUND_LABEL, training_arrays
from segtrain.config import config_from_dict
from segtrain.proofread import Proofreader, corrections_annotation
from segtrain.proofread.oracle import apply_choice, best_edit
from segtrain.runs import RunFolder
from segtrain.train import ArraySource, TrainingRun


def tiny_cells_config(steps: int):
    return config_from_dict({"preset": "wells2d_quick", "name": "tiny-cells",
                             "data": {"patch_shape": [64, 64], "val_patches": 1},
                             "model": {"encoder_depth": 3},
                             "train": {"max_steps": steps, "val_every": steps, "checkpoint_every": steps,
                                       "batch_size": 2, "warmup_steps": 0, "report_interval": 0.0}})


def test_oracle_corrections_train_a_fine_tuned_run(tmp_path, cells_dir):
    from segtrain.io import read_volume

    raw = np.asarray(read_volume(cells_dir / "set01" / "raw.tif").data)[128:256, 256:384]
    gt = np.asarray(read_volume(cells_dir / "set01" / "instances_ids.png").data)[128:256, 256:384].astype(np.uint32)
    # a poor segmentation of the crop: the ground truth with two touching objects merged, one object
    # missing and a false object on background
    seg = gt.astype(np.uint64).copy()
    ids, sizes = np.unique(gt[gt > 0], return_counts=True)
    big = ids[np.argsort(sizes)[::-1]]
    seg[gt == big[1]] = big[0]
    seg[gt == big[2]] = 0
    y, x = np.argwhere(gt == 0)[0]
    seg[y:y + 3, x:x + 3][gt[y:y + 3, x:x + 3] == 0] = 999
    reader = Proofreader(seg)
    ops = []
    for _ in range(5):
        choice = best_edit(reader, gt, background=True)
        if choice is None:
            break
        ops.append(apply_choice(reader, choice, gt).op)
    assert sorted(ops) == ["delete", "paint", "split_seeds"], ops
    annotation = corrections_annotation(reader, scope="edited")
    # the deleted false object is annotated background; the split pair and the painted object are objects
    assert np.array_equal(annotation == BACKGROUND_LABEL, seg == 999)
    assert len(np.unique(annotation[(annotation > 0) & (annotation < BACKGROUND_LABEL)])) == 3
    # as the Data panel turns an annotation into training arrays (sparse: 0 = not annotated)
    labels, known = training_arrays(annotation, sparse=True)
    assert 0 < known.sum() < known.size  # only what the edits touched
    corrected = reader.segmentation()
    edited = np.isin(corrected, np.array(sorted(reader.edited_segments()), np.uint64))
    assert np.array_equal(known & (labels > 0), edited)  # the edited segments are the objects
    # the corrected objects agree with the ground truth where they are annotated
    for obj in np.unique(labels[labels > 0]):
        values, counts = np.unique(gt[labels == obj], return_counts=True)
        assert counts.max() / counts.sum() > 0.9 and values[np.argmax(counts)] != 0

    source = ArraySource(raw, labels, known=known, name="corrections")
    source.prepare(2, 1, "percentile", None)
    assert np.array_equal(np.asarray(source._known).astype(bool), known)
    sample = source.sample(np.random.default_rng(0), (64, 64))
    assert sample.known.any() and not sample.known.all()

    parent = TrainingRun(tiny_cells_config(2), [ArraySource(raw[:96], gt[:96])], [ArraySource(raw[96:], gt[96:])],
                         runs_root=tmp_path)
    parent.run()
    child = TrainingRun(tiny_cells_config(2), [ArraySource(raw[:96], gt[:96]), source],
                        [ArraySource(raw[96:], gt[96:])], runs_root=tmp_path, init_from=parent.run_dir)
    last = child.run()
    assert last.done and last.step == 2
    assert RunFolder(child.run_dir).parent() == parent.run_dir.resolve()
    assert json.loads((child.run_dir / "run.json").read_text())["parent"] == str(parent.run_dir.resolve())
