"""`segtrain train | predict | runs` end to end on a real crop (tiny model, a few steps)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from segtrain.cli import main


@pytest.fixture
def crop_files(tmp_path, em3d_dir):
    from segtrain.io import Volume, read_volume, write_volume

    raw = np.asarray(read_volume(em3d_dir / "train-image.h5").data)[:16, :40, :40]
    gt = np.asarray(read_volume(em3d_dir / "train-gt.lzf.h5").data)[:16, :40, :40]
    paths = {}
    for name, data, is_labels in (("raw", raw, False), ("gt", gt, True)):
        paths[name] = write_volume(tmp_path / f"{name}.zarr",
                                   Volume(data=data, voxel_size=(1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0),
                                          axes=("z", "y", "x"), name=name, is_labels=is_labels, attrs={}))
    return paths


def write_config(tmp_path, crop_files, **train):
    config = {"preset": "em3d_quick", "name": "cli",
              "data": {"patch_shape": [8, 24, 24], "val_patches": 1,
                       "train": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[0, 12]]}],
                       "val": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[12, 16]]}]},
              "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0},
              "train": {"max_steps": 4, "val_every": 2, "checkpoint_every": 2, **train}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_resume_predict_and_list(tmp_path, crop_files, capsys):
    import zarr

    config = write_config(tmp_path, crop_files)
    runs = tmp_path / "runs"
    assert main(["train", "--config", str(config), "--runs-root", str(runs)]) == 0
    (run_dir,) = list(runs.iterdir())
    assert main(["train", "--config", str(config), "--resume", str(run_dir), "--max-steps", "6"]) == 0
    out = capsys.readouterr().out
    assert "finished at step 6" in out
    from segtrain.device import describe_device

    device = describe_device()  # this machine's (CUDA, MPS or CPU): printed by train and predict
    assert out.count("\ndevice: ") == 2 and all(line.startswith(("device: CUDA: ", "device: Apple MPS (",
                                                                 "device: CPU, "))
                                                 for line in out.splitlines() if line.startswith("device: "))
    assert main(["predict", "--run", str(run_dir), str(crop_files["raw"]), str(tmp_path / "pred.zarr")]) == 0
    assert f"(device: {device})\n" in capsys.readouterr().out  # on predict's one summary line
    group = zarr.open_group(str(tmp_path / "pred.zarr"), mode="r")
    assert group["affinities"].shape == (3, 16, 40, 40) and group["lsds"].shape == (10, 16, 40, 40)
    assert main(["runs", str(runs)]) == 0
    table = capsys.readouterr().out
    assert run_dir.name in table and "voi" in table
    # the data it saw: files, crops, content hashes (the same data when resumed: one record)
    import json

    info = json.loads((run_dir / "run.json").read_text())
    train, val = info["data"]["train"][0], info["data"]["val"][0]
    assert train["raw"]["path"] == str(crop_files["raw"].resolve()) and train["crop"] == [[0, 12]]
    assert train["labels"]["shape"] == [16, 40, 40] and train["labels"]["hashed"] == "full"
    assert val["crop"] == [[12, 16]] and val["raw"]["hash"] != train["raw"]["hash"]
    assert sum(train["class_counts"].values()) == 12 * 40 * 40 and "earlier_data" not in info
    assert info["device"].startswith(("CUDA: ", "Apple MPS (", "CPU, "))
    assert info["data"]["fingerprint"] in table


def test_cli_errors_are_one_line(tmp_path, crop_files, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: em3d_quick\ntrain:\n  max_step: 3\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Unknown setting train.max_step" in err
    assert main(["predict", "--run", str(tmp_path / "missing"), str(crop_files["raw"]), str(tmp_path / "o.zarr")]) == 2
    assert "No checkpoint or run folder" in capsys.readouterr().err
