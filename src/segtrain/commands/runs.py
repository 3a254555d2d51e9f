"""`segtrain runs`: list training runs side by side."""

from __future__ import annotations

import argparse
import json

HELP = "list training runs (name, preset, steps, best validation metric) side by side"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", nargs="?", default="runs", help="folder holding run folders (default: runs)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from segtrain.runs import format_table, list_runs

    runs = list_runs(args.root)
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=1))
    else:
        print(format_table(runs) if runs else f"no runs in {args.root}")
    return 0
