"""Learning from few labels: supervised only vs self-training vs synthetic co-training vs both, at
the same total training steps.

    python benchmarks/few_labels.py --task cells [--steps 400] [--variant supervised ...] [--out DIR] [--json FILE]
    python benchmarks/few_labels.py --task em3d  [--steps 400] [--variant both ...] [--out DIR] [--json FILE]

Variants (one config each, written to ``OUT/configs/<variant>.yaml`` and trained through the
project's own workflow, :func:`segtrain.workflows.training.train_or_reuse`: a plain run for a config
without a ``selftrain`` section, self-training for one with it, as ``segtrain train`` does):

- ``supervised``: the labelled data alone, ``--steps`` steps;
- ``selftrain``: 3 self-training iterations (iteration 0 on the labelled data, then 3 rounds of
  pseudo-labelling the unlabelled data and retraining from the previous weights),
  ``selftrain.steps = steps / 4``, so the total is ``--steps``; the config's default thresholds
  (0.95 -> 0.91 per class), pseudo-label weight 0.5, half the patches from pseudo-labelled images;
- ``synthetic``: ``data.synthetic`` (the project's generator) mixed 2:1 synthetic:real
  (``data.synthetic_ratio: 2``), ``--steps`` steps;
- ``both``: self-training with the synthetic co-training in every iteration;
- ``selftrain-cal`` (extra, after ``selftrain``): self-training with per-class thresholds chosen on
  the labelled data (:func:`segtrain.train.selftrain.calibrate_thresholds`: the lowest at which the
  iteration-0 model's pseudo-labels of the labelled data would be right 95 % of the time; cells:
  on set01-02, which that model trained on; em3d: on the held-out piece of z 0-9), constant over
  the iterations; the iteration-0 model is that of the ``selftrain`` variant's run;
- ``restarts`` (extra, meant as a control): self-training's schedule (4 x ``steps / 4`` steps, each
  from the previous weights with its own warm-up and cosine) with thresholds 0.99: what the schedule
  alone costs or gives where they keep nothing (em3d; on cells they still keep 12-59 % of the pixels).

Data and protocol (one seed; every model is used at its final checkpoint, one cosine schedule per
training run, so no checkpoint is chosen on any data):

- ``cells`` (cells2d-phase, preset wells2d_quick): labelled set01-02, unlabelled set03-08 (raw
  only), test set09-10. Validation during training (at the last step of each run only) watches
  set09-10 for the record; nothing is chosen on it. After training, ``segtrain tune``'s function
  (:func:`segtrain.workflows.tuning.tune_run`, default split: the training images) chooses the instance
  settings on the labelled set01-02; the test score is instance F1 at IoU 0.5 on set09-10 at
  those settings (plus the best settings in hindsight, chosen on set09-10 themselves).
  Predictions without test-time augmentation (the preset's ``predict.tta: 1``).
- ``em3d`` (em3d-fibsem, preset em3d_quick): labelled z 0-9, of which x 0-149 is trained on and
  x 150-199 is held out as validation, where ``segtrain tune`` (split val, as for every affinity
  run) chooses fragments, scoring and merge threshold; unlabelled z 10-34 (raw only); test z 35-49:
  VOI at the chosen settings, at the best threshold for the chosen fragments and scoring, and at
  the best settings of the whole search (hindsight). Predictions for tuning and testing with the
  preset's test-time augmentation (8 flips); pseudo-labels are predicted without it (the
  self-training runner's choice).

Results per variant in ``--json`` (default ``benchmarks/results/few_labels_<task>.json``), written
after each variant; a variant whose run finished earlier (its record names the run) is scored
again from that run without training, an interrupted one is resumed (``segtrain selftrain --resume``
/ ``segtrain train --resume``). Noise: cells F1 per test image, em3d VOI per 5-slice slab of the
test volume at the chosen settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

from segtrain.io.atomic import atomic_path
from segtrain.train.sources import annotated_volumes
from segtrain.workflows.crossval import tuned_heldout_scores
from segtrain.workflows.training import (
    RunEnded,
    calibrated_thresholds,
    run_to_end,
    selftrain_iterations,
    train_or_reuse,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
VARIANTS = ("supervised", "selftrain", "synthetic", "both")
EXTRA = ("selftrain-cal", "restarts")
PRECISION = 0.95  # of the pseudo-labels, for the thresholds of selftrain-cal
ITERATIONS = 3
DEFAULT_STEPS = {"cells": 400, "em3d": 400}


# --- configs ------------------------------------------------------------------------------------

def _cells_entry(name: str, labels: bool = True) -> dict:
    folder = DATA / "cells2d-phase" / name
    entry = {"raw": str(folder / "raw.tif")}
    if labels:
        entry["labels"] = str(folder / "instances_ids.png")
    return entry


def base_config(task: str, steps: int, out: Path, threads: int) -> dict:
    """The supervised config of ``task`` (plain YAML values)."""
    # warm-up: a sixteenth of the budget, so that each self-training iteration (a quarter) warms up
    # for a quarter of its steps, as the supervised run does for its first quarter's quarter
    train = {"max_steps": steps, "val_every": steps, "checkpoint_every": max(1, steps // 4), "threads": threads,
             "warmup_steps": max(1, steps // 16)}
    if task == "cells":
        return {"preset": "wells2d_quick", "name": "fewlabels-cells",
                "data": {"train": [_cells_entry("set01"), _cells_entry("set02")],
                         "val": [_cells_entry("set09"), _cells_entry("set10")]},
                "train": train}
    em = DATA / "em3d-fibsem"
    entry = {"raw": str(em / "train-image.h5"), "labels": str(em / "train-gt.lzf.h5")}
    return {"preset": "em3d_quick", "name": "fewlabels-em3d",
            "data": {"train": [{**entry, "crop": [[0, 10], [0, 100], [0, 150]]}],
                     "val": [{**entry, "crop": [[0, 10], [0, 100], [150, 200]]}]},
            "train": train}


def unlabelled_files(task: str, out: Path) -> list[str]:
    """The unlabelled images: cells set03-08 (their raw.tif); em3d z 10-34 of the raw volume,
    written once to ``OUT/data`` (selftrain.unlabelled names whole files)."""
    if task == "cells":
        return [_cells_entry(f"set{k:02d}", labels=False)["raw"] for k in range(3, 9)]
    from segtrain.io import read_volume, write_volume

    path = out / "data" / "em3d_z10-34.zarr"
    if not path.exists():
        volume = read_volume(DATA / "em3d-fibsem" / "train-image.h5")
        part = type(volume)(data=np.asarray(volume.data)[10:35], voxel_size=volume.voxel_size, offset=volume.offset,
                            axes=volume.axes, name="z10-34", is_labels=False, attrs={})
        path.parent.mkdir(parents=True, exist_ok=True)
        write_volume(path, part)
    return [str(path)]


SYNTHETIC = {
    # well images with touching-size objects (the cells' median area is about 720 px: radius ~15)
    "cells": [{"generator": "well_image", "params": {"shape": [256, 256], "n_spheroids": 20}, "weight": 1.0}],
    # EM-like volumes of touching neurites, isotropic like the FIB-SEM data
    "em3d": [{"generator": "em_volume", "params": {"shape": [32, 96, 96]}, "weight": 1.0}],
}


def variant_config(task: str, variant: str, steps: int, out: Path, threads: int,
                   thresholds: list[float] | None = None) -> dict:
    config = base_config(task, steps, out, threads)
    config["name"] = f"{config['name']}-{variant}"
    if variant in ("synthetic", "both"):
        config["data"]["synthetic"] = SYNTHETIC[task]
        config["data"]["synthetic_ratio"] = 2.0
    if variant == "restarts":
        thresholds = [0.99, 0.99]
    if variant in ("selftrain", "both", "selftrain-cal", "restarts"):
        per_iteration = steps // (ITERATIONS + 1)
        config["selftrain"] = {"iterations": ITERATIONS, "steps": per_iteration,
                               "unlabelled": unlabelled_files(task, out)}
        if thresholds is not None:
            config["selftrain"].update(threshold_start=thresholds, threshold_end=thresholds, schedule="constant")
        config["train"]["val_every"] = per_iteration
        config["train"]["checkpoint_every"] = max(1, per_iteration // 2)
    return config


def calibration(task: str, results: dict) -> dict:
    """Thresholds for ``selftrain-cal``, chosen on labelled data with the ``selftrain`` run's
    iteration-0 model (trained on the labelled data only)."""
    run = (results.get("selftrain") or {}).get("run")
    if not run:
        raise SystemExit("selftrain-cal needs the selftrain variant's run first: run --variant selftrain.")
    return calibrated_thresholds(run, "val" if task == "em3d" else "train", PRECISION)


def write_config(values: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


# --- training and scoring -----------------------------------------------------------------------

def train_variant(config_path: Path, runs_root: Path, previous: str | None, started) -> RunEnded:
    """Train (or resume, or reuse when finished) a variant's run; ``started(run folder)`` is called
    once the folder exists."""
    return run_to_end(train_or_reuse(config_path, previous=previous, runs_root=runs_root),
                      lambda line: print(f"  {line}", flush=True), started)


def test_volumes(task: str):
    """``config -> the annotated test volumes``: cells set09-10, em3d z 35-49."""
    from segtrain.config import SourceConfig

    if task == "cells":
        entries = [SourceConfig(**_cells_entry(n)) for n in ("set09", "set10")]
    else:
        em = DATA / "em3d-fibsem"
        entries = [SourceConfig(raw=str(em / "train-image.h5"), labels=str(em / "train-gt.lzf.h5"), crop=[[35, 50]])]
    return lambda config: annotated_volumes(entries, config)


# --- report -------------------------------------------------------------------------------------

def _scored(results: dict):
    """``(variant, record, test scores)`` of each variant scored so far, in the usual order (other
    seeds after their variant)."""
    for name in VARIANTS + EXTRA:
        for key in [name, *sorted(k for k in results if k.startswith(f"{name}@seed"))]:
            record = results.get(key)
            if record and "test" in record:
                yield key, record, record["test"]


def table(task: str, results: dict) -> str:
    if task == "cells":
        lines = ["| variant | steps | train s | F1 set09 | F1 set10 | F1 mean (tuned on set01-02) | hindsight | "
                 "precision | recall |", "|---|---|---|---|---|---|---|---|---|"]
        for name, r, t in _scored(results):
            lines.append(f"| {name} | {r['steps']} | {r['train_seconds']:.0f} | {t['per_image_f1'][0]:.3f} | "
                         f"{t['per_image_f1'][1]:.3f} | **{t['chosen']:.3f}** | {t['best']:.3f} | "
                         f"{t.get('precision', float('nan')):.3f} | {t.get('recall', float('nan')):.3f} |")
        return "\n".join(lines)
    lines = ["| variant | steps | train s | VOI z 35-49 (chosen on z 0-9, x 150-199) | split | merge | "
             "per 5-slice slab | best threshold | hindsight | chosen settings |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r, t in _scored(results):
        s = t["tuned_settings"]
        chosen = f"{s.get('fragments')}, {s.get('scoring')}, t {s.get('threshold')}"
        lines.append(f"| {name} | {r['steps']} | {r['train_seconds']:.0f} | **{t['chosen']:.3f}** | "
                     f"{t['chosen_split']:.3f} | {t['chosen_merge']:.3f} | "
                     f"{' / '.join(f'{v:.2f}' for v in t['per_slab_voi'])} | {t['best_threshold']:.3f} | "
                     f"{t['best']:.3f} | {chosen} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("cells", "em3d"), required=True)
    parser.add_argument("--steps", type=int, help="total training steps of every variant (400 for both tasks)")
    parser.add_argument("--variant", action="append", choices=VARIANTS + EXTRA,
                        help="variants to run (default: the four of the comparison)")
    parser.add_argument("--out", default=None, help="folder for configs and runs (default runs/few_labels/<task>)")
    parser.add_argument("--json", default=None, help="results file (default benchmarks/results/few_labels_<task>.json)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads while training (train.threads)")
    parser.add_argument("--retrain", action="store_true", help="train again even where a finished run is recorded")
    parser.add_argument("--seed", type=int, default=0,
                        help="train.seed (default 0); another seed is recorded as '<variant>@seed<N>', for the noise")
    args = parser.parse_args(argv)
    steps = args.steps or DEFAULT_STEPS[args.task]
    if steps % (ITERATIONS + 1):
        parser.error(f"--steps must be a multiple of {ITERATIONS + 1} (the self-training runs split it evenly)")
    out = Path(args.out or f"runs/few_labels/{args.task}").resolve()
    json_path = Path(args.json or REPO / "benchmarks" / "results" / f"few_labels_{args.task}.json")
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    if results.get("steps") not in (None, steps):
        results = {}  # a different budget: start afresh
    results.update(task=args.task, steps=steps, iterations=ITERATIONS,
                   command="python benchmarks/few_labels.py " + " ".join(argv if argv is not None else sys.argv[1:]))

    def save():
        json_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(json_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(results, indent=1, default=str))

    for variant in args.variant or VARIANTS:
        key = variant if not args.seed else f"{variant}@seed{args.seed}"
        print(f"{args.task} / {key}", flush=True)
        record = results.get(key) or {}
        thresholds = None
        if variant == "selftrain-cal":
            if "calibration" not in record or args.retrain:
                record["calibration"] = calibration(args.task, results)
            thresholds = record["calibration"]["thresholds"]
            print(f"  thresholds chosen on labelled data: {record['calibration']}", flush=True)
        values = variant_config(args.task, variant, steps, out, args.threads, thresholds)
        if args.seed:
            values["name"] += f"-seed{args.seed}"
            values["train"]["seed"] = args.seed
        config_path = write_config(values, out / "configs" / f"{key}.yaml")
        previous = None if args.retrain else record.get("run")

        def started(run_dir, key=key, config_path=config_path, record=record):
            if record.get("run") != str(run_dir):
                kept = {k: record[k] for k in ("calibration",) if k in record}
                record.clear()
                record.update(kept)
            record.update(run=str(run_dir), config=str(config_path), steps=steps,
                          resumed=bool(previous) and previous == str(run_dir), command=results["command"])
            results[key] = record
            save()

        ended = train_variant(config_path, out / "runs", previous, started)
        run_dir = ended.run_dir
        if not ended.finished:
            raise SystemExit(f"{variant}: the run {run_dir} stopped before its end; run the same command again "
                             "to resume it.")
        if not ended.reused:
            record["train_seconds"] = ended.seconds  # of this process only when resumed
        # tuned on the labelled data as `segtrain tune` does (cells: set01-02; em3d: the held-out
        # piece of z 0-9); em3d: VOI per 5-slice slab of z 35-49 too
        record["test"] = tuned_heldout_scores(run_dir, test_volumes(args.task), slab=5 if args.task == "em3d" else None)
        if variant in ("selftrain", "both", "selftrain-cal", "restarts"):
            record["selftrain"] = selftrain_iterations(run_dir)
        results[key] = record
        save()
        t = record["test"]
        print(f"  test {t['metric']} {t['chosen']:.4f} (hindsight {t['best']:.4f}); tuned "
              f"{t['tuned_settings']}; train {record.get('train_seconds', float('nan')):.0f} s, "
              f"scoring {t['score_seconds']:.0f} s", flush=True)
    print(table(args.task, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
