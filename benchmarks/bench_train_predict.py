"""Training and prediction speed: the data pipeline alone (patches/s of sampling, augmentation and
affinity + LSD targets with 0 / 1 / 2 DataLoader workers), training steps/s and the share of a step
spent waiting for data, prediction voxels/s, and the overhead of tiled prediction against one
forward pass over the same voxels (target: < 15 %).

    python benchmarks/bench_train_predict.py [--quick] [--json OUT.json] [--only data,train,predict]

Uses the real EM crop from ../shared/data when present (else random data of the same shape),
the em3d_quick and wells2d_quick presets, CPU unless CUDA is available.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from segtrain.config import preset
from segtrain.predict import LoadedModel, computed_fraction, make_tiles, predict_array
from segtrain.config import divisor
from segtrain.models import build_model

SHARED = Path(os.environ.get("SEGTRAIN_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def em_data():
    raw_path = SHARED / "em3d-fibsem" / "train-image.h5"
    if raw_path.exists():
        from segtrain.io import read_volume

        return (np.asarray(read_volume(raw_path).data),
                np.asarray(read_volume(SHARED / "em3d-fibsem" / "train-gt.lzf.h5").data))
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (50, 100, 200), dtype=np.uint8), rng.integers(1, 50, (50, 100, 200))


def _em_config(name: str = "em3d_quick"):
    config = preset(name)
    raw, gt = em_data()
    from segtrain.train import ArraySource

    return config, ArraySource(raw[:35], gt[:35]), ArraySource(raw[35:], gt[35:])


def target_costs(repeats: int) -> dict:
    """Seconds per em3d_quick patch of each part of the pipeline, in this process."""
    from segtrain.train.augment import augment
    from segtrain.train.dataset import PatchStream
    from segtrain.train.targets import targets_for

    config, source, _ = _em_config()
    stream = PatchStream([source], config, seed=0)
    rng = np.random.default_rng(0)
    parts = {"sample": 0.0, "augment": 0.0, "targets": 0.0}
    shape = config.data.patch_shape
    for _ in range(repeats):
        t0 = time.perf_counter()
        sample = stream.sources[0].sample(rng, shape, config.data.min_annotated_fraction)
        t1 = time.perf_counter()
        sample = augment(sample, config.data.augment, rng)
        t2 = time.perf_counter()
        targets_for(sample, config, None)
        t3 = time.perf_counter()
        parts["sample"] += t1 - t0
        parts["augment"] += t2 - t1
        parts["targets"] += t3 - t2
    return {"patch_shape": shape, **{f"{k}_seconds": round(v / repeats, 4) for k, v in parts.items()}}


def data_speed(workers: int, patches: int) -> dict:
    """Patches/s of the em3d_quick training stream (affinities + LSDs, augmented) through a DataLoader
    with ``workers`` worker processes, nothing else running (after a warm-up batch per worker)."""
    from torch.utils.data import DataLoader

    from segtrain.train.dataset import PatchStream

    config, source, _ = _em_config()
    stream = PatchStream([source], config, seed=0)
    kwargs = {}
    try:
        from segtrain.train.dataset import loader_options

        kwargs = loader_options(config, workers, pin_memory=False)
    except ImportError:  # the code before the data pipeline moved into workers
        kwargs = {"num_workers": workers}
    loader = DataLoader(stream, batch_size=1, **kwargs)
    it = iter(loader)
    for _ in range(max(1, workers)):
        next(it)
    t0 = time.perf_counter()
    for _ in range(patches):
        next(it)
    seconds = time.perf_counter() - t0
    del it, loader
    return {"workers": workers, "patches": patches, "patches_per_second": round(patches / seconds, 2)}


def training_speed(name: str, steps: int, workers: int | str | None = None) -> dict:
    import lightning.pytorch as pl

    from segtrain.train import ArraySource, TrainingRun

    class WaitClock(pl.Callback):
        """Seconds between one step's end and the next step's start (the DataLoader's next batch)
        against the whole step, from the third step on."""

        def __init__(self):
            self.end = None
            self.waiting = self.total = 0.0
            self.steps = 0

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            now = time.perf_counter()
            if self.end is not None and trainer.global_step >= 2:
                self.waiting += now - self.end
            self.start = now

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            now = time.perf_counter()
            if self.end is not None and trainer.global_step >= 3:
                self.total += now - self.end
                self.steps += 1
            self.end = now

    config = preset(name)
    if workers is not None and hasattr(config.train, "num_workers"):
        config.train.num_workers = workers
    config.train.max_steps = steps
    config.train.val_every = 10 * steps  # no validation inside the timed steps
    config.train.report_interval = 0.0
    if config.ndim == 3:
        raw, gt = em_data()
        source = ArraySource(raw[:35], gt[:35])
        val = ArraySource(raw[35:], gt[35:])
    else:
        rng = np.random.default_rng(0)
        raw = rng.random((512, 512)).astype(np.float32)
        gt = (np.arange(512)[:, None] // 64 * 8 + np.arange(512)[None] // 64).astype(np.int64)
        source, val = ArraySource(raw, gt), ArraySource(raw[:256], gt[:256])
    clock = WaitClock()
    with tempfile.TemporaryDirectory() as root:
        start = stepped = None
        run = TrainingRun(config, [source], [val], runs_root=root, callbacks=[clock])
        for report in run.reports():
            if report.phase != "training":  # preparing, the final validation
                continue
            if report.step >= 2 and start is None:
                start = (time.perf_counter(), report.step)  # skip warm-up steps
            stepped = (time.perf_counter(), report.step)
            last = report
    measured = (stepped[1] - start[1]) / (stepped[0] - start[0]) if start and stepped[1] > start[1] \
        else last.steps_per_second
    return {"preset": name, "num_workers": getattr(config.train, "num_workers", 0),
            "waiting_for_data": round(clock.waiting / clock.total, 3) if clock.total else None,
            "steps": last.step, "batch_size": config.train.batch_size,
            "patch_shape": config.data.patch_shape, "steps_per_second": round(measured, 3),
            "voxels_per_second": round(measured * config.train.batch_size * int(np.prod(config.data.patch_shape)))}


def split_in_two(shape: tuple[int, ...], margin: list[int], div: tuple[int, ...]) -> list[int]:
    """A tile shape that cuts each axis longer than 64 voxels into two tiles."""
    return [s if s <= 64 else -(-(s // 2 + 2 * m) // d) * d for s, m, d in zip(shape, margin, div)]


def prediction_speed(name: str, shape: tuple[int, ...], repeats: int) -> dict:
    """Whole array in one forward pass vs. tiles with the preset's context margin."""
    config = preset(name)
    margin = config.predict.margin
    model = build_model(config).eval()
    loaded = LoadedModel(model, config, Path("<bench>"), 0)
    array = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    div = divisor(config)
    tile = split_in_two(shape, margin, div)
    tiles = make_tiles(shape, tile, margin, div)

    def timed(**kwargs) -> float:
        t0 = time.perf_counter()
        predict_array(loaded, array, **kwargs)
        return time.perf_counter() - t0

    timed(tile_shape=[min(s, 64) for s in shape], margin=[0] * len(shape))  # warm-up

    whole, tiled = float("inf"), float("inf")
    for _ in range(repeats):  # interleaved, best of each, against noise from other processes
        whole = min(whole, timed(tile_shape=list(shape), margin=[0] * len(shape)))
        tiled = min(tiled, timed(tile_shape=tile, margin=margin))
    voxels = int(np.prod(shape))
    return {"preset": name, "shape": list(shape), "tile_shape": tile, "margin": margin, "tiles": len(tiles),
            "whole_seconds": round(whole, 3), "tiled_seconds": round(tiled, 3),
            "voxels_per_second_tiled": round(voxels / tiled), "voxels_per_second_whole": round(voxels / whole),
            "computed_fraction": round(computed_fraction(shape, tiles), 4),
            "tiling_overhead": round(tiled / whole - 1, 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and smaller arrays")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--only", default="data,train,predict", help="parts to run (comma-separated)")
    parser.add_argument("--workers", default="0,auto", help="train.num_workers values for the training part")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    try:
        from segtrain.device import describe_device

        device = describe_device()
    except ImportError:
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    print(json.dumps({"device": device, "cores": os.cpu_count()}), flush=True)
    steps = 12 if args.quick else 40
    repeats = 2 if args.quick else 3
    results = {"device": device, "data": [], "training": [], "prediction": []}
    if "data" in parts:
        results["target_costs"] = target_costs(5 if args.quick else 20)
        print(json.dumps(results["target_costs"]), flush=True)
        for workers in (0, 1, 2):
            results["data"].append(data_speed(workers, 10 if args.quick else 40))
            print(json.dumps(results["data"][-1]), flush=True)
    for name in ("em3d_quick", "wells2d_quick") if "train" in parts else ():
        for workers in args.workers.split(","):
            workers = workers if workers == "auto" else int(workers)
            results["training"].append(training_speed(name, steps, workers))
            print(json.dumps(results["training"][-1]), flush=True)
    if "predict" not in parts:
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        return 0
    shape3 = (32, 512, 512) if args.quick else (64, 640, 640)
    results["prediction"].append(prediction_speed("em3d_quick", shape3, repeats))
    print(json.dumps(results["prediction"][-1]), flush=True)
    shape2 = (1024, 1024) if args.quick else (2048, 2048)
    results["prediction"].append(prediction_speed("wells2d_quick", shape2, repeats))
    print(json.dumps(results["prediction"][-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
