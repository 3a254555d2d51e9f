"""The far-apart workflow end to end on a tiny run: trains on the split's corner block only, tunes
on the far block's tuning part, scores its other part (chosen, own, hindsight)."""

import math
from pathlib import Path

import numpy as np
import pytest

from segtrain.config import SourceConfig
from segtrain.postprocess.tune import SPLIT_BIAS
from segtrain.runs import RunFolder
from segtrain.splits import Acquisition, em_far_split, field_of_view, gap_between
from segtrain.workflows.generalisation import (FarReport, ensemble_outcomes, far_apart_reports, rule_outcome, rule_summary,
                                               threshold_rule_cases)


def test_far_apart_workflow_trains_on_the_corner_and_scores_the_far_block(em3d_dir, tiny_config, tmp_path, monkeypatch):
    config = tiny_config(max_steps=6, val_every=3, checkpoint_every=3)
    config.predict.tta = 1
    entry = SourceConfig(raw=str(em3d_dir / "train-image.h5"), labels=str(em3d_dir / "train-gt.lzf.h5"))
    split = em_far_split(entry, (16, 60, 200), config.model).with_acquisitions([Acquisition(gamma=1.3)])
    logs = []
    (report,) = far_apart_reports(config, [split], tmp_path, log=logs.append)
    assert isinstance(report, FarReport) and report.metric == "voi" and report.step == 6
    # the run saw the corner block only, a field of view away from what is scored
    run_config = RunFolder(report.run).config()
    trained = tuple(map(tuple, run_config.data.train[0].crop))
    scored = tuple(map(tuple, split.test[0].crop))
    assert len(run_config.data.train) == 1 and gap_between(trained, scored) >= field_of_view(config.model)
    # scores: finite, hindsight is the best of a search that contains the chosen settings
    assert all(math.isfinite(v) for v in (report.chosen, report.hindsight, report.tune_score))
    assert report.hindsight <= report.chosen + 1e-9
    assert report.chosen == report.chosen_detail["voi_split"] + report.chosen_detail["voi_merge"] or \
        np.isclose(report.chosen, report.chosen_detail["voi_split"] + report.chosen_detail["voi_merge"])
    assert {"mean", "hist_quant_50", "hist_quant_75"} <= set(report.by_scoring)
    assert min(report.by_scoring.values()) == report.hindsight
    assert "threshold" in report.tuned and report.gap >= 0
    assert any("tuned on 1 far volume" in line for line in logs)
    # the threshold rules of `segtrain tune` scored both ways on the same run (benchmarks/threshold_rules.py)
    cases = threshold_rule_cases(report.run, split, tta=1)
    assert len(cases) == 2 and cases[0] == cases[1][::-1]
    tune_rows, far_rows = cases[0]
    assert rule_outcome(far_rows, far_rows, 0.0) == (min(r["voi"] for r in far_rows),) * 2  # chosen on itself: hindsight
    voi, best = rule_outcome(far_rows, far_rows, 0.3)
    assert best <= voi <= best + 0.3 + 1e-9
    for bias in (0.0, 0.02):
        summary = rule_summary(cases, bias)
        assert summary["cases"] == 2 and 0 <= summary["mean_gap"] <= summary["max_gap"] and summary["within"] <= 2
    # the default rule on the tuning part's rows is what the report chose and scored (same predictions, TTA 1)
    assert rule_outcome(tune_rows, far_rows, SPLIT_BIAS) == (pytest.approx(report.chosen), pytest.approx(report.hindsight))
    # an ensemble of the run with itself averages identical predictions: the report's own figures
    # (benchmarks/ensembles.py; a 6-step model's VOI cannot tell two checkpoints' mean from either)
    checkpoints = Path(report.run) / "checkpoints"
    rows = ensemble_outcomes([report.run, report.run, checkpoints / "step-3.ckpt"], split, sizes=(1, 2), tta=1, log=logs.append)
    assert [r["size"] for r in rows] == [1, 1, 1, 2, 2, 2]
    assert rows[0]["chosen"] == pytest.approx(report.chosen) and rows[0]["hindsight"] == pytest.approx(report.hindsight)
    same, mixed = rows[3], rows[4]
    assert (same["chosen"], same["hindsight"]) == (pytest.approx(report.chosen), pytest.approx(report.hindsight))
    assert mixed["members"] == [str(report.run), str(checkpoints / "step-3.ckpt")]
    assert mixed["hindsight"] <= mixed["chosen"] + 1e-9 and "threshold" in mixed["tuned"]
    # the mean weights of the run's last two checkpoints (benchmarks/weight_averaging.py) load as a model
    import torch

    from segtrain.predict import load_model

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from weight_averaging import averaged_copy, periodic_checkpoints

    steps = periodic_checkpoints(Path(report.run))
    assert [p.name for p in steps] == ["step-3.ckpt", "step-6.ckpt"]
    averaged = load_model(averaged_copy(Path(report.run), steps, tmp_path / "mean-2"))
    assert averaged.step == 6 and averaged.run_dir == tmp_path / "mean-2"
    weights = [load_model(p).model.state_dict() for p in steps]
    for name, value in averaged.model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (weights[0][name] + weights[1][name]) / 2)
    # it replaces its own copy (run again), never a folder it did not make
    assert load_model(averaged_copy(Path(report.run), steps[1:], tmp_path / "mean-2")).step == 6
    foreign = tmp_path / "mine"
    (foreign / "notes").mkdir(parents=True)
    with pytest.raises(SystemExit, match="is not an averaged copy made here"):
        averaged_copy(Path(report.run), steps, foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes"]
