"""Ensembles of separately trained runs on the em3d far split: every combination of 1, 2, 3 runs
(folders or checkpoints trained on the corner block, e.g. seeds of benchmarks/quality/em3d_far.yaml),
their probabilities averaged, settings chosen on the far tuning part as `segtrain tune` chooses
them, VOI on the far part at that choice and in hindsight (docs/training.md "Ensembles").

    python benchmarks/ensembles.py RUN_A RUN_B RUN_C [...] [--sizes 1 2 3] [--tta 8] [--json out.jsonl]

Prints one row per combination and the mean per ensemble size. `model.ensemble` trains such an
ensemble inside one run (each member on its own patches) and predicts its mean.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from far_apart import splits_for

from segtrain.predict import load_model
from segtrain.workflows.generalisation import ensemble_outcomes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="affinity runs or checkpoints trained on the far split's corner block")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--tta", type=int, help="test-time transforms (default: the first run's)")
    parser.add_argument("--json", help="append one JSON line per combination")
    args = parser.parse_args(argv)
    (split,) = splits_for("em3d", load_model(args.runs[0]).config, 1.0)
    rows = ensemble_outcomes(args.runs, split, [s for s in args.sizes if s <= len(args.runs)], tta=args.tta)
    if args.json:
        with open(args.json, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    print("\n| members | mean VOI chosen | largest | mean hindsight | mean gap |")
    print("|---|---|---|---|---|")
    for size in sorted({r["size"] for r in rows}):
        chosen = np.array([r["chosen"] for r in rows if r["size"] == size])
        hind = np.array([r["hindsight"] for r in rows if r["size"] == size])
        print(f"| {size} ({len(chosen)} combinations) | {chosen.mean():.3f} | {chosen.max():.3f} | {hind.mean():.3f} | "
              f"{(chosen - hind).mean():.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
