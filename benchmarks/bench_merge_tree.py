"""Benchmark: answering a new merge threshold from the merge tree vs re-running waterz.

Builds a synthetic volume (default 100 x 512 x 512): ground truth = a coarse Voronoi partition
with membranes, fragments = a fine Voronoi partition cut by the ground truth (>= 50,000
fragments), affinities = the ground truth's nearest-neighbour affinities plus Gaussian noise.
Then prints, for several new thresholds:

- the time to build the merge tree (one waterz run to the maximum threshold),
- the time to answer a new threshold for one displayed slice (lookup table + relabel),
- the time to answer it for the whole volume,
- the time waterz takes for the same threshold from scratch, and the ratios.

Run:  nice python benchmarks/bench_merge_tree.py [--shape 100 512 512] [--fragments 60000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage


def voronoi(shape, n_seeds, rng) -> np.ndarray:
    """Labels 1..n of the nearest of ``n_seeds`` random seeds (via the EDT's nearest indices)."""
    seeds = np.zeros(shape, dtype=bool)
    flat = rng.choice(int(np.prod(shape)), size=n_seeds, replace=False)
    seeds.reshape(-1)[flat] = True
    ids = np.zeros(shape, dtype=np.int32)
    ids.reshape(-1)[np.sort(flat)] = np.arange(1, n_seeds + 1, dtype=np.int32)
    indices = ndimage.distance_transform_edt(~seeds, return_distances=False, return_indices=True)
    return ids[tuple(indices)]


def make_volume(shape, n_objects, n_fragments, noise, seed=0):
    from segtrain.segment import relabel_consecutive
    from segtrain.targets import affinities

    rng = np.random.default_rng(seed)
    gt = voronoi(shape, n_objects, rng).astype(np.uint64)
    # membranes: voxels at a label change along any axis become 0
    edge = np.zeros(shape, dtype=bool)
    for axis in range(3):
        diff = np.diff(gt, axis=axis) != 0
        sl = [slice(None)] * 3
        sl[axis] = slice(1, None)
        edge[tuple(sl)] |= diff
    gt[edge] = 0
    fine = voronoi(shape, n_fragments, rng).astype(np.uint64)
    fragments = relabel_consecutive(np.where(gt != 0, fine * np.uint64(n_objects + 1) + gt, 0))
    affs, _ = affinities(gt)
    affs += rng.normal(0, noise, affs.shape).astype(np.float32)
    np.clip(affs, 0, 1, out=affs)
    return gt, fragments, affs


def timed(fn, *args, repeat=1, **kwargs):
    best = float("inf")
    out = None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[100, 512, 512])
    parser.add_argument("--objects", type=int, default=3000)
    parser.add_argument("--fragments", type=int, default=60000)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--scoring", default="hist_quant_50")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--check", action="store_true", help="also assert equality with waterz")
    args = parser.parse_args(argv)

    from segtrain.segment import MergeTree
    from segtrain.segment._waterz import agglomerate, as_waterz_affinities

    shape = tuple(args.shape)
    print(f"volume {shape} = {np.prod(shape) / 1e6:.1f} M voxels, scoring {args.scoring}")
    t_make, (gt, fragments, affs) = timed(make_volume, shape, args.objects, args.fragments,
                                          args.noise)
    n_frag = int(fragments.max())
    print(f"synthetic data: {t_make:.1f} s; {n_frag} fragments, {len(np.unique(gt)) - 1} objects")

    t_build, tree = timed(MergeTree.build, affs, fragments, scoring=args.scoring)
    print(f"build merge tree (one waterz run to 1.0): {t_build:.2f} s, {len(tree.scores)} merges")

    waffs, _ = as_waterz_affinities(affs)
    z = shape[0] // 2
    displayed = np.ascontiguousarray(tree.fragments[z])
    rows = []
    for t in args.thresholds:
        tree._luts.clear()  # a threshold never asked before: nothing cached
        t_slice, seg_slice = timed(tree.relabel, displayed, t)
        t_slice_cached, _ = timed(tree.relabel, displayed, t, repeat=5)
        tree._luts.clear()
        t_lut, _ = timed(tree.lut, t)
        t_volume, seg = timed(tree.segmentation, t)

        def rerun(threshold=t):
            result = None
            for s in agglomerate(waffs, [threshold], fragments=tree.fragments.copy(),
                                 scoring=args.scoring):
                result = s
            return result

        # a slider step: the next threshold, with this one's table cached
        t_step, _ = timed(tree.relabel, displayed, min(t + 0.01, 1.0))
        t_waterz, seg_waterz = timed(rerun)
        if args.check:
            assert np.array_equal(seg, seg_waterz), f"mismatch at {t}"
            assert np.array_equal(seg_slice, seg_waterz[z])
        del seg_waterz
        gbytes = seg.nbytes * 2 / 1e9  # read fragments + write segments
        rows.append((t, t_slice, t_slice_cached, t_lut, t_volume, t_waterz, gbytes, t_step))
        print(
            f"threshold {t:.2f} ({tree.n_segments(t)} segments): "
            f"slice {t_slice * 1e3:.2f} ms (cached table {t_slice_cached * 1e3:.2f} ms; "
            f"table alone {t_lut * 1e3:.2f} ms; slider step +0.01 {t_step * 1e3:.2f} ms), "
            f"whole volume {t_volume:.3f} s ({gbytes / t_volume:.1f} GB/s), "
            f"waterz rerun {t_waterz:.2f} s -> slice {t_waterz / t_slice:.0f}x, "
            f"volume {t_waterz / t_volume:.0f}x faster"
        )

    # a memory-bandwidth reference: a plain copy of the fragment volume
    t_copy, _ = timed(np.copy, tree.fragments, repeat=3)
    print(f"reference: copying the fragment volume takes {t_copy:.3f} s "
          f"({tree.fragments.nbytes * 2 / 1e9 / t_copy:.1f} GB/s)")
    worst_slice = max(r[1] for r in rows)
    min_ratio = min(r[5] / r[1] for r in rows)
    print(f"summary: build {t_build:.2f} s; slice worst {worst_slice * 1e3:.2f} ms "
          f"(target < 20 ms: {'ok' if worst_slice < 0.02 else 'MISSED'}); "
          f"slice vs waterz rerun at least {min_ratio:.0f}x "
          f"(target >= 100x: {'ok' if min_ratio >= 100 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
