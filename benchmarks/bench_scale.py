"""Benchmark of the blockwise pipeline (`segtrain.scale`, daisy workers).

Prints:
- throughput (voxels/s) of fragments + agglomeration + segmentation with 1 and 2 workers on a
  synthetic affinity volume (12 float32 channels, 3 nearest-neighbour + 9 long-range; the pipeline
  reads the first 3 of each block) at least 8x larger than the memory limit each worker gets;
- peak memory (max RSS) of each worker on two volume sizes with the same blocks (it should not
  grow with the volume);
- the overhead of the blockwise path against the in-memory one (fragments + merge tree +
  segmentation) on a volume that fits in memory.

Each worker runs under ``prlimit --data=LIMIT`` (its private writable memory: heap and anonymous
mappings) with one thread per library, started through the pipeline's ``launcher`` option; its
peak RSS is what ``/usr/bin/time -f %M`` reports. Run:

    python benchmarks/bench_scale.py [--limit-mb 512] [--big 96,1024,1024] [--small 96,512,512]
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from segtrain.scale import create_job, run_job, segment_job
from segtrain.targets import affinities

SEGMENT = dict(fragments="watershed", boundary_threshold=0.5, min_seed_distance=4, min_size=20,
               per_slice=False, scoring="hist_quant_50")
THRESHOLD = 0.5
CHUNK = (32, 128, 128)
# nearest-neighbour affinities first (what the pipeline reads), then long-range ones, as an
# MTLSD-style network with long-range affinities writes them: 12 float32 channels, 48 bytes/voxel
OFFSETS = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (-2, 0, 0), (0, -3, 0), (0, 0, -3),
           (-3, 0, 0), (0, -9, 0), (0, 0, -9), (-4, 0, 0), (0, -27, 0), (0, 0, -27)]
HALO = (4, 27, 27)
THREADS = ("MALLOC_ARENA_MAX=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 BLOSC_NTHREADS=1 "
           "ZARR_THREADING__MAX_WORKERS=2")


def labels_of(region: tuple[slice, ...]) -> np.ndarray:
    """Synthetic cells (boxes of 12 x 40 x 40 voxels, shifted per row), the same in every call."""
    z, y, x = np.ogrid[region]
    cz = z // 12
    cy = (y + 13 * cz) // 40
    cx = (x + 17 * cy + 7 * cz) // 40
    ids = (cz * 1_000_003 + cy * 1_009 + cx) % 2_000_000_011 + 1
    return ids.astype(np.uint64)


def write_affinities(path: Path, shape: tuple[int, int, int]) -> None:
    """float32 affinities (12, z, y, x) of the synthetic cells with noise, chunk by chunk."""
    c = len(OFFSETS)
    array = zarr.create_array(store=str(path), shape=(c, *shape), chunks=(c, *CHUNK),
                              dtype="float32", zarr_format=2)
    for index in np.ndindex(*(math.ceil(s / c) for s, c in zip(shape, CHUNK))):
        lo = [i * c for i, c in zip(index, CHUNK)]
        hi = [min(s, a + c) for a, c, s in zip(lo, CHUNK, shape)]
        halo = [max(0, a - h) for a, h in zip(lo, HALO)]
        labels = labels_of(tuple(slice(a, b) for a, b in zip(halo, hi)))
        affs, _ = affinities(labels, offsets=OFFSETS)
        crop = tuple(slice(a - h, None) for a, h in zip(lo, halo))
        affs = affs[(slice(None), *crop)]
        rng = np.random.default_rng(abs(hash(index)) % 2**32)
        affs = np.clip(affs + rng.normal(0, 0.15, affs.shape).astype(np.float32), 0, 1)
        array[(slice(None), *(slice(a, b) for a, b in zip(lo, hi)))] = affs


def blockwise(root: Path, name: str, affs: Path, workers: int, limit_mb: int,
              block: tuple[int, ...]) -> tuple[float, list[int]]:
    """Seconds for fragments + agglomerate + segmentation, and each worker's peak RSS (KiB)."""
    peaks = root / f"{name}.peaks"
    launcher = (f"env {THREADS} /usr/bin/time -a -o {peaks} -f %M "
                f"prlimit --stack={2**21} --data={limit_mb * 2**20}")
    start = time.perf_counter()
    job = create_job(root / name, affinities=str(affs), block_shape=block, segment=SEGMENT)
    results = run_job(job, workers=workers, launcher=launcher, retries=0)
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{name}: blocks failed: {failed} (logs in {job.logs})")
    seg = segment_job(job, THRESHOLD, workers=workers, launcher=launcher, retries=0)
    if not seg.step.ok:
        raise SystemExit(f"{name}: segmentation blocks failed: {seg.step}")
    seconds = time.perf_counter() - start
    return seconds, [int(v) for v in peaks.read_text().split() if v.isdigit()]


def in_memory(affs_path: Path) -> float:
    from segtrain.segment import MergeTree, make_fragments

    start = time.perf_counter()
    affs = zarr.open_array(str(affs_path), mode="r")[:3]
    params = {k: v for k, v in SEGMENT.items() if k not in ("fragments", "scoring")}
    frags = make_fragments(affs, "watershed", **params, voxel_size=(1.0, 1.0, 1.0))
    tree = MergeTree.build(affs, frags, scoring=SEGMENT["scoring"])
    tree.segmentation(THRESHOLD)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-mb", type=int, default=512, help="memory limit per worker (MiB)")
    parser.add_argument("--big", default="96,1024,1024")
    parser.add_argument("--small", default="96,512,512")
    parser.add_argument("--fits", default="32,256,256", help="volume for the in-memory comparison")
    parser.add_argument("--block", default="32,128,128")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    shapes = {k: tuple(int(v) for v in getattr(args, k).split(",")) for k in ("big", "small", "fits")}
    block = tuple(int(v) for v in args.block.split(","))
    root = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    try:
        for key, shape in shapes.items():
            write_affinities(root / f"{key}.zarr", shape)
        voxel_bytes = 4 * len(OFFSETS)
        big_bytes = voxel_bytes * math.prod(shapes["big"])
        limit = args.limit_mb * 2**20
        print(f"worker memory limit: {args.limit_mb} MiB (prlimit --data), blocks {block}")
        print(f"big volume {shapes['big']}: {len(OFFSETS)} float32 affinity channels {big_bytes / 2**30:.2f} GiB "
              f"= {big_bytes / limit:.1f} x the limit")
        rows = []
        for workers in (1, 2):
            seconds, peaks = blockwise(root, f"big{workers}", root / "big.zarr", workers,
                                       args.limit_mb, block)
            voxels = math.prod(shapes["big"])
            rows.append((workers, seconds, voxels / seconds, max(peaks)))
            print(f"  {workers} worker(s): {seconds:7.1f} s  {voxels / seconds / 1e6:6.2f} Mvoxel/s  "
                  f"peak RSS per worker {max(peaks) / 1024:.0f} MiB")
        seconds, peaks = blockwise(root, "small1", root / "small.zarr", 1, args.limit_mb, block)
        print(f"peak RSS per worker, 1 worker: small volume {shapes['small']} "
              f"({voxel_bytes * math.prod(shapes['small']) / 2**30:.2f} GiB) {max(peaks) / 1024:.0f} MiB, "
              f"big volume {shapes['big']} ({big_bytes / 2**30:.2f} GiB) {rows[0][3] / 1024:.0f} MiB")
        mem = in_memory(root / "fits.zarr")
        blk, _ = blockwise(root, "fits1", root / "fits.zarr", 1, args.limit_mb, block)
        print(f"volume that fits {shapes['fits']}: in memory {mem:.1f} s, blockwise (1 worker, "
              f"{math.prod(math.ceil(s / b) for s, b in zip(shapes['fits'], block))} blocks) "
              f"{blk:.1f} s: overhead x{blk / mem:.2f}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
