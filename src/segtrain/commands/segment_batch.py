"""`segtrain segment-batch`: segment every image of a folder, glob, list or multi-position file
with a trained run's settings (the prediction of `segtrain predict`, the post-processing of
`segtrain segment`), resumably, into labels per image and one summary.csv (:mod:`segtrain.batch`)."""

from __future__ import annotations

import argparse
import sys

from segtrain.commands._numbers import positive_int

HELP = "segment many images (a folder, glob, list or multi-position file) with a trained run, resumably"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run folder or checkpoint file")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders of images, or quoted globs ('plate/*.tif')")
    parser.add_argument("out", metavar="OUT", help="output folder: <image>_labels.tif per image and summary.csv "
                        "(made if missing; a rerun skips the images it finished)")
    parser.add_argument("--checkpoint", default="newest", metavar="WHICH",
                        help="which checkpoint of the run: newest (default), best, or a file name")
    parser.add_argument("--tta", type=positive_int, default=None, metavar="N",
                        help="test-time augmentation: average N flipped/transposed predictions (default: the "
                             "run's predict.tta)")
    parser.add_argument("--no-match-size", dest="match_size", action="store_false", default=None,
                        help="do not zoom each image to the model's object size")
    parser.add_argument("--well-pattern", metavar="REGEX",
                        help="regular expression that finds the well in a file name (group 'well', or 'row' and "
                             "'col'; default: A01, r01c01 and _s1 names)")
    parser.add_argument("--well-grid", metavar="ROWSxCOLS",
                        help="each image holds a grid of wells (e.g. 8x12): every object gets the well its centre "
                             "lies in (column grid_well) and <image>_wells.csv one row per well")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from segtrain.batch import batch_images, segment_batch
    from segtrain.batch.run import check_model, check_output_folder
    from segtrain.commands._engine import log
    from segtrain.predict import load_model

    from segtrain.measure import parse_grid

    grid = None if args.well_grid is None else parse_grid(args.well_grid)  # before loading anything
    loaded = load_model(args.run, which=args.checkpoint)
    check_model(loaded)
    images = batch_images(args.inputs, loaded.config.ndim, args.well_pattern)
    out = check_output_folder(args.out, images)
    log(f"{len(images)} images, {loaded.describe()}, into {out}")
    failed, done, skipped = [], 0, 0
    with tqdm(total=len(images), unit="image", file=sys.stderr, dynamic_ncols=True) as bar:
        for result in segment_batch(loaded, images, out, tta=args.tta, match_size=args.match_size,
                                    well_grid=grid):
            bar.update(1)
            if result.status == "failed":
                failed.append(result)
                tqdm.write(f"skipped: {result.message}", file=sys.stderr)
            elif result.status == "finished":
                skipped += 1
            else:
                done += 1
    print(f"segmented {done} images, {skipped} finished earlier (left as they were), {len(failed)} failed; "
          f"summary in {out / 'summary.csv'}")
    if failed:
        print(f"segtrain segment-batch: {len(failed)} of {len(images)} images failed (listed above and in "
              "summary.csv); fix or remove them and run again to finish them.", file=sys.stderr)
        return 1
    return 0
