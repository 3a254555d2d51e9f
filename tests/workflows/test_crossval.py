"""Cross-validation (`benchmarks/quality_eval.py --folds K`): per fold a real run trains on the
other folds, is tuned on them, and the held-out part is scored with the settings stored in the
run, the settings every front end then uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from segtrain.config import load_config
from segtrain.workflows.crossval import cross_validate
from segtrain.evaluate import sweep
from segtrain.postprocess import OutputSpec, validation_scores
from segtrain.postprocess.affinities import segment_affinities
from segtrain.predict import load_model, predict_array
from segtrain.runs import RunFolder
from segtrain.train.sources import sources_from_config, whole_volume

REPO = Path(__file__).resolve().parents[2]
TINY_TRAIN = {"max_steps": 2, "val_every": 2, "checkpoint_every": 2, "warmup_steps": 1, "batch_size": 1}


def _heldout(run_dir: Path, entry: dict):
    config = load_config(run_dir / "config.yaml")
    config.data.val = []
    from segtrain.config import SourceConfig

    (source,) = sources_from_config([SourceConfig(**entry)], config.data)
    source.prepare(config.ndim, config.data.in_channels, config.data.normalize, config.data.ignore_label)
    return whole_volume(source)


def test_em3d_folds_from_the_command_line_score_the_held_out_slab_with_the_stored_settings(tmp_path, em3d_dir):
    files = dict(raw=str(em3d_dir / "train-image.h5"), labels=str(em3d_dir / "train-gt.lzf.h5"))
    config = {"preset": "em3d_quick", "name": "cv", "data": {
        "patch_shape": [8, 32, 32],
        "train": [{**files, "crop": [[0, 8], [0, 40], [0, 40]]}],
        "val": [{**files, "crop": [[8, 16], [0, 40], [0, 40]]}]}, "train": TINY_TRAIN}
    (tmp_path / "cv.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, str(REPO / "benchmarks" / "quality_eval.py"), "--folds", "2",
               "--config", str(tmp_path / "cv.yaml"), "--out", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "folds.json").read_text())
    assert [f["fold"] for f in result["folds"]] == [0, 1]
    for fold, held_z in zip(result["folds"], ([0, 8], [8, 16])):
        run_dir = Path(fold["run"])
        trained = load_config(run_dir / "config.yaml").data
        assert [e.crop[0] for e in trained.train] == [[8, 16] if held_z == [0, 8] else [0, 8]]
        assert held_z not in [e.crop[0] for e in trained.val]  # never watched during training either
        stored = RunFolder(run_dir).postprocess()
        assert stored["segment"] == fold["tta1"]["tuned"]
        # the same figure through what every front end does: load the run (its stored settings), predict, segment
        loaded = load_model(run_dir)
        volume = _heldout(run_dir, {**files, "crop": [held_z, [0, 40], [0, 40]]})
        affs = predict_array(loaded, volume["raw"])["affinities"]
        settings = loaded.config.segment
        assert settings.threshold == stored["segment"]["threshold"]
        tree = segment_affinities(affs, settings, model_ndim=3)
        voi = sweep(tree, volume["labels"], thresholds=[settings.threshold]).voi[0]
        assert abs(voi - fold["tta1"]["chosen"]) < 1e-6
        assert fold["tta1"]["best"] <= fold["tta1"]["best_threshold"] + 1e-9  # the whole search includes it
    chosen = [f["tta1"]["chosen"] for f in result["folds"]]
    assert abs(result["summary"]["tta1"]["chosen"]["mean"] - np.mean(chosen)) < 1e-9
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("finished earlier, reused") == 2, again.stdout[-2000:]


def test_cells_folds_hold_out_whole_images_and_score_them_at_the_settings_tuned_on_the_others(tmp_path, cells_dir):
    entries = [{"raw": str(cells_dir / f"set{i:02d}" / "raw.tif"), "labels": str(cells_dir / f"set{i:02d}" / "instances_ids.png"),
                "crop": [[0, 192], [0, 192]]} for i in (1, 2, 3)]
    config = {"preset": "wells2d_quick", "name": "cv", "data": {"patch_shape": [64, 64], "train": entries},
              "train": TINY_TRAIN, "predict": {"match_object_size": True}}
    (tmp_path / "cv.yaml").write_text(yaml.safe_dump(config))
    lines = []
    result = cross_validate(tmp_path / "cv.yaml", 3, tmp_path / "out", log=lines.append)
    assert [Path(f["heldout"][0].split(" crop")[0]).parent.name for f in result["folds"]] == ["set01", "set02", "set03"]
    for fold, entry in zip(result["folds"], entries):
        run_dir = Path(fold["run"])
        assert entry["raw"] not in [e.raw for e in load_config(run_dir / "config.yaml").data.train]
        assert entry["raw"] not in RunFolder(run_dir).postprocess()["tuned_on"]
        loaded = load_model(run_dir)
        volume = _heldout(run_dir, entry)
        out = predict_array(loaded, volume["raw"])
        f1 = validation_scores(out, volume["labels"], loaded.config.segment, OutputSpec.of(loaded.config))["f1"]
        assert abs(f1 - fold["tta1"]["chosen"]) < 1e-6
        assert fold["tta1"]["best"] >= fold["tta1"]["chosen"] - 1e-9
    assert any(line.startswith("tta1: chosen") for line in lines)
    # the few-labels benchmark's scoring of a finished run: tuned as `segtrain tune` does, the same held-out score
    from segtrain.config import SourceConfig
    from segtrain.train.sources import annotated_volumes
    from segtrain.workflows.crossval import tuned_heldout_scores

    fold, entry = result["folds"][0], entries[0]
    scores = tuned_heldout_scores(fold["run"], lambda config: annotated_volumes([SourceConfig(**entry)], config))
    assert abs(scores["chosen"] - fold["tta1"]["chosen"]) < 1e-6 and scores["predict_seconds"] > 0
    # folds run one at a time into one folder (as separate processes do with --fold) keep each other's records
    part = tmp_path / "part"
    zoomed = cross_validate(tmp_path / "cv.yaml", 3, part, folds=[2], log=lines.append, zooms=(1.0, 0.5))
    both = cross_validate(tmp_path / "cv.yaml", 3, part, folds=[0], log=lines.append)
    assert [f["fold"] for f in both["folds"]] == [0, 2]
    # the held-out images at half their size, scored with and without matching the model's object size
    half = zoomed["folds"][0]["tta1_zoom0.5"]
    assert "chosen_unmatched" in half and len(half["object_scale"]) == 1
    assert "tta1_zoom0.5" in zoomed["summary"] and "chosen_unmatched" in zoomed["summary"]["tta1_zoom0.5"]
    assert RunFolder(Path(zoomed["folds"][0]["run"])).postprocess()["segment"]["object_size"] > 0
    assert json.loads((part / "folds.json").read_text())["folds"] == both["folds"]
