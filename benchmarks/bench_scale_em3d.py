"""Blockwise against in-memory segmentation on em3d-fibsem with a trained run's predicted affinities.

Predicts the whole em3d-fibsem volume (50 x 100 x 200) once with RUN (its best checkpoint, on the
CPU or the first GPU), writes the affinities to a temporary zarr, then compares at each threshold

- ``in-memory``: the run's fragments + waterz merge tree on the whole volume (what the GUI shows),
- ``blockwise``: ``segtrain.scale`` with 8 blocks of 25 x 50 x 100, 2 workers, the given contexts,
- ``memory_ids_shuffled``: the in-memory merge tree on the same fragments with their ids shuffled,
  the reference's own noise floor (histogram-quantile scores are quantised to 1/256, so many edges
  tie, and waterz breaks ties by edge order, i.e. by fragment ids; ``mean`` has no such ties),
- ``tree on block fragments``: the in-memory merge tree built on the blockwise job's fragments,
  which separates the two causes of a difference: fragments cut at block faces
  (in-memory vs tree on block fragments) and edge scores from one block plus context
  (tree on block fragments vs blockwise).

VOI in bits between the segmentations (split = H(blockwise | in-memory), merge = H(in-memory |
blockwise)), and each against the ground truth. Run:

    python benchmarks/bench_scale_em3d.py --run /work/quality/runs/q-em3d-fibsem-20261202-014622 \
        [--data ../shared/data/em3d-fibsem] [--contexts 12,25,50] [--thresholds 0.1,0.3,0.5,0.7,0.9]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from segtrain.evaluate import voi
from segtrain.io import read_volume
from segtrain.scale import create_job, run_job, segment_job
from segtrain.scale.job import SEGMENT_KEYS
from segtrain.config import segment_config
from segtrain.postprocess import fragments_of
from segtrain.segment import MergeTree

BLOCK = (25, 50, 100)


def predicted_affinities(run: str, raw: np.ndarray) -> tuple[np.ndarray, dict]:
    import torch

    from segtrain.predict import load_model, predict_array

    loaded = load_model(run, device="cuda" if torch.cuda.is_available() else "cpu", which="best")
    affs = predict_array(loaded, raw)["affinities"][:3]
    segment = {k: v for k, v in dataclasses.asdict(loaded.config.segment).items() if k in SEGMENT_KEYS}
    return np.ascontiguousarray(affs, dtype=np.float32), segment


def in_memory_tree(affs: np.ndarray, segment: dict, fragments: np.ndarray | None = None) -> MergeTree:
    if fragments is None:
        fragments = fragments_of(affs, segment_config(segment), voxel_size=(1.0, 1.0, 1.0))
    return MergeTree.build(affs, fragments.astype(np.uint64), scoring=segment["scoring"])


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """VOI of ``a`` against ``b`` with no label ignored (0 is a boundary in both)."""
    result = voi(a.astype(np.uint64) + 1, b.astype(np.uint64) + 1)
    return dict(voi=round(float(result["voi"]), 4), split=round(float(result["voi_split"]), 4),
                merge=round(float(result["voi_merge"]), 4))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "em3d-fibsem"))
    parser.add_argument("--contexts", nargs="+", default=["12,25,50"])
    parser.add_argument("--thresholds", default="0.1,0.3,0.5,0.7,0.9")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--affinities", default=None, help="reuse affinities predicted before (zarr)")
    parser.add_argument("--scoring", default=None, help="override the run's scoring (e.g. mean)")
    parser.add_argument("--fragments", default=None, help="override the run's fragment method (watershed, waterz)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    data = Path(args.data)
    raw = np.asarray(read_volume(data / "train-image.h5", "stack").data)
    gt = np.asarray(read_volume(data / "train-gt.lzf.h5", "stack").data).astype(np.uint64)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-em3d-"))
    t0 = time.perf_counter()
    if args.affinities:
        affs = zarr.open_array(args.affinities, mode="r")[:3]
        from segtrain.predict import load_model

        cfg = load_model(args.run, device="cpu", which="best").config.segment
        segment = {k: v for k, v in dataclasses.asdict(cfg).items() if k in SEGMENT_KEYS}
        path = args.affinities
    else:
        affs, segment = predicted_affinities(args.run, raw)
        path = str(tmp / "affs.zarr")
        zarr.create_array(store=path, shape=affs.shape, chunks=(3, 25, 50, 100), dtype="float32",
                          zarr_format=2)[:] = affs
    if args.scoring:
        segment["scoring"] = args.scoring
    if args.fragments:
        segment["fragments"] = args.fragments
    print(f"affinities {affs.shape} in {time.perf_counter() - t0:.1f} s -> {path}; segment {segment}",
          flush=True)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    tree = in_memory_tree(affs, segment)
    # the reference's own noise floor: the same fragments with their ids shuffled (waterz breaks
    # ties between equal scores by edge order, i.e. by fragment ids)
    frags = tree.fragments
    perm = np.concatenate([[0], np.random.default_rng(1).permutation(int(frags.max())) + 1]).astype(np.uint64)
    shuffled = in_memory_tree(affs, segment, perm[frags])
    rows = []
    for context in args.contexts:
        ctx = tuple(int(c) for c in context.split(","))
        job = create_job(tmp / f"job-{'-'.join(map(str, ctx))}", affinities=path, block_shape=BLOCK,
                         context=ctx, segment=segment)
        t1 = time.perf_counter()
        assert all(r.ok for r in run_job(job, workers=args.workers))
        elapsed = time.perf_counter() - t1
        block_frags = zarr.open_array(str(job.volumes), path="fragments", mode="r")[:]
        tree_on_blocks = in_memory_tree(affs, segment, block_frags)
        for t in thresholds:
            seg = segment_job(job, t, workers=args.workers)
            blockwise = zarr.open_array(str(seg.path), mode="r")[:]
            memory = tree.segmentation(t)
            on_blocks = tree_on_blocks.segmentation(t)
            row = dict(context=ctx, threshold=t, run_s=round(elapsed, 1),
                       blockwise_vs_memory=compare(blockwise, memory),
                       fragment_cuts=compare(on_blocks, memory),
                       edge_scores=compare(blockwise, on_blocks),
                       memory_ids_shuffled=compare(shuffled.segmentation(t), memory),
                       segments=dict(memory=tree.n_segments(t), blockwise=seg.segments),
                       gt_voi=dict(memory=round(float(voi(memory, gt)["voi"]), 4),
                                   blockwise=round(float(voi(blockwise, gt)["voi"]), 4)))
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
