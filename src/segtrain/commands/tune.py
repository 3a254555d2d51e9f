"""`segtrain tune`: choose a run's post-processing on annotated images (affinities: fragments,
scoring and merge threshold: of the settings within 0.02 of the lowest VOI, the lowest threshold;
masks / instances: threshold, seeds and sizes for the best instance F1), stored in the run folder
and used by every front end from then on."""

from __future__ import annotations

import argparse
import json

HELP = ("choose a run's post-processing on annotated images (affinities: fragments, scoring, threshold: the "
        "lowest threshold within 0.02 of the lowest VOI; masks/instances: threshold, seeds, sizes for the best F1)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run folder (the settings are stored there as postprocess.yaml)")
    parser.add_argument("--on", choices=["auto", "train", "val"], default="auto",
                        help="tune on the run's training or validation images (auto: validation for affinity runs, "
                        "whose threshold validation chooses anyway; training for mask/instance runs, which keeps "
                        "their validation scores honest)")
    parser.add_argument("--image", nargs=2, action="append", metavar=("RAW", "LABELS"),
                        help="tune on these annotated images instead (repeat for several)")
    parser.add_argument("--dry-run", action="store_true", help="print the result without storing it")


def run(args: argparse.Namespace) -> int:
    from segtrain.commands._engine import log, tqdm_progress
    from segtrain.config import SourceConfig
    from segtrain.workflows.tuning import tune_run

    entries = [SourceConfig(raw=raw, labels=labels) for raw, labels in args.image] if args.image else None
    result, written = tune_run(args.run, entries=entries, split=args.on, save=not args.dry_run,
                               progress=tqdm_progress("tuning"))
    settings = ", ".join(f"{k} {v}" for k, v in result.settings.items())
    log(f"{result.describe()} on {result.n_images} image(s) with {settings}")
    log(f"stored in {written}; predictions and segmentations with this run now use these settings"
        if written else "not stored (--dry-run)")
    print(json.dumps({**result.to_dict(), "stored": None if written is None else str(written)}, indent=2))
    return 0
