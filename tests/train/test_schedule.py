"""Warm-up + cosine schedule: a resume with the same max_steps gives the uninterrupted LR curve, a
resume with a larger max_steps continues from the LR reached and anneals it to the floor."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from segtrain.train import ArraySource, TrainingRun
from segtrain.train.schedule import FLOOR, WarmupCosine

LR = 3e-3


def _optimizer():
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=LR)


def _lrs(scheduler, optimizer, steps):
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def _round_trip(scheduler, optimizer, warmup, total):
    """A fresh optimizer + schedule (built for ``total``) loaded from a checkpoint of the old ones."""
    buffer = io.BytesIO()
    torch.save({"opt": optimizer.state_dict(), "sched": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    opt = _optimizer()
    sched = WarmupCosine(opt, warmup=warmup, total=total)
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    return sched, opt


def test_fresh_schedule_warms_up_then_anneals_to_the_floor():
    opt = _optimizer()
    lrs = _lrs(WarmupCosine(opt, warmup=4, total=20), opt, 21)
    np.testing.assert_allclose(lrs[:5], [LR * k / 4 for k in (1, 2, 3, 4)] + [LR])
    assert all(b <= a for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[20] == pytest.approx(FLOOR * LR)


@pytest.mark.parametrize("stop", [2, 9])
def test_state_round_trip_same_total_is_the_uninterrupted_curve(stop):
    opt = _optimizer()
    whole = _lrs(WarmupCosine(opt, warmup=4, total=20), opt, 21)
    opt = _optimizer()
    sched = WarmupCosine(opt, warmup=4, total=20)
    first = _lrs(sched, opt, stop)
    sched, opt = _round_trip(sched, opt, 4, 20)
    np.testing.assert_allclose(first + _lrs(sched, opt, 21 - stop), whole, rtol=1e-12)


def test_state_round_trip_larger_total_continues_and_anneals():
    opt = _optimizer()
    sched = WarmupCosine(opt, warmup=4, total=20)
    before = _lrs(sched, opt, 12)
    reached = opt.param_groups[0]["lr"]
    sched, opt = _round_trip(sched, opt, 4, 50)
    after = _lrs(sched, opt, 50 - 12 + 1)
    assert after[0] == pytest.approx(reached) and after[0] <= before[-1]
    assert all(b <= a + 1e-15 for a, b in zip(after, after[1:]))
    assert after[-1] == pytest.approx(FLOOR * LR)
    # and a second resume with the same new total keeps that curve
    opt2 = _optimizer()
    sched2 = WarmupCosine(opt2, warmup=4, total=20)
    _lrs(sched2, opt2, 12)
    sched2, opt2 = _round_trip(sched2, opt2, 4, 50)
    part = _lrs(sched2, opt2, 10)
    sched2, opt2 = _round_trip(sched2, opt2, 4, 50)
    np.testing.assert_allclose(part + _lrs(sched2, opt2, 50 - 22 + 1), after, rtol=1e-12)


def test_resume_during_warm_up_with_larger_total_keeps_warming_up():
    opt = _optimizer()
    sched = WarmupCosine(opt, warmup=4, total=10)
    _lrs(sched, opt, 2)
    sched, opt = _round_trip(sched, opt, 4, 30)
    lrs = _lrs(sched, opt, 29)
    np.testing.assert_allclose(lrs[:3], [LR * 3 / 4, LR, LR])
    assert lrs[-2] > FLOOR * LR and lrs[-1] == pytest.approx(FLOOR * LR)  # floor at the new total
    assert all(b <= a for a, b in zip(lrs[2:], lrs[3:]))


# -- real training runs ------------------------------------------------------------------------


def _sources(em_crop):
    raw, gt, vraw, vgt = em_crop
    return [ArraySource(raw, gt)], [ArraySource(vraw, vgt)]


def _config(tiny_config, max_steps):
    return tiny_config(max_steps=max_steps, val_every=max_steps, checkpoint_every=max_steps,
                       scheduler="cosine", warmup_steps=2, lr=LR)


def _lr_by_step(reports) -> dict[int, float]:
    """The LR each step's first report carries: the one after the scheduler stepped, which the next
    training step uses (so the report at max_steps shows where the schedule ends)."""
    lrs: dict[int, float] = {}
    for r in reports:
        if r.phase == "training":  # not the "preparing" reports before the first step
            lrs.setdefault(r.step, r.lr)
    return lrs


def _stopped_at_step_4_or_later(run) -> dict[int, float]:
    seen = []
    for report in run.reports():
        seen.append(report)
        if report.step >= 4:
            run.stop()
    assert seen[-1].done
    return _lr_by_step(seen)


def test_stop_and_resume_with_same_max_steps_gives_the_uninterrupted_lr_curve(tmp_path, em_crop, tiny_config):
    train, val = _sources(em_crop)
    whole = _lr_by_step(TrainingRun(_config(tiny_config, 16), train, val, runs_root=tmp_path / "a").reports())
    assert sorted(whole) == list(range(1, 17))

    run = TrainingRun(_config(tiny_config, 16), train, val, runs_root=tmp_path / "b")
    first = _stopped_at_step_4_or_later(run)
    stopped = max(first)
    assert 4 <= stopped < 16
    resumed = _lr_by_step(TrainingRun(_config(tiny_config, 16), train, val, resume=run.run_dir).reports())
    assert min(resumed) == stopped + 1 and max(resumed) == 16
    lrs = {**first, **resumed}
    for step in range(1, 17):
        assert lrs[step] == pytest.approx(whole[step], rel=1e-9), step


def test_resume_with_larger_max_steps_continues_from_the_reached_lr(tmp_path, em_crop, tiny_config):
    train, val = _sources(em_crop)
    run = TrainingRun(_config(tiny_config, 12), train, val, runs_root=tmp_path)
    before = _stopped_at_step_4_or_later(run)
    stopped = max(before)
    assert 4 <= stopped < 12 and before[stopped] > FLOOR * LR
    reports = list(TrainingRun(_config(tiny_config, 24), train, val, resume=run.run_dir).reports())
    after = _lr_by_step(reports)
    assert min(after) == stopped + 1 and max(after) == 24
    assert after[stopped + 1] <= before[stopped]  # no jump back up at the resume ...
    curve = [before[s] for s in sorted(before)] + [after[s] for s in sorted(after)]  # steps 1..24
    assert all(b <= a for a, b in zip(curve[1:], curve[2:]))  # ... nor later (warm-up ends at step 2)
    assert after[23] > FLOOR * LR and after[24] == pytest.approx(FLOOR * LR)  # the floor at the new max_steps
    assert reports[-1].done and reports[-1].lr == pytest.approx(FLOOR * LR)
