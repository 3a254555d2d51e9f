"""How the global step scales: waterz's agglomeration of a region graph from edge statistics.

A synthetic region graph: fragments on an N x N x N grid, each touching its 6 neighbours (3 N^3
edges), with contacts of 1 - 60 voxel pairs of random affinities (sums and counts, and 256-bin
histograms). Times :func:`segtrain.scale.agglomeration.global_merge_scores` (everything the global
step computes; reading and writing the database come on top, see bench_scale_em3d.py) and the
peak memory of the process once the graph is made and after the agglomeration, for each N and
scoring. Run:

    python benchmarks/bench_global_agglomeration.py [--sizes 30,60] [--scorings mean,hist_quant_50]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from segtrain.scale.agglomeration import global_merge_scores
from segtrain.scale.edge_stats import BINS, EdgeStatistics


def grid_graph(n: int, seed: int = 0) -> EdgeStatistics:
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n**3 + 1, dtype=np.uint64).reshape(n, n, n)
    u = np.concatenate([ids[1:].ravel(), ids[:, 1:].ravel(), ids[:, :, 1:].ravel()])
    v = np.concatenate([ids[:-1].ravel(), ids[:, :-1].ravel(), ids[:, :, :-1].ravel()])
    u, v = np.minimum(u, v), np.maximum(u, v)
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    counts = rng.integers(1, 61, len(u))
    level = rng.beta(2, 2, len(u))  # each contact's typical affinity
    values = np.clip(np.repeat(level, counts) + rng.normal(0, 0.1, counts.sum()), 0, 1)
    edge = np.repeat(np.arange(len(u)), counts)
    sums = np.bincount(edge, weights=values, minlength=len(u))
    cells, cell_counts = np.unique(edge * BINS + np.minimum((values * BINS).astype(np.int64), BINS - 1),
                                   return_counts=True)
    ptr = np.concatenate([[0], np.cumsum(np.bincount(cells // BINS, minlength=len(u)))])
    return EdgeStatistics(u, v, sums, counts, ptr, (cells % BINS).astype(np.uint8), cell_counts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="30,60")
    parser.add_argument("--scorings", default="mean,hist_quant_50")
    args = parser.parse_args(argv)
    for n in (int(s) for s in args.sizes.split(",")):
        stats = grid_graph(n)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for scoring in args.scorings.split(","):
            t0 = time.perf_counter()
            scores = global_merge_scores(stats, scoring)
            elapsed = time.perf_counter() - t0
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(json.dumps(dict(nodes=n**3, edges=len(stats), scoring=scoring, seconds=round(elapsed, 1),
                                  edges_per_s=round(len(stats) / elapsed), peak_rss_mib=dict(graph_made=round(before), after=round(peak)),
                                  joined_below_half=int((scores < 0.5).sum()))), flush=True)


if __name__ == "__main__":
    main()
