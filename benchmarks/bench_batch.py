"""Batch segmentation throughput: images per second of `segtrain segment-batch`'s core
(:func:`segtrain.batch.segment_batch`) on the ten shared cells images, without and with test-time
augmentation, and the share of each image's time spent reading, predicting, post-processing
(instances) and writing (labels + done marker).

    python benchmarks/bench_batch.py [--run RUN] [--step 1] [--tta 1 4] [--threads T] [--json OUT.json]

Without ``--run`` a masks run is first trained for ``--train-steps`` steps on two downscaled cells
images (the post-processing time depends on what the network predicts, so random weights would not
do). ``--step`` takes every N-th pixel of the 1022 x 1024 images (1: full size). CPU unless CUDA is
available; every batch writes to a new folder (nothing is skipped as finished).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CELLS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cells2d-phase"


def tiny_run(root: Path, steps: int) -> Path:
    import imageio.v3 as iio

    from segtrain.config import config_from_dict
    from segtrain.workflows.training import run_to_end, train_sources
    from segtrain.train.sources import ArraySource

    def pair(name):
        raw = np.asarray(iio.imread(CELLS / name / "raw.tif"))[::2, ::2]
        gt = np.asarray(iio.imread(CELLS / name / "instances_ids.png"))[::2, ::2].astype(np.uint32)
        return ArraySource(raw, gt, name=name)

    config = config_from_dict({
        "preset": "wells2d_quick", "name": "bench-batch", "data": {"patch_shape": [96, 96], "val_patches": 1},
        "model": {"task": "masks"}, "segment": {"min_size": 20},
        "train": {"max_steps": steps, "val_every": steps, "checkpoint_every": steps, "batch_size": 2,
                  "report_interval": 0.0, "lr": 3e-3, "warmup_steps": 0}})
    return run_to_end(train_sources(config, [pair("set01")], [pair("set02")], runs_root=root)).run_dir


def one_batch(loaded, images, out: Path, tta: int) -> dict:
    from segtrain.batch import segment_batch

    parts = {"read": 0.0, "predict": 0.0, "segment": 0.0, "write": 0.0}
    start = time.perf_counter()
    results = list(segment_batch(loaded, images, out, tta=tta))
    wall = time.perf_counter() - start
    failed = [r.message for r in results if not r.ok]
    if failed:
        raise SystemExit(f"bench_batch: {len(failed)} images failed: {failed[0]}")
    for r in results:
        total = float(r.row["seconds"])
        parts["predict"] += r.times["predict"]
        parts["segment"] += r.times["segment"]
        parts["write"] += r.times["write"]
        parts["read"] += total - sum(r.times.values())
    timed = sum(parts.values())
    return {"tta": tta, "images": len(results), "seconds": round(wall, 2),
            "images_per_s": round(len(results) / wall, 3),
            "objects": int(sum(int(r.row["objects"]) for r in results)),
            "share": {k: round(v / timed, 3) for k, v in parts.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run folder or checkpoint (default: train a small one first)")
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--step", type=int, default=1, help="every N-th pixel of the images (1: full size)")
    parser.add_argument("--tta", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    import tifffile
    import torch
    import imageio.v3 as iio

    from segtrain.batch import batch_images
    from segtrain.predict import load_model

    if not CELLS.is_dir():
        print(f"bench_batch: the shared cells images are not at {CELLS}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = args.run or tiny_run(tmp / "runs", args.train_steps)
        loaded = load_model(run)
        plate = tmp / "plate"
        plate.mkdir()
        for i in range(1, 11):
            image = np.asarray(iio.imread(CELLS / f"set{i:02d}" / "raw.tif"))[::args.step, ::args.step]
            tifffile.imwrite(plate / f"A{i:02d}.tif", image)
        images = batch_images([plate], loaded.config.ndim)
        device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
        figures = {"device": device, "shape": list(image.shape), "run": str(run), "batches": []}
        one_batch(loaded, images[:1], tmp / "warm-up", 1)  # first-call costs out of the figures
        for tta in args.tta:
            figures["batches"].append(one_batch(loaded, images, tmp / f"out-tta{tta}", tta))
    print(f"{len(images)} cells images {figures['shape'][0]} x {figures['shape'][1]}, {device}")
    print(f"{'tta':>4} {'images/s':>9} {'s/image':>8} {'objects':>8}   read  predict  segment  write")
    for b in figures["batches"]:
        s = b["share"]
        print(f"{b['tta']:>4} {b['images_per_s']:>9.3f} {b['seconds'] / b['images']:>8.2f} {b['objects']:>8}   "
              f"{s['read']:>4.0%}  {s['predict']:>7.0%}  {s['segment']:>7.0%}  {s['write']:>5.0%}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
