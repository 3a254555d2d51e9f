"""`segtrain tune` on an affinity run: fragment method, scoring and merge threshold chosen together
for the lowest VOI, stored in the run folder, and then used by every front end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from helpers.engine_data import em3d_gt, noisy
from segtrain.cli import main
from segtrain.config import segment_config
from segtrain.postprocess import OutputSpec, segment_affinities
from segtrain.postprocess.tune import tune_affinities
from segtrain.targets import affinities


@pytest.mark.shared_data
@pytest.mark.parametrize("split_bias", [0.0, 0.02, 0.2])
def test_the_search_picks_the_lowest_threshold_near_the_lowest_voi_of_every_combination(em3d_dir, split_bias):
    from segtrain.evaluate import sweep

    gts = [em3d_gt(em3d_dir, (slice(z, z + 8), slice(0, 64), slice(0, 64))) for z in (0, 20)]
    affs = [noisy(affinities(g)[0], 0.25, seed=i) for i, g in enumerate(gts)]
    start = segment_config({"fragments": "watershed", "boundary_threshold": 0.7, "min_seed_distance": 10,
                            "scoring": "hist_quant_25", "threshold": 0.1})
    variants = ({"fragments": "waterz"}, {"fragments": "watershed", "boundary_threshold": 0.5, "min_seed_distance": 3})
    result = tune_affinities(affs, gts, start, OutputSpec("affinities", 3), voxel_sizes=[(1, 1, 1)] * 2,
                             fragment_variants=variants, scorings=("hist_quant_50", "hist_quant_75"),
                             split_bias=split_bias)
    assert result.metric == "voi" and result.score < result.start_score
    assert len(result.rows) == 3 * 3  # the start's variant and scoring are tried as well
    lowest = min(r["voi"] for r in result.rows)
    assert result.lowest == pytest.approx(lowest)
    # every (combination, threshold) within split_bias of the lowest VOI has a threshold at least the chosen one
    near = [(t, v) for r in result.rows for t, v in zip(r["thresholds"], r["voi_by_threshold"]) if v <= lowest + split_bias]
    assert result.settings["threshold"] == min(near)[0] and result.score == pytest.approx(min(near)[1])
    assert lowest <= result.score <= lowest + split_bias + 1e-9
    if split_bias == 0.2:  # a wide margin takes a lower threshold than the lowest VOI's, and says so
        best_row = min(result.rows, key=lambda r: r["voi"])
        assert result.settings["threshold"] < best_row["threshold"] and result.score > lowest
        assert "of the lowest VOI" in result.describe()
    # the chosen settings reproduce the score when segmented the usual way
    chosen = result.apply(start)
    vois = [sweep(segment_affinities(a, chosen, voxel_size=(1, 1, 1), model_ndim=3), g,
                  thresholds=[chosen.threshold]).voi[0] for a, g in zip(affs, gts)]
    assert np.mean(vois) == pytest.approx(result.score)
    assert set(result.settings) >= {"fragments", "scoring", "threshold"}


@pytest.mark.shared_data
@pytest.mark.slow
def test_cli_tune_of_an_affinity_run_is_used_by_predict_and_segment(em_crop, tiny_config, tmp_path, capsys):
    from segtrain.io import Volume, read_volume, write_volume
    from segtrain.predict import load_model
    from segtrain.train import ArraySource, TrainingRun

    raw, gt, vraw, vgt = em_crop
    run = TrainingRun(tiny_config(max_steps=6, val_every=6), [ArraySource(raw, gt)], [ArraySource(vraw, vgt)],
                      runs_root=tmp_path / "runs")
    run.run()
    # the run's data are arrays, not files: tune on the validation crop named as a file
    write_volume(tmp_path / "vraw.zarr", Volume(data=vraw, name="raw"))
    write_volume(tmp_path / "vgt.zarr", Volume(data=vgt.astype(np.uint32), name="gt", is_labels=True))
    assert main(["tune", str(run.run_dir), "--image", str(tmp_path / "vraw.zarr"), str(tmp_path / "vgt.zarr")]) == 0
    printed = json.loads(capsys.readouterr().out)
    stored = yaml.safe_load((run.run_dir / "postprocess.yaml").read_text())
    assert stored["metric"] == "voi" and stored["voi"] <= stored["start_voi"]
    assert printed["segment"] == stored["segment"] and "scoring" in stored["segment"]
    # every front end now starts from the tuned settings
    config = load_model(run.run_dir).config
    for key, value in stored["segment"].items():
        assert getattr(config.segment, key) == value
    assert main(["predict", "--run", str(run.run_dir), str(tmp_path / "vraw.zarr"), str(tmp_path / "pred.zarr")]) == 0
    assert main(["segment", str(tmp_path / "pred.zarr"), str(tmp_path / "seg")]) == 0
    summary = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert summary["threshold"] == stored["segment"]["threshold"]
    assert summary["settings"]["scoring"] == stored["segment"]["scoring"]
    from segtrain.evaluate import voi

    seg = np.asarray(read_volume(tmp_path / "seg" / "segmentation.zarr").data)
    assert voi(seg, vgt)["voi"] == pytest.approx(stored["voi"], abs=1e-6)
