"""`segtrain sweep`: score a merge tree against ground truth at every threshold of a grid."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from segtrain.tasks import LABEL_KINDS

HELP = "score every merge threshold against ground truth (VOI, ARAND): table, best threshold, plot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from segtrain.commands._engine import add_setting_options

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tree", help="merge tree (.npz) written by `segtrain segment`")
    source.add_argument("--affs", help="a prediction (affinities) to segment first, with the run's settings "
                        "as `segtrain segment` does")
    parser.add_argument("--gt", required=True, help="ground-truth labels (0 = ignored)")
    parser.add_argument("--gt-dataset", help="dataset inside the ground-truth file")
    parser.add_argument("--gt-kind", choices=LABEL_KINDS, default="instances",
                        help="mask: the ground truth is a binary mask (e.g. ISBI 2012's labels) whose connected "
                        "components, slice by slice, are the objects")
    parser.add_argument("--affs-dataset", help="array inside the prediction file")
    parser.add_argument("--fragments", help="fragments, if the merge tree was saved without them")
    add_setting_options(parser, probabilities=False)
    parser.add_argument("--thresholds", default=None,
                        help="start:stop:step (stop included) or a list 0.1,0.2; default 0:1:0.02")
    parser.add_argument("--out-dir", default=None,
                        help="folder for sweep.csv, sweep.json and sweep.png (default: print only)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace sweep.csv, sweep.json, sweep.png (and merge_tree.npz) already in --out-dir")


def run(args: argparse.Namespace) -> int:
    from segtrain.commands._engine import (
        Step,
        log,
        make_dir,
        output_dir,
        parse_thresholds,
        read_array,
        read_prediction,
        tqdm_progress,
    )
    from segtrain.errors import InputError
    from segtrain.evaluate import sweep
    from segtrain.postprocess import segment_affinities
    from segtrain.segment import MergeTree
    from segtrain.segment._waterz import check_threshold
    from segtrain.tasks import is_affinities

    thresholds = parse_thresholds(args.thresholds)
    if thresholds is not None:
        for t in thresholds:
            check_threshold(t)
    outputs = ("sweep.csv", "sweep.json", "sweep.png") + (("merge_tree.npz",) if args.affs else ())
    inputs = [args.tree, (args.affs, args.affs_dataset), (args.gt, args.gt_dataset), args.fragments]
    out = output_dir(args.out_dir, args.overwrite, outputs, inputs=inputs) if args.out_dir else None
    if args.tree:
        tree = MergeTree.load(args.tree)
        if args.fragments:
            tree.fragments, _ = read_array(args.fragments)
        if tree.fragments is None:
            raise InputError(f"{args.tree} holds no fragments; pass them with --fragments.")
    else:
        with Step(f"reading {args.affs}"):
            prediction = read_prediction(args.affs, args.affs_dataset, args)
        if not is_affinities(prediction.kind):
            raise InputError(f"{args.affs} holds probabilities, not affinities; sweep merge thresholds of "
                             "affinity predictions (masks and instances: `segtrain tune`).")
        log(f"segment settings from {prediction.origin}")
        with Step(f"fragments ({prediction.settings.fragments}) and merge tree ({prediction.settings.scoring})"):
            tree = segment_affinities(prediction.array, prediction.settings,
                                      voxel_size=tuple(prediction.volume.voxel_size), model_ndim=prediction.spec.ndim)
    gt, _ = read_array(args.gt, args.gt_dataset)
    from segtrain.targets.masks import instance_labels

    gt = instance_labels(gt, args.gt_kind)
    if gt.shape != tree.fragments.shape and gt.squeeze().shape == tree.fragments.shape:
        gt = gt.squeeze()
    result = sweep(tree, gt, thresholds, progress=tqdm_progress("sweep"))
    best = result.best
    log(f"best threshold {best['threshold']:.4g}: VOI {best['voi']:.4f} (split "
        f"{best['voi_split']:.4f}, merge {best['voi_merge']:.4f}), ARAND {best['arand']:.4f}, "
        f"{best['n_segments']} segments")
    summary = dict(best_threshold=result.best_threshold, best=best, scoring=result.scoring)
    if out is not None:
        make_dir(out)
        summary["outputs"] = dict(
            csv=str(result.write_csv(Path(out) / "sweep.csv", overwrite=args.overwrite)),
            json=str(result.write_json(Path(out) / "sweep.json", overwrite=args.overwrite)),
            plot=str(result.plot(Path(out) / "sweep.png", overwrite=args.overwrite)),
        )
        if args.affs:
            summary["outputs"]["merge_tree"] = str(tree.save(Path(out) / "merge_tree.npz", overwrite=args.overwrite))
    else:
        summary["table"] = result.rows()
    print(json.dumps(summary, indent=2))
    return 0
