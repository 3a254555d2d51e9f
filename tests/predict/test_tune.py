"""`segtrain tune`: post-processing chosen on annotated images, stored beside the run, applied on load."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy import ndimage

from segtrain.cli import main
from segtrain.config import preset
from segtrain.errors import InputError
from segtrain.predict import load_model
from segtrain.postprocess import OutputSpec, validation_scores
from segtrain.postprocess.tune import default_grid, median_object_size, tune_postprocessing


def cells_gt(cells_dir, name):
    from segtrain.io import read_volume

    return np.asarray(read_volume(cells_dir / name / "instances_ids.png").data)[:320, :320].astype(np.int64)


def imperfect_probabilities(gt, seed):
    """What a half-trained network gives: soft, noisy foreground with false specks, and a faint
    boundary between touching cells."""
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(seed)
    fg = ndimage.gaussian_filter((gt > 0).astype(np.float32), 2) * 0.8 + 0.1
    specks = ndimage.binary_dilation(rng.random(gt.shape) > 0.9995, iterations=3)
    fg = np.where(specks & (gt == 0), 0.65, fg)
    boundary = ndimage.gaussian_filter(find_boundaries(gt, mode="inner").astype(np.float32), 1) * 1.2
    noise = rng.normal(0, 0.05, (2, *gt.shape))
    return np.clip(np.stack([fg, boundary]) + noise, 0, 1).astype(np.float32)


@pytest.fixture
def cells_probabilities(cells_dir):
    gts = [cells_gt(cells_dir, "set01"), cells_gt(cells_dir, "set02")]
    return [imperfect_probabilities(gt, i) for i, gt in enumerate(gts)], gts


def test_tuning_raises_instance_f1_and_its_score_is_the_validation_score(cells_probabilities):
    probabilities, gts = cells_probabilities
    config = preset("wells2d_quick")
    config.segment.probability_threshold = 0.3  # takes the false specks in
    config.segment.min_size = 0
    result = tune_postprocessing(probabilities, gts, config.segment, OutputSpec.of(config))
    assert result.score > result.start_score + 0.1 and result.metric == "f1"
    assert result.start_settings["probability_threshold"] == 0.3
    grid = default_grid(config.segment, OutputSpec.of(config), median_object_size(gts))
    assert set(result.settings) == set(grid) | {"object_size"}  # and the size of the objects it cuts
    assert all(result.settings[k] in values for k, values in grid.items())
    tuned = result.apply(config.segment)
    again = np.mean([validation_scores({"probabilities": p}, gt, tuned, OutputSpec.of(config))["f1"]
                     for p, gt in zip(probabilities, gts)])
    assert again == pytest.approx(result.score)
    assert config.segment.probability_threshold == 0.3  # apply() returns a copy
    assert len(result.rows) > 10 and max(r["f1"] for r in result.rows) == pytest.approx(result.score)


def test_tuning_needs_labels_and_a_mask_model(cells_probabilities):
    probabilities, gts = cells_probabilities
    with pytest.raises(InputError, match="affinity models"):
        tune_postprocessing(probabilities, gts, preset("em3d_quick").segment, OutputSpec.of(preset("em3d_quick")))
    with pytest.raises(InputError, match="no objects"):
        tune_postprocessing(probabilities, [np.zeros_like(g) for g in gts], preset("wells2d_quick").segment,
                            OutputSpec.of(preset("wells2d_quick")))


@pytest.fixture
def cells_run(tmp_path, cells_dir, capsys):
    """A tiny wells2d run trained for a few steps through the CLI on real cell crops."""
    from segtrain.io import Volume, read_volume, write_volume

    raw = np.asarray(read_volume(cells_dir / "set01" / "raw.tif").data)[:192, :192]
    gt = np.asarray(read_volume(cells_dir / "set01" / "instances_ids.png").data)[:192, :192]
    for name, data, is_labels in (("raw", raw, False), ("gt", gt, True)):
        write_volume(tmp_path / f"{name}.zarr", Volume(data=data, voxel_size=(1.0, 1.0), offset=(0.0, 0.0),
                                                      axes=("y", "x"), name=name, is_labels=is_labels, attrs={}))
    config = {"preset": "wells2d_quick", "name": "tune",
              "data": {"patch_shape": [64, 64], "val_patches": 1,
                       "train": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[0, 128]]}],
                       "val": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[128, 192]]}]},
              "model": {"encoder_depth": 3},
              "train": {"max_steps": 4, "val_every": 4, "checkpoint_every": 4, "batch_size": 2}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "config.yaml"), "--runs-root", str(tmp_path / "runs")]) == 0
    (run_dir,) = list((tmp_path / "runs").iterdir())
    assert f"segtrain tune {run_dir}" in capsys.readouterr().out  # the CLI points to the next step
    return run_dir


def test_cli_tune_stores_settings_that_load_model_applies(cells_run, capsys):
    assert main(["tune", str(cells_run), "--on", "val", "--dry-run"]) == 0
    assert not (cells_run / "postprocess.yaml").exists()
    assert main(["tune", str(cells_run), "--on", "train"]) == 0
    stored = yaml.safe_load((cells_run / "postprocess.yaml").read_text())
    assert stored["tuned_on"][0].endswith("raw.zarr") and stored["metric"] == "f1"
    config = load_model(cells_run).config
    # the stored F1 is what the stored settings score on those images (and the start, the run's own)
    from segtrain.io import read_volume

    raw = np.asarray(read_volume(cells_run.parent.parent / "raw.zarr").data)[:128]
    gt = np.asarray(read_volume(cells_run.parent.parent / "gt.zarr").data)[:128]
    from segtrain.predict import predict_array

    probabilities = predict_array(load_model(cells_run), raw)["probabilities"]
    spec = OutputSpec.of(config)
    assert validation_scores({"probabilities": probabilities}, gt, config.segment, spec)["f1"] == pytest.approx(stored["f1"])
    untuned = preset("wells2d_quick").segment
    assert validation_scores({"probabilities": probabilities}, gt, untuned, spec)["f1"] == pytest.approx(stored["start_f1"])
    for key, value in stored["segment"].items():
        assert getattr(config.segment, key) == value
    assert "instance F1" in capsys.readouterr().err

    (cells_run / "postprocess.yaml").write_text("segment: {no_such_setting: 1}\n")
    with pytest.raises(InputError, match="Unknown setting segment.no_such_setting"):
        load_model(cells_run)
    assert main(["predict", "--run", str(cells_run), str(cells_run.parent.parent / "raw.zarr"),
                 str(cells_run.parent.parent / "p.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "segtrain tune" in err


def test_tuning_refuses_images_too_large_to_hold(cells_run):
    from segtrain.workflows.tuning import tune_run

    loaded = load_model(cells_run)
    loaded.config.data.val_max_voxels = 1000
    with pytest.raises(InputError, match="tune on a crop of it"):
        tune_run(loaded, save=False)
    assert not (cells_run / "postprocess.yaml").exists()



def test_cli_tune_refuses_ground_truth_without_labels(cells_run, capsys):
    """A mask run tuned on all-0 ground truth: one sentence (evaluate's check_labelled), exit 2,
    nothing stored (it used to tune on nothing and store settings)."""
    from segtrain.io import Volume, read_volume, write_volume

    root = cells_run.parent.parent
    gt = np.asarray(read_volume(root / "gt.zarr").data)
    write_volume(root / "empty.zarr", Volume(data=np.zeros_like(gt), voxel_size=(1.0, 1.0), offset=(0.0, 0.0),
                                             axes=("y", "x"), name="empty", is_labels=True, attrs={}))
    capsys.readouterr()
    assert main(["tune", str(cells_run), "--image", str(root / "raw.zarr"), str(root / "empty.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert "The ground truth to tune on has no labelled voxel" in err and err.count("\n") == 0
    assert not (cells_run / "postprocess.yaml").exists()
