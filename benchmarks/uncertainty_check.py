"""Is the uncertainty ranking worth following? On a run's validation data (the config's data.val),
predict with test-time augmentation and uncertainty, segment with the run's own settings
(:mod:`segtrain.postprocess`), and compare the errors in the most uncertain patches and objects
with those of all (and of random) patches and objects.

    python benchmarks/uncertainty_check.py /work/quality/runs/q-em3d-fibsem-... [--tta 8] [--json OUT]
    python benchmarks/uncertainty_check.py /work/quality/runs/q-cells2d-phase-...

Patches: a regular tiling of each validation image/volume with ``--patch`` (default 3D 5x20x20,
2D 64x64; the em3d validation slab is only 15x100x200, too small for 8x64x64), ranked by mean
uncertainty with :func:`segtrain.predict.uncertainty.rank_patches`; partial tiles at the far
borders are left out (a second row keeps only patches with >= 25 % ground-truth foreground, to see
whether the ranking does more than find where the objects are). Wrong-pixel rate of a patch:

- affinity models: thresholded (> 0.5) nearest-neighbour affinities against the ground-truth
  affinities of the labels (:func:`segtrain.targets.affinities`; gt 0 is boundary, never affine),
  averaged over the channels;
- mask / instance models: the foreground mask of the run's settings against gt > 0.

Objects: the segmentation the run's settings make (affinities: the merge tree at the threshold a
sweep against the ground truth chooses, as validation does; instances: the run's tuned settings),
ranked by mean uncertainty with :func:`rank_objects`; an object is wrong when its best IoU with a
ground-truth object is < 0.5 (affinities: measured on gt > 0 voxels, gt 0 being unlabelled
boundary; objects with no gt > 0 voxel are left out).

"Top 10 %" pools the patches (objects) of all validation images; the random baseline draws the
same number of patches at random 2000 times (mean and 5-95 % range). Objects are also ranked by
total uncertainty (mean x size), which favours large objects (merges); and, for objects of at
least ``--min-object-size`` voxels, the mean ``1 - best IoU`` of the top 10 % against all (small
slivers at boundaries are most of the IoU < 0.5 objects in EM and are not where the network is
unsure). Per image (3D: per z-slab of
one patch depth) the same ratio is printed to show the spread.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from segtrain.evaluate import sweep
from segtrain.models.build import offsets_for
from segtrain.postprocess import OutputSpec, foreground, instances, segment_affinities
from segtrain.predict import load_model, predict_array
from segtrain.predict.uncertainty import rank_objects, rank_patches
from segtrain.targets import affinities
from segtrain.tasks import task_of
from segtrain.train.sources import sources_from_config

TOP = 0.10


def wrong_pixels(outputs: dict, gt: np.ndarray, config) -> np.ndarray:
    """Per voxel, the share of its predictions that are wrong (float, gt's shape)."""
    settings = config.segment
    if task_of(config).agglomerates:
        offsets = [o for o in offsets_for(config) if sum(abs(v) for v in o) == 1]  # nearest neighbours
        channels = [offsets_for(config).index(o) for o in offsets]
        target, known = affinities(gt, offsets)
        predicted = outputs["affinities"][channels] > 0.5
        wrong = (predicted != (target > 0.5)) & (known > 0)
        return wrong.sum(0) / np.maximum((known > 0).sum(0), 1)
    return (foreground(outputs["probabilities"], settings) != (gt > 0)).astype(np.float64)


def segmentation(outputs: dict, gt: np.ndarray, config) -> tuple[np.ndarray, float | None]:
    """The run's segmentation of the outputs (and the threshold the sweep chose, affinities)."""
    settings = config.segment
    if task_of(config).agglomerates:
        tree = segment_affinities(outputs["affinities"], settings, voxel_size=config.data.voxel_size,
                                  model_ndim=config.ndim)
        threshold = settings.threshold
        if threshold is None:
            threshold = float(sweep(tree, gt.astype(np.uint32), thresholds=settings.thresholds).best_threshold)
        return tree.segmentation(threshold), threshold
    return instances(outputs["probabilities"], settings, OutputSpec.of(config)), None


def best_iou(seg: np.ndarray, gt: np.ndarray, ignore_gt_zero: bool) -> dict[int, float]:
    """For every segment id (not 0): its best IoU with a ground-truth object (gt 0 is not an
    object; with ``ignore_gt_zero`` its voxels are left out of the sizes too)."""
    seg, gt = seg.ravel(), gt.ravel()
    if ignore_gt_zero:
        keep = gt != 0
        seg, gt = seg[keep], gt[keep]
    s_ids, s_inv = np.unique(seg, return_inverse=True)
    g_ids, g_inv = np.unique(gt, return_inverse=True)
    s_sizes, g_sizes = np.bincount(s_inv), np.bincount(g_inv)
    both = (seg != 0) & (gt != 0)
    keys, inter = np.unique(s_inv[both].astype(np.int64) * len(g_ids) + g_inv[both], return_counts=True)
    si, gi = keys // len(g_ids), keys % len(g_ids)
    iou = inter / (s_sizes[si] + g_sizes[gi] - inter)
    best = np.zeros(len(s_ids))
    np.maximum.at(best, si, iou)
    return {int(s): float(best[i]) for i, s in enumerate(s_ids) if s != 0}


def full_patches(uncertainty: np.ndarray, patch: list[int]):
    tiles = rank_patches(uncertainty, patch, n=None, stride=patch)
    return [t for t in tiles if all(b.stop - b.start == p for b, p in zip(t.box, patch))]


def top_share(scores: np.ndarray) -> int:
    return max(1, math.ceil(TOP * len(scores)))


def compare(scores: np.ndarray, errors: np.ndarray, rng: np.random.Generator, draws: int = 2000) -> dict:
    """Error of the top 10 % by score, of all, of random draws of the same size, and the rank
    correlation between score and error."""
    from scipy.stats import spearmanr

    k = top_share(scores)
    top = np.argsort(-scores, kind="stable")[:k]
    random = np.array([errors[rng.choice(len(errors), k, replace=False)].mean() for _ in range(draws)])
    rho = spearmanr(scores, errors).statistic if len(scores) > 2 and np.ptp(errors) > 0 else float("nan")
    return {"n": len(scores), "k": k, "top": float(errors[top].mean()), "all": float(errors.mean()),
            "random": float(random.mean()), "random_5": float(np.percentile(random, 5)),
            "random_95": float(np.percentile(random, 95)),
            "ratio": float(errors[top].mean() / errors.mean()) if errors.mean() > 0 else float("nan"),
            "spearman": float(rho)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder or checkpoint")
    parser.add_argument("--checkpoint", default="newest", help="newest (default), best, or a file name")
    parser.add_argument("--tta", type=int, default=8, help="test-time transforms (default 8: every flip in 3D, "
                        "every 90-degree rotation/reflection in 2D)")
    parser.add_argument("--patch", type=int, nargs="+", help="patch shape (default 3D 5 20 20, 2D 64 64)")
    parser.add_argument("--max-images", type=int, default=None, help="use only the first N validation images")
    parser.add_argument("--min-object-size", type=int, default=1000,
                        help="size of the objects in the 1 - IoU row (default 1000 voxels)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    loaded = load_model(args.run, which=args.checkpoint)
    config = loaded.config
    patch = args.patch or ([5, 20, 20] if config.ndim == 3 else [64, 64])
    sources = sources_from_config(config.data.val, config.data)[:args.max_images]
    print(f"{loaded.describe()}, task {config.task}, tta {args.tta}, patch {tuple(patch)}, "
          f"{len(sources)} validation image(s); settings {config.segment}", flush=True)
    patch_scores, patch_errors, patch_image, patch_fg = [], [], [], []
    object_scores, object_totals, object_wrong, object_image, object_miss, object_size = [], [], [], [], [], []
    per_image = []
    for i, source in enumerate(sources):
        source.prepare(config.ndim, config.data.in_channels, config.data.normalize, config.data.ignore_label)
        raw = np.asarray(source._raw)[0] if config.data.in_channels == 1 else np.asarray(source._raw)
        gt = np.asarray(source._labels).astype(np.int64)
        t0 = time.perf_counter()
        outputs = predict_array(loaded, raw, tta=args.tta, uncertainty=True)
        seconds = time.perf_counter() - t0
        u = outputs["uncertainty"][0]
        wrong = wrong_pixels(outputs, gt, config)
        seg, threshold = segmentation(outputs, gt, config)
        tiles = full_patches(u, patch)
        patch_scores += [t.score for t in tiles]
        patch_errors += [float(wrong[t.box].mean()) for t in tiles]
        patch_fg += [float((gt[t.box] > 0).mean()) for t in tiles]
        # 3D: one "image" per z-slab of one patch depth, to see the spread along z
        slab = [t.box[0].start // patch[0] if config.ndim == 3 else 0 for t in tiles]
        patch_image += [(i, s) for s in slab]
        ious = best_iou(seg, gt, ignore_gt_zero=task_of(config).agglomerates)
        objects = [o for o in rank_objects(u, seg) if o.label in ious]
        object_scores += [o.score for o in objects]
        object_totals += [o.score * o.size for o in objects]
        object_wrong += [float(ious[o.label] < 0.5) for o in objects]
        object_miss += [1.0 - ious[o.label] for o in objects]
        object_size += [o.size for o in objects]
        object_image += [i] * len(objects)
        per_image.append({"image": i, "shape": list(raw.shape[-config.ndim:]), "predict_seconds": round(seconds, 1),
                          "threshold": threshold, "uncertainty_mean": float(u.mean()),
                          "uncertainty_p99": float(np.percentile(u, 99)), "wrong_pixel_rate": float(wrong.mean()),
                          "objects": len(objects)})
        print(f"image {i}: shape {raw.shape}, predicted in {seconds:.1f} s, uncertainty mean {u.mean():.4f} "
              f"(99th pct {np.percentile(u, 99):.4f}), wrong pixels {wrong.mean():.4f}, {len(objects)} objects"
              + (f", threshold {threshold:.2f}" if threshold is not None else ""), flush=True)
    patch_scores, patch_errors, patch_fg = np.array(patch_scores), np.array(patch_errors), np.array(patch_fg)
    cells = patch_fg >= 0.25  # is it more than "where the objects are"?
    big = np.array(object_size) >= args.min_object_size
    object_scores, object_wrong, object_totals = np.array(object_scores), np.array(object_wrong), np.array(object_totals)
    results = {"run": str(loaded.checkpoint), "tta": args.tta, "patch": patch, "images": per_image,
               "patches": compare(patch_scores, patch_errors, rng),
               "patches_with_objects": compare(patch_scores[cells], patch_errors[cells], rng),
               "objects": compare(object_scores, object_wrong, rng),
               "objects_by_total": compare(object_totals, object_wrong, rng),
               "big_objects_miss": compare(object_scores[big], np.array(object_miss)[big], rng), "per_image": []}
    groups = sorted(set(patch_image))
    for g in groups:
        sel = np.array([p == g for p in patch_image])
        entry = {"image": g[0], "slab": g[1], "patches": compare(patch_scores[sel], patch_errors[sel], rng, 500)}
        if config.ndim == 2 or len(groups) == len(sources):
            osel = np.array(object_image) == g[0]
            entry["objects"] = compare(object_scores[osel], object_wrong[osel], rng, 500)
        results["per_image"].append(entry)

    def row(name, c):
        return (f"{name:34s} {c['n']:6d} {c['k']:5d} {c['top']:10.4f} {c['all']:10.4f} "
                f"{c['random']:8.4f} [{c['random_5']:.4f}-{c['random_95']:.4f}] {c['ratio']:6.2f} {c['spearman']:8.2f}")

    print()
    print(f"{'':34s} {'n':>6s} {'top':>5s} {'err top10%':>10s} {'err all':>10s} {'random 10% [5-95%]':>26s} "
          f"{'ratio':>6s} {'spearman':>8s}")
    print(row("patches: wrong-pixel rate", results["patches"]))
    print(row("  (patches >= 25 % gt foreground)", results["patches_with_objects"]))
    print(row("objects: share with IoU < 0.5", results["objects"]))
    print(row("  (objects by total = mean x size)", results["objects_by_total"]))
    print(row(f"objects >= {args.min_object_size} voxels: 1 - IoU", results["big_objects_miss"]))
    for entry in results["per_image"]:
        label = f"image {entry['image']}" + (f" z-slab {entry['slab']}" if config.ndim == 3 else "")
        print(row(f"  {label}: patches", entry["patches"]))
        if "objects" in entry:
            print(row(f"  {label}: objects", entry["objects"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
