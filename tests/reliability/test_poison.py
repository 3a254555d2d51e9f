"""Inputs and runs that would poison a result: training that goes non-finite stops at once and keeps
the last finite weights; any failure during training keeps the steps done (and says so, truthfully,
also on a full disk); an unfinished blockwise output is refused by every reader; ground truth with
nothing labelled is refused. Tiny synthetic data, real training (a few seconds each)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from segtrain.errors import InputError, SegtrainError

TINY = {"preset": "em3d_quick", "name": "poison",
        "data": {"patch_shape": [8, 16, 16], "val_patches": 1, "min_annotated_fraction": 0.1, "normalize": "none"},
        "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0},
        "train": {"max_steps": 10, "val_every": 100, "checkpoint_every": 2, "keep_checkpoints": 5, "batch_size": 1,
                  "threads": 1, "report_interval": 0.0, "warmup_steps": 0}}


def _config(**train):
    from segtrain.config import config_from_dict

    return config_from_dict({**TINY, "train": {**TINY["train"], **train}})


@pytest.fixture(scope="module")
def volume():
    from segtrain.synthetic import make_em_volume

    raw, gt = make_em_volume((8, 32, 32), n_cells=4, seed=0)[:2]
    return raw.astype(np.float32) / max(1.0, float(raw.max())), gt


def _turning_bad(volume, after: int, bad):
    """A real training source (a generator of samples) whose samples turn bad after ``after`` draws."""
    from segtrain.train.sources import GeneratorSource

    raw, gt = volume
    draws = [0]

    def generate(rng):
        draws[0] += 1
        return (bad(raw) if draws[0] > after else raw), gt

    return GeneratorSource(generate, reuse=1)


def _extreme(raw):  # finite, but its normalised values overflow: the loss becomes NaN
    return np.where(raw > raw.mean(), 3e38, -3e38).astype(np.float32)


def _with_nan(raw):
    out = raw.copy()
    out[0, 0, 0] = np.nan
    return out


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_a_run_that_diverges_stops_at_the_first_nonfinite_loss_and_keeps_finite_weights(tmp_path, volume):
    from segtrain.runs import checkpoint_step
    from segtrain.train import ArraySource, TrainingRun

    val = [ArraySource(*volume)]
    run = TrainingRun(_config(), [_turning_bad(volume, 5, _extreme)], val, runs_root=tmp_path)
    reports = []
    with pytest.raises(SegtrainError) as failure:
        for report in run.reports():
            reports.append(report)
    message = str(failure.value)
    found = re.match(r"training diverged at step (\d+): loss is nan; lower train\.lr \(now [\d.e-]+\) or check the "
                     r"data for NaN or extreme values; the (\d+) steps done are saved in final\.ckpt: continue with "
                     r"--resume .+ once the cause is fixed\.$", message)
    assert found, message
    step, kept = int(found.group(1)), int(found.group(2))
    assert kept == step - 1 and 5 <= kept < 10  # stopped at once, not trained NaN to max_steps
    assert max(r.step for r in reports) < 10
    final = run.run_dir / "checkpoints" / "final.ckpt"
    assert checkpoint_step(final) == kept
    assert all(torch.isfinite(v).all() for v in _weights(final).values())  # the last finite weights
    for path in (run.run_dir / "checkpoints").glob("*.ckpt"):
        assert all(torch.isfinite(v).all() for v in _weights(path).values() if v.is_floating_point()), path


def test_a_run_that_diverges_at_its_first_step_leaves_no_run_folder(tmp_path, volume):
    from segtrain.train import ArraySource, TrainingRun

    run = TrainingRun(_config(), [_turning_bad(volume, 0, _extreme)], [ArraySource(*volume)], runs_root=tmp_path)
    with pytest.raises(SegtrainError, match=r"^training diverged at step 1: loss is nan; .*no checkpoint was written, "
                                            r"so the run folder .* is removed: start the run again\.$"):
        run.run()
    assert not run.run_dir.exists()


def test_an_error_during_training_saves_the_steps_done_and_resume_continues_from_them(tmp_path, volume):
    from segtrain.runs import RunFolder, checkpoint_step
    from segtrain.train import ArraySource, TrainingRun

    val = [ArraySource(*volume)]
    run = TrainingRun(_config(), [_turning_bad(volume, 6, _with_nan)], val, runs_root=tmp_path)
    with pytest.raises(InputError) as failure:
        run.run()
    message = str(failure.value)
    found = re.search(r"There are NaN or infinite values in the image of source generated; .*; the (\d+) steps done are saved in final\.ckpt: continue "
                      r"with --resume (\S+) once the cause is fixed\.$", message)
    assert found and "\n" not in message, message
    steps = int(found.group(1))
    assert steps >= 4 and steps % 2 == 1  # between two periodic checkpoints: saved only by the failure
    assert checkpoint_step(run.run_dir / "checkpoints" / "final.ckpt") == steps
    assert RunFolder(found.group(2)).resume_checkpoint().name == "final.ckpt"
    # the resume it suggests works, from exactly those steps
    resumed = TrainingRun(_config(max_steps=steps + 2), [ArraySource(*volume)], val, resume=found.group(2))
    reports = list(resumed.reports())
    assert reports[0].phase == "preparing" and reports[0].step == steps
    assert reports[-1].done and reports[-1].step == steps + 2


def test_a_full_disk_before_any_checkpoint_says_so_and_suggests_no_resume(tmp_path, volume):
    """The disk fills before the first checkpoint (a real EFBIG from the kernel, as a full disk
    gives): the sentence must not claim intact checkpoints nor suggest a resume that cannot work."""
    from test_faults import file_size_limit

    from segtrain.train import ArraySource, TrainingRun

    sources = [ArraySource(*volume)]
    run = TrainingRun(_config(max_steps=4), sources, sources, runs_root=tmp_path)
    with file_size_limit(20_000), pytest.raises(SegtrainError) as failure:  # a checkpoint is ~100 kB
        run.run()
    message = str(failure.value)
    assert "the disk is full" in message and "no checkpoint was written" in message, message
    assert "--resume" not in message and "intact" not in message, message
    assert not run.run_dir.exists()


# --- blockwise outputs that are not complete --------------------------------------------------


@pytest.fixture
def unfinished_segmentation(tmp_path, monkeypatch):
    """A `segtrain scale` job whose segmentation was interrupted while relabelling (its output array
    exists, no block of it was written, it is not marked complete)."""
    import zarr

    from segtrain.scale import pipeline
    from segtrain.scale.pipeline import create_job, run_job, segment_job
    from test_bad_input import affinities_of, labels

    gt = labels((8, 32, 32))
    affs = zarr.create_array(store=str(tmp_path / "affs.zarr"), shape=(3, 8, 32, 32), chunks=(3, 8, 32, 32),
                             dtype="float32", zarr_format=2)
    affs[:] = affinities_of(gt)
    job = create_job(tmp_path / "job", affinities=str(tmp_path / "affs.zarr"), block_shape=(8, 16, 16))
    assert all(r.ok for r in run_job(job, serial=True))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_tasks", killed)
    out = tmp_path / "seg.zarr"
    with pytest.raises(KeyboardInterrupt):
        segment_job(job, 0.5, out, serial=True)
    monkeypatch.undo()
    import h5py

    with h5py.File(tmp_path / "gt.h5", "w") as f:
        f["data"] = gt
    return job, out, tmp_path / "gt.h5"


def test_every_reader_refuses_an_unfinished_blockwise_output_naming_the_command_that_completes_it(
        unfinished_segmentation, capsys):
    from segtrain.cli import main
    from segtrain.plugin.reader import napari_get_reader, read_layers

    job, out, gt = unfinished_segmentation
    command = f"segtrain scale segment {job.folder} --threshold 0.5 --out {out}"
    assert main(["evaluate", str(out), str(gt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unfinished blockwise output" in err and command in err, err
    assert main(["export", str(out.parent / "x.zarr"), "--tree", "none.npz", "--threshold", "0.5"]) == 2  # no tree
    capsys.readouterr()
    with pytest.raises(InputError, match=re.escape(command)):
        read_layers(str(out))
    assert napari_get_reader(str(out)) is None  # the napari reader shows the sentence, opens nothing
    # the command it names completes it, and then it reads
    from segtrain.scale.pipeline import segment_job

    assert segment_job(job, 0.5, out, serial=True).step.ok
    assert main(["evaluate", str(out), str(gt)]) == 0


def test_a_scale_job_whose_affinities_give_no_fragments_is_one_sentence_and_leaves_nothing(tmp_path, capsys):
    import zarr

    from segtrain.cli import main

    affs = zarr.create_array(store=str(tmp_path / "zero.zarr"), shape=(3, 8, 32, 32), chunks=(3, 8, 32, 32),
                             dtype="float32", zarr_format=2)
    affs[:] = 0.0
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["scale", "run", str(tmp_path / "job"), "--affinities", str(tmp_path / "zero.zarr"),
                 "--block-shape", "8,16,16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("segtrain scale: error: ") and "give no fragments" in err and err.endswith("."), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --- ground truth with nothing labelled -------------------------------------------------------


def test_all_zero_ground_truth_is_refused_by_scores_sweeps_and_training(tmp_path, volume):
    from segtrain.config import config_from_dict
    from segtrain.evaluate import segmentation_scores
    from segtrain.evaluate.sweep import sweep
    from segtrain.segment import MergeTree
    from segtrain.train import ArraySource, TrainingRun
    from test_bad_input import affinities_of, labels

    gt = labels((8, 32, 32))
    empty = np.zeros_like(gt)
    with pytest.raises(InputError, match="no labelled voxel"):
        segmentation_scores(gt, empty)
    with pytest.raises(InputError, match="no labelled voxel"):
        sweep(MergeTree.build(affinities_of(gt), None), empty)
    raw, _ = volume
    with pytest.raises(InputError, match="Validation source .* no labelled voxel"):
        TrainingRun(config_from_dict(TINY), [ArraySource(raw, gt)], [ArraySource(raw, empty)], runs_root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_sigterm_stops_training_like_ctrl_c_with_a_checkpoint_to_resume_from(tmp_path, volume):
    """A cluster's time limit or `kill` (SIGTERM): the run ends after the current step with
    final.ckpt, exit code 130, and says so."""
    import signal
    import subprocess
    import sys
    import time

    import h5py
    import yaml

    from segtrain.runs import checkpoint_step

    raw, gt = volume
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["raw"], f["gt"] = raw, gt
    source = {"raw": str(tmp_path / "data.h5/raw"), "labels": str(tmp_path / "data.h5/gt")}
    values = {**TINY, "data": {**TINY["data"], "train": [source], "val": [source]},
              "train": {**TINY["train"], "max_steps": 100_000, "checkpoint_every": 100_000, "val_every": 100_000}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(values))
    process = subprocess.Popen([sys.executable, "-m", "segtrain.cli", "train", "--config", "config.yaml"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not list((tmp_path / "runs").glob("*/tensorboard/*events*")):  # training has begun
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
            time.sleep(0.2)
        time.sleep(2.0)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, out[-1000:] + err[-1000:]
    (run_dir,) = list((tmp_path / "runs").iterdir())
    step = checkpoint_step(run_dir / "checkpoints" / "final.ckpt")
    assert step is not None and step >= 1
    assert f"stopped at step {step}; checkpoints in" in out


# --- a full disk and a read-only file system, for real (small tmpfs mounts; needs root) --------


@pytest.fixture
def mounted(tmp_path):
    """``mount(name, size, read_only)``: a tmpfs of ``size`` at ``tmp_path/name`` (unmounted after)."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the full-disk path is also covered with RLIMIT_FSIZE)")
    points = []

    def mount(name: str, size: str, read_only: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        points.append(point)
        return point

    yield mount
    for point in reversed(points):
        subprocess.run(["umount", str(point)], check=False)


def _cli(*args: str, cwd: Path):
    """`segtrain ARGS` in a process of its own (a crash at exit, a segmentation fault, shows as its code)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "segtrain.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def _error_line(result, command: str) -> str:
    lines = [line for line in re.split(r"[\r\n]+", result.stderr) if line.strip()]
    found = re.search(rf"segtrain {command}: error: .*$", lines[-1]) if lines else None  # after a progress bar
    assert found, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return found.group(0)


def test_export_to_hdf5_on_a_full_disk_is_one_sentence_not_a_crash(tmp_path, mounted):
    from segtrain.segment import MergeTree
    from test_bad_input import affinities_of, labels

    MergeTree.build(affinities_of(labels((8, 64, 64))), None).save(tmp_path / "tree.npz")
    full = mounted("full", "64k")
    (full / "filler").write_bytes(b"\0" * 56 * 1024)  # 8 kB left: the export (about 20 kB) does not fit
    before = sorted(p.name for p in full.iterdir())
    for name in ("seg.h5", "seg.zarr"):
        result = _cli("export", full / name, "--tree", tmp_path / "tree.npz", "--threshold", "0.5", cwd=tmp_path)
        assert result.returncode == 2, (name, result.returncode, result.stderr[-2000:])  # 139 was a segfault
        line = _error_line(result, "export")
        assert "The disk is full (no space left on the device)" in line and line.endswith("."), line
        assert sorted(p.name for p in full.iterdir()) == before  # no output, no temporary


def test_read_only_output_folders_are_one_sentence(tmp_path, mounted):
    import h5py
    import yaml

    from test_bad_input import TINY as HARNESS_TINY
    from test_bad_input import affinities_of, labels

    gt = labels((8, 32, 32))
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["affs"], f["gt"] = affinities_of(gt), gt
        f["raw"] = np.random.default_rng(0).integers(0, 255, gt.shape, dtype=np.uint8)
    source = {"raw": str(tmp_path / "data.h5/raw"), "labels": str(tmp_path / "data.h5/gt")}
    config = {**HARNESS_TINY, "data": {**HARNESS_TINY["data"], "train": [source], "val": [source]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    ro = mounted("ro", "1m", read_only=True)
    for command, args in (("segment", [tmp_path / "data.h5/affs", ro / "out"]),
                          ("sweep", ["--affs", tmp_path / "data.h5/affs", "--gt", tmp_path / "data.h5/gt",
                                     "--out-dir", ro / "sweep"]),
                          ("train", ["--config", tmp_path / "config.yaml", "--runs-root", ro / "runs"])):
        result = _cli(command, *args, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        line = _error_line(result, command)
        assert "read-only" in line and str(ro) in line and line.endswith("."), line
        assert list(ro.iterdir()) == []


#: a raw volume wider than the central 256 voxels a new job reads for its intensity range
WIDE = (8, 32, 320)


@pytest.mark.parametrize("where", ["centre", "edge"])
def test_a_scale_job_on_a_raw_volume_with_nan_is_one_sentence_and_leaves_nothing(tmp_path, capsys, monkeypatch,
                                                                                 where):
    """NaN where the new job reads its intensity range (the centre of a volume too large to load)
    is refused before the job exists; NaN beyond it stops the blocks that meet it: the same
    sentence, and nothing left."""
    import zarr

    monkeypatch.setattr("segtrain.io.volume.LAZY_BYTES", 1000)  # the volume stays on disk, as a large one does

    from scale.test_scale_cli import tiny_checkpoint
    from segtrain.cli import main

    tiny_checkpoint(tmp_path / "tiny.ckpt")
    raw = np.random.default_rng(0).random(WIDE).astype(np.float32)
    raw[4, 20, 160 if where == "centre" else 300] = np.nan
    zarr.create_array(store=str(tmp_path / "raw.zarr"), shape=raw.shape, chunks=(8, 32, 32), dtype="float32",
                      zarr_format=2)[:] = raw
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["scale", "run", str(tmp_path / "job"), "--raw", str(tmp_path / "raw.zarr"), "--model",
                 str(tmp_path / "tiny.ckpt"), "--block-shape", "8,32,32"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2, err
    assert re.fullmatch(r"segtrain scale: error: There are NaN or infinite values in \S*raw\.zarr .*\.", err), err
    assert ("step stopped at them" in err) == (where == "edge"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no job folder, no prediction


def test_blocks_stop_at_nan_without_worker_restarts_and_run_again_once_the_raw_is_mended(tmp_path, monkeypatch):
    """A NaN in the raw volume (beyond what the new job reads for its intensity range) fails its
    block without ending the worker (no daisy restart per block), the job's other blocks fail at
    once, the command line and the GUI's driver say it in one sentence naming the volume, and a run
    after the raw was mended finishes the job (the stop is not remembered)."""
    import zarr

    from scale.test_scale_cli import tiny_checkpoint
    from segtrain.scale.job import input_error_file
    from segtrain.scale.pipeline import create_job, input_error_of, run_job

    monkeypatch.setattr("segtrain.io.volume.LAZY_BYTES", 1000)  # the volume stays on disk, as a large one does
    tiny_checkpoint(tmp_path / "tiny.ckpt")
    raw = np.random.default_rng(0).random(WIDE).astype(np.float32)
    store = zarr.create_array(store=str(tmp_path / "raw.zarr"), shape=raw.shape, chunks=(8, 32, 32),
                              dtype="float32", zarr_format=2)
    poisoned = raw.copy()
    poisoned[4, 20, 300] = np.nan
    store[:] = poisoned
    job = create_job(tmp_path / "job", block_shape=(8, 32, 32), raw=str(tmp_path / "raw.zarr"),
                     model=str(tmp_path / "tiny.ckpt"))
    predict = run_job(job, workers=2)[0]
    assert predict.task_id == "predict" and not predict.ok and predict.failed >= 1
    assert predict.worker_restarts == 0  # the workers went on to the next block
    assert predict.input_error.startswith("There are NaN or infinite values in the image")
    message = str(input_error_of(job, [predict]))  # what the CLI and the GUI's driver say
    assert message.startswith(f"There are NaN or infinite values in {tmp_path / 'raw.zarr'} (the predict step "
                              "stopped at them)") and "retry" not in message
    assert input_error_file(job.folder).exists()

    store[:] = raw  # mended in place: the same job runs to its end
    results = run_job(job, workers=2)
    assert all(r.ok for r in results), [r.to_dict() for r in results]
    assert [r.task_id for r in results] == ["predict", "fragments", "agglomerate", "global"]
    assert not input_error_file(job.folder).exists()
