"""`segtrain selftrain` end to end on a real EM crop (3D affinities, tiny model, 2 iterations of 2
steps, synthetic EM volumes co-trained 1:1): the iteration folders, the pixels kept per class
printed and recorded, and `segtrain train` with a selftrain section doing the same; a self-training
run killed in the middle of an iteration and resumed with `segtrain selftrain --resume`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from segtrain.cli import main


def _em_files(tmp_path, em3d_dir) -> None:
    from segtrain.io import Volume, read_volume, write_volume

    raw = np.asarray(read_volume(em3d_dir / "train-image.h5").data)[:24, :40, :40]
    gt = np.asarray(read_volume(em3d_dir / "train-gt.lzf.h5").data)[:24, :40, :40]
    for name, data, is_labels in (("raw", raw[:16], False), ("gt", gt[:16], True), ("unlabelled", raw[16:], False)):
        write_volume(tmp_path / f"{name}.zarr", Volume(data=data, voxel_size=(1.0, 1.0, 1.0), offset=(0.0,) * 3,
                                                      axes=("z", "y", "x"), name=name, is_labels=is_labels, attrs={}))


def test_cli_selftrain_writes_iteration_folders(tmp_path, em3d_dir, capsys):
    _em_files(tmp_path, em3d_dir)
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


def _files_state(folder):
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, hashlib.blake2b(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_killed_selftrain_resumes_with_its_done_iterations_untouched(tmp_path, em3d_dir, capsys):
    """SIGKILL in the middle of iteration 1 (after its first periodic checkpoint), then
    `segtrain selftrain --resume RUN`: iteration 0 is not trained again (its files unchanged),
    iteration 1 continues from its checkpoint, selftrain.json lists every iteration; resuming the
    finished run (also through `segtrain train --resume`) is one sentence, exit 2, nothing changed."""
    _em_files(tmp_path, em3d_dir)
    config = {"preset": "em3d_quick", "name": "st",
              "data": {"patch_shape": [8, 24, 24], "val_patches": 1, "min_annotated_fraction": 0.0,
                       "train": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[0, 12]]}],
                       "val": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[12, 16]]}]},
              "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0},
              "train": {"val_every": 40, "checkpoint_every": 4, "threads": 1, "batch_size": 1, "warmup_steps": 0},
              "selftrain": {"iterations": 2, "steps": 40, "unlabelled": ["unlabelled.zarr"],
                            "threshold_start": 0.6, "threshold_end": 0.55}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    runs = tmp_path / "runs"
    import segtrain

    here = str(Path(segtrain.__file__).resolve().parents[1])  # the child runs the code this test imports
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "segtrain.cli", "selftrain", "--config", str(path),
                                "--runs-root", str(runs)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while not list(runs.glob("*/iterations/01/checkpoints/step-*.ckpt")):
            assert process.poll() is None and time.monotonic() < deadline, "iteration 1 did not get going"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    (run,) = runs.iterdir()
    assert [it["iteration"] for it in json.loads((run / "selftrain.json").read_text())["iterations"]] == [0]
    done = _files_state(run / "iterations" / "00")
    capsys.readouterr()
    assert main(["selftrain", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "resuming: iteration 0 done (reused); iteration 1 continues from step " in out, out
    assert "iteration 1/2: kept class 0" in out and "iteration 2/2: kept class 0" in out
    assert "iteration 0/2" not in out  # not trained again
    assert _files_state(run / "iterations" / "00") == done
    summary = json.loads((run / "selftrain.json").read_text())
    assert [(it["iteration"], it["stopped"], it["steps"]) for it in summary["iterations"]] == \
        [(0, False, 40), (1, False, 40), (2, False, 40)]
    assert (run / "checkpoints" / "final.ckpt").exists()

    everything = _files_state(run)
    for argv in (["selftrain", "--resume", str(run)], ["train", "--config", str(path), "--resume", str(run)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "Traceback" not in err and err.endswith("."), err
        assert "is finished (iterations 0-2 done)" in err, err
    assert _files_state(run) == everything
