"""`segtrain tune`: choose a mask/instance run's post-processing on annotated images."""

from __future__ import annotations

import argparse
import json

HELP = "choose probability threshold, seed and size settings of a mask/instance run for the best instance F1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run folder (the settings are stored there as postprocess.yaml)")
    parser.add_argument("--on", choices=["train", "val"], default="train",
                        help="tune on the run's training images (default: keeps validation scores honest) "
                        "or on its validation images")
    parser.add_argument("--image", nargs=2, action="append", metavar=("RAW", "LABELS"),
                        help="tune on these annotated images instead (repeat for several)")
    parser.add_argument("--dry-run", action="store_true", help="print the result without storing it")


def run(args: argparse.Namespace) -> int:
    from segtrain.commands._engine import log, tqdm_progress
    from segtrain.config import SourceConfig
    from segtrain.tuning import tune_run

    entries = [SourceConfig(raw=raw, labels=labels) for raw, labels in args.image] if args.image else None
    result, written = tune_run(args.run, entries=entries, split=args.on, save=not args.dry_run,
                               progress=tqdm_progress("tuning"))
    settings = ", ".join(f"{k} {v}" for k, v in result.settings.items())
    log(f"instance F1 {result.start_f1:.4f} -> {result.f1:.4f} on {result.n_images} image(s) with {settings}")
    log(f"stored in {written}; predictions and segmentations with this run now use these settings"
        if written else "not stored (--dry-run)")
    print(json.dumps({**result.to_dict(), "stored": None if written is None else str(written)}, indent=2))
    return 0
