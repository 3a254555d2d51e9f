"""The training workflows without Qt: which run a request starts, the resumed / fine-tuned
configs, the Train panel's run of arrays, train-or-reuse of a config, each iterated on tiny data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from segtrain.config import config_from_dict, load_config
from segtrain.errors import InputError
from segtrain.runs import RunFolder
from segtrain.train.run import ProgressReport
from segtrain.workflows.training import (
    RunEnded,
    RunStarted,
    TrainingJob,
    fine_tune_config,
    resume_config,
    run_finished,
    run_to_end,
    selftrain_root,
    selftraining_wanted,
    set_max_steps,
    train_or_reuse,
    training_reports,
)


def test_max_steps_clamps_validation_and_checkpoints_in_one_place():
    config = config_from_dict({"preset": "em3d_quick", "train": {"val_every": 500, "checkpoint_every": 500}})
    set_max_steps(config, 40)
    assert (config.train.max_steps, config.train.val_every, config.train.checkpoint_every) == (40, 40, 500)
    set_max_steps(config, 30, checkpoints=True)
    assert (config.train.max_steps, config.train.val_every, config.train.checkpoint_every) == (30, 30, 30)
    set_max_steps(config, 1000, checkpoints=True)  # never raises the intervals
    assert (config.train.val_every, config.train.checkpoint_every) == (30, 30)


def test_only_a_new_run_of_a_selftrain_config_self_trains():
    plain = config_from_dict({"preset": "em3d_quick"})
    selftrain = config_from_dict({"preset": "em3d_quick", "selftrain": {"iterations": 2}})
    assert not selftraining_wanted(plain) and not selftraining_wanted(None)
    assert selftraining_wanted(selftrain)
    assert not selftraining_wanted(selftrain, resume="run")
    assert not selftraining_wanted(selftrain, init_from="parent")
    assert not selftraining_wanted(selftrain, run_dir="folder")


def _files_config(tmp_path: Path, em3d_dir: Path, tiny_config, **train) -> Path:
    config = tiny_config(max_steps=4, val_every=2, checkpoint_every=2, **train)
    values = config.to_dict()
    entry = {"raw": str(em3d_dir / "train-image.h5"), "labels": str(em3d_dir / "train-gt.lzf.h5")}
    values["data"]["train"] = [{**entry, "crop": [[0, 16], [0, 48], [0, 64]]}]
    values["data"]["val"] = [{**entry, "crop": [[35, 43], [0, 48], [0, 48]]}]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def test_train_or_reuse_trains_a_config_then_reuses_the_finished_run(tmp_path, em3d_dir, tiny_config):
    path = _files_config(tmp_path, em3d_dir, tiny_config)
    items = list(train_or_reuse(path, runs_root=tmp_path / "runs"))
    started, ended = items[0], items[-1]
    assert isinstance(started, RunStarted) and not started.resumed and started.start_step == 0
    assert all(isinstance(i, ProgressReport) for i in items[1:-1]) and len(items) > 3
    assert isinstance(ended, RunEnded) and not ended.reused and ended.run_dir == started.run_dir
    assert ended.last.done and ended.last.step == 4
    assert run_finished(ended.run_dir, load_config(path)) and selftrain_root(ended.run_dir) is None
    assert ended.finished
    again = list(train_or_reuse(path, previous=ended.run_dir, runs_root=tmp_path / "runs"))
    assert len(again) == 1 and again[0].reused and again[0].run_dir == ended.run_dir
    assert len(list((tmp_path / "runs").iterdir())) == 1  # nothing trained again

    # What a script prints of the reports (run_to_end): the folder, the checkpoints' metrics, the end
    lines, folders = [], []
    assert run_to_end(iter(items), lines.append, folders.append) is ended and folders == [ended.run_dir]
    assert lines[0] == f"run folder {ended.run_dir}" and lines[-1].startswith(f"{ended.last.message} at step 4; trained ")
    assert any(line.startswith("step 4: ") and "voi" in line for line in lines), lines
    lines.clear()
    run_to_end(iter(again), lines.append)
    assert lines == [f"{ended.run_dir.name}: finished earlier, reused"]

    # A Proofreader of the run's segmentation, as the panels make it: fragments, merge tree, boundary
    import h5py

    from segtrain.predict import load_model
    from segtrain.workflows.correction import proofreader_of

    with h5py.File(em3d_dir / "train-image.h5", "r") as f:
        raw = f["stack"][35:43, :48, :48]
    reader = proofreader_of(load_model(ended.run_dir), raw, threshold=0.3)
    assert reader.tree is not None and reader.threshold == 0.3 and reader.boundary.shape == raw.shape
    assert reader.segmentation().shape == raw.shape and reader.segmentation().max() > 0

    # The run's settings and variants of them scored on annotated arrays (benchmarks/quality_eval.py)
    from segtrain.postprocess import OutputSpec, validation_scores
    from segtrain.predict import predict_array
    from segtrain.workflows.tuning import score_settings

    with h5py.File(em3d_dir / "train-gt.lzf.h5", "r") as f:
        gt = f["stack"][35:43, :48, :48].astype(np.uint32)
    loaded = load_model(ended.run_dir)
    scores, seconds = score_settings(loaded, [{"raw": raw, "labels": gt}],
                                     {"run": {}, "watershed": {"fragments": "watershed"}}, tta=1)
    assert list(scores) == ["run", "watershed"] and len(seconds) == 1 and seconds[0] > 0
    direct = validation_scores(predict_array(loaded, raw, tta=1), gt, loaded.config.segment, OutputSpec.of(loaded.config),
                               voxel_size=loaded.config.data.voxel_size)
    assert scores["run"] == pytest.approx({k: float(v) for k, v in direct.items()})

    # Resume and fine-tune configs are the run's own, with the Steps asked for
    with pytest.raises(InputError, match="already reached step 4; set Steps above 4"):
        resume_config(ended.run_dir, 4)
    resumed = resume_config(ended.run_dir, 6)
    assert resumed.train.max_steps == 6 and resumed.model == load_config(path).model
    tuned = fine_tune_config(ended.run_dir, 1)
    assert tuned.name == "tiny-ft" and (tuned.train.max_steps, tuned.train.val_every,
                                        tuned.train.checkpoint_every) == (1, 1, 1)


def test_the_panels_run_of_arrays_starts_then_resumes(tmp_path, em_crop, tiny_config):
    raw, gt, val_raw, val_gt = em_crop
    config = tiny_config(max_steps=2, val_every=2, checkpoint_every=2)
    job = TrainingJob(config, raw, gt, None, None, (1.0, 1.0, 1.0), tmp_path / "runs")
    items = list(training_reports(job))
    assert items[:2] == ["loading PyTorch", "reading the layers"]
    last = items[-1]
    assert isinstance(last, ProgressReport) and last.done and last.step == 2
    (run_dir,) = list((tmp_path / "runs").iterdir())
    # Resume: no config, the run's own with more steps; it continues from step 2 in the same folder
    job = TrainingJob(None, raw, gt, None, None, (1.0, 1.0, 1.0), tmp_path / "runs", resume=run_dir, max_steps=4)
    items = list(training_reports(job))
    assert f"reading run {run_dir.name}" in items and items[-1].done and items[-1].step == 4
    assert job.config.train.max_steps == 4 and list((tmp_path / "runs").iterdir()) == [run_dir]
    assert RunFolder(run_dir).resume_checkpoint().step == 4
    assert np.isfinite(items[-1].losses["loss"])


def test_train_or_reuse_self_trains_a_selftrain_config_then_reuses_it(tmp_path, cells_dir):
    from segtrain.train.selftrain import IterationResult

    import imageio.v3 as iio

    def entry(name):
        return {"raw": str(cells_dir / name / "raw.tif"), "labels": str(cells_dir / name / "instances_ids.png"),
                "crop": [[0, 96], [0, 96]]}

    unlabelled = tmp_path / "set03_crop.tif"
    iio.imwrite(unlabelled, np.asarray(iio.imread(cells_dir / "set03" / "raw.tif"))[:96, :96])

    values = {"preset": "wells2d_quick", "name": "st",
              "data": {"patch_shape": [32, 32], "val_patches": 1, "min_annotated_fraction": 0.0,
                       "train": [entry("set01")], "val": [entry("set02")]},
              "model": {"task": "masks", "encoder_depth": 3},
              "train": {"max_steps": 2, "val_every": 2, "checkpoint_every": 2, "batch_size": 1,
                        "report_interval": 0.0, "threads": 1},
              "selftrain": {"iterations": 1, "unlabelled": [str(unlabelled)]}}
    path = tmp_path / "st.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    items = list(train_or_reuse(path, runs_root=tmp_path / "runs"))
    assert isinstance(items[0], RunStarted) and isinstance(items[-1], RunEnded) and not items[-1].reused
    assert [r.iteration for r in items if isinstance(r, IterationResult)] == [0, 1]
    run_dir = items[-1].run_dir
    assert selftrain_root(run_dir) == run_dir and run_finished(run_dir, load_config(path))
    again = list(train_or_reuse(path, previous=run_dir, runs_root=tmp_path / "runs"))
    assert len(again) == 1 and again[0].reused
