"""Fine-tuning (`TrainingRun(init_from=...)`, `segtrain train --init-from`): a new run starts from
the parent's weights, counts its own steps and records its parent, at the fine-tuning learning rate
and warm-up; a different model is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from segtrain.cli import main
from segtrain.errors import ConfigError, SegtrainError
from segtrain.predict import load_model, predict_array
from segtrain.runs import RunFolder
from segtrain.train import ArraySource, TrainingRun


def _sources(em_crop):
    raw, gt, vraw, vgt = em_crop
    return [ArraySource(raw, gt)], [ArraySource(vraw, vgt)]


def test_fine_tune_starts_from_the_parent_weights(tmp_path, em_crop, tiny_config):
    train, val = _sources(em_crop)
    parent = TrainingRun(tiny_config(max_steps=4, val_every=2), train, val, runs_root=tmp_path)
    parent.run()
    # an almost-zero learning rate: the child's weights stay the parent's if (and only if) it loaded them
    child = TrainingRun(tiny_config(max_steps=2, val_every=2, lr=1e-12), train, val, runs_root=tmp_path,
                        init_from=parent.run_dir)
    child.run()
    assert child.run_dir != parent.run_dir
    info = json.loads((child.run_dir / "run.json").read_text())
    assert info["parent"] == str(parent.run_dir.resolve())
    assert RunFolder(child.run_dir).parent() == parent.run_dir.resolve()
    a, b = load_model(parent.run_dir), load_model(child.run_dir)
    assert b.step == 2  # its own steps, from 0
    x = em_crop[2]

    def affs(model):
        return predict_array(model, x)["affinities"]

    assert np.allclose(affs(a), affs(b), atol=1e-4)
    fresh = TrainingRun(tiny_config(max_steps=2, val_every=2, lr=1e-12), train, val, runs_root=tmp_path)
    fresh.run()
    assert not np.allclose(affs(a), affs(load_model(fresh.run_dir)), atol=1e-4)


def test_fine_tune_trains_at_the_fine_tuning_rate_without_warm_up(tmp_path, em_crop, tiny_config):
    """A run from another run's weights trains at lr * train.finetune_lr_scale with
    train.finetune_warmup_steps of warm-up (the optimizer's learning rate, step by step), not the
    from-scratch schedule; config.yaml holds what it used, run.json what was changed; a resumed
    fine-tuning run keeps its rate; the scale is configurable and self-training keeps the config's."""
    import torch

    from segtrain.train.schedule import WarmupCosine

    train, val = _sources(em_crop)
    parent = TrainingRun(tiny_config(max_steps=2, val_every=2, warmup_steps=4), train, val, runs_root=tmp_path)
    parent.run()
    child = TrainingRun(tiny_config(max_steps=4, val_every=1, warmup_steps=4), train, val, runs_root=tmp_path,
                        init_from=parent.run_dir)
    assert child.fine_tune_note.startswith("fine-tuning at learning rate 0.0003 (0.1 x the config's 0.003), no warm-up")
    child.run()
    lrs = [r["lr"] for r in RunFolder(child.run_dir).history()]
    schedule = WarmupCosine(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=3e-4), warmup=0, total=4)
    assert lrs == pytest.approx([3e-4 * schedule.factor(step) for step in (1, 2, 3, 4)], rel=1e-5)
    assert max(lrs) < 3e-4  # from the start below the fine-tuning rate: no warm-up, no jump to 3e-3
    saved = RunFolder(child.run_dir).config().train
    assert (saved.lr, saved.warmup_steps, saved.finetune_lr_scale) == (pytest.approx(3e-4), 0, 1.0)
    record = RunFolder(child.run_dir).fine_tune()
    assert record == {"lr": pytest.approx(3e-4), "lr_scale": 0.1, "config_lr": 3e-3, "warmup_steps": 0,
                      "config_warmup_steps": 4, "scheduler": "cosine"}
    resumed = TrainingRun(tiny_config(max_steps=6, val_every=2, warmup_steps=4), train, val, resume=child.run_dir)
    assert resumed.config.train.lr == pytest.approx(3e-4) and resumed.config.train.warmup_steps == 0
    own = TrainingRun(tiny_config(max_steps=2, finetune_lr_scale=1.0, finetune_warmup_steps=1), train, val,
                      runs_root=tmp_path, init_from=parent.run_dir)
    assert own.config.train.lr == 3e-3 and own.config.train.warmup_steps == 1
    iteration = TrainingRun(tiny_config(max_steps=2, warmup_steps=4), train, val, runs_root=tmp_path,
                            init_from=parent.run_dir, fine_tune=False)  # as self-training's iterations
    assert iteration.config.train.lr == 3e-3 and iteration.fine_tune is None and not iteration.fine_tune_note


def test_fine_tune_refuses_another_model_and_bad_paths(tmp_path, em_crop, tiny_config):
    train, val = _sources(em_crop)
    parent = TrainingRun(tiny_config(max_steps=2, val_every=2), train, val, runs_root=tmp_path)
    parent.run()
    other = tiny_config(max_steps=2, val_every=2)
    other.model.num_fmaps = 5
    run = TrainingRun(other, train, val, runs_root=tmp_path, init_from=parent.run_dir)
    with pytest.raises(ConfigError, match=r"its model differs .* model\.num_fmaps"):
        run.run()
    with pytest.raises(SegtrainError, match="does not exist"):
        TrainingRun(tiny_config(), train, val, runs_root=tmp_path, init_from=tmp_path / "nowhere")
    with pytest.raises(SegtrainError, match="not a run folder"):
        TrainingRun(tiny_config(), train, val, runs_root=tmp_path, init_from=tmp_path)


def test_cli_init_from(tmp_path, em3d_dir, capsys):
    from segtrain.io import Volume, read_volume, write_volume

    raw = np.asarray(read_volume(em3d_dir / "train-image.h5").data)[:16, :40, :40]
    gt = np.asarray(read_volume(em3d_dir / "train-gt.lzf.h5").data)[:16, :40, :40]
    for name, data, is_labels in (("raw", raw, False), ("gt", gt, True)):
        write_volume(tmp_path / f"{name}.zarr", Volume(data=data, voxel_size=(1.0, 1.0, 1.0), offset=(0.0,) * 3,
                                                      axes=("z", "y", "x"), name=name, is_labels=is_labels, attrs={}))
    config = {"preset": "em3d_quick", "name": "cli",
              "data": {"patch_shape": [8, 24, 24], "val_patches": 1,
                       "train": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[0, 12]]}],
                       "val": [{"raw": "raw.zarr", "labels": "gt.zarr", "crop": [[12, 16]]}]},
              "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0},
              "train": {"max_steps": 2, "val_every": 2, "checkpoint_every": 2}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    runs = tmp_path / "runs"
    assert main(["train", "--config", str(path), "--runs-root", str(runs), "--name", "parent"]) == 0
    (parent,) = list(runs.iterdir())
    assert main(["train", "--config", str(path), "--runs-root", str(runs), "--name", "child",
                 "--init-from", str(parent)]) == 0
    (child,) = [p for p in runs.iterdir() if p.name.startswith("child")]
    assert RunFolder(child).parent() == parent.resolve()
    out = capsys.readouterr().out
    assert "fine-tuning at learning rate 0.0001 (0.1 x the config's 0.001), no warm-up" in out  # em3d_quick's 1e-3
    assert RunFolder(child).config().train.lr == pytest.approx(1e-4) and RunFolder(child).fine_tune()["lr_scale"] == 0.1
    assert main(["train", "--config", str(path), "--resume", str(child), "--init-from", str(parent)]) == 2
    err = capsys.readouterr().err.strip()
    assert "either a run to resume or one to fine-tune from" in err and len(err.splitlines()) == 1
