"""Cost of test-time augmentation: prediction time with N transforms divided by the time without
(ideal: N, since every transform is one more forward pass; the rest is mapping outputs back).

    python benchmarks/bench_tta.py [--shape Z Y X] [--counts 1 2 4 8] [--repeats 2] [--threads T] [--json OUT.json]

The em3d_quick preset's network with random weights (cost does not depend on the weights), on a
random uint8 volume, tiled as the preset says; CPU unless CUDA is available.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from segtrain.config import preset
from segtrain.models import build_model
from segtrain.predict import LoadedModel, predict_array


def seconds(loaded: LoadedModel, volume: np.ndarray, tta: int, repeats: int) -> tuple[float, float]:
    """Best of ``repeats`` ``(wall-clock, CPU)`` seconds of one prediction of ``volume`` with ``tta``
    transforms (CPU time of this process: steadier than wall time on a shared machine)."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        predict_array(loaded, volume, tta=tta)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[32, 128, 128], metavar=("Z", "Y", "X"))
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's); 1 is steadier on a busy machine")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    config = preset("em3d_quick")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = LoadedModel(build_model(config).to(device).eval(), config, Path("<random>"), 0)
    volume = np.random.default_rng(0).integers(0, 255, args.shape, dtype=np.uint8)
    seconds(loaded, volume, 1, 1)  # warm-up
    base_wall, base_cpu = seconds(loaded, volume, 1, args.repeats)
    rows = []
    print(f"em3d_quick, random weights, volume {tuple(args.shape)}, {device}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'N':>3} {'wall s':>8} {'ratio':>7} {'ratio/N':>8} {'CPU s':>8} {'ratio':>7} {'ratio/N':>8}")
    for n in args.counts:
        wall, cpu = (base_wall, base_cpu) if n == 1 else seconds(loaded, volume, n, args.repeats)
        rows.append({"tta": n, "wall_s": round(wall, 3), "wall_ratio": round(wall / base_wall, 2),
                     "cpu_s": round(cpu, 3), "cpu_ratio": round(cpu / base_cpu, 2)})
        print(f"{n:>3} {wall:>8.2f} {wall / base_wall:>7.2f} {wall / base_wall / n:>8.2f} "
              f"{cpu:>8.2f} {cpu / base_cpu:>7.2f} {cpu / base_cpu / n:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"shape": args.shape, "device": device, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
