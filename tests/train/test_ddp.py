"""Several devices: Lightning DDP with 2 real CPU processes started by `segtrain train`, and the
checks that keep one-process callers (the GUI) and bad settings out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from segtrain.config import config_from_dict
from segtrain.errors import ConfigError


@pytest.fixture
def crop_files(tmp_path, em3d_dir):
    from segtrain.io import Volume, read_volume, write_volume

    raw = np.asarray(read_volume(em3d_dir / "train-image.h5").data)[:16, :48, :48]
    gt = np.asarray(read_volume(em3d_dir / "train-gt.lzf.h5").data)[:16, :48, :48]
    for name, data, is_labels in (("raw", raw, False), ("gt", gt, True)):
        write_volume(tmp_path / f"{name}.zarr",
                     Volume(data=data, voxel_size=(1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0), axes=("z", "y", "x"),
                            name=name, is_labels=is_labels, attrs={}))
    return tmp_path


def ddp_config(**train) -> dict:
    return {"preset": "em3d_quick", "name": "ddp",
            "data": {"patch_shape": [8, 32, 32], "val_patches": 2, "min_annotated_fraction": 0.1,
                     "train": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[0, 12]]}],
                     "val": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[12, 16]]}]},
            "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0},
            "train": {"max_steps": 6, "val_every": 3, "checkpoint_every": 3, "batch_size": 1, "lr": 3e-3,
                      "warmup_steps": 0, "threads": 1, "accelerator": "cpu", "devices": 2, "strategy": "ddp",
                      "report_interval": 0.0, **train}}


def test_two_cpu_processes_train_one_run(crop_files):
    from segtrain.predict import load_model

    (crop_files / "config.yaml").write_text(yaml.safe_dump(ddp_config()))
    runs = crop_files / "runs"
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "SEGTRAIN_RUN_DIR")}
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "segtrain.cli", "train", "--config", str(crop_files / "config.yaml"),
         "--runs-root", str(runs)],
        cwd=crop_files, env=env, capture_output=True, text=True, timeout=300,
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("run folder:") == 1  # rank 1 stays quiet
    folders = [p for p in runs.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders  # both ranks wrote into one run folder
    run = folders[0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert [r["step"] for r in metrics["history"]] == [3, 6]  # rank 0 alone wrote the history
    ranks = sorted(metrics["ranks"], key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["patches"] >= 6 for r in ranks)
    first = [set(r["first_patches"]) for r in ranks]
    assert len(first[0]) >= 6 and len(first[1]) >= 6
    assert not first[0] & first[1], "both ranks trained on the same patches"
    # every rank validated on all validation data with the same weights: the same metrics decide
    # best checkpoint / plateau / early stopping everywhere
    assert ranks[0]["last_metrics"] == ranks[1]["last_metrics"] == {
        k.removeprefix("val/"): v for k, v in metrics["history"][-1].items() if k.startswith("val/")}
    assert load_model(run / "checkpoints" / "final.ckpt").step == 6
    assert load_model(run / "checkpoints" / "best.ckpt").step == metrics["best_step"]
    assert (run / "config.yaml").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["devices"] == 2
    print(f"2-process DDP run: {elapsed:.1f} s")


def test_ctrl_c_stops_both_processes_at_the_same_step(crop_files):
    """Ctrl-C reaches every process of the group; the ranks agree on the step to stop after (one
    stepping on alone would hang in the gradient all-reduce) and rank 0 saves final.ckpt."""
    from segtrain.predict import load_model

    config = ddp_config(max_steps=100_000, val_every=20, checkpoint_every=100_000)
    (crop_files / "config.yaml").write_text(yaml.safe_dump(config))
    runs = crop_files / "runs"
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "SEGTRAIN_RUN_DIR")}
    process = subprocess.Popen(
        [sys.executable, "-m", "segtrain.cli", "train", "--config", str(crop_files / "config.yaml"),
         "--runs-root", str(runs)],
        cwd=crop_files, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 180
        while not list(runs.glob("*/metrics.json")):  # training is under way: first validation done
            assert process.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.5)
        sent = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = process.communicate(timeout=90)
        waited = time.monotonic() - sent
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, out[-2000:] + err[-3000:]  # the shell's code for Ctrl-C
    assert "stopped at step" in out and out.count("stopping: saving a final checkpoint") == 1
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    step = load_model(run / "checkpoints" / "final.ckpt").step
    assert 20 <= step < 100_000
    print(f"stopped {waited:.1f} s after Ctrl-C, at step {step}")


def test_ddp_config_validation_messages():
    base = {"preset": "em3d_quick"}
    assert config_from_dict({**base, "train": {"devices": "auto", "strategy": "ddp"}}).train.devices == "auto"
    cases = {
        "devices": (0, "train.devices must be 1 or more (or auto), not 0."),
        "num_nodes": (0, "train.num_nodes must be 1 or more, not 0."),
        "strategy": ("fsdp", "train.strategy must be one of auto, ddp, ddp_find_unused_parameters_true, not 'fsdp'."),
    }
    for key, (value, message) in cases.items():
        with pytest.raises(ConfigError) as info:
            config_from_dict({**base, "train": {key: value}})
        assert str(info.value) == message
    with pytest.raises(ConfigError, match=r"train.devices must be a number of devices \(1 or more\) or auto"):
        config_from_dict({**base, "train": {"devices": "gpus"}})


def test_gui_style_run_rejects_several_devices(tiny_config, em_crop, tmp_path, monkeypatch):
    from segtrain.train import ArraySource, TrainingRun

    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "SLURM_NTASKS", "SEGTRAIN_RUN_DIR"):
        monkeypatch.delenv(name, raising=False)
    raw, gt, vraw, vgt = em_crop
    sources = [ArraySource(raw, gt)], [ArraySource(vraw, vgt)]
    with pytest.raises(ConfigError, match="segtrain train --config FILE"):
        TrainingRun(tiny_config(devices=2), *sources, runs_root=tmp_path)
    with pytest.raises(ConfigError, match="segtrain train --config FILE"):
        TrainingRun(tiny_config(num_nodes=2), *sources, runs_root=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing created
    run = TrainingRun(tiny_config(devices="auto", strategy="ddp"), *sources, runs_root=tmp_path)
    assert (run.devices, run.strategy, run.num_nodes) == (1, "auto", 1)


def test_run_dir_option_and_shared_folder_rules(tiny_config, em_crop, tmp_path, monkeypatch):
    from segtrain.train import ArraySource, TrainingRun

    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "SLURM_NTASKS", "SLURM_JOB_ID", "SEGTRAIN_RUN_DIR"):
        monkeypatch.delenv(name, raising=False)
    raw, gt, vraw, vgt = em_crop
    sources = [ArraySource(raw, gt)], [ArraySource(vraw, vgt)]
    run = TrainingRun(tiny_config(), *sources, run_dir=tmp_path / "mine")
    assert run.run_dir == tmp_path / "mine" and (run.run_dir / "config.yaml").is_file()
    (run.run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        TrainingRun(tiny_config(), *sources, run_dir=tmp_path / "mine")
    # torchrun rank 1 of 2: the same folder must be named, and this rank writes nothing
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="give the same --run-dir DIR"):
        TrainingRun(tiny_config(devices=2), *sources, runs_root=tmp_path / "runs")
    other = TrainingRun(tiny_config(devices=2), *sources, run_dir=tmp_path / "shared")
    assert other.devices == 2 and other.strategy == "ddp"
    assert not (tmp_path / "shared" / "config.yaml").exists()
