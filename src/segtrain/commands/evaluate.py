"""`segtrain evaluate`: a segmentation (or mask) against ground truth -> metrics JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from segtrain.commands._numbers import finite_float
from segtrain.tasks import LABEL_KINDS

HELP = "score a segmentation or mask against ground truth (VOI, ARAND, F1/AP, Dice/IoU) as JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("seg", help="segmentation (labels), or a probability map / mask")
    parser.add_argument("gt", help="ground-truth labels (0 = background / ignored)")
    parser.add_argument("--seg-dataset")
    parser.add_argument("--gt-dataset")
    parser.add_argument("--mode", choices=["auto", "instances", "mask"], default="auto",
                        help="instances: VOI/ARAND/F1/AP; mask: Dice/IoU/F1(/AUC); auto: by dtype")
    parser.add_argument("--gt-kind", choices=LABEL_KINDS, default="instances",
                        help="mask: the ground truth is a binary mask (e.g. ISBI 2012's labels, 255 = cell "
                        "interior) whose connected components, slice by slice, are the objects (as "
                        "labels_kind: mask in a training config)")
    parser.add_argument("--mask-threshold", type=finite_float, default=0.5,
                        help="threshold for probability maps in mask mode")
    parser.add_argument("--out", help="also write the metrics JSON to this new file")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out JSON file (never a folder or another kind of file)")


def evaluate_arrays(seg: np.ndarray, gt: np.ndarray, mode: str = "auto",
                    mask_threshold: float = 0.5) -> dict:
    from segtrain.errors import InputError
    from segtrain.evaluate import instance_scores, mask_scores, segmentation_scores
    from segtrain.evaluate.metrics import check_labelled
    from segtrain.segment._waterz import check_threshold

    if seg.shape != gt.shape:
        if seg.squeeze().shape == gt.squeeze().shape:
            seg, gt = seg.squeeze(), gt.squeeze()
        else:
            raise InputError(f"The segmentation has shape {seg.shape} but the ground truth "
                             f"{gt.shape}; they must cover the same voxels.")
    if not np.issubdtype(gt.dtype, np.integer) and gt.dtype != bool:
        raise InputError(f"Ground truth must hold integer labels, not {gt.dtype}.")
    check_labelled(gt)  # all 0: every score would be a false perfect (or meaningless) one
    if mode == "auto":
        mode = "mask" if (np.issubdtype(seg.dtype, np.floating) or seg.dtype == bool) else "instances"
    if mode == "mask":
        check_threshold(mask_threshold, "mask threshold")
        prob = None
        if np.issubdtype(seg.dtype, np.floating):
            prob = seg
            pred = seg > mask_threshold
        else:
            pred = seg != 0
        return dict(mode="mask", **mask_scores(pred, gt != 0, prob=prob))
    if not np.issubdtype(seg.dtype, np.integer):
        raise InputError(f"A segmentation must hold integer labels, not {seg.dtype}.")
    metrics = dict(mode="instances", **segmentation_scores(seg, gt))
    inst = instance_scores(seg, gt)
    for key in ("f1", "precision", "recall", "ap", "mean_ap", "mean_f1", "tp", "fp", "fn",
                "n_pred", "n_gt"):
        metrics[key] = inst[key]
    return metrics


def run(args: argparse.Namespace) -> int:
    from segtrain.commands._engine import read_array
    from segtrain.io.atomic import atomic_path, check_output
    from segtrain.io.write import check_not_input

    if args.out:  # before any work: a folder, another kind of file, an input, an existing file
        check_not_input(args.out, [(args.seg, args.seg_dataset), (args.gt, args.gt_dataset)], args.overwrite)
        check_output(args.out, args.overwrite, fmt="json")
    from segtrain.io.read import check_finite

    seg, seg_volume = read_array(args.seg, args.seg_dataset)
    check_finite(seg, args.seg)  # a NaN probability would score as background, silently
    gt, _ = read_array(args.gt, args.gt_dataset)
    from segtrain.targets.masks import instance_labels

    gt = instance_labels(gt, args.gt_kind)
    if (seg_volume.attrs or {}).get("model_ndim") == 2 and gt.ndim == 3:
        from segtrain.evaluate import stack_labels

        gt = stack_labels(gt, 2)  # a 2D model's stack of slices is scored slice by slice
    metrics = evaluate_arrays(seg, gt, args.mode, args.mask_threshold)
    text = json.dumps(metrics, indent=2)
    if args.out:
        with atomic_path(Path(args.out), overwrite=args.overwrite, fmt="json") as tmp:
            tmp.write_text(text + "\n")
    print(text)
    return 0
