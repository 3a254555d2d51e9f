"""Checkpoints keep only what resume and prediction need: the optimizer state in the newest one and
in one spare of an earlier step (resume when the newest is damaged), older and best ones weights only (a periodic one of the newest's step a hard link to it); resume still
continues from the right step; the runs table shows the size on disk, the steps a killed run reached
and its status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from segtrain.cli import main
from segtrain.predict import load_model
from segtrain.runs import RunFolder, list_runs
from segtrain.train import ArraySource, TrainingRun


def _has_optimizer_state(path: Path) -> bool:
    return bool(torch.load(path, map_location="cpu", weights_only=False).get("optimizer_states"))


def test_only_the_newest_checkpoint_and_a_spare_keep_the_optimizer_state_and_resume_continues(tmp_path, em_crop, tiny_config,
                                                                                  capsys):
    raw, gt, vraw, vgt = em_crop
    train, val = [ArraySource(raw, gt)], [ArraySource(vraw, vgt)]
    run = TrainingRun(tiny_config(max_steps=12, val_every=4, checkpoint_every=3), train, val, runs_root=tmp_path)
    run.run()
    ckpt = run.run_dir / "checkpoints"
    assert sorted(p.name for p in ckpt.glob("*.ckpt") if not p.is_symlink()) == [
        "best.ckpt", "final.ckpt", "step-12.ckpt", "step-9.ckpt"]
    assert _has_optimizer_state(ckpt / "final.ckpt")
    assert (ckpt / "step-12.ckpt").samefile(ckpt / "final.ckpt")  # same step: one file, two names
    assert RunFolder(run.run_dir).model_checkpoint().name == "final.ckpt"  # named first, as before
    assert _has_optimizer_state(ckpt / "step-9.ckpt")  # the spare: the newest of an earlier step
    full = (ckpt / "final.ckpt").stat().st_size
    if load_model(ckpt / "best.ckpt").step == 12:  # best at the last step: one file, two names
        assert (ckpt / "best.ckpt").samefile(ckpt / "final.ckpt")
        slim = 0
    else:
        assert not _has_optimizer_state(ckpt / "best.ckpt")  # for prediction: weights only
        slim = (ckpt / "best.ckpt").stat().st_size
        assert slim < 0.6 * full  # Adam's two moments are gone
    folder = RunFolder(run.run_dir)
    assert folder.size_on_disk() < 2 * full + slim + 2_000_000  # the newest and the spare, nothing more
    assert folder.resume_checkpoint().name in ("final.ckpt", "step-12.ckpt")
    assert load_model(ckpt / "step-9.ckpt").step == 9  # weights-only ones still load for prediction
    (summary,) = list_runs(tmp_path)
    assert (summary.steps, summary.status, summary.size) == (12, "finished", folder.size_on_disk())
    assert main(["runs", str(tmp_path), "--format", "csv"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    cells = dict(zip(header.split(","), row.split(",")))
    assert int(cells["size"]) == summary.size and cells["status"] == "finished"

    resumed = TrainingRun(tiny_config(max_steps=15, val_every=4, checkpoint_every=3), train, val, resume=run.run_dir)
    reports = list(resumed.reports())
    assert reports[0].phase == "preparing" and reports[0].step == 12
    assert min(r.step for r in reports if r.phase == "training") > 12 and reports[-1].step == 15
    assert load_model(ckpt / "final.ckpt").step == 15 and _has_optimizer_state(ckpt / "final.ckpt")
    fulls = [p.name for p in ckpt.glob("*.ckpt") if not p.is_symlink() and _has_optimizer_state(p)
             and not p.samefile(ckpt / "final.ckpt")]
    assert fulls == ["step-12.ckpt"]  # the old final's twin is the new spare (step-9 is gone: keep_checkpoints)

    # a weights-only checkpoint cannot be resumed from: one sentence, not Lightning's KeyError
    from segtrain.errors import SegtrainError

    import shutil

    from segtrain.runs.checkpoints import weights_only

    slimmed = shutil.copy(ckpt / "final.ckpt", tmp_path / "weights.ckpt")
    weights_only(slimmed)
    with pytest.raises(SegtrainError, match=r"weights\.ckpt: it holds the weights only"):
        TrainingRun(tiny_config(max_steps=18), train, val, resume=slimmed)


def test_best_of_the_last_step_is_a_link_to_final_and_a_resumed_run_slims_it(tmp_path, em_crop, tiny_config):
    """A run whose best validation is at its last step keeps one file for best.ckpt and final.ckpt
    (a 30-step cells run: 172 MB instead of 229); resumed, best.ckpt is weights only again and
    final.ckpt the resumed run's."""
    raw, gt, vraw, vgt = em_crop
    train, val = [ArraySource(raw, gt)], [ArraySource(vraw, vgt)]
    run = TrainingRun(tiny_config(max_steps=4, val_every=4, checkpoint_every=4), train, val, runs_root=tmp_path)
    run.run()  # one validation, at the last step: best is that step
    ckpt = run.run_dir / "checkpoints"
    assert load_model(ckpt / "best.ckpt").step == 4
    assert (ckpt / "best.ckpt").samefile(ckpt / "final.ckpt")
    full = (ckpt / "final.ckpt").stat().st_size
    assert RunFolder(run.run_dir).size_on_disk() < full + 2_000_000  # one file for step 4
    resumed = TrainingRun(tiny_config(max_steps=8, val_every=100, checkpoint_every=2), train, val, resume=run.run_dir)
    list(resumed.reports())
    assert load_model(ckpt / "final.ckpt").step == 8 and _has_optimizer_state(ckpt / "final.ckpt")
    assert not (ckpt / "best.ckpt").samefile(ckpt / "final.ckpt")
    assert load_model(ckpt / "best.ckpt").step == 4 and not _has_optimizer_state(ckpt / "best.ckpt")


def _config_files(tmp_path: Path, em_crop) -> Path:
    from segtrain.io import Volume, write_volume

    raw, gt, _, _ = em_crop
    for name, data, is_labels in (("raw", raw, False), ("gt", gt, True)):
        write_volume(tmp_path / f"{name}.zarr", Volume(data=data, name=name, is_labels=is_labels))
    config = {"preset": "em3d_quick", "name": "killed",
              "data": {"patch_shape": [8, 32, 32], "val_patches": 1, "min_annotated_fraction": 0.1,
                       "train": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[0, 12]]}],
                       "val": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[12, 16]]}]},
              "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0},
              "train": {"batch_size": 1, "lr": 3e-3, "warmup_steps": 0, "threads": 1, "report_interval": 0.0,
                        "max_steps": 100_000, "val_every": 100_000, "checkpoint_every": 3}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "config.yaml"


@pytest.mark.slow
def test_a_killed_run_is_listed_with_the_steps_it_saved_and_resumes_from_them(tmp_path, em_crop, capsys,
                                                                               monkeypatch):
    """SIGKILL a `segtrain train` before its first validation (no metrics.json yet): the table
    shows the steps of its newest checkpoint and "incomplete", not 0 steps."""
    config = _config_files(tmp_path, em_crop)
    runs = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "segtrain.cli", "train", "--config", str(config),
                                "--runs-root", str(runs)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(list(runs.glob("*/checkpoints/step-*.ckpt"))) < 2:
            assert process.poll() is None and time.monotonic() < deadline, "training did not get going"
            time.sleep(0.2)
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    (run_dir,) = runs.iterdir()
    folder = RunFolder(run_dir)
    assert not folder.metrics_path.exists()  # killed before any validation: steps only from checkpoints
    newest = folder.resume_checkpoint()
    assert newest.name.startswith("step-") and newest.step >= 6
    older = sorted({i.step for i in folder.checkpoints() if i.path != newest.path}, reverse=True)
    # optimizer state in the newest and a spare (and the previous spare, if the kill came between a
    # save and its slimming)
    assert older and {i.step for i in folder.checkpoints() if i.full and i.path != newest.path} <= set(older[:2])
    (summary,) = list_runs(runs)
    assert summary.steps == newest.step and summary.status == "incomplete"
    assert main(["runs", str(runs), "--format", "csv"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    cells = dict(zip(header.split(","), row.split(",")))
    assert (int(cells["steps"]), cells["status"]) == (newest.step, "incomplete")

    from segtrain.config import load_config

    monkeypatch.chdir(tmp_path)  # the config's data paths are relative to where `segtrain train` ran
    config = load_config(folder.config_path)
    config.train.max_steps, config.train.val_every = newest.step + 2, 2
    reports = list(TrainingRun(config, resume=run_dir).reports())
    assert reports[0].step == newest.step and reports[-1].step == newest.step + 2
    (summary,) = list_runs(runs)
    assert (summary.steps, summary.status) == (newest.step + 2, "finished")
    assert np.isfinite(summary.best_metric)
