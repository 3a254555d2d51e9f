"""A correction round with the oracle user (no Qt): the edits it yields and the scores it records."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np

from segtrain import evaluate
from segtrain.proofread import Proofreader
from segtrain.workflows.correction import OracleEdit, correction_round, corrections_source, oracle_edits


def _wrong_cells(cells_dir):
    labels = np.asarray(iio.imread(cells_dir / "set01" / "instances_ids.png")).astype(np.uint32)[:300, :300]
    wrong = labels.copy()
    ids = np.unique(labels[labels > 0])
    wrong[labels == ids[1]] = ids[0]  # a merge error
    wrong[labels == ids[2]] = 0  # a missed cell
    wrong[:20, :20] = 250  # a false object
    return labels, wrong


def test_a_correction_round_fixes_the_errors_and_records_the_scores_at_the_marks(cells_dir):
    labels, wrong = _wrong_cells(cells_dir)

    def f1(seg):
        return evaluate.instance_scores(seg, labels)["f1"]

    reader = Proofreader(wrong)
    result = correction_round(reader, labels, f1, 10, background=True, marks=(0, 1, 2, 8))
    assert result.before < 1.0 and result.after == 1.0 == f1(reader.segmentation())
    assert sorted(result.ops) == ["delete", "paint", "split_seeds"] and len(result.edits) == 3
    assert [e.index for e in result.edits] == [1, 2, 3]
    assert [e.score for e in result.edits] == sorted(e.score for e in result.edits)  # each edit helps
    assert result.scores[0] == result.before and result.scores[1] == result.edits[0].score
    assert result.scores[8] == 1.0 and 10 not in result.scores  # mark 8: no edit left, as after the last
    assert result.op_counts() == {"delete": 1, "paint": 1, "split_seeds": 1}
    assert result.ms_per_edit()["median"] > 0


def test_the_voxel_oracle_edits_one_at_a_time_up_to_the_limit(cells_dir):
    labels, wrong = _wrong_cells(cells_dir)
    reader = Proofreader(wrong)
    edits = oracle_edits(reader, labels, None, 2, background=True, kind="voxels")
    first = next(edits)
    assert isinstance(first, OracleEdit) and first.index == 1 and first.score is None
    assert not np.array_equal(reader.segmentation(), wrong)  # made before it is yielded
    assert len(list(edits)) == 1  # the limit: 2 edits of the 3 errors
    assert evaluate.instance_scores(reader.segmentation(), labels)["f1"] < 1.0


def test_the_corrections_become_a_training_source_that_knows_only_what_was_corrected(cells_dir):
    labels, wrong = _wrong_cells(cells_dir)
    raw = np.asarray(iio.imread(cells_dir / "set01" / "raw.tif"))[:300, :300]
    reader = Proofreader(wrong)
    correction_round(reader, labels, lambda seg: evaluate.instance_scores(seg, labels)["f1"], 3, background=True)
    annotation, source = corrections_source(reader, raw, "edited", "set01-corrections", weight=0.5)
    assert source.raw is raw and source.weight == 0.5 and source.name == "set01-corrections"
    assert source.known.any() and not source.known.all()  # the edited segments, not the whole image
    np.testing.assert_array_equal(source.known, annotation > 0)
    assert source.labels[:20, :20].max() == 0 and source.known[:20, :20].all()  # the deleted false object: background
    assert np.all(source.labels[source.known & (labels == 0)] == 0)  # no object where the truth has none
