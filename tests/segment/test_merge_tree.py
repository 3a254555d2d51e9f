import numpy as np
import pytest
from helpers.engine_data import em3d_gt, isbi_gt, noisy

from segtrain.errors import InputError
from segtrain.segment import (
    SCORING_FUNCTIONS,
    MergeTree,
    fragments_waterz,
    fragments_watershed,
    make_fragments,
)
from segtrain.segment._waterz import agglomerate, as_waterz_affinities
from segtrain.targets import affinities


def waterz_at(affs, fragments, threshold, scoring):
    """The brute-force answer: waterz itself, run fresh for one threshold."""
    waffs, is_2d = as_waterz_affinities(affs)
    frags = None
    if fragments is not None:
        frags = np.ascontiguousarray(fragments, dtype=np.uint64).copy()
        if frags.ndim == 2:
            frags = frags[None]
    for seg in agglomerate(waffs, [threshold], fragments=frags, scoring=scoring):
        seg = seg.copy()
    return seg[0] if is_2d else seg


def thresholds_around(tree, rng, n=4):
    """Random thresholds plus the exact merge scores and their float32 neighbours."""
    ts = list(rng.uniform(0, 1, n))
    scores = np.unique(tree.running_max)
    for s in rng.choice(scores, min(n, len(scores)), replace=False) if len(scores) else []:
        s = np.float32(s)
        ts += [float(s), float(np.nextafter(s, np.float32(0))), float(np.nextafter(s, np.float32(1)))]
    return [min(max(t, 0.0), 1.0) for t in ts] + [0.0, 1.0]


def synthetic_affs(shape=(8, 40, 40), seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.repeat(rng.integers(1, 6, (shape[0], 8, 8)), 5, 1), 5, 2)
    affs, _ = affinities(labels)
    return noisy(affs, 0.3, seed), labels


@pytest.mark.parametrize("scoring", ["mean", "hist_quant_50", "hist_quant_75"])
@pytest.mark.parametrize("fragment_method", ["watershed", "waterz"])
def test_merge_tree_equals_waterz_synthetic(scoring, fragment_method):
    affs, _ = synthetic_affs()
    frags = fragments_watershed(affs, min_seed_distance=1) if fragment_method == "watershed" else None
    tree = MergeTree.build(affs, frags, scoring=scoring)
    rng = np.random.default_rng(1)
    for t in thresholds_around(tree, rng):
        expected = waterz_at(affs, tree.fragments, t, scoring)
        got = tree.segmentation(t)
        assert got.dtype == np.uint64
        np.testing.assert_array_equal(got, expected, err_msg=f"threshold {t}")
        assert tree.n_segments(t) == len(np.unique(expected[expected != 0]))
        if frags is None:  # waterz's own fragments: the same as waterz run from scratch at t
            np.testing.assert_array_equal(got, waterz_at(affs, None, t, scoring), err_msg=f"threshold {t}")


@pytest.mark.shared_data
def test_merge_tree_equals_waterz_em3d(em3d_dir):
    gt = em3d_gt(em3d_dir)
    affs, _ = affinities(gt)
    rng = np.random.default_rng(2)
    for sigma, scoring in [(0.2, "hist_quant_50"), (0.4, "mean")]:
        a = noisy(affs, sigma, seed=3)
        tree = MergeTree.build(a, None, scoring=scoring)
        assert tree.n_present > 100
        for t in thresholds_around(tree, rng, n=3):
            np.testing.assert_array_equal(tree.segmentation(t), waterz_at(a, tree.fragments, t, scoring))


@pytest.mark.shared_data
def test_merge_tree_equals_waterz_isbi_2d(isbi_dir):
    gt = isbi_gt(isbi_dir, index=3)
    affs, _ = affinities(gt)
    a = noisy(affs, 0.3, seed=4)
    frags = fragments_watershed(a, min_seed_distance=2)
    assert frags.shape == gt.shape
    tree = MergeTree.build(a, frags, scoring="hist_quant_75")
    rng = np.random.default_rng(5)
    for t in thresholds_around(tree, rng, n=3):
        seg = tree.segmentation(t)
        assert seg.shape == gt.shape
        np.testing.assert_array_equal(seg, waterz_at(a, frags, t, "hist_quant_75"))


def test_lookup_relabel_and_slices():
    affs, _ = synthetic_affs(seed=3)
    tree = MergeTree.build(affs, None, scoring="hist_quant_50")
    t = float(np.median(tree.running_max))
    full = tree.segmentation(t)
    frag_ids, seg_ids = tree.lookup(t)
    assert frag_ids.dtype == np.uint64 and seg_ids.dtype == np.uint64
    lut = dict(zip(frag_ids.tolist(), seg_ids.tolist()))
    z = 4
    np.testing.assert_array_equal(tree.relabel(tree.fragments[z], t), full[z])
    sample = tree.fragments[z][tree.fragments[z] != 0][:50]
    assert [lut[int(f)] for f in sample] == full[z][tree.fragments[z] != 0][:50].tolist()
    assert tree.n_segments(0.0) == tree.n_present
    assert tree.n_segments(1.0) <= tree.n_segments(t) <= tree.n_segments(0.0)


def test_save_load_roundtrip(tmp_path):
    affs, _ = synthetic_affs(seed=4)
    tree = MergeTree.build(affs, fragments_watershed(affs, min_seed_distance=1), scoring="mean")
    path = tree.save(tmp_path / "tree.npz")
    with pytest.raises(InputError):
        tree.save(path)  # no silent overwrite
    loaded = MergeTree.load(path)
    assert loaded.scoring == "mean" and loaded.n_present == tree.n_present
    for t in (0.1, 0.5, 0.9):
        np.testing.assert_array_equal(loaded.segmentation(t), tree.segmentation(t))
    assert not list(tmp_path.glob(".*tmp*"))


def test_fragments_are_unique_uint64():
    affs, labels = synthetic_affs(seed=5)
    for frags in (
        fragments_watershed(affs, min_seed_distance=2, min_size=5),
        fragments_watershed(affs, min_seed_distance=2, per_slice=True),
        fragments_waterz(affs),
    ):
        assert frags.dtype == np.uint64 and frags.shape == labels.shape
        ids = np.unique(frags)
        assert ids[0] == 0 or ids[0] == 1
        nz = ids[ids != 0]
        np.testing.assert_array_equal(nz, np.arange(1, len(nz) + 1))
    per_slice = fragments_watershed(affs, min_seed_distance=2, per_slice=True)
    slice_ids = [set(np.unique(s[s != 0]).tolist()) for s in per_slice]
    assert all(not (a & b) for i, a in enumerate(slice_ids) for b in slice_ids[i + 1:])
    small = fragments_watershed(affs, min_seed_distance=1, min_size=30)
    sizes = np.bincount(small.reshape(-1).astype(np.int64))[1:]
    assert sizes[sizes > 0].min() >= 30 or len(sizes) == 0


def test_make_fragments_dispatches_by_method_name():
    affs, _ = synthetic_affs(seed=5)
    np.testing.assert_array_equal(
        make_fragments(affs, "watershed", min_seed_distance=2, min_size=5),
        fragments_watershed(affs, min_seed_distance=2, min_size=5),
    )
    # waterz's own watershed takes none of the watershed parameters
    np.testing.assert_array_equal(
        make_fragments(affs, "waterz", min_seed_distance=2), fragments_waterz(affs)
    )
    with pytest.raises(InputError, match="Unknown fragment method 'zwatershed'"):
        make_fragments(affs, "zwatershed")


def test_scoring_names():
    assert SCORING_FUNCTIONS["mean"].startswith("OneMinus<MeanAffinity")
    assert "hist_quant_10" in SCORING_FUNCTIONS and "hist_quant_95" in SCORING_FUNCTIONS


def test_waterz_chatter_stays_off_stdout(capfd):
    affs, _ = synthetic_affs(seed=6)
    MergeTree.build(affs, None, scoring="hist_quant_50").segmentation(0.5)
    out, _ = capfd.readouterr()
    assert out == ""


# --- bad input: one clear InputError each --------------------------------------------------


def test_bad_affinity_shape():
    with pytest.raises(InputError, match="channels"):
        MergeTree.build(np.zeros((2, 4, 5, 5), np.float32))
    with pytest.raises(InputError, match="shape"):
        MergeTree.build(np.zeros((5, 5), np.float32))


def test_bad_affinity_dtype():
    with pytest.raises(InputError, match="floating point"):
        MergeTree.build(np.zeros((3, 4, 5, 5), np.int32))


def test_nan_affinities():
    affs = np.full((3, 4, 5, 5), 0.5, np.float32)
    affs[1, 2, 2, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        MergeTree.build(affs)
    with pytest.raises(InputError, match="NaN"):
        fragments_watershed(affs)


def test_fragments_shape_mismatch():
    affs = np.full((3, 4, 5, 5), 0.5, np.float32)
    with pytest.raises(InputError, match="match"):
        MergeTree.build(affs, np.ones((4, 5, 6), np.uint64))


def test_unknown_scoring():
    affs = np.full((3, 4, 5, 5), 0.5, np.float32)
    with pytest.raises(InputError, match="precompiled"):
        MergeTree.build(affs, scoring="max_affinity")
    with pytest.raises(InputError, match="precompiled"):
        MergeTree.build(affs, scoring="hist_quant_52")


def test_threshold_outside_unit_interval():
    affs, _ = synthetic_affs(seed=7)
    tree = MergeTree.build(affs, None, scoring="mean", max_threshold=0.8)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(InputError, match=r"\[0, 1\]"):
            tree.segmentation(bad)
    with pytest.raises(InputError, match="above"):
        tree.segmentation(0.9)
    with pytest.raises(InputError):
        MergeTree.build(affs, None, max_threshold=2.0)
