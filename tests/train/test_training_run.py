"""Training runs on tiny models and real crops: loss goes down, checkpoints round-trip, resume
continues, early stopping triggers, stop from another thread is quick and leaves a checkpoint."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch

from segtrain.errors import InputError
from segtrain.predict import load_model, predict_array
from segtrain.runs import list_runs, load_run
from segtrain.train import ArraySource, ProgressReport, TrainingRun


def sources(em_crop):
    raw, gt, vraw, vgt = em_crop
    return [ArraySource(raw, gt)], [ArraySource(vraw, vgt)]


def test_loss_decreases_and_run_folder_is_complete(tmp_path, em_crop, tiny_config):
    config = tiny_config(max_steps=40, val_every=20, lr=1e-2)
    config.data.augment.probability = 0.0
    raw, gt, _, _ = em_crop
    run = TrainingRun(config, [ArraySource(raw, gt)], [ArraySource(raw[:8], gt[:8])], runs_root=tmp_path)
    reports = list(run.reports())
    assert all(isinstance(r, ProgressReport) for r in reports)
    assert reports[-1].done and reports[-1].step == 40 and not any(r.done for r in reports[:-1])
    history = json.loads((run.run_dir / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [20, 40]
    first_losses = [r.losses["loss"] for r in reports if r.losses][:3]
    assert np.mean(first_losses) > reports[-1].losses["loss"]
    assert history[-1]["val/loss"] < history[0]["val/loss"]
    assert "val/voi" in history[-1] and np.isfinite(history[-1]["val/voi"])
    for name in ("config.yaml", "metrics.json", "metrics.csv", "tensorboard", "checkpoints/best.ckpt",
                 "checkpoints/last.ckpt", "checkpoints/final.ckpt"):
        assert (run.run_dir / name).exists(), name
    # periodic checkpoints every 6 steps: only the newest train.keep_checkpoints (2) are kept, and
    # at the end last.ckpt links final.ckpt (no second copy of the same state)
    checkpoints = run.run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("step-*.ckpt")) == ["step-30.ckpt", "step-36.ckpt"]
    assert (checkpoints / "last.ckpt").is_symlink()
    assert (checkpoints / "last.ckpt").resolve() == (checkpoints / "final.ckpt").resolve()
    # best.ckpt is for inference: weights without the optimizer state
    import torch

    best = torch.load(checkpoints / "best.ckpt", map_location="cpu", weights_only=False)
    final = torch.load(checkpoints / "final.ckpt", map_location="cpu", weights_only=False)
    if best["global_step"] == final["global_step"]:  # best at the last step: one file, two names
        assert (checkpoints / "best.ckpt").samefile(checkpoints / "final.ckpt")
    else:
        assert "optimizer_states" not in best and final["optimizer_states"]
    previews = [r.preview for r in reports if r.preview is not None]
    assert previews and previews[0].ndim == 2 and previews[0].shape[1] == 3 * previews[0].shape[0]
    summary = load_run(run.run_dir)
    assert summary.task == "affinities" and summary.steps == 40 and summary.best_metric_name == "val/voi"
    assert [r.name for r in list_runs(tmp_path)] == [run.run_dir.name]


def test_checkpoint_round_trip_and_resume_continues(tmp_path, em_crop, tiny_config):
    train, val = sources(em_crop)
    run = TrainingRun(tiny_config(max_steps=6, val_every=3), train, val, runs_root=tmp_path)
    run.run()
    loaded = load_model(run.run_dir / "checkpoints" / "final.ckpt")
    # the run's config, with the merge threshold its validation chose at step 6
    history = json.loads((run.run_dir / "metrics.json").read_text())["history"]
    chosen = [h["val/threshold"] for h in history if h["step"] == 6]
    assert loaded.step == 6 and chosen and loaded.config.segment.threshold == chosen[0]
    loaded.config.segment.threshold = None
    assert loaded.config == run.config
    # the weights saved are the weights validated: the checkpoint re-scores the VOI recorded at step 6
    from segtrain.postprocess import OutputSpec, validation_scores

    x, y = em_crop[2], em_crop[3]
    scores = validation_scores(predict_array(loaded, x), y, loaded.config.segment, OutputSpec.of(loaded.config))
    record = [h for h in history if h["step"] == 6][0]
    assert scores["voi"] == pytest.approx(record["val/voi"], abs=1e-6)

    more = tiny_config(max_steps=10, val_every=3)
    resumed = TrainingRun(more, train, val, runs_root=tmp_path, resume=run.run_dir)
    assert resumed.run_dir == run.run_dir
    reports = list(resumed.reports())
    steps = [r.step for r in reports if r.phase == "training"]
    assert reports[0].phase == "preparing" and reports[0].step == 6
    assert steps[0] > 6 and reports[-1].step == 10
    history = json.loads((run.run_dir / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [3, 6, 9, 10]  # and a validation at the last step
    assert load_model(run.run_dir / "checkpoints" / "final.ckpt").step == 10


def test_early_stopping_triggers(tmp_path, em_crop, tiny_config):
    train, val = sources(em_crop)
    config = tiny_config(max_steps=200, val_every=2, early_stopping_patience=2,
                            early_stopping_min_delta=1e6, monitor="loss")
    last = TrainingRun(config, train, val, runs_root=tmp_path).run()
    assert last.done and last.message == "early stopping"
    assert last.step == 6  # first validation sets the reference, then two without improvement


def test_stop_from_another_thread_is_quick_and_leaves_a_checkpoint(tmp_path, em_crop, tiny_config):
    train, val = sources(em_crop)
    run = TrainingRun(tiny_config(max_steps=100_000, val_every=50_000), train, val, runs_root=tmp_path)
    stopped_at = {}
    reports = []
    for report in run.reports():
        reports.append(report)
        if report.step >= 2 and not stopped_at:
            stopper = threading.Thread(target=lambda: (stopped_at.setdefault("t", time.monotonic()), run.stop()))
            stopper.start()
    ended = time.monotonic()
    assert ended - stopped_at["t"] < 2.0
    assert reports[-1].done and reports[-1].message == "stopped"
    loaded = load_model(run.run_dir)
    assert loaded.step == reports[-1].step < 100_000
    # the validation Lightning adds on stop is not recorded, but the step reached is
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert metrics["history"] == [] and metrics["steps"] == reports[-1].step
    summary = load_run(run.run_dir)
    assert summary.steps == reports[-1].step and summary.best_metric is None and summary.best_metric_name is None


def test_a_run_that_ends_leaves_a_shared_stop_event_clear(tmp_path, em_crop, tiny_config):
    """The end of a run never sets the stop event it was given (self-training shares one across its
    iterations): here the training thread lingers after its last report, as a loaded machine makes it."""
    class Lingering(TrainingRun):
        def _fit(self):
            super()._fit()
            time.sleep(0.5)  # still alive when the consumer has taken the end of the reports

    train, val = sources(em_crop)
    stop = threading.Event()
    run = Lingering(tiny_config(max_steps=2, val_every=2), train, val, runs_root=tmp_path, stop_event=stop)
    reports = list(run.reports())
    assert reports[-1].done and reports[-1].message == "finished"
    assert not stop.is_set()


def test_bad_training_data_is_one_sentence_before_any_run_folder(tmp_path, em_crop, tiny_config):
    raw, gt, _, _ = em_crop
    with pytest.raises(InputError, match="differ"):
        TrainingRun(tiny_config(), [ArraySource(raw[:, :, :10], gt)], [ArraySource(raw, gt)], runs_root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_out_of_memory_becomes_a_clear_message(tmp_path, em_crop, tiny_config, monkeypatch):
    from segtrain.train.module import SegtrainModule

    def oom(self, batch, batch_idx):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SegtrainModule, "training_step", oom)
    train, val = sources(em_crop)
    with pytest.raises(Exception, match="reduce train.batch_size or data.patch_shape"):
        TrainingRun(tiny_config(), train, val, runs_root=tmp_path).run()
    ensemble = tiny_config()
    ensemble.model.ensemble = 3
    with pytest.raises(Exception, match="for each of 3 ensemble members; reduce model.ensemble, train.batch_size or"):
        TrainingRun(ensemble, train, val, runs_root=tmp_path / "ensemble").run()


def test_validation_split_when_no_validation_data(tmp_path, em_crop, tiny_config):
    raw, gt, _, _ = em_crop
    run = TrainingRun(tiny_config(max_steps=2, val_every=2), [ArraySource(raw, gt)], runs_root=tmp_path)
    assert run.val_sources[0].crop == [[13, 16]] and run.train_sources[0].crop == [[0, 13]]
    assert run.run().done


@pytest.mark.parametrize("task", ["instances", "masks"])
def test_2d_smp_training_with_plateau_schedule(tmp_path, cells_dir, task):
    from segtrain.config import config_from_dict
    from segtrain.io import read_volume

    raw = np.asarray(read_volume(cells_dir / "set01" / "raw.tif").data)[:128, :128]
    gt = np.asarray(read_volume(cells_dir / "set01" / "instances_ids.png").data)[:128, :128]
    config = config_from_dict({"preset": "wells2d_quick", "data": {"patch_shape": [64, 64], "val_patches": 1},
                               "model": {"task": task, "encoder_depth": 3},
                               "train": {"max_steps": 4, "val_every": 2, "batch_size": 2, "scheduler": "plateau",
                                         "plateau_patience": 0, "checkpoint_every": 4}})
    run = TrainingRun(config, [ArraySource(raw[:96], gt[:96])], [ArraySource(raw[96:], gt[96:])],
                      runs_root=tmp_path)
    last = run.run()
    assert last.done and last.step == 4
    assert {"dice", "f1", "loss"} <= set(last.metrics)
    out = predict_array(run.run_dir, raw)
    assert out["probabilities"].shape == ((2 if task == "instances" else 1), 128, 128)


def test_resume_with_an_incompatible_model_is_one_sentence(tmp_path, em_crop, tiny_config):
    from segtrain.errors import SegtrainError

    train, val = sources(em_crop)
    run = TrainingRun(tiny_config(max_steps=2, val_every=2), train, val, runs_root=tmp_path)
    run.run()
    other = tiny_config(max_steps=4, val_every=2)
    other.model.num_fmaps = 5
    with pytest.raises(SegtrainError, match="its model differs"):
        TrainingRun(other, train, val, resume=run.run_dir).run()


def test_resume_continues_from_the_checkpoint_the_test_chose_with_its_weights(tmp_path, em_crop, tiny_config):
    """Three periodic checkpoints at different steps; the test removes the newer one, so the one to
    resume from is step-4.ckpt (chosen here, not by the library): training must continue from step
    4 (not from the older full checkpoint, step-2, nor from scratch) with exactly its weights and
    optimizer state. Only the newest checkpoint keeps the optimizer state (older ones are slimmed
    to weights), so the test keeps the full step-2 and step-4 files as the run wrote them and puts
    them back: two resumable checkpoints, the newer one the right one."""
    train, val = sources(em_crop)
    run = TrainingRun(tiny_config(max_steps=2, val_every=100, checkpoint_every=2, keep_checkpoints=3), train, val,
                      runs_root=tmp_path)
    run.run()
    checkpoints = run.run_dir / "checkpoints"
    full = {2: (checkpoints / "step-2.ckpt").read_bytes()}
    for steps in (4, 6):
        TrainingRun(tiny_config(max_steps=steps, val_every=100, checkpoint_every=2, keep_checkpoints=3), train, val,
                    resume=run.run_dir).run()
        full.setdefault(steps, (checkpoints / f"step-{steps}.ckpt").read_bytes())
    assert sorted(p.name for p in checkpoints.glob("step-*.ckpt")) == ["step-2.ckpt", "step-4.ckpt", "step-6.ckpt"]
    for name in ("final.ckpt", "last.ckpt", "step-6.ckpt", "step-2.ckpt", "step-4.ckpt"):
        (checkpoints / name).unlink(missing_ok=True)
    for step in (2, 4):
        (checkpoints / f"step-{step}.ckpt").write_bytes(full[step])
    chosen = torch.load(checkpoints / "step-4.ckpt", map_location="cpu", weights_only=False)
    assert chosen["global_step"] == 4
    # resume to the very step of the chosen checkpoint: what is restored is saved back as final.ckpt
    same = TrainingRun(tiny_config(max_steps=4, val_every=100, checkpoint_every=2, keep_checkpoints=3), train, val,
                       resume=run.run_dir)
    assert same.resume_checkpoint == checkpoints / "step-4.ckpt"
    reports = list(same.reports())
    assert reports[0].phase == "preparing" and reports[0].step == 4 and reports[-1].step == 4
    restored = torch.load(checkpoints / "final.ckpt", map_location="cpu", weights_only=False)
    assert restored["global_step"] == 4
    for key, value in chosen["state_dict"].items():
        torch.testing.assert_close(restored["state_dict"][key], value, rtol=0, atol=0)
    moments = [v for s in chosen["optimizer_states"] for st in s["state"].values() for v in st.values()
               if torch.is_tensor(v) and v.ndim]
    again = [v for s in restored["optimizer_states"] for st in s["state"].values() for v in st.values()
             if torch.is_tensor(v) and v.ndim]
    assert moments and len(moments) == len(again)
    for a, b in zip(moments, again):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    # and training goes on from there: the first step trained is step 5
    (checkpoints / "final.ckpt").unlink()
    (checkpoints / "last.ckpt").unlink(missing_ok=True)
    more = TrainingRun(tiny_config(max_steps=6, val_every=100, checkpoint_every=2, keep_checkpoints=3), train, val,
                       resume=run.run_dir)
    steps = [r.step for r in more.reports() if r.phase == "training"]
    assert steps and steps[0] == 5 and steps[-1] == 6
