"""Self-training and synthetic co-training: unconfident pixels carry no loss, thresholds relax on
the configured schedule, each iteration's folder records the pixels kept per class, synthetic:real
ratios hold over many patches, and the config checks name the problem."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from segtrain.config import config_from_dict
from segtrain.errors import ConfigError
from segtrain.train import ArraySource
from segtrain.train.dataset import PatchStream
from segtrain.train.losses import task_loss
from segtrain.train.selftrain import (
    SelfTraining,
    pseudo_labels,
    pseudo_source,
    thresholds_for,
)
from segtrain.train.sources import SyntheticSource, mix_synthetic, synthetic_sources


def _wells_config(**selftrain):
    return config_from_dict({
        "preset": "wells2d_quick", "name": "st",
        "data": {"patch_shape": [32, 32], "val_patches": 1, "min_annotated_fraction": 0.0},
        "model": {"task": "masks", "encoder_depth": 3},
        "train": {"max_steps": 2, "val_every": 2, "checkpoint_every": 2, "batch_size": 1, "report_interval": 0.0,
                  "threads": 1},
        "selftrain": {"iterations": 2, "threshold_start": 0.95, "threshold_end": 0.91, **selftrain},
    })


def test_thresholds_relax_on_the_schedule():
    config = _wells_config(iterations=5, threshold_start=[0.99, 0.95], threshold_end=[0.91, 0.87])
    got = [thresholds_for(config, i) for i in range(1, 6)]
    assert got[0] == pytest.approx([0.99, 0.95]) and got[-1] == pytest.approx([0.91, 0.87])
    assert got[2] == pytest.approx([0.95, 0.91])  # linear: halfway at the middle iteration
    assert all(a[0] > b[0] for a, b in itertools.pairwise(got))  # relaxed every iteration
    config.selftrain.schedule = "constant"
    assert thresholds_for(config, 5) == pytest.approx([0.99, 0.95])
    config = _wells_config(iterations=3)  # a scalar applies to every class
    assert thresholds_for(config, 2) == pytest.approx([0.93, 0.93])


def test_pseudo_labels_keep_confident_pixels_per_class():
    config = _wells_config()
    p = np.array([[0.99, 0.94, 0.5, 0.06, 0.02]], np.float32)[None]  # foreground probability, (1, 1, 5)
    pseudo = pseudo_labels({"probabilities": p}, config, [0.95, 0.93])
    # background keeps 1 - p >= 0.95 (p 0.02); foreground keeps p >= 0.93 (0.99, 0.94)
    assert pseudo.known.tolist() == [[True, True, False, False, True]]
    assert pseudo.classes.tolist() == [[1, 1, 1, 0, 0]]
    assert pseudo.kept == {0: 1, 1: 2} and pseudo.predicted == {0: 2, 1: 3}
    classes = config_from_dict({**config.to_dict(), "model": {**config.to_dict()["model"], "task": "classes",
                                                               "n_classes": 3},
                                "selftrain": {"iterations": 1, "threshold_start": [0.5, 0.9, 0.6]}})
    probs = np.array([[0.8, 0.1, 0.2], [0.1, 0.85, 0.1], [0.1, 0.05, 0.7]], np.float32)[:, None, :]  # (3, 1, 3)
    pseudo = pseudo_labels({"probabilities": probs}, classes, thresholds_for(classes, 1))
    assert pseudo.classes.tolist() == [[0, 1, 2]] and pseudo.known.tolist() == [[True, False, True]]
    assert pseudo.kept == {0: 1, 1: 0, 2: 1}


@pytest.mark.parametrize("task", ["masks", "classes"])
def test_unconfident_pixels_have_zero_loss_weight(task):
    """Patches from a pseudo-labelled image: loss weight 0 exactly where the pseudo-label is not
    confident, pseudo_weight elsewhere; the loss does not change whatever the network predicts there."""
    config = _wells_config()
    config.model.task = task
    config.data.augment.probability = 0.0
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, (1, 64, 64)).astype(np.float32)
    outputs = {"probabilities": p} if task == "masks" else {"probabilities": np.concatenate([1 - p, p])}
    pseudo = pseudo_labels(outputs, config, [0.8, 0.8])
    assert 0 < pseudo.known.mean() < 1
    raw = (p[0] * 1000).astype(np.uint16)
    source = pseudo_source(raw, pseudo, weight=1.0, pseudo_weight=0.5, name="pseudo")
    config.data.patch_shape = [64, 64]  # the whole image: each patch pixel is the same image pixel
    stream = PatchStream([source], config, augmented=False)
    key = "probabilities_weight" if task == "masks" else "classes_weight"
    confident = pseudo.known
    for seed in range(3):
        patch = stream.draw(np.random.default_rng(seed))
        weight = patch[key][0] if task == "masks" else patch[key]
        assert np.all(weight[~confident] == 0)
        assert np.allclose(weight[confident], 0.5)
        # the loss is blind to the prediction at unconfident pixels
        batch = {k: torch.from_numpy(np.ascontiguousarray(v))[None] for k, v in patch.items()}
        channels = 1 if task == "masks" else 2
        logits = torch.randn(1, channels, 64, 64, generator=torch.Generator().manual_seed(seed))
        changed = logits.clone()
        mask = torch.from_numpy(~confident)
        changed[:, :, mask] = torch.randn(channels, int(mask.sum())) * 10
        a, _ = task_loss({"probabilities": logits}, batch, config)
        b, _ = task_loss({"probabilities": changed}, batch, config)
        assert torch.isclose(a, b, atol=1e-5), (seed, float(a), float(b))
        changed[:, 0, ~mask] += 1.0  # while the confident pixels count
        c, _ = task_loss({"probabilities": changed}, batch, config)
        assert not torch.isclose(a, c, atol=1e-4)


def test_synthetic_to_real_ratio_is_honoured_over_many_patches():
    config = _wells_config()
    config.data.synthetic = [{"generator": "well_image", "params": {"shape": [48, 48], "n_spheroids": 3}, "weight": 3},
                             {"generator": "well_image", "params": {"shape": [40, 40]}, "weight": 1}]
    config.data.synthetic_ratio = 2.0
    config.data.augment.probability = 0.0
    config.validate()
    rng = np.random.default_rng(0)
    real = [ArraySource(rng.integers(0, 100, (40, 40)).astype(np.uint8), np.ones((40, 40), np.int64), weight=2.0),
            ArraySource(rng.integers(0, 100, (40, 40)).astype(np.uint8), np.ones((40, 40), np.int64), weight=1.0)]
    sources = mix_synthetic(real, synthetic_sources(config.data), config.data.synthetic_ratio)
    assert [type(s).__name__ for s in sources[2:]] == ["SyntheticSource", "SyntheticSource"]
    stream = PatchStream(sources, config, seed=0, augmented=False)
    draws = np.random.default_rng(123)
    n = 2000
    for _ in range(n):
        stream.draw(draws)
    counts = np.array(stream.source_draws)
    assert counts.sum() == n
    synthetic_share = counts[2:].sum() / n
    assert abs(synthetic_share - 2 / 3) < 0.03, counts  # 2:1 synthetic:real
    assert abs(counts[2] / counts[2:].sum() - 0.75) < 0.04, counts  # 3:1 among the synthetic entries
    assert abs(counts[0] / counts[:2].sum() - 2 / 3) < 0.05, counts  # the real ones keep their weights


def test_synthetic_config_checks_name_the_problem():
    base = _wells_config().to_dict()

    def with_synthetic(entries, **data):
        return config_from_dict({**base, "data": {**base["data"], "synthetic": entries, **data}})

    with pytest.raises(ConfigError, match="'cells' is not a synthetic generator; use one of well_image, em_volume"):
        with_synthetic([{"generator": "cells"}])
    with pytest.raises(ConfigError, match="names n_cells, which well_image does not take"):
        with_synthetic([{"generator": "well_image", "params": {"n_cells": 3}}])
    with pytest.raises(ConfigError, match="makes 3D images but data.patch_shape is 2D"):
        with_synthetic([{"generator": "em_volume"}])
    with pytest.raises(ConfigError, match="data.synthetic_ratio must be 0 or more"):
        with_synthetic([{"generator": "well_image"}], synthetic_ratio=-1)
    with pytest.raises(ConfigError, match="must be a mapping of names to values"):
        with_synthetic([{"generator": "well_image", "params": [1, 2]}])
    assert with_synthetic([{"generator": "em_volume", "params": {"shape": [64, 64]}}]).data.synthetic
    with pytest.raises(ConfigError, match="selftrain.threshold_end must be a confidence between 0.5 and 1"):
        _wells_config(threshold_end=1.5)
    with pytest.raises(ConfigError, match="lists 3 thresholds; give one number or one per class \\(2\\)"):
        _wells_config(threshold_start=[0.9, 0.9, 0.9])
    with pytest.raises(ConfigError, match="selftrain.pseudo_fraction must be between 0 and 1"):
        _wells_config(pseudo_fraction=1.0)
    source = SyntheticSource("well_image", shape=(40, 40))
    assert source.name == "synthetic-well"


def _well_arrays(seed, shape=(64, 64)):
    from segtrain.synthetic import make_well_image

    return make_well_image(shape=shape, n_spheroids=4, seed=seed)


def test_two_iterations_write_their_folders_with_kept_pixels(tmp_path):
    config = _wells_config(threshold_start=0.6, threshold_end=0.55, pseudo_weight=0.5, mean_teacher=True,
                           ema_decay=0.5)
    raw, labels = _well_arrays(0)
    vraw, vlabels = _well_arrays(1)
    unlabelled = [_well_arrays(2)[0], _well_arrays(3)[0]]
    run = SelfTraining(config, [ArraySource(raw, labels)], [ArraySource(vraw, vlabels)], unlabelled=unlabelled,
                       runs_root=tmp_path)
    reports = list(run.reports())
    results = [r for r in reports if hasattr(r, "kept")]
    assert [r.iteration for r in results] == [0, 1, 2]
    assert {r.iteration for r in reports if hasattr(r, "losses")} == {(0, 2), (1, 2), (2, 2)}
    summary = json.loads((run.run_dir / "selftrain.json").read_text())
    assert [it["iteration"] for it in summary["iterations"]] == [0, 1, 2]
    for index in range(3):
        folder = run.folder.iteration(index)
        assert folder.path == run.run_dir / "iterations" / f"{index:02d}"
        record = json.loads(folder.pseudo_labels_path.read_text())
        assert (folder.path / "metrics.json").exists() and folder.checkpoint_files()
        assert folder.figure_path.read_bytes()[:4] == b"\x89PNG"
        assert folder.teacher_path.exists()  # mean teacher weights
        if index == 0:
            assert record["thresholds"] is None and record["kept"] == {}
            continue
        assert record["thresholds"] == pytest.approx([[0.6, 0.6], [0.55, 0.55]][index - 1])
        kept, predicted = record["kept"], record["predicted"]
        assert set(kept) == {"0", "1"} and sum(predicted.values()) == 2 * 64 * 64
        assert all(0 <= kept[c] <= predicted[c] for c in kept)
        assert summary["iterations"][index]["kept"] == kept
        info = json.loads((folder.path / "run.json").read_text())
        assert info["parent"] == str(run.folder.iteration(index - 1).path.resolve())  # from the previous weights
        names = [s["name"] for s in info["data"]["train"]]
        usable = [k for k in range(2) if sum(json.loads(folder.pseudo_labels_path.read_text())["kept"].values())]
        assert names[0] == "array" and (not usable or any(n.startswith("pseudo-") for n in names)), names
    assert run.folder.checkpoint_files()  # the last iteration's model, loadable from the run
    from segtrain.predict import load_model

    assert load_model(run.run_dir).step == 2


def _tree_state(root):
    """Every file under ``root``: (inode, size, modification time, content hash)."""
    import hashlib

    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns,
                                       hashlib.blake2b(p.read_bytes(), digest_size=8).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_resume_reuses_done_iterations_and_continues_the_interrupted_one(tmp_path):
    """Stopped in the middle of iteration 1: resuming keeps iteration 0 as it is (its files
    untouched), makes the same pseudo-labels again, continues iteration 1 from the step it stopped
    at, trains iteration 2, and lists all three; a finished run is refused, changing nothing."""
    import threading

    from segtrain.errors import InputError
    from segtrain.predict import load_model
    from segtrain.train.run import ProgressReport
    from segtrain.train.selftrain import IterationResult, resume_plan

    config = _wells_config(threshold_start=0.6, threshold_end=0.55, steps=8)
    config.train.checkpoint_every = 2
    config.train.val_every = 8
    data = dict(train_sources=[ArraySource(*_well_arrays(0))], val_sources=[ArraySource(*_well_arrays(1))],
                unlabelled=[_well_arrays(2)[0], _well_arrays(3)[0]])
    stop = threading.Event()
    run = SelfTraining(config, runs_root=tmp_path, stop_event=stop, **data)
    for item in run.reports():
        if isinstance(item, ProgressReport) and item.iteration == (1, 2) and item.step >= 3:
            stop.set()
    assert [(r.iteration, r.stopped) for r in run.results] == [(0, False), (1, True)]
    stopped_at = run.results[1].steps
    assert 3 <= stopped_at < 8, stopped_at
    assert not run.folder.iteration(2).path.exists()
    done_before = _tree_state(run.folder.iteration(0).path)
    pseudo_before = run.folder.iteration(1).pseudo_labels()
    assert sum(pseudo_before["kept"].values()) > 0

    plan = resume_plan(run.run_dir)
    assert [r.iteration for r in plan.done] == [0] and plan.next_iteration == 1 and plan.next_step == stopped_at
    assert plan.describe() == f"resuming: iteration 0 done (reused); iteration 1 continues from step {stopped_at}"
    other = config.copy()
    other.selftrain.pseudo_weight = 0.9
    untouched = _tree_state(run.run_dir)
    with pytest.raises(InputError, match=r"with this config: its selftrain differ from the run's own"):
        SelfTraining(other, resume=run.run_dir, **data)
    assert _tree_state(run.run_dir) == untouched
    resumed = SelfTraining(config, resume=run.run_dir, **data)  # the same config may be given
    assert resumed.run_dir == run.run_dir
    items = list(resumed.reports())
    steps = [r.step for r in items if isinstance(r, ProgressReport) and r.iteration == (1, 2)]
    assert steps and min(steps) >= stopped_at  # continued, not started again
    assert [r.iteration for r in items if isinstance(r, IterationResult)] == [1, 2]
    assert _tree_state(run.folder.iteration(0).path) == done_before  # not retrained
    assert run.folder.iteration(1).pseudo_labels() == pseudo_before  # the same pseudo-labels, made again
    summary = json.loads(run.folder.selftrain_path.read_text())
    assert [(it["iteration"], it["stopped"], it["steps"]) for it in summary["iterations"]] == \
        [(0, False, 8), (1, False, 8), (2, False, 8)]
    assert json.loads(run.folder.metrics_path.read_text())["steps"] == 24
    assert load_model(run.run_dir).step == 8

    everything = _tree_state(run.run_dir)
    with pytest.raises(InputError, match=r"is finished \(iterations 0-2 done\)"):
        SelfTraining(None, resume=run.run_dir, **data)
    assert _tree_state(run.run_dir) == everything

    # killed after iteration 2's training ended, before its record: resuming trains nothing more
    trained = _tree_state(run.folder.iteration(2).checkpoints_dir)
    run.folder.write_selftrain({**summary, "iterations": summary["iterations"][:2]})
    (run.run_dir / "checkpoints" / "final.ckpt").unlink()
    items = list(SelfTraining(None, resume=run.run_dir, **data).reports())
    assert not [r for r in items if isinstance(r, ProgressReport)]
    assert [(r.iteration, r.steps, r.metrics) for r in items] == \
        [(2, 8, summary["iterations"][2]["metrics"])]
    assert _tree_state(run.folder.iteration(2).checkpoints_dir) == trained
    assert load_model(run.run_dir).step == 8


def test_thresholds_calibrated_on_annotated_images_reach_the_precision():
    """The lowest threshold per class at which the kept pixels are right 95 % of the time: the
    foreground is certain above p = 0.7 and a coin toss below; so is the background below 0.3."""
    from segtrain.train.selftrain import calibrate_thresholds, true_classes

    config = _wells_config()
    p = np.linspace(0, 1, 2001, dtype=np.float32)[None, None]  # (1, 1, 2001)
    coin = (np.arange(p.size) % 2).astype(bool)[None]
    gt = np.where((p[0] >= 0.7) | ((p[0] >= 0.3) & coin), 7, 0)  # instances: any label counts as foreground
    thresholds, records = calibrate_thresholds([{"probabilities": p}], [gt], config, precision=0.95)

    def precision(c, t):
        conf = np.where(p[0] >= 0.5, p[0], 1 - p[0])
        mine = ((p[0] >= 0.5) == bool(c)) & (conf >= t)
        return ((gt != 0) == bool(c))[mine].mean()

    for c, t in enumerate(thresholds):
        assert precision(c, t) >= 0.95 and precision(c, round(t - 0.01, 2)) < 0.95, (c, t)
        assert records[c]["threshold"] == t and records[c]["precision"] == pytest.approx(precision(c, t))
    assert 0.6 < thresholds[1] <= 0.7 and 0.6 < thresholds[0] <= 0.7
    # affinities: a voxel is an object voxel when it is joined to its previous neighbours
    classes, known = true_classes(np.array([[1, 1, 2, 2], [1, 1, 2, 2]]), config_from_dict(
        {"preset": "isbi2d_quick", "selftrain": {"iterations": 1}}))
    assert classes.tolist() == [[0, 0, 0, 0], [0, 1, 0, 1]] and known.tolist() == [[False] * 4, [False, True, True, True]]
