import json

import numpy as np
import pytest
from helpers.engine_data import em3d_gt, isbi_gt, noisy

from segtrain.errors import InputError
from segtrain.evaluate import sweep, voi
from segtrain.segment import MergeTree, fragments_watershed
from segtrain.segment._waterz import agglomerate, as_waterz_affinities
from segtrain.targets import affinities

pytestmark = pytest.mark.shared_data


def brute_force(affs, fragments, gt, thresholds, scoring):
    """waterz run over the whole grid, with its own ground-truth metrics."""
    waffs, is_2d = as_waterz_affinities(affs)
    frags = None if fragments is None else fragments.reshape(waffs.shape[1:]).copy()
    g = np.ascontiguousarray(gt.reshape(waffs.shape[1:]), dtype=np.uint32)
    vois = []
    for _, metrics in agglomerate(waffs, list(thresholds), gt=g, fragments=frags, scoring=scoring):
        vois.append((metrics["V_Info_split"], metrics["V_Info_merge"]))
    return np.array(vois)


@pytest.mark.parametrize("fragment_method", ["watershed", "waterz"])
def test_perfect_affinities_recover_em3d(em3d_dir, fragment_method):
    gt = em3d_gt(em3d_dir)
    affs, _ = affinities(gt)
    frags = fragments_watershed(affs, min_seed_distance=3) if fragment_method == "watershed" else None
    tree = MergeTree.build(affs, frags, scoring="hist_quant_50")
    result = sweep(tree, gt)
    assert result.best["voi"] < 0.05
    assert voi(tree.segmentation(result.best_threshold), gt)["voi"] == pytest.approx(result.best["voi"])


def test_perfect_affinities_recover_isbi_2d(isbi_dir):
    gt = isbi_gt(isbi_dir, index=7)
    affs, _ = affinities(gt)
    assert affs.shape == (2, *gt.shape)
    for frags in (None, fragments_watershed(affs, min_seed_distance=3)):
        tree = MergeTree.build(affs, frags, scoring="hist_quant_50")
        assert sweep(tree, gt).best["voi"] < 0.05


@pytest.mark.parametrize("fragment_method", ["watershed", "waterz"])
def test_noise_degrades_gracefully(em3d_dir, fragment_method):
    gt = em3d_gt(em3d_dir)
    affs, _ = affinities(gt)
    best = []
    for sigma in (0.0, 0.2, 0.4, 0.6):
        a = noisy(affs, sigma, seed=11)
        frags = fragments_watershed(a, min_seed_distance=3) if fragment_method == "watershed" else None
        best.append(sweep(MergeTree.build(a, frags, scoring="hist_quant_50"), gt).best["voi"])
    assert best[0] < 0.05
    # monotonic-ish: never better than a clearly cleaner input, and worst at the most noise
    for cleaner, noisier in zip(best, best[1:]):
        assert noisier >= cleaner - 0.05, best
    assert best[-1] > best[0] and best[-1] < 5, best


@pytest.mark.parametrize("scoring", ["hist_quant_50", "mean"])
def test_sweep_matches_brute_force_waterz(em3d_dir, scoring):
    gt = em3d_gt(em3d_dir)
    affs, _ = affinities(gt)
    a = noisy(affs, 0.4, seed=12)
    tree = MergeTree.build(a, None, scoring=scoring)
    thresholds = np.round(np.arange(0, 1.0001, 0.05), 2)
    result = sweep(tree, gt, thresholds)
    ref = brute_force(a, tree.fragments, gt, thresholds, scoring)
    np.testing.assert_allclose(result.voi_split, ref[:, 0], atol=1e-9)
    np.testing.assert_allclose(result.voi_merge, ref[:, 1], atol=1e-9)
    assert result.best_threshold == thresholds[int(np.argmin(ref.sum(1)))]


def test_sweep_outputs_and_transfer(em3d_dir, tmp_path):
    gt = em3d_gt(em3d_dir, crop=(slice(0, 20), slice(0, 100), slice(0, 100)))
    other = em3d_gt(em3d_dir, crop=(slice(25, 45), slice(0, 100), slice(100, 200)))
    affs, _ = affinities(gt)
    tree = MergeTree.build(noisy(affs, 0.3, seed=13), None, scoring="hist_quant_50")
    result = sweep(tree, gt)
    d = result.to_dict()
    json.dumps(d)
    assert d["best_threshold"] == result.best_threshold and len(d["voi"]) == len(result.thresholds)
    png = result.plot(tmp_path / "sweep.png", current=0.5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = result.figure(current=0.3)
    assert fig.axes
    result.write_csv(tmp_path / "sweep.csv")
    assert (tmp_path / "sweep.csv").read_text().startswith("threshold,voi_split")
    # the threshold chosen on one volume, applied to another
    other_affs, _ = affinities(other)
    other_tree = MergeTree.build(noisy(other_affs, 0.3, seed=14), None, scoring="hist_quant_50")
    seg = other_tree.segmentation(result.best_threshold)
    assert seg.shape == other.shape
    # the whole segmentation scores what the sweep's table says for that threshold
    other_sweep = sweep(other_tree, other, thresholds=[result.best_threshold])
    assert voi(seg, other)["voi"] == pytest.approx(float(other_sweep.voi[0]))
    with pytest.raises(InputError):
        sweep(tree, gt[:, :50])
    with pytest.raises(InputError):
        sweep(tree, gt, thresholds=[0.2, 1.2])
