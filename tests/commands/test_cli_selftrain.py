"""`segtrain selftrain` end to end on a real EM crop (3D affinities, tiny model, 2 iterations of 2
steps, synthetic EM volumes co-trained 1:1): the iteration folders, the pixels kept per class
printed and recorded, and `segtrain train` with a selftrain section doing the same."""

from __future__ import annotations

import json

import numpy as np
import yaml

from segtrain.cli import main


def test_cli_selftrain_writes_iteration_folders(tmp_path, em3d_dir, capsys):
    from segtrain.io import Volume, read_volume, write_volume

    raw = np.asarray(read_volume(em3d_dir / "train-image.h5").data)[:24, :40, :40]
    gt = np.asarray(read_volume(em3d_dir / "train-gt.lzf.h5").data)[:24, :40, :40]
    for name, data, is_labels in (("raw", raw[:16], False), ("gt", gt[:16], True), ("unlabelled", raw[16:], False)):
        write_volume(tmp_path / f"{name}.zarr", Volume(data=data, voxel_size=(1.0, 1.0, 1.0), offset=(0.0,) * 3,
                                                      axes=("z", "y", "x"), name=name, is_labels=is_labels, attrs={}))
    config = {"preset": "em3d_quick", "name": "st",
              "data": {"patch_shape": [8, 24, 24], "val_patches": 1, "min_annotated_fraction": 0.0,
                       "train": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[0, 12]]}],
                       "val": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[12, 16]]}],
                       "synthetic": [{"generator": "em_volume", "params": {"shape": [8, 32, 32], "n_cells": 6}}],
                       "synthetic_ratio": 1.0},
              "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0},
              "train": {"max_steps": 50, "val_every": 2, "checkpoint_every": 2, "threads": 1},
              "selftrain": {"iterations": 2, "steps": 2, "unlabelled": ["unlabelled.zarr"],
                            "threshold_start": [0.6, 0.7], "threshold_end": [0.55, 0.6]}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    runs = tmp_path / "runs"
    assert main(["selftrain", "--config", str(path), "--runs-root", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "iteration 0/2: labelled data only" in out
    assert "iteration 1/2: kept class 0" in out and "iteration 2/2: kept class 0" in out, out
    (run,) = runs.iterdir()
    assert sorted(p.name for p in (run / "iterations").iterdir()) == ["00", "01", "02"]
    for index, thresholds in ((1, [0.6, 0.7]), (2, [0.55, 0.6])):
        folder = run / "iterations" / f"{index:02d}"
        record = json.loads((folder / "pseudo_labels.json").read_text())
        assert record["thresholds"] == thresholds
        assert sum(record["predicted"].values()) == 8 * 40 * 40  # every unlabelled voxel has a class
        assert f"class 1 {record['kept']['1']:,} /" in out
        assert (folder / "figure.png").exists() and (folder / "checkpoints" / "final.ckpt").exists()
        kinds = [s["kind"] for s in json.loads((folder / "run.json").read_text())["data"]["train"]]
        assert "SyntheticSource" in kinds
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["iteration"] for h in metrics["history"]] == [0, 1, 2] and metrics["steps"] == 6
    assert (run / "checkpoints" / "final.ckpt").exists()

    # `segtrain train` with the section self-trains too (1 iteration here)
    assert main(["train", "--config", str(path), "--runs-root", str(tmp_path / "runs2"), "--max-steps", "1"]) == 0
    (run2,) = (tmp_path / "runs2").iterdir()
    assert sorted(p.name for p in (run2 / "iterations").iterdir()) == ["00", "01", "02"]
