"""`segtrain runs`: list training runs side by side, sorted, as a table, CSV or Markdown."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "list training runs (settings, best and final validation metrics, data seen) side by side"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", nargs="?", help="folder holding run folders (default: $SEGTRAIN_RUNS, else "
                        "segtrain/runs in the user data folder: ~/.local/share/segtrain/runs on Linux)")
    parser.add_argument("--sort", metavar="KEY", help="order the runs by this column (name, steps, status, lr, "
                        "best, final, size, created, a per-class metric like iou_class1, ...); metric columns "
                        "(best, final, per-class) put the best run first whichever way the metric runs (lowest "
                        "VOI, highest F1), other columns the smallest value first; runs without a value come "
                        "last; default: by date, oldest first")
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--desc", action="store_true", help="descending: for a metric column from the best down "
                       "(the same as the default), for other columns from the largest value")
    order.add_argument("--asc", action="store_true", help="ascending: for a metric column from the worst up, for "
                       "other columns from the smallest value (the default)")
    order.add_argument("--reverse", action="store_true", help="the opposite of the default order: worst run first "
                       "for a metric column, largest value first for others, newest first without --sort")
    parser.add_argument("--format", choices=("table", "csv", "markdown"), default="table",
                        help="output format (default: a plain-text table)")
    parser.add_argument("--output", "-o", metavar="FILE", help="write to FILE (atomically) instead of printing")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --output file of the same format (never a folder)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from segtrain.io.atomic import atomic_path, check_output
    from segtrain.runs import default_runs_root, format_runs, is_metric_column, list_runs, sort_runs

    fmt = "json" if args.json else "text"
    if args.output:
        check_output(args.output, args.overwrite, fmt=fmt)
    root = Path(args.root) if args.root else default_runs_root()
    runs = list_runs(root)
    if args.sort:
        order = "desc" if args.desc else "asc" if args.asc else "default"
        if args.reverse:
            order = "asc" if is_metric_column(args.sort) else "desc"
        runs = sort_runs(runs, args.sort, order)  # an unknown key: one sentence, exit 2
    elif args.desc or args.reverse:
        runs = runs[::-1]
    if args.json:
        text = json.dumps([r.to_dict() for r in runs], indent=1) + "\n"
    elif not runs and args.format == "table":
        text = f"no runs in {root}\n"
    else:
        text = format_runs(runs, args.format)
        text = text if text.endswith("\n") else text + "\n"
    if args.output:
        with atomic_path(Path(args.output), overwrite=args.overwrite, fmt=fmt) as tmp:
            tmp.write_text(text)
        print(f"{len(runs)} run(s) written to {args.output}")
    else:
        print(text, end="")
    return 0
