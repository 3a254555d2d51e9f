"""Rounds of correct -> fine-tune -> score (benchmarks/finetune_corrections.py) and the edit timings of
benchmarks/proofreading.py --speed, run for real on tiny crops and runs of a few steps."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from segtrain.config import config_from_dict
from segtrain.runs import RunFolder
from segtrain.workflows.correction import TIMED_OPS, edit_timings, timed_edits
from segtrain.workflows.finetuning import (
    GROUND_TRUTH,
    FineTuned,
    FineTuning,
    correct_images,
    fine_tune_runs,
    fine_tuning_plan,
    instance_f1,
    next_round,
    score_affinity_runs,
    score_instance_runs,
    settings_at_threshold,
    threshold_on,
    voi,
)
from segtrain.workflows.training import run_to_end, train_sources


def _cells_config(steps: int, name: str = "tiny-cells"):
    return config_from_dict({
        "preset": "wells2d_quick", "name": name, "predict": {"tta": 1},
        "data": {"patch_shape": [32, 32], "val_patches": 1, "min_annotated_fraction": 0.0},
        "model": {"encoder_depth": 3},
        "train": {"max_steps": steps, "val_every": steps, "checkpoint_every": steps, "batch_size": 2,
                  "report_interval": 0.0, "threads": 1, "lr": 3e-3, "warmup_steps": 0}})


def _cells(cells_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A 192 x 192 crop of a cells image with 4-7 cells."""
    crop = np.s_[256:448, 128:320]
    raw = np.asarray(iio.imread(cells_dir / name / "raw.tif"))[crop]
    gt = np.asarray(iio.imread(cells_dir / name / "instances_ids.png")).astype(np.uint32)[crop]
    return raw, gt


def test_correct_fine_tune_and_score_cells(tmp_path, cells_dir):
    from segtrain.postprocess import OutputSpec, instances
    from segtrain.predict import load_model, predict_array
    from segtrain.train import ArraySource
    from segtrain.workflows.correction import proofreader_of

    images = {n: _cells(cells_dir, n) for n in ("set01", "set02", "set08", "set09")}
    labelled = lambda: ArraySource(*images["set01"], name="set01")  # noqa: E731
    val = lambda: [ArraySource(*images["set08"], name="set08")]  # noqa: E731
    lines: list[str] = []
    parent = run_to_end(train_sources(_cells_config(6, "P"), [labelled()], val(), tmp_path / "runs"),
                        lines.append).run_dir
    loaded = load_model(parent)

    # Correct: the oracle edits the parent's instances of set02; its corrections become sources
    raw, gt = images["set02"]
    (report,) = correct_images(loaded, {"set02": (raw, gt)}, 3, ["confirmed", GROUND_TRUTH], instance_f1, tta=1,
                               background=True, weight=1 / 3)
    assert report.name == "set02" and 1 <= len(report.round.edits) <= 3
    before = proofreader_of(loaded, raw, tta=1).segmentation()  # the segmentation the oracle started from
    assert report.round.before == pytest.approx(instance_f1(before, gt))
    assert report.round.after == pytest.approx(instance_f1(report.reader.segmentation(), gt))
    assert report.round.after > report.round.before  # every kept edit raises F1
    assert len(report.reader.log()) == len(report.round.edits)
    record = report.record()
    assert record["edits"] == len(report.round.edits) and sum(record["ops"].values()) == record["edits"]
    assert set(record["annotation"]) == {"confirmed"} and "purity" in record["annotation"]["confirmed"]
    confirmed = report.sources["confirmed"]
    assert confirmed.name == "set02-corrections-confirmed" and confirmed.weight == pytest.approx(1 / 3)
    assert confirmed.known.any() and not confirmed.known.all()  # only around what the edits decided
    full = report.sources[GROUND_TRUTH]
    assert full.labels is gt and full.known is None and full.name == "set02-ground-truth"
    assert GROUND_TRUTH not in report.annotations

    # Fine-tune: a control and one run per scope, from the parent, per seed
    def config_of(scope, seed):
        c = _cells_config(2, f"ft-{'B' if scope is None else 'F-' + scope}-s{seed}")
        c.train.seed = seed
        return c

    corrections = {"confirmed": [confirmed]}
    two_seeds = fine_tuning_plan(parent, config_of, labelled, corrections, [0, 1], ["confirmed"])
    assert [p.key for p in two_seeds] == ["B/seed0", "F[confirmed]/seed0", "B/seed1", "F[confirmed]/seed1"]
    assert [p.seed for p in two_seeds] == [0, 0, 1, 1] and two_seeds[2].config.train.seed == 1
    plans = fine_tuning_plan(parent, config_of, labelled, corrections, [0], ["confirmed"], control=False)
    assert [p.key for p in plans] == ["F[confirmed]"] and plans[0].sources[1] is confirmed
    assert len(plans[0].sources) == 2 and plans[0].sources[0].name == "set01"
    items = list(fine_tune_runs(plans, val, tmp_path / "runs", lines.append))
    assert [type(i) for i in items] == [FineTuning, FineTuned]
    tuned = items[1]
    assert tuned.key == "F[confirmed]" and tuned.parent == parent and tuned.steps == 2 and tuned.seconds > 0
    assert RunFolder(tuned.run_dir).parent() == parent.resolve()  # the run records the parent it started from
    assert tuned.fine_tune == RunFolder(tuned.run_dir).fine_tune() and "lr" in str(tuned.fine_tune)
    assert RunFolder(tuned.run_dir).final_checkpoint.exists()
    assert tuned.record()["run"] == str(tuned.run_dir) and tuned.record()["parent"] == str(parent)

    # A second round: the control on the labelled data again, the fine-tuned run on both rounds
    second = next_round(tuned.run_dir, parent, lambda tag, seed: config_of(tag, seed), labelled, [confirmed], 0)
    assert [(p.key, p.parent, p.scope) for p in second] == [
        ("B2 (control, round 2)", parent, None), ("F2[confirmed] (round 2)", tuned.run_dir, "confirmed")]
    assert len(second[0].sources) == 1 and second[1].sources[1] is confirmed

    # Score on held-out images: F1 against the ground truth at each run's tuned settings, and at the parent's
    held_out = {"set09": images["set09"]}
    scores = list(score_instance_runs({"P": parent, "F": tuned.run_dir}, images["set01"], held_out))
    assert [s.key for s in scores] == ["P", "F"]
    p_scores, f_scores = scores
    held_raw, held_gt = images["set09"]
    for s in scores:
        model = load_model(s.run)
        probabilities = predict_array(model, held_raw, tta=1)["probabilities"]
        spec = OutputSpec.of(model.config)
        assert s.f1["set09"] == pytest.approx(instance_f1(instances(probabilities, s.settings, spec), held_gt))
        assert s.f1_parent_settings["set09"] == pytest.approx(
            instance_f1(instances(probabilities, p_scores.settings, spec), held_gt))
        assert s.f1["mean"] == s.f1["set09"] and 0 <= s.precision["set09"] <= 1
        assert s.f1_hindsight["f1"] >= s.f1["set09"] - 1e-9  # tuned on the image itself
        assert set(s.record()) >= {"tuned_on_set01", "f1", "f1_untuned", "f1_parent_settings", "f1_hindsight"}
    assert p_scores.f1_parent_settings == p_scores.f1
    assert any(line.startswith("run folder ") for line in lines)


def test_correct_and_score_an_affinity_run(tmp_path, em_crop, tiny_config):
    from segtrain.train import ArraySource

    raw, gt, val_raw, val_gt = em_crop
    run = run_to_end(train_sources(tiny_config(max_steps=2, val_every=2, checkpoint_every=2),
                                   [ArraySource(raw, gt)], [ArraySource(val_raw, val_gt)], tmp_path / "runs"),
                     lambda line: None).run_dir
    from segtrain.predict import load_model
    from segtrain.workflows.correction import proofreader_of

    loaded = load_model(run)
    settings, threshold, val_voi = settings_at_threshold(loaded, val_raw, val_gt)
    assert (threshold, val_voi) == threshold_on(loaded, val_raw, val_gt) and settings.threshold == threshold
    slab_raw, slab_gt = raw[8:], gt[8:].astype(np.uint64)
    (report,) = correct_images(loaded, {"slab": (slab_raw, slab_gt)}, 2, ["confirmed", "edited"], voi,
                               settings=settings, threshold=threshold, lower_is_better=True, kind="voxels")
    assert report.reader.threshold == threshold and report.round.kind == "voxels"
    assert [e.index for e in report.round.edits] == [1, 2] and len(report.reader.log()) == 2
    start = proofreader_of(loaded, slab_raw, settings, threshold).segmentation()
    assert report.round.before == pytest.approx(voi(start, slab_gt))
    assert report.round.after == pytest.approx(voi(report.reader.segmentation(), slab_gt))
    assert set(report.sources) == {"confirmed", "edited"}
    assert report.sources["edited"].name == "slab-corrections-edited"

    test = raw[:8], gt[:8].astype(np.uint32)
    (scores,) = score_affinity_runs({"P": run}, (val_raw, val_gt), test)
    assert scores.key == "P" and scores.threshold == threshold and scores.val_voi == val_voi
    assert scores.voi == pytest.approx(scores.voi_split + scores.voi_merge)
    assert scores.best_voi <= scores.voi + 1e-9
    assert set(scores.record()) == {"threshold", "val_voi", "voi", "voi_split", "voi_merge", "best_voi",
                                    "best_threshold"}


def _grid_reader():
    """A 12 x 64 x 64 segmentation of 4 x 8 x 8 boxes and a random merge tree of neighbours."""
    from segtrain.proofread import Proofreader
    from segtrain.segment import MergeTree

    rng = np.random.default_rng(1)
    cells = np.arange(1, 4 * 8 * 8 + 1, dtype=np.uint64).reshape(4, 8, 8)
    fragments = np.ascontiguousarray(np.repeat(np.repeat(np.repeat(cells, 3, 0), 8, 1), 8, 2))
    grid = cells.astype(np.int64)
    edges = np.concatenate([np.stack([np.take(grid, range(0, s - 1), axis), np.take(grid, range(1, s), axis)],
                                     -1).reshape(-1, 2) for axis, s in enumerate(grid.shape)])
    edges = edges[rng.permutation(len(edges))]
    parent = np.arange(int(cells.max()) + 1)

    def root(x):
        while parent[x] != x:
            x = parent[x]
        return x

    a, b = [], []
    for x, y in edges:
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[ry] = rx
            a.append(rx)
            b.append(ry)
    scores = np.sort(rng.uniform(0, 1, len(a))).astype(np.float32)
    return Proofreader(fragments, MergeTree(fragments, np.array(a), np.array(b), scores, int(cells.max())), 0.15)


def test_timed_edits_make_the_panels_edits_and_time_each():
    reader = _grid_reader()
    before = reader.segmentation().copy()
    edits = list(timed_edits(reader, np.random.default_rng(0), repeats=8))
    ops = [e.op for e in edits]
    assert set(ops) <= set(TIMED_OPS) and all(e.ms > 0 for e in edits)
    rounds = ops.count("merge")
    assert rounds > 0 and all(ops.count(op) == rounds for op in ("undo", "redo", "split", "delete", "threshold"))
    assert ops[:6] == ["merge", "undo", "redo", "split", "delete", "threshold"]
    seeded = [e for e in edits if e.op == "split_seeds"]
    assert 0 < len(seeded) <= 8 // 4 and all(e.voxels > 2 for e in seeded)
    assert all(e.voxels is None for e in edits if e.op != "split_seeds")
    assert reader.threshold == 0.2 and not np.array_equal(reader.segmentation(), before)
    # per round the merge (undone, then redone), the split and the delete stay in the log; each seeded split
    assert len(reader.log()) == 3 * rounds + len(seeded)

    timings = edit_timings(edits)
    assert [k for k in timings if k != "split_seeds_voxels"] == [op for op in TIMED_OPS if op in ops]
    assert timings["merge"]["n"] == rounds and timings["split_seeds"]["n"] == len(seeded)
    assert timings["merge"]["max_ms"] >= timings["merge"]["median_ms"] > 0
    assert timings["split_seeds_voxels"]["median"] == float(np.median([e.voxels for e in seeded]))
