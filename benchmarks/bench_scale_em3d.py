"""Blockwise against in-memory segmentation on em3d-fibsem with a trained run's predicted affinities.

Predicts the whole em3d-fibsem volume (50 x 100 x 200) once with RUN (its best checkpoint, on the
CPU or the first GPU; ``--affinities PATH`` keeps them in a zarr and reuses them on the next
run), then, for each setting ``fragments:scoring`` (default: watershed:mean,
watershed:hist_quant_50, waterz:hist_quant_50, waterz:mean; the run's other segment settings),
compares at each threshold

- ``in-memory``: fragments + waterz merge tree on the whole volume (what the GUI shows),
- ``blockwise``: ``segtrain scale`` with 8 blocks of 25 x 50 x 100, 2 workers, context
  12 x 25 x 50: per-block edge statistics, agglomerated on the global region graph,
- ``per_block``: the same job's edges cut at their per-block waterz scores (``block_score``,
  what the pipeline cut before the global step),
- ``tree on block fragments``: the in-memory merge tree built on the blockwise job's fragments
  (its pieces, stitched across block faces as the job's graph stitches them), which separates
  the fragments (in-memory vs tree on block fragments) from the agglomeration (tree on block
  fragments vs blockwise),
- ``fragments``: the job's pieces, unstitched and stitched, against the whole volume's fragments,
- ``memory_ids_shuffled``: the in-memory merge tree on the same fragments with their ids shuffled,
  the reference's own noise floor (histogram-quantile scores tie, and ties are broken by ids).

VOI in bits between segmentations (split = H(first | second), merge = H(second | first)), and each
against the ground truth; and the global step's time (reading the graph, agglomerating, writing
the scores). Run:

    python benchmarks/bench_scale_em3d.py --run /work/quality/runs/q-em3d-fibsem-20261202-014622 \\
        --affinities /tmp/em3d-affs.zarr [--settings watershed:mean,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from segtrain.config import segment_config
from segtrain.evaluate import voi
from segtrain.io import read_volume
from segtrain.postprocess import fragments_of
from segtrain.scale import ScoredGraph, create_job, read_graph, run_job, segment_job
from segtrain.scale.agglomeration import global_merge_scores
from segtrain.scale.graph_db import read_edge_statistics, read_stitched_pairs
from segtrain.scale.job import SEGMENT_KEYS
from segtrain.segment import MergeTree

BLOCK = (25, 50, 100)
CONTEXT = (12, 25, 50)
SETTINGS = "watershed:mean,watershed:hist_quant_50,waterz:hist_quant_50,waterz:mean"


def run_segment_settings(run: str) -> dict:
    from segtrain.predict import load_model

    cfg = load_model(run, device="cpu", which="best").config.segment
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k in SEGMENT_KEYS}


def predicted_affinities(run: str, raw: np.ndarray) -> np.ndarray:
    import torch

    from segtrain.predict import load_model, predict_array

    loaded = load_model(run, device="cuda" if torch.cuda.is_available() else "cpu", which="best")
    return np.ascontiguousarray(predict_array(loaded, raw)["affinities"][:3], dtype=np.float32)


def in_memory_tree(affs: np.ndarray, segment: dict, fragments: np.ndarray | None = None) -> MergeTree:
    if fragments is None:
        fragments = fragments_of(affs, segment_config(segment), voxel_size=(1.0, 1.0, 1.0))
    return MergeTree.build(affs, fragments.astype(np.uint64), scoring=segment["scoring"])


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """VOI of ``a`` against ``b`` with no label ignored (0 is a boundary in both)."""
    result = voi(a.astype(np.uint64) + 1, b.astype(np.uint64) + 1)
    return dict(voi=round(float(result["voi"]), 4), split=round(float(result["voi_split"]), 4),
                merge=round(float(result["voi_merge"]), 4))


def per_block_graph(db: str) -> ScoredGraph:
    """The job's edges with their per-block waterz scores."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT u, v, block_score FROM edges").fetchall()
        ids = [r[0] for r in con.execute("SELECT id FROM nodes ORDER BY id")]
    finally:
        con.close()
    u, v, s = zip(*rows)
    return ScoredGraph(np.array(ids, np.uint64), np.array(u, np.uint64), np.array(v, np.uint64),
                       np.array(s, np.float32))


def time_global_step(db: str, scoring: str) -> dict:
    t0 = time.perf_counter()
    stats = read_edge_statistics(db)
    t1 = time.perf_counter()
    global_merge_scores(stats, scoring, stitched=read_stitched_pairs(db))
    t2 = time.perf_counter()
    nodes = len(np.unique(np.concatenate([stats.u, stats.v])))
    return dict(nodes=nodes, edges=len(stats), read_s=round(t1 - t0, 3), agglomerate_s=round(t2 - t1, 3),
                edges_per_s=round(len(stats) / max(t2 - t1, 1e-9)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "em3d-fibsem"))
    parser.add_argument("--settings", default=SETTINGS, help=f"fragments:scoring,... (default {SETTINGS})")
    parser.add_argument("--thresholds", default="0.1,0.3,0.5,0.7,0.9")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--affinities", default=None,
                        help="zarr of the predicted affinities: reused when it exists, else written")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    data = Path(args.data)
    gt = np.asarray(read_volume(data / "train-gt.lzf.h5", "stack").data).astype(np.uint64)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-em3d-"))
    t0 = time.perf_counter()
    path = args.affinities or str(tmp / "affs.zarr")
    if Path(path).exists():
        affs = np.asarray(zarr.open_array(path, mode="r")[:3])
    else:
        raw = np.asarray(read_volume(data / "train-image.h5", "stack").data)
        affs = predicted_affinities(args.run, raw)
        zarr.create_array(store=path, shape=affs.shape, chunks=(3, 25, 50, 100), dtype="float32",
                          zarr_format=2)[:] = affs
    print(f"affinities {affs.shape} in {time.perf_counter() - t0:.1f} s -> {path}", flush=True)
    base = run_segment_settings(args.run)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    rows = []
    for setting in args.settings.split(","):
        fragments, scoring = setting.split(":")
        segment = dict(base, fragments=fragments, scoring=scoring)
        tree = in_memory_tree(affs, segment)
        frags = tree.fragments
        perm = np.concatenate([[0], np.random.default_rng(1).permutation(int(frags.max())) + 1])
        shuffled = in_memory_tree(affs, segment, perm.astype(np.uint64)[frags])
        job = create_job(tmp / f"job-{fragments}-{scoring}", affinities=path, block_shape=BLOCK,
                         context=CONTEXT, segment=segment)
        t1 = time.perf_counter()
        assert all(r.ok for r in run_job(job, workers=args.workers))
        elapsed = time.perf_counter() - t1
        timing = time_global_step(job.db, scoring)
        print(json.dumps(dict(setting=setting, run_s=round(elapsed, 1), global_step=timing)), flush=True)
        pieces = zarr.open_array(str(job.volumes), path="fragments", mode="r")[:]
        block_frags = read_graph(job.db).relabel(pieces, 0.0)  # pieces of one basin joined
        fragment_row = dict(setting=setting, whole=len(np.unique(frags)) - 1,
                            pieces=len(np.unique(pieces)) - 1, stitched=len(np.unique(block_frags)) - 1,
                            pieces_vs_whole=compare(pieces, frags),
                            stitched_vs_whole=compare(block_frags, frags))
        rows.append(fragment_row)
        print(json.dumps(fragment_row), flush=True)
        tree_on_blocks = in_memory_tree(affs, segment, block_frags)
        per_block = per_block_graph(job.db)
        for t in thresholds:
            seg = segment_job(job, t, workers=args.workers)
            blockwise = zarr.open_array(str(seg.path), mode="r")[:]
            memory = tree.segmentation(t)
            on_blocks = tree_on_blocks.segmentation(t)
            old = per_block.relabel(pieces, t)
            row = dict(setting=setting, threshold=t,
                       blockwise_vs_memory=compare(blockwise, memory),
                       per_block_vs_memory=compare(old, memory),
                       fragment_cuts=compare(on_blocks, memory),
                       agglomeration=compare(blockwise, on_blocks),
                       memory_ids_shuffled=compare(shuffled.segmentation(t), memory),
                       segments=dict(memory=tree.n_segments(t), blockwise=seg.segments),
                       gt_voi=dict(memory=round(float(voi(memory, gt)["voi"]), 4),
                                   blockwise=round(float(voi(blockwise, gt)["voi"]), 4),
                                   per_block=round(float(voi(old, gt)["voi"]), 4)))
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
