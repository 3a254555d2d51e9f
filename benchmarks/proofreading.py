"""Proofreading with an oracle user: quality after 0, 10, 25 and 50 edits, and the time per edit.

    python benchmarks/proofreading.py --em-run RUN_EM3D --cells-run RUN_CELLS [--edits 50] [--json OUT]
    python benchmarks/proofreading.py --speed          # edits on a 100 x 512 x 512 segmentation

The oracle (:mod:`segtrain.proofread.oracle`) makes, at each step, the edit that puts most voxels
right by the ground truth, with the same Proofreader calls the panel makes (merge, split at
seeds, delete, paint). em3d-fibsem: the run's prediction of z 35-49, fragments + merge tree with
the run's settings at the run's threshold, VOI after N edits. cells2d-phase: the run's instances
of set09 and set10 with its (tuned) settings, instance F1 at IoU 0.5 after N edits per image.
``--speed``: merge, delete, tree split, undo, redo and seeded split on a 100 x 512 x 512 volume
of 40,000 fragments with a random merge tree; the time each takes (the panel's worker adds a
few ms to show it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from segtrain import evaluate
from segtrain.proofread import Proofreader
from segtrain.workflows.correction import correction_round, edit_timings, proofreader_of, timed_edits

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MARKS = (0, 10, 25, 50)


def oracle_session(reader: Proofreader, gt: np.ndarray, score, n_edits: int, background: bool,
                   lower_is_better: bool) -> dict:
    r = correction_round(reader, gt, score, n_edits, background, lower_is_better, marks=MARKS)
    return {"scores": r.scores, "ops": r.op_counts(), "edits": len(r.edits), "ms_per_edit": r.ms_per_edit()}


def em3d(run: str, n_edits: int) -> dict:
    import h5py

    from segtrain.predict import load_model

    loaded = load_model(run)
    with h5py.File(DATA / "em3d-fibsem" / "train-image.h5", "r") as f:
        raw = f["stack"][35:50]
    with h5py.File(DATA / "em3d-fibsem" / "train-gt.lzf.h5", "r") as f:
        gt = f["stack"][35:50].astype(np.uint64)
    reader = proofreader_of(loaded, raw)
    result = oracle_session(reader, gt, lambda seg: evaluate.voi(seg, gt)["voi"], n_edits, background=False,
                            lower_is_better=True)
    result.update(threshold=reader.threshold, checkpoint=str(loaded.checkpoint), step=loaded.step)
    return result


def cells(run: str, n_edits: int) -> dict:
    import imageio.v3 as iio

    from segtrain.predict import load_model

    loaded = load_model(run)
    out = {}
    for name in ("set09", "set10"):
        raw = np.asarray(iio.imread(DATA / "cells2d-phase" / name / "raw.tif"))
        gt = np.asarray(iio.imread(DATA / "cells2d-phase" / name / "instances_ids.png")).astype(np.uint32)
        reader = proofreader_of(loaded, raw)
        out[name] = oracle_session(reader, gt, lambda seg, gt=gt: evaluate.instance_scores(seg, gt)["f1"],
                                   n_edits, background=True, lower_is_better=False)
    return out


def speed(repeats: int = 20) -> dict:
    """Edit times on a 100 x 512 x 512 segmentation of 40,000 fragments with a random merge tree."""
    from segtrain.segment import MergeTree

    rng = np.random.default_rng(0)
    shape = (100, 512, 512)
    cells = np.arange(1, 40_001, dtype=np.uint64).reshape(10, 40, 100)  # 10 x 40 x 100 grid of boxes
    fragments = np.repeat(np.repeat(np.repeat(cells, 10, 0), 13, 1)[:, :512], 6, 2)[:, :, :512]
    fragments = np.ascontiguousarray(np.pad(fragments, ((0, 0), (0, 512 - fragments.shape[1]), (0, 0)), mode="edge"))
    assert fragments.shape == shape
    n = int(cells.max())
    # a random merge tree of neighbouring fragments (segments are connected, as in real data):
    # the grid's edges in random order, each joining two roots once
    grid = cells.astype(np.int64)
    edges = np.concatenate([np.stack([np.take(grid, range(0, s - 1), axis), np.take(grid, range(1, s), axis)],
                                     -1).reshape(-1, 2) for axis, s in enumerate(grid.shape)])
    edges = edges[rng.permutation(len(edges))]
    parent = np.arange(n + 1)

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
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
    tree = MergeTree(fragments, np.array(a), np.array(b), scores, n)
    reader = Proofreader(fragments, tree, 0.15)  # below percolation: many compact segments
    start = time.perf_counter()
    reader.prepare()  # the panel does this in the background once the tree is built
    prepare_ms = 1000 * (time.perf_counter() - start)
    reader.segmentation((50,))  # the panel shows a plane first
    times = edit_timings(timed_edits(reader, rng, repeats, plane=50, thresholds=(0.1, 0.2)))
    times["prepare (once, in the background)"] = {"median_ms": prepare_ms, "max_ms": prepare_ms, "n": 1}
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--em-run")
    parser.add_argument("--cells-run")
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    results = {}
    if args.speed:
        results["speed_100x512x512"] = speed()
        for op, value in results["speed_100x512x512"].items():
            print(f"{op:>20}: {value}")
    if args.em_run:
        results["em3d"] = r = em3d(args.em_run, args.edits)
        print("em3d-fibsem z 35-49, VOI after N oracle edits:",
              ", ".join(f"{n}: {v:.3f}" for n, v in sorted(r["scores"].items())), "| ops", r["ops"],
              "| ms per edit", r["ms_per_edit"])
    if args.cells_run:
        results["cells"] = r = cells(args.cells_run, args.edits)
        for name, one in r.items():
            print(f"cells {name}, F1 after N oracle edits:",
                  ", ".join(f"{n}: {v:.3f}" for n, v in sorted(one["scores"].items())), "| ops", one["ops"],
                  "| ms per edit", one["ms_per_edit"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
