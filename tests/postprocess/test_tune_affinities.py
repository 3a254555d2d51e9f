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
def test_the_search_picks_the_lowest_voi_of_every_combination(em3d_dir):
    from segtrain.evaluate import sweep

    gts = [em3d_gt(em3d_dir, (slice(z, z + 8), slice(0, 64), slice(0, 64))) for z in (0, 20)]
    affs = [noisy(affinities(g)[0], 0.25, seed=i) for i, g in enumerate(gts)]
    start = segment_config({"fragments": "watershed", "boundary_threshold": 0.7, "min_seed_distance": 10,
                            "scoring": "hist_quant_25", "threshold": 0.1})
    variants = ({"fragments": "waterz"}, {"fragments": "watershed", "boundary_threshold": 0.5, "min_seed_distance": 3})
    result = tune_affinities(affs, gts, start, OutputSpec("affinities", 3), voxel_sizes=[(1, 1, 1)] * 2,
                             fragment_variants=variants, scorings=("hist_quant_50", "hist_quant_75"))
    assert result.metric == "voi" and result.score < result.start_score
    assert len(result.rows) == 3 * 3  # the start's variant and scoring are tried as well
    assert result.score == pytest.approx(min(r["voi"] for r in result.rows))
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
