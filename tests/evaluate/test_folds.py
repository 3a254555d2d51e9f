"""K-fold splits: every part held out exactly once, never trained on in its own fold."""

from __future__ import annotations

import pytest

from segtrain.config import SourceConfig
from segtrain.errors import InputError
from segtrain.evaluate.folds import make_folds


def _z_ranges(entries):
    return [tuple(e.crop[0]) for e in entries]


def test_one_volume_is_cut_into_slabs_along_z_and_adjacent_training_slabs_are_joined():
    volume = dict(raw="v.h5", labels="gt.h5")
    entries = [SourceConfig(**volume, crop=[[0, 35], [0, 100]]), SourceConfig(**volume, crop=[[35, 50], [0, 100]])]
    folds = make_folds(entries, 3)
    assert [_z_ranges(f.heldout) for f in folds] == [[(0, 17)], [(17, 33)], [(33, 50)]]
    assert [_z_ranges(f.train) for f in folds] == [[(17, 50)], [(0, 17), (33, 50)], [(0, 33)]]
    for fold in folds:  # the other axes' crops are kept; nothing held out is trained on
        assert all(e.crop[1] == [0, 100] for e in fold.train + fold.heldout)
        held = set(range(*fold.heldout[0].crop[0]))
        assert not any(held & set(range(*e.crop[0])) for e in fold.train)


def test_an_uncropped_volume_needs_its_length():
    entry = SourceConfig(raw="v.h5", labels="gt.h5")
    assert _z_ranges(make_folds([entry], 2, first_axis_length=lambda e: 10)[1].heldout) == [(5, 10)]
    with pytest.raises(InputError, match="length"):
        make_folds([entry], 2)


def test_images_are_held_out_in_groups_of_whole_images_each_once():
    entries = [SourceConfig(raw=f"set{i:02d}/raw.tif", labels=f"set{i:02d}/ids.png") for i in range(1, 11)]
    folds = make_folds(entries, 3)
    held = [[e.raw[:5] for e in f.heldout] for f in folds]
    assert held == [["set01", "set02", "set03", "set04"], ["set05", "set06", "set07"], ["set08", "set09", "set10"]]
    for fold in folds:
        assert {e.raw for e in fold.train} | {e.raw for e in fold.heldout} == {e.raw for e in entries}
        assert not {e.raw for e in fold.train} & {e.raw for e in fold.heldout}


def test_bad_fold_counts_say_what_to_do():
    entries = [SourceConfig(raw=f"{i}.tif", labels=f"{i}.png") for i in range(3)]
    with pytest.raises(InputError, match="at least 2 folds"):
        make_folds(entries, 1)
    with pytest.raises(InputError, match="use --folds 3 or fewer"):
        make_folds(entries, 4)
    with pytest.raises(InputError, match="no annotated images"):
        make_folds([SourceConfig(raw="a.tif")], 2)
