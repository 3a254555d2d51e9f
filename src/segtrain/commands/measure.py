"""`segtrain measure`: labels (and the image they were made from) -> a table of per-object
measurements (scikit-image regionprops) and a per-image summary.

The table is CSV (or Parquet, with pyarrow) with a header naming the labels, the image, the voxel
size and units and how the labels were made (:mod:`segtrain.measure.table`); the summary (count,
mean / median / std of size, coverage) is printed as JSON. The work is :mod:`segtrain.measure`,
the same calls the Measurements panel makes.
"""

from __future__ import annotations

import argparse
import json

HELP = "measure the objects of a segmentation (area/volume, shape, intensity) into a CSV table"

#: attributes of a segmentation that say how it was made, copied into the table's header
MADE_WITH = ("kind", "task", "model_ndim", "threshold", "run", "checkpoint", "settings", "source")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("seg", help="labels (a segmentation, instances) in any format segtrain reads")
    parser.add_argument("raw", nargs="?", help="the image the labels were made from (adds mean / max intensity)")
    parser.add_argument("--out", required=True, help="the table to write: a new .csv file (.parquet with pyarrow)")
    parser.add_argument("--seg-dataset", help="array inside the labels file")
    parser.add_argument("--raw-dataset", help="array inside the image file")
    parser.add_argument("--voxel-size", default=None, help="size of a pixel / voxel in world units, z,y,x order "
                        "(e.g. 40,4,4 or 0.65,0.65; default: the labels file's own, else pixels only)")
    parser.add_argument("--unit", default=None, help="the unit of the voxel size, for the header (e.g. nm, um)")
    parser.add_argument("--per-slice", action=argparse.BooleanOptionalAction, default=None,
                        help="measure a 3D stack slice by slice (default: when a 2D model made it)")
    parser.add_argument("--well-grid", metavar="ROWSxCOLS",
                        help="the image holds a grid of wells (e.g. 8x12): each object gets the well its centre lies "
                             "in (column grid_well), and the printed summary one entry per well")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing table of the same format (never a folder or another kind of file)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from segtrain.commands._engine import Step, read_array
    from segtrain.commands._numbers import float_tuple
    from segtrain.errors import InputError
    from segtrain.io.write import check_not_input
    from segtrain.measure import (check_table_output, grid_wells, measure_objects, parse_grid, per_well, summarise,
                                  table_header, write_table)
    from segtrain.measure.objects import neighbours_agree

    voxel_size = float_tuple(args.voxel_size, "voxel size")
    grid = None if args.well_grid is None else parse_grid(args.well_grid)
    # before any work: a folder, another kind of file, an input, an existing table
    check_not_input(args.out, [(args.seg, args.seg_dataset), (args.raw, args.raw_dataset)], args.overwrite)
    check_table_output(args.out, args.overwrite)
    with Step(f"reading {args.seg}"):
        labels, volume = read_array(args.seg, args.seg_dataset)
        raw = None if args.raw is None else read_array(args.raw, args.raw_dataset)[0]
    labels = labels.squeeze() if labels.ndim > 3 else labels
    if not labels.any():  # nothing measured: no table of nothing reported as success
        raise InputError(f"{args.seg} holds no objects (every pixel is 0); segment the image first, or check that "
                         "this is the labels file.")
    if not volume.is_labels and np.issubdtype(labels.dtype, np.integer) and neighbours_agree(labels) < 0.5:
        raise InputError(f"{args.seg} looks like an image, not labels (neighbouring pixels mostly differ); give the "
                         "segmentation first and the image second.")
    if voxel_size is None and volume.voxel_size_given:
        voxel_size = tuple(volume.voxel_size)
    attrs = volume.attrs or {}
    model_ndim = attrs.get("model_ndim")
    if args.per_slice is not None:
        model_ndim = 2 if args.per_slice else None
    with Step("measuring the objects (scikit-image regionprops)"):
        table = measure_objects(labels, raw, voxel_size=voxel_size, model_ndim=model_ndim)
    wells = None
    if grid is not None:
        table.insert(1, "grid_well", grid_wells(table, labels.shape, grid))
        wells = per_well(table, labels.shape, grid).to_dict(orient="records")
    made_with = {key: attrs[key] for key in MADE_WITH if key in attrs}
    header = table_header(table, source=str(args.seg), raw=args.raw, unit=args.unit,
                          made_with=made_with or None)
    path = write_table(table, args.out, header, overwrite=args.overwrite)
    summary = {"table": str(path), "objects": int(len(table)), **summarise(table)}
    if wells is not None:
        summary["wells"] = wells
    print(json.dumps(summary, indent=2))
    return 0
