"""`segtrain export`: the segmentation at a threshold, relabelled block by block from a merge tree."""

from __future__ import annotations

import argparse
import json

from segtrain.commands._numbers import finite_float, float_tuple, int_tuple

HELP = "write the segmentation at a threshold from a merge tree, block by block (dask)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output (.zarr by default; .h5, .tif also work)")
    parser.add_argument("--tree", required=True, help="merge tree (.npz) from `segtrain segment`")
    parser.add_argument("--threshold", type=finite_float, required=True,
                        help="merge threshold (chosen with `segtrain sweep`)")
    parser.add_argument("--fragments", help="fragments volume, if the tree was saved without them")
    parser.add_argument("--fragments-dataset")
    parser.add_argument("--chunks", default=None,
                        help="block shape, e.g. 64,256,256 (default: the writer's)")
    parser.add_argument("--voxel-size", default=None, help="e.g. 40,4,4 (default: the fragments')")
    parser.add_argument("--scheduler", default=None,
                        help="address of a dask.distributed scheduler (default: local threads)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output of the same kind (a zarr array, an HDF5 dataset, a TIFF "
                             "file; never a group, a folder or an input)")


def run(args: argparse.Namespace) -> int:
    from segtrain.commands._engine import Step, tqdm_progress
    from segtrain.errors import InputError
    from segtrain.io.write import check_not_input
    from segtrain.scale import relabel_blockwise
    from segtrain.segment import MergeTree
    from segtrain.segment._waterz import check_threshold

    check_threshold(args.threshold)
    inputs = [args.tree, (args.fragments, args.fragments_dataset)]
    check_not_input(args.out, inputs, args.overwrite)  # before any work
    chunks = int_tuple(args.chunks, "chunks")
    voxel_size = float_tuple(args.voxel_size, "voxel size")
    tree = MergeTree.load(args.tree)
    tree.n_merges(args.threshold)  # threshold above the tree's maximum: one clear error
    fragments = tree.fragments
    if args.fragments:
        from segtrain.io import read_volume

        fragments = read_volume(args.fragments, args.fragments_dataset)
    if fragments is None:
        raise InputError(f"{args.tree} holds no fragments; pass them with --fragments.")
    with Step(f"relabelling at threshold {args.threshold}"):
        path = relabel_blockwise(
            fragments, tree, args.threshold, args.out, chunks=chunks, voxel_size=voxel_size,
            overwrite=args.overwrite, scheduler_address=args.scheduler, inputs=inputs,
            progress=tqdm_progress("export"),
        )
    print(json.dumps(dict(output=str(path), threshold=args.threshold,
                          segments=tree.n_segments(args.threshold)), indent=2))
    return 0
