"""Every door segments the same way: the core (segtrain.postprocess), `segtrain segment`,
`segtrain sweep` and validation give identical fragments and segmentation for the same affinities
and settings, anisotropic voxel size included (the Segment panel's part is in
tests/plugin/test_widget_segment.py); `segtrain predict` then `segtrain segment` with no options
reproduces what the run's validation scored; a cells run gives instance labels from the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml

from helpers.engine_data import em3d_gt, noisy
from segtrain.cli import main
from segtrain.config import segment_config
from segtrain.io import Volume, read_volume, write_volume
from segtrain.postprocess import OutputSpec, instances, segment_affinities, validation_scores
from segtrain.targets import affinities

VOXEL_SIZE = (40.0, 4.0, 8.0)  # anisotropic, and different in y and x


def _prediction_file(path, affs, settings, task="affinities", kind="affinities", ndim=3):
    """A file laid out as `segtrain predict` writes it: the array with its geometry and what the
    model recorded (task, dimensions, the run's segment settings)."""
    write_volume(path, Volume(data=affs, voxel_size=VOXEL_SIZE[-(affs.ndim - 1):], axes=("c", "z", "y", "x")[-affs.ndim:],
                              name=kind, attrs={"kind": kind, "task": task, "model_ndim": ndim,
                                                "settings": dataclasses.asdict(settings)}))


@pytest.mark.shared_data
def test_core_cli_segment_cli_sweep_and_validation_agree(em3d_dir, tmp_path, capsys):
    gt = em3d_gt(em3d_dir, (slice(0, 12), slice(0, 64), slice(0, 64)))
    affs = noisy(affinities(gt)[0], 0.15, seed=3)
    settings = segment_config({"fragments": "watershed", "boundary_threshold": 0.5, "min_seed_distance": 3,
                               "min_size": 10, "scoring": "hist_quant_75", "threshold": 0.4})
    expected = segment_affinities(affs, settings, voxel_size=VOXEL_SIZE, model_ndim=3)
    # the voxel size matters: the distance transform works in world units
    isotropic = segment_affinities(affs, settings, voxel_size=None, model_ndim=3)
    assert not np.array_equal(isotropic.fragments, expected.fragments)
    _prediction_file(tmp_path / "pred.zarr", affs, settings)
    write_volume(tmp_path / "gt.zarr", Volume(data=gt.astype(np.uint32), voxel_size=VOXEL_SIZE, name="gt",
                                              is_labels=True))

    # segtrain segment, no options: the prediction's settings, voxel size and threshold
    assert main(["segment", str(tmp_path / "pred.zarr"), str(tmp_path / "seg")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["settings_from"] == "the prediction" and summary["threshold"] == 0.4
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "seg" / "fragments.zarr").data),
                                  expected.fragments)
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "seg" / "segmentation.zarr").data),
                                  expected.segmentation(0.4))

    # segtrain sweep from the prediction: the same tree
    assert main(["sweep", "--affs", str(tmp_path / "pred.zarr"), "--gt", str(tmp_path / "gt.zarr"),
                 "--out-dir", str(tmp_path / "sweep")]) == 0
    best = json.loads(capsys.readouterr().out)["best"]
    from segtrain.segment import MergeTree

    swept = MergeTree.load(tmp_path / "sweep" / "merge_tree.npz")
    np.testing.assert_array_equal(swept.fragments, expected.fragments)
    np.testing.assert_array_equal(swept.segmentation(0.4), expected.segmentation(0.4))

    # validation scores the same tree (its best threshold and VOI are the sweep's)
    scores = validation_scores({"affinities": affs}, gt, settings, OutputSpec("affinities", 3), voxel_size=VOXEL_SIZE)
    assert scores["threshold"] == pytest.approx(best["threshold"]) and scores["voi"] == pytest.approx(best["voi"])

    # an option given on the command line overrides the recorded setting, and says so
    assert main(["segment", str(tmp_path / "pred.zarr"), str(tmp_path / "seg2"), "--threshold", "0.7"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["settings_from"] == "the prediction with threshold from the command line"
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "seg2" / "segmentation.zarr").data),
                                  expected.segmentation(0.7))


@pytest.mark.shared_data
@pytest.mark.parametrize("array, words", [
    (lambda gt, affs: gt.astype(np.uint8), "floating point"),  # an EM volume or labels
    (lambda gt, affs: affs * 3.0, "lie in [0, 1]"),
    (lambda gt, affs: affs[:2], "at least 3 channels"),
])
def test_segment_refuses_what_is_not_affinities(em3d_dir, tmp_path, capsys, array, words):
    gt = em3d_gt(em3d_dir, (slice(0, 8), slice(0, 32), slice(0, 32)))
    affs = affinities(gt)[0]
    data = array(gt, affs)
    axes = ("c", "z", "y", "x") if data.ndim == 4 else ("z", "y", "x")
    write_volume(tmp_path / "in.zarr", Volume(data=data, name="x", axes=axes))
    assert main(["segment", str(tmp_path / "in.zarr"), str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line for line in lines if "error:" in line] == [lines[-1]]  # progress lines, then one error
    assert words in lines[-1] and "Traceback" not in "".join(lines)
    assert not (tmp_path / "out" / "fragments.zarr").exists()


@pytest.mark.shared_data
@pytest.mark.slow
def test_predict_then_segment_reproduces_what_validation_scored(em_crop, tiny_config, tmp_path, capsys):
    from segtrain.evaluate import voi
    from segtrain.train import ArraySource, TrainingRun

    raw, gt, vraw, vgt = em_crop
    config = tiny_config(max_steps=6, val_every=6)
    run = TrainingRun(config, [ArraySource(raw, gt)], [ArraySource(vraw, vgt)], runs_root=tmp_path / "runs")
    run.run()
    record = json.loads((run.run_dir / "metrics.json").read_text())["history"][-1]
    assert record["step"] == 6
    write_volume(tmp_path / "val.zarr", Volume(data=vraw, name="raw"))
    assert main(["predict", "--run", str(run.run_dir), str(tmp_path / "val.zarr"), str(tmp_path / "pred.zarr")]) == 0
    assert main(["segment", str(tmp_path / "pred.zarr"), str(tmp_path / "seg")]) == 0  # no options at all
    summary = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert summary["threshold"] == pytest.approx(record["val/threshold"])
    seg = np.asarray(read_volume(tmp_path / "seg" / "segmentation.zarr").data)
    assert voi(seg, vgt)["voi"] == pytest.approx(record["val/voi"], abs=1e-6)


@pytest.mark.shared_data
def test_a_cells_prediction_gives_instance_labels_from_the_cli(cells_dir, tmp_path, capsys):
    gt = np.asarray(read_volume(cells_dir / "set01" / "instances_ids.png").data)[:256, :256].astype(np.int64)
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    fg = ndimage.gaussian_filter((gt > 0).astype(np.float32), 1.5)
    boundary = find_boundaries(gt, mode="inner").astype(np.float32)
    probabilities = np.stack([fg, boundary]).astype(np.float32)
    settings = segment_config({"probability_threshold": 0.5, "seed_boundary_max": 0.5, "min_size": 20})
    path = tmp_path / "pred.zarr"
    write_volume(path, Volume(data=probabilities, voxel_size=(1.0, 1.0), axes=("c", "y", "x"), name="probabilities",
                              attrs={"kind": "probabilities", "task": "instances", "model_ndim": 2,
                                     "settings": dataclasses.asdict(settings)}))
    assert main(["segment", str(path), str(tmp_path / "seg")]) == 0
    summary = json.loads(capsys.readouterr().out)
    labels = np.asarray(read_volume(tmp_path / "seg" / "segmentation.zarr").data)
    np.testing.assert_array_equal(labels, instances(probabilities, settings, OutputSpec("instances", 2)))
    n_cells = len(np.unique(gt)) - 1
    assert summary["objects"] == int(labels.max()) and 0.6 * n_cells <= summary["objects"] <= n_cells + 2
    assert yaml.safe_dump(summary["settings"])  # recorded with the labels as well
    assert read_volume(tmp_path / "seg" / "segmentation.zarr").attrs["settings"]["min_size"] == 20


@pytest.mark.shared_data
def test_a_2d_models_cells_stack_is_scored_slice_by_slice_by_validation_and_the_segment_panel(cells_dir):
    """A stack of three dishes' crops whose ids repeat from slice to slice (each slice numbered from
    1, as a folder of label images is): every cell is its slice's own object for validation (tune)
    and the Segment panel's score alike, as for the instances a 2D model cuts slice by slice."""
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    from segtrain.plugin.widgets.segment import instances_and_scores

    gt = np.stack([np.asarray(read_volume(cells_dir / f"set0{i}" / "instances_ids.png").data)[:192, :192]
                   for i in (1, 2, 3)]).astype(np.int64)
    gt = np.stack([np.unique(g, return_inverse=True)[1].reshape(g.shape) for g in gt])  # 1..n in each slice
    assert len(np.intersect1d(gt[0], gt[1])) > 3  # ids 1, 2, 3 (and 0) in both
    fg = np.stack([ndimage.gaussian_filter((g > 0).astype(np.float32), 1.5) for g in gt])
    boundary = np.stack([find_boundaries(g, mode="inner") for g in gt]).astype(np.float32)
    probabilities = np.stack([fg, boundary]).astype(np.float32)  # (2, 3, 192, 192)
    settings = segment_config({"probability_threshold": 0.5, "seed_boundary_max": 0.5, "min_size": 20})
    spec = OutputSpec("instances", 2)
    scores = validation_scores({"probabilities": probabilities}, gt, settings, spec)
    per_slice = [validation_scores({"probabilities": probabilities[:, z]}, gt[z], settings, spec)["f1"]
                 for z in range(3)]
    assert scores["f1"] > 0.8 and min(per_slice) > 0.8, (scores, per_slice)
    _, panel, _ = instances_and_scores(probabilities, settings, spec, gt)
    assert panel["f1"] == pytest.approx(scores["f1"])
