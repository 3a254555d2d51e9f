"""`segtrain segment`: affinities -> fragments, merge tree and (at a threshold) a segmentation."""

from __future__ import annotations

import argparse
import json

HELP = "cut affinities into fragments, agglomerate them with waterz into a merge tree, and " \
       "write the segmentation at a threshold"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("affs", help="affinities (C, z, y, x) or (C, y, x), any format segtrain reads")
    parser.add_argument("out", help="output folder: fragments, merge_tree.npz, segmentation")
    parser.add_argument("--dataset", help="dataset inside the affinity file (e.g. volumes/affs)")
    parser.add_argument("--fragments-method", choices=["watershed", "waterz"], default="watershed",
                        help="seeded watershed on the distance transform (default) or waterz's own")
    parser.add_argument("--per-slice", action="store_true",
                        help="fragments slice by slice (anisotropic data)")
    parser.add_argument("--boundary-threshold", type=float, default=0.5)
    parser.add_argument("--min-seed-distance", type=int, default=10)
    parser.add_argument("--min-size", type=int, default=0, help="smallest fragment in voxels")
    parser.add_argument("--scoring", default="hist_quant_50",
                        help="mean or hist_quant_10 ... hist_quant_95 (default hist_quant_50)")
    parser.add_argument("--max-threshold", type=float, default=1.0,
                        help="highest threshold the merge tree answers (default 1.0)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="write the segmentation at this threshold (choose it with "
                             "`segtrain sweep`; no blind default)")
    parser.add_argument("--format", default=".zarr", choices=[".zarr", ".h5", ".tif"],
                        help="file format of fragments and segmentation (default .zarr)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def run(args: argparse.Namespace) -> int:
    from segtrain.commands._engine import Step, log, output_dir, read_affinities, write_labels
    from segtrain.errors import InputError
    from segtrain.segment import MergeTree, make_fragments
    from segtrain.segment._waterz import as_waterz_affinities, check_threshold, scoring_type

    scoring_type(args.scoring)
    check_threshold(args.max_threshold, "maximum threshold")
    if args.threshold is not None:
        check_threshold(args.threshold)
        if args.threshold > args.max_threshold:
            raise InputError(f"--threshold {args.threshold} is above --max-threshold "
                             f"{args.max_threshold}; raise --max-threshold.")
    with Step(f"reading {args.affs}"):
        affs, volume = read_affinities(args.affs, args.dataset)
        as_waterz_affinities(affs)  # shape, dtype, NaN: one clear error before any work
    out = output_dir(args.out, args.overwrite)
    with Step(f"fragments ({args.fragments_method})"):
        voxel_size = None if args.per_slice else tuple(volume.voxel_size)[-(affs.ndim - 1):]
        fragments = make_fragments(
            affs, args.fragments_method, boundary_threshold=args.boundary_threshold,
            min_seed_distance=args.min_seed_distance, min_size=args.min_size,
            per_slice=args.per_slice, voxel_size=voxel_size,
        )
    with Step(f"merge tree (waterz, {args.scoring})"):
        tree = MergeTree.build(affs, fragments, scoring=args.scoring,
                               max_threshold=args.max_threshold)
    tree.attrs.update(source=str(args.affs), fragments_method=args.fragments_method)
    ext = args.format
    written = {}
    written["fragments"] = str(write_labels(out / f"fragments{ext}", tree.fragments, volume,
                                            "fragments", args.overwrite))
    written["merge_tree"] = str(tree.save(out / "merge_tree.npz", overwrite=args.overwrite))
    summary = dict(fragments=tree.n_present, merges=int(len(tree.scores)), scoring=args.scoring,
                   max_threshold=tree.max_threshold)
    if args.threshold is not None:
        seg = tree.segmentation(args.threshold)
        written["segmentation"] = str(write_labels(
            out / f"segmentation{ext}", seg, volume, "segmentation", args.overwrite,
            attrs=dict(threshold=args.threshold, scoring=args.scoring)))
        summary.update(threshold=args.threshold, segments=tree.n_segments(args.threshold))
    else:
        log("no --threshold given: choose one with `segtrain sweep --tree "
            f"{out / 'merge_tree.npz'} --gt GT`, then `segtrain export`")
    summary["outputs"] = written
    print(json.dumps(summary, indent=2))
    return 0
