"""Faults injected into every write that holds user work: the write fails midway (a real "file too
large" error from the kernel, RLIMIT_FSIZE, as a full disk gives), the previous file stays intact
and no temporary is left; the checkpoint writer Lightning uses is segtrain's atomic one; a run
killed with SIGKILL resumes from its newest checkpoint with its weights and optimizer state; a
corrupt checkpoint is skipped with one sentence; Ctrl-C gives exit code 130 and a final checkpoint."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Every file this process writes may grow to ``nbytes`` at most: a larger write fails with
    EFBIG ("File too large"), midway through, as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def digest(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


def test_limit_really_fails_a_write_midway(tmp_path):
    with file_size_limit(1000), pytest.raises(OSError, match="too large"):
        (tmp_path / "x").write_bytes(b"\0" * 5000)
    assert (tmp_path / "x").stat().st_size == 1000  # it wrote what it could, then failed


def test_metrics_postprocess_merge_tree_and_export_survive_a_failed_write(tmp_path):
    from segtrain.io import Volume, read_volume, write_volume
    from segtrain.runs import RunFolder
    from segtrain.segment import MergeTree
    from segtrain.targets import affinities

    folder = RunFolder.create(tmp_path / "runs", "faults")
    records = [{"step": 1, "val/voi": 1.0}]
    folder.write_metrics({"steps": 1}, records)
    folder.save_postprocess({"segment": {"threshold": 0.5}})
    labels = np.repeat(np.arange(1, 9).reshape(2, 2, 2), 8, axis=0).repeat(8, 1).repeat(8, 2).astype(np.uint64)
    tree = MergeTree.build(affinities(labels)[0], None)
    tree.save(tmp_path / "tree.npz")
    write_volume(tmp_path / "seg.zarr", Volume(data=labels, name="seg", is_labels=True))
    files = [folder.metrics_path, folder.metrics_csv_path, folder.postprocess_path, tmp_path / "tree.npz",
             tmp_path / "seg.zarr"]
    before = {p: digest(p) for p in files}
    big = np.random.default_rng(0).integers(1, 5000, (64, 64, 64)).astype(np.uint64)  # hardly compressible
    with file_size_limit(2000):
        with pytest.raises(OSError):
            folder.write_metrics({"steps": 2}, records * 500)
        with pytest.raises(OSError):
            folder.save_postprocess({"segment": {"threshold": 0.7}, "notes": "x" * 5000})
        with pytest.raises(OSError):
            MergeTree(big, np.arange(1, 5000), np.arange(2, 5001), np.linspace(0, 1, 4999), 5000).save(
                tmp_path / "tree.npz", overwrite=True)
        with pytest.raises(OSError):
            write_volume(tmp_path / "seg.zarr", Volume(data=big, name="seg", is_labels=True), overwrite=True)
    assert {p: digest(p) for p in files} == before  # every previous file intact
    assert leftovers(tmp_path) == []  # and no temporary left behind
    assert folder.history() == records and folder.postprocess()["segment"]["threshold"] == 0.5
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "seg.zarr").data), labels)


def test_proofreading_edit_logs_survive_a_failed_write(tmp_path):
    """The proofreading file (edited fragments, tree, log) and the Export panel's JSON edit log."""
    from segtrain.plugin.widgets.export import export_items
    from segtrain.proofread import Proofreader

    labels = np.repeat(np.arange(1, 9).reshape(2, 2, 2), 8, axis=0).repeat(8, 1).repeat(8, 2).astype(np.uint32)
    reader = Proofreader(labels)
    reader.merge([(0, 0, 0), (0, 0, 9)])
    export_items([("proofreading", reader)], tmp_path, "seg", ".zarr", overwrite=False)
    files = [tmp_path / "seg_proofreading.npz", tmp_path / "seg_edit_log.json"]
    before = {p: digest(p) for p in files}
    big = np.random.default_rng(0).integers(1, 200_000, (64, 64, 64)).astype(np.uint32)  # hardly compressible
    with file_size_limit(2000), pytest.raises(OSError):
        Proofreader(big).save(tmp_path / "seg_proofreading.npz", overwrite=True)
    # a long log: the proofreading file compresses small, its readable JSON log does not
    blocks = (np.arange(16 * 16 * 16) // 32 + 1).reshape(16, 16, 16).astype(np.uint32)
    longer = Proofreader(blocks)
    points = [tuple(np.argwhere(blocks == i)[0]) for i in range(1, 102)]
    for point in points[1:]:
        longer.merge([points[0], point])
    export_items([("proofreading", longer)], tmp_path / "sizes", "seg", ".zarr", overwrite=False)
    npz, log = (tmp_path / "sizes" / "seg_proofreading.npz").stat().st_size, (tmp_path / "sizes" / "seg_edit_log.json").stat().st_size
    assert npz * 2 < log
    with file_size_limit((npz + log) // 2), pytest.raises(OSError):
        export_items([("proofreading", longer)], tmp_path, "seg", ".zarr", overwrite=True)
    assert {p: digest(p) for p in files} == before and leftovers(tmp_path) == []
    assert Proofreader.load(files[0]).log() == reader.log()
    assert json.loads(files[1].read_text())["edits"] == reader.log()


@pytest.mark.slow
def test_checkpoints_go_through_the_atomic_writer_and_survive_a_full_disk(em_crop, tiny_config, tmp_path,
                                                                         monkeypatch):
    from segtrain.errors import SegtrainError
    from segtrain.predict import load_model
    from segtrain.train import ArraySource, TrainingRun
    from segtrain.train import callbacks as run_module  # the checkpoint writer lives in train/callbacks.py

    written = []
    atomic = run_module.atomic_path

    def recording(target, overwrite=False):
        written.append(Path(target).name)
        return atomic(target, overwrite=overwrite)

    monkeypatch.setattr(run_module, "atomic_path", recording)
    raw, gt, vraw, vgt = em_crop
    sources = [ArraySource(raw, gt)], [ArraySource(vraw, vgt)]
    run = TrainingRun(tiny_config(max_steps=6, val_every=3, checkpoint_every=3), *sources, runs_root=tmp_path)
    run.run()
    checkpoints = run.run_dir / "checkpoints"
    on_disk = {p.name for p in checkpoints.glob("*.ckpt") if not p.is_symlink()}
    assert on_disk == {"best.ckpt", "final.ckpt", "step-3.ckpt", "step-6.ckpt"}
    assert on_disk <= set(written)  # Lightning saved every one of them with segtrain's atomic writer
    before = {name: digest(checkpoints / name) for name in on_disk}
    size = min((checkpoints / name).stat().st_size for name in on_disk)
    resumed = TrainingRun(tiny_config(max_steps=12, val_every=3, checkpoint_every=3), *sources,
                          resume=run.run_dir)
    with file_size_limit(size // 2), pytest.raises(SegtrainError, match="the disk is full") as failure:
        resumed.run()
    assert "\n" not in str(failure.value) and "--resume" in str(failure.value)
    assert {name: digest(checkpoints / name) for name in on_disk} == before
    assert leftovers(run.run_dir) == []
    from segtrain.runs import checkpoint_step

    assert all(checkpoint_step(p) is not None for p in checkpoints.glob("*.ckpt"))  # no half-written new one
    assert load_model(run.run_dir, which="final.ckpt").step == 6


def _train_files(tmp_path, em3d_dir, **train) -> Path:
    from segtrain.io import Volume, read_volume, write_volume

    raw = np.asarray(read_volume(em3d_dir / "train-image.h5").data)[:16, :48, :48]
    gt = np.asarray(read_volume(em3d_dir / "train-gt.lzf.h5").data)[:16, :48, :48]
    for name, data, is_labels in (("raw", raw, False), ("gt", gt, True)):
        write_volume(tmp_path / f"{name}.zarr", Volume(data=data, name=name, is_labels=is_labels))
    config = {"preset": "em3d_quick", "name": "crash",
              "data": {"patch_shape": [8, 32, 32], "val_patches": 1, "min_annotated_fraction": 0.1,
                       "train": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[0, 12]]}],
                       "val": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[12, 16]]}]},
              "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0},
              "train": {"batch_size": 1, "lr": 3e-3, "warmup_steps": 0, "threads": 1, "report_interval": 0.0,
                        **train}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "config.yaml"


def _start(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "segtrain.cli", "train", "--config", str(config),
                             "--runs-root", str(config.parent / "runs"), *args],
                            cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _state(path: Path) -> tuple[dict, list]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    return checkpoint["state_dict"], checkpoint["optimizer_states"]


@pytest.mark.shared_data
@pytest.mark.slow
def test_sigkill_then_resume_loses_at_most_one_checkpoint_interval(em3d_dir, tmp_path):
    config = _train_files(tmp_path, em3d_dir, max_steps=100_000, val_every=100_000, checkpoint_every=5)
    process = _start(config)
    checkpoints = None
    try:
        deadline = time.monotonic() + 240
        while True:  # until a second periodic checkpoint is on disk
            found = sorted((tmp_path / "runs").glob("*/checkpoints/step-*.ckpt"))
            if len(found) >= 2:
                checkpoints = found[0].parent
                break
            assert process.poll() is None and time.monotonic() < deadline, "training did not get going"
            time.sleep(0.2)
        time.sleep(1.0)  # a few steps past it
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    from segtrain.runs import RunFolder

    run_dir = checkpoints.parent
    folder = RunFolder(run_dir)
    newest = folder.resume_checkpoint()
    assert newest.name.startswith("step-") and newest.step >= 10
    # a kill while a checkpoint was written leaves at most its temporary, never a checkpoint, and
    # resume clears it (plant one, so that the clean-up is checked whenever the kill missed a write)
    assert all(".tmp-" in name for name in leftovers(run_dir)) and not newest.name.startswith(".")
    (run_dir / "checkpoints" / f".step-99.ckpt.tmp-{process.pid}-planted").write_bytes(b"half a checkpoint")
    # resume to the very step of the newest checkpoint: what is restored is written back as final.ckpt
    resumed = _start(config, "--resume", str(run_dir), "--max-steps", str(newest.step))
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out[-2000:] + err[-2000:]
    assert leftovers(run_dir) == []  # no temporary left behind once the run has resumed
    weights, optimizer = _state(newest.path)
    final_weights, final_optimizer = _state(run_dir / "checkpoints" / "final.ckpt")
    assert weights.keys() == final_weights.keys()
    for key in weights:
        torch.testing.assert_close(final_weights[key], weights[key], rtol=0, atol=0)
    moments = [v for s in optimizer for state in s["state"].values() for v in state.values() if torch.is_tensor(v)]
    final_moments = [v for s in final_optimizer for state in s["state"].values() for v in state.values()
                     if torch.is_tensor(v)]
    assert moments and len(moments) == len(final_moments)
    for a, b in zip(moments, final_moments):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    print(f"killed after step {newest.step} was saved; checkpoint interval 5 steps")


@pytest.mark.shared_data
@pytest.mark.slow
def test_a_corrupt_checkpoint_is_skipped_with_one_sentence_and_ctrl_c_gives_130(em3d_dir, tmp_path):
    from segtrain.runs import RunFolder, checkpoint_step

    config = _train_files(tmp_path, em3d_dir, max_steps=100_000, val_every=100_000, checkpoint_every=4)
    process = subprocess.Popen([sys.executable, "-m", "segtrain.cli", "train", "--config", str(config),
                                "--runs-root", str(tmp_path / "runs")], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while len(list((tmp_path / "runs").glob("*/checkpoints/step-*.ckpt"))) < 2:
            assert process.poll() is None and time.monotonic() < deadline, "training did not get going"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, out[-1000:] + err[-1000:]
    (run_dir,) = list((tmp_path / "runs").iterdir())
    final = run_dir / "checkpoints" / "final.ckpt"
    stopped = checkpoint_step(final)
    assert stopped is not None and stopped >= 8  # loadable
    data = final.read_bytes()
    # a periodic checkpoint of the very step Ctrl-C stopped at is a hard link to final.ckpt (one file,
    # two names): truncating the file in place damages both names
    twins = ["final.ckpt", *sorted(p.name for p in final.parent.glob("step-*.ckpt") if p.samefile(final))]
    final.write_bytes(data[: len(data) // 2])  # truncated: a crash of another tool, a full disk, ...
    chosen, skipped = RunFolder(run_dir).resume_plan()
    assert [i.name for i in skipped] == twins and chosen.name.startswith("step-")
    resumed = _start(config, "--resume", str(run_dir), "--max-steps", str(stopped + 2))
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out[-2000:] + err[-2000:]
    assert f"{', '.join(twins)} cannot be read (truncated or corrupt); resuming from step-" in out + err
    assert checkpoint_step(final) == stopped + 2
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == stopped + 2
