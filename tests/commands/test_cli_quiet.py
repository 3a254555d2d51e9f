"""`segtrain train` and `--resume` print no library warnings (Lightning's "Checkpoint directory
... exists and is not empty", PyTorch deprecations): they go to the log. Run as the user runs it,
in a fresh process, so that no test harness catches the warnings first."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import yaml


def test_train_and_resume_print_no_warnings(tmp_path, em3d_dir):
    from segtrain.io import Volume, read_volume, write_volume

    for name, path, is_labels in (("raw", "train-image.h5", False), ("gt", "train-gt.lzf.h5", True)):
        data = np.asarray(read_volume(em3d_dir / path).data)[:12, :32, :32]
        write_volume(tmp_path / f"{name}.zarr", Volume(data=data, voxel_size=(1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0),
                                                     axes=("z", "y", "x"), name=name, is_labels=is_labels, attrs={}))
    config = {"preset": "em3d_quick", "name": "quiet",
              "data": {"patch_shape": [8, 24, 24], "val_patches": 1,
                       "train": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[0, 8]]}],
                       "val": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[8, 12]]}]},
              "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0},
              "train": {"max_steps": 2, "val_every": 2, "checkpoint_every": 2}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cli = [sys.executable, "-m", "segtrain.cli"]

    def run(*args):
        result = subprocess.run([*cli, "train", "--config", "config.yaml", *args], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stderr

    first = run("--runs-root", "runs")
    (run_dir,) = list((tmp_path / "runs").iterdir())
    resumed = run("--resume", str(run_dir), "--max-steps", "3")
    for err in (first, resumed):
        lines = [line for line in err.replace("\r", "\n").splitlines() if "step" not in line]  # tqdm's bar
        noise = [line for line in lines if "warn" in line.lower() or "deprecat" in line.lower()
                 or "exists and is not empty" in line]
        assert noise == [], noise
