"""`segtrain sweep`: score a merge tree against ground truth at every threshold of a grid."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "score every merge threshold against ground truth (VOI, ARAND): table, best threshold, plot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tree", help="merge tree (.npz) written by `segtrain segment`")
    source.add_argument("--affs", help="affinities to segment first (fragments + merge tree)")
    parser.add_argument("--gt", required=True, help="ground-truth labels (0 = ignored)")
    parser.add_argument("--gt-dataset", help="dataset inside the ground-truth file")
    parser.add_argument("--affs-dataset", help="dataset inside the affinity file")
    parser.add_argument("--fragments", help="fragments, if the merge tree was saved without them")
    parser.add_argument("--fragments-method", choices=["watershed", "waterz"], default="watershed")
    parser.add_argument("--per-slice", action="store_true")
    parser.add_argument("--min-seed-distance", type=int, default=10)
    parser.add_argument("--scoring", default="hist_quant_50",
                        help="with --affs: mean or hist_quant_10 ... hist_quant_95")
    parser.add_argument("--thresholds", default=None,
                        help="start:stop:step (stop included) or a list 0.1,0.2; default 0:1:0.02")
    parser.add_argument("--out-dir", default=None,
                        help="folder for sweep.csv, sweep.json and sweep.png (default: print only)")


def run(args: argparse.Namespace) -> int:
    from segtrain.commands._engine import Step, log, output_dir, parse_thresholds, read_affinities, \
        read_array, tqdm_progress
    from segtrain.errors import InputError
    from segtrain.evaluate import sweep
    from segtrain.segment import MergeTree, make_fragments
    from segtrain.segment._waterz import check_threshold

    thresholds = parse_thresholds(args.thresholds)
    if thresholds is not None:
        for t in thresholds:
            check_threshold(t)
    out = output_dir(args.out_dir, overwrite=True) if args.out_dir else None
    if args.tree:
        tree = MergeTree.load(args.tree)
        if args.fragments:
            tree.fragments, _ = read_array(args.fragments)
        if tree.fragments is None:
            raise InputError(f"{args.tree} holds no fragments; pass them with --fragments.")
    else:
        with Step(f"reading {args.affs}"):
            affs, _ = read_affinities(args.affs, args.affs_dataset)
        with Step("fragments"):
            fragments = make_fragments(affs, args.fragments_method,
                                       min_seed_distance=args.min_seed_distance,
                                       per_slice=args.per_slice)
        with Step(f"merge tree ({args.scoring})"):
            tree = MergeTree.build(affs, fragments, scoring=args.scoring)
    gt, _ = read_array(args.gt, args.gt_dataset)
    if gt.shape != tree.fragments.shape and gt.squeeze().shape == tree.fragments.shape:
        gt = gt.squeeze()
    result = sweep(tree, gt, thresholds, progress=tqdm_progress("sweep"))
    best = result.best
    log(f"best threshold {best['threshold']:.4g}: VOI {best['voi']:.4f} (split "
        f"{best['voi_split']:.4f}, merge {best['voi_merge']:.4f}), ARAND {best['arand']:.4f}, "
        f"{best['n_segments']} segments")
    summary = dict(best_threshold=result.best_threshold, best=best, scoring=result.scoring)
    if out is not None:
        summary["outputs"] = dict(
            csv=str(result.write_csv(Path(out) / "sweep.csv")),
            json=str(result.write_json(Path(out) / "sweep.json")),
            plot=str(result.plot(Path(out) / "sweep.png")),
        )
        if args.affs:
            summary["outputs"]["merge_tree"] = str(tree.save(Path(out) / "merge_tree.npz",
                                                             overwrite=True))
    else:
        summary["table"] = result.rows()
    print(json.dumps(summary, indent=2))
    return 0
