"""train.ema_decay: an exponential moving average of the weights (Lightning's EMAWeightAveraging)
is what validation scores and every checkpoint holds, from ema_start on; training itself is the same."""

from __future__ import annotations

import torch

from segtrain.train import ArraySource, TrainingRun
from segtrain.train.module import SegtrainModule


def _weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_average_is_validated_and_saved_and_training_is_unchanged(tmp_path, em_crop, tiny_config, monkeypatch):
    raw, gt, vraw, vgt = em_crop
    train, val = [ArraySource(raw, gt)], [ArraySource(vraw, vgt)]
    settings = dict(max_steps=16, val_every=4, checkpoint_every=4, keep_checkpoints=5)
    plain = TrainingRun(tiny_config(**settings), train, val, runs_root=tmp_path / "plain")
    plain.run()
    # the average starts after step 4 (ema_start a quarter of 16): step 4's checkpoint still holds
    # the training weights, those of steps 8, 12 and 16 the average
    scored = {}
    metrics = SegtrainModule.segmentation_metrics

    def spy(module):
        scored[int(module.global_step)] = {k: v.detach().clone() for k, v in module.state_dict().items()}
        return metrics(module)

    monkeypatch.setattr(SegtrainModule, "segmentation_metrics", spy)
    averaged = TrainingRun(tiny_config(**settings, ema_decay=0.5, ema_start=0.25), train, val,
                           runs_root=tmp_path / "ema")
    averaged.run()
    p, a = plain.run_dir / "checkpoints", averaged.run_dir / "checkpoints"
    assert _same(_weights(p / "step-4.ckpt")["state_dict"], _weights(a / "step-4.ckpt")["state_dict"])
    for step in (8, 12, 16):
        mine = _weights(a / f"step-{step}.ckpt")
        assert not _same(_weights(p / f"step-{step}.ckpt")["state_dict"], mine["state_dict"])
    # slimmed: the training weights are for resuming only (step 16 is final.ckpt's twin and
    # step 12 the spare, both kept whole)
    assert "current_model_state" not in _weights(a / "step-8.ckpt")
    # the run's newest checkpoint keeps the training weights to resume from: those of the plain run
    final = _weights(a / "final.ckpt")
    assert _same(final["current_model_state"], _weights(p / "final.ckpt")["state_dict"])
    assert _same(final["state_dict"], _weights(a / "step-16.ckpt")["state_dict"])
    # what validation scored (the weights in the module when it segments the validation volumes)
    # is what the checkpoints hold: the periodic ones and best.ckpt (weights only)
    for step in (4, 8, 12, 16):
        assert _same(scored[step], _weights(a / f"step-{step}.ckpt")["state_dict"]), step
    best = _weights(a / "best.ckpt")
    assert _same(best["state_dict"], scored[best["global_step"]])


def test_a_resumed_run_goes_on_from_its_training_weights_and_its_average(tmp_path, em_crop, tiny_config):
    raw, gt, vraw, vgt = em_crop
    train, val = [ArraySource(raw, gt)], [ArraySource(vraw, vgt)]
    finals = {}
    for name, average in (("plain", {}), ("ema", dict(ema_decay=0.5, ema_start=0.25))):
        settings = dict(val_every=4, checkpoint_every=4, **average)
        part = TrainingRun(tiny_config(max_steps=8, **settings), train, val, runs_root=tmp_path / name)
        part.run()
        TrainingRun(tiny_config(max_steps=12, **settings), train, val, runs_root=tmp_path / name,
                    resume=part.run_dir).run()
        finals[name] = _weights(part.run_dir / "checkpoints" / "final.ckpt")
    plain, ema = finals["plain"], finals["ema"]
    assert plain["global_step"] == ema["global_step"] == 12
    # the training went on from the training weights (not from the average): those of the plain run
    assert _same(ema["current_model_state"], plain["state_dict"])
    assert not _same(ema["state_dict"], plain["state_dict"])
    # the average went on too: 6 updates before the resume (steps 3-8; ema_start 0.25 of 8), 4 after
    # (steps 9-12; 0.25 of 12 is step 3, passed); a fresh average would count 4
    assert int(ema["averaging_state"]["n_averaged"]) == 10
