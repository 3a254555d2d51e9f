"""Serial-section EM with a 2D affinity model: a stack of slices is segmented slice by slice.

A 2D model's prediction of a folder of slices is ``(2, z, y, x)``; validation, `segtrain segment`,
`sweep`, `tune` and the Segment panel all turn it into one merge tree made of each slice's own
(fragments and waterz on the slice alone): no object crosses slices.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from segtrain.cli import main
from segtrain.config import segment_config
from segtrain.postprocess import segment_affinities
from segtrain.targets import affinities
from segtrain.targets.masks import labels_from_mask


def isbi_crop(isbi_dir, slices: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``slices`` ISBI 2012 slices, ``size`` pixels square: raw (uint8) and the binary mask."""
    import imageio.v3 as iio

    raw = np.stack([iio.imread(isbi_dir / "image" / f"{z}.png")[:size, :size] for z in range(slices)])
    mask = np.stack([iio.imread(isbi_dir / "label" / f"{z}.png")[:size, :size] for z in range(slices)])
    return raw, mask


def write_slices(folder, stack: np.ndarray):
    import imageio.v3 as iio

    folder.mkdir()
    for z, image in enumerate(stack):
        iio.imwrite(folder / f"{z}.png", image)
    return folder


def slices_of_each_label(seg: np.ndarray) -> np.ndarray:
    """How many slices each label of ``seg`` (0 aside) appears in."""
    pairs = np.unique(np.stack([np.repeat(np.arange(seg.shape[0]), seg[0].size), seg.ravel()]), axis=1)
    labels = pairs[1][pairs[1] != 0]
    return np.unique(labels, return_counts=True)[1]


@pytest.mark.parametrize("fragments", ["waterz", "watershed"])
def test_a_stack_is_segmented_as_each_slice_alone(isbi_dir, fragments):
    raw, mask = isbi_crop(isbi_dir, 3, 96)
    gt = labels_from_mask(mask, per_slice=True)
    rng = np.random.default_rng(0)
    affs = np.stack([affinities(g)[0] for g in gt], axis=1).astype(np.float32)  # (2, z, y, x) 2D affinities
    affs = np.clip(0.2 + 0.6 * affs + rng.normal(0, 0.15, affs.shape), 0, 1).astype(np.float32)
    settings = segment_config({"fragments": fragments, "scoring": "hist_quant_50", "min_seed_distance": 3})
    tree = segment_affinities(affs, settings, model_ndim=2)
    alone = [segment_affinities(affs[:, z], settings, model_ndim=2) for z in range(affs.shape[1])]
    assert tree.fragments.shape == gt.shape
    for threshold in (0.1, 0.5, 0.9, 0.999, 1.0):
        seg = tree.segmentation(threshold)
        assert (slices_of_each_label(seg) == 1).all(), f"an object crosses slices at threshold {threshold}"
        for z, single in enumerate(alone):  # the same partition as the slice segmented on its own
            pairs = np.unique(np.stack([seg[z].ravel(), single.segmentation(threshold).ravel()]), axis=1)
            assert pairs.shape[1] == len(np.unique(seg[z])) == len(np.unique(single.segmentation(threshold)))
        assert tree.n_segments(threshold) == sum(s.n_segments(threshold) for s in alone)


@pytest.mark.slow
def test_isbi_run_validates_on_a_stack_and_the_readme_chain_runs(isbi_dir, tmp_path, capsys):
    raw, mask = isbi_crop(isbi_dir, 4, 128)
    slices = write_slices(tmp_path / "slices", raw)
    labels = write_slices(tmp_path / "labels", mask)
    config = {"preset": "isbi2d_quick", "name": "isbi-tiny",
              "data": {"patch_shape": [64, 64], "val_patches": 1,
                       "train": [{"raw": str(slices), "labels": str(labels), "labels_kind": "mask", "crop": [[0, 2]]}],
                       "val": [{"raw": str(slices), "labels": str(labels), "labels_kind": "mask", "crop": [[2, 4]]}]},
              "model": {"encoder_depth": 3},
              "train": {"max_steps": 30, "val_every": 30, "checkpoint_every": 30, "batch_size": 4,
                        "warmup_steps": 0, "lr": 3e-3}}
    (tmp_path / "isbi.yaml").write_text(yaml.safe_dump(config))
    runs = tmp_path / "runs"
    # training validates on a stack of 2 slices: the 2D model's (2, 2, y, x) affinities
    assert main(["train", "--config", str(tmp_path / "isbi.yaml"), "--runs-root", str(runs)]) == 0, \
        capsys.readouterr().err
    (run,) = list(runs.iterdir())
    row = (run / "metrics.csv").read_text().splitlines()
    header, last = row[0].split(","), row[-1].split(",")
    assert math.isfinite(float(last[header.index("val/voi")]))
    assert (run / "checkpoints" / "final.ckpt").is_file()
    capsys.readouterr()

    # the README chain, literally: predict a slice folder, segment the prediction, evaluate it
    assert main(["predict", "--run", str(run), str(slices), str(tmp_path / "pred.zarr")]) == 0
    import zarr

    assert zarr.open_group(str(tmp_path / "pred.zarr"), mode="r")["affinities"].shape == (2, 4, 128, 128)
    capsys.readouterr()
    assert main(["segment", str(tmp_path / "pred.zarr"), str(tmp_path / "seg")]) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    from segtrain.io import read_volume

    seg = np.asarray(read_volume(tmp_path / "seg" / "segmentation.zarr").data)
    assert seg.shape == (4, 128, 128)
    assert summary["segments"] == len(np.unique(seg[seg != 0])) >= 4 * 10  # many objects in every slice
    assert all(len(np.unique(s)) > 10 for s in seg)
    assert (slices_of_each_label(seg) == 1).all()  # a 2D model's objects stay in their slice
    assert main(["evaluate", str(tmp_path / "seg" / "segmentation.zarr"), str(labels), "--gt-kind", "mask"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert math.isfinite(metrics["voi"]) and metrics["n_gt"] > 4 * 10
    # the same objects as 2D label images whose ids restart in every slice score the same
    ids = write_slices(tmp_path / "ids", np.stack([labels_from_mask(m, per_slice=False) for m in mask]).astype(np.uint16))
    assert main(["evaluate", str(tmp_path / "seg" / "segmentation.zarr"), str(ids)]) == 0
    assert json.loads(capsys.readouterr().out)["voi"] == pytest.approx(metrics["voi"])
    # the sweep of the same tree against the same ground truth
    best = []
    for gt_args in (["--gt", str(labels), "--gt-kind", "mask"], ["--gt", str(ids)]):
        assert main(["sweep", "--tree", str(tmp_path / "seg" / "merge_tree.npz"), *gt_args]) == 0
        best.append(json.loads(capsys.readouterr().out)["best"])
    assert math.isfinite(best[0]["voi"]) and best[1]["voi"] == pytest.approx(best[0]["voi"])

    # proofreading the stack and choosing its threshold (the correct -> fine-tune workflows): each
    # slice on its own, as segment did (a 2D model's two channels are not a 3D volume's affinities)
    from segtrain.predict import load_model
    from segtrain.workflows.correction import proofreader_of
    from segtrain.workflows.finetuning import threshold_on

    loaded = load_model(run)
    reader = proofreader_of(loaded, raw)
    assert reader.segmentation().shape == raw.shape and all(len(np.unique(s)) > 10 for s in reader.segmentation())
    assert (slices_of_each_label(reader.segmentation()) == 1).all()
    threshold, voi = threshold_on(loaded, raw, labels_from_mask(mask, per_slice=True))
    assert 0 < threshold < 1 and math.isfinite(voi)


def test_tuning_a_stack_scores_the_trees_segment_makes(isbi_dir):
    from segtrain.evaluate import sweep
    from segtrain.postprocess import OutputSpec
    from segtrain.postprocess.affinities import prediction_fragments
    from segtrain.postprocess.tune import tune_affinities

    raw, mask = isbi_crop(isbi_dir, 2, 96)
    gt = labels_from_mask(mask, per_slice=True)
    rng = np.random.default_rng(2)
    affs = np.stack([affinities(g)[0] for g in gt], axis=1).astype(np.float32)
    affs = np.clip(0.2 + 0.6 * affs + rng.normal(0, 0.15, affs.shape), 0, 1).astype(np.float32)
    settings = segment_config({"fragments": "waterz", "scoring": "hist_quant_50"})
    fragments = prediction_fragments(affs, settings, model_ndim=2)
    np.testing.assert_array_equal(fragments, segment_affinities(affs, settings, model_ndim=2).fragments)
    result = tune_affinities([affs], [gt], settings, OutputSpec("affinities", 2), scorings=["hist_quant_50"],
                             fragment_variants=[{"fragments": "waterz"}])
    (row,) = result.rows
    expected = sweep(segment_affinities(affs, settings, model_ndim=2), gt.astype(np.uint32))
    assert row["voi"] == pytest.approx(float(np.min(expected.voi))) and math.isfinite(row["voi"])


def test_a_stack_is_scored_slice_by_slice_whatever_its_ids(isbi_dir):
    """Ground truth whose ids restart in every slice (a folder of 2D label images) scores as the same
    objects with ids unique across the stack: a 2D model's objects live in one slice."""
    from segtrain.postprocess import OutputSpec, validation_scores

    raw, mask = isbi_crop(isbi_dir, 3, 96)
    gt = labels_from_mask(mask, per_slice=True)
    restarting = np.stack([labels_from_mask(m, per_slice=False) for m in mask])  # 1..n in every slice
    assert len(np.intersect1d(restarting[0], restarting[1])) > 10
    rng = np.random.default_rng(3)
    affs = np.stack([affinities(g)[0] for g in gt], axis=1).astype(np.float32)
    affs = np.clip(0.2 + 0.6 * affs + rng.normal(0, 0.15, affs.shape), 0, 1).astype(np.float32)
    settings = segment_config({"fragments": "waterz"})
    spec = OutputSpec("affinities", 2)
    unique = validation_scores({"affinities": affs}, gt, settings, spec)
    assert validation_scores({"affinities": affs}, restarting, settings, spec) == unique
    assert unique["voi"] < 1.0  # the affinities of the ground truth itself, with noise
