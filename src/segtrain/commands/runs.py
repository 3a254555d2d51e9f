"""`segtrain runs`: list training runs side by side, sorted, as a table, CSV or Markdown."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "list training runs (settings, best and final validation metrics, data seen) side by side"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", nargs="?", default="runs", help="folder holding run folders (default: runs)")
    parser.add_argument("--sort", metavar="KEY", help="order the runs by this column (name, steps, lr, best, "
                        "final, size, created, a per-class metric like iou_class1, ...); runs without a "
                        "value come last; default: by date")
    parser.add_argument("--desc", action="store_true", help="sort in descending order")
    parser.add_argument("--format", choices=("table", "csv", "markdown"), default="table",
                        help="output format (default: a plain-text table)")
    parser.add_argument("--output", "-o", metavar="FILE", help="write to FILE (atomically) instead of printing")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --output file of the same format (never a folder)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from segtrain.io.atomic import atomic_path, check_output
    from segtrain.runs import format_runs, list_runs, sort_runs

    fmt = "json" if args.json else "text"
    if args.output:
        check_output(args.output, args.overwrite, fmt=fmt)
    runs = list_runs(args.root)
    if args.sort:
        runs = sort_runs(runs, args.sort, descending=args.desc)  # an unknown key: one sentence, exit 2
    elif args.desc:
        runs = runs[::-1]
    if args.json:
        text = json.dumps([r.to_dict() for r in runs], indent=1) + "\n"
    elif not runs and args.format == "table":
        text = f"no runs in {args.root}\n"
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
