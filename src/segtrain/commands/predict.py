"""`segtrain predict`: run a trained model over an image or volume, tile by tile, into zarr."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from segtrain.commands._numbers import non_negative_int, positive_int
from segtrain.device import describe_device

HELP = "predict affinities/LSDs/probabilities with a trained run, tile by tile, into a .zarr"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN",
                        help="run folder, checkpoint file, or BioImage.IO model package (.zip or rdf.yaml)")
    parser.add_argument("--checkpoint", default="newest", metavar="WHICH",
                        help="which checkpoint of the run: newest (default: the newest readable one), best (by the "
                        "validation metric), or a file name in its checkpoints/ folder")
    parser.add_argument("input", help="image or volume (any format segtrain reads)")
    parser.add_argument("output", help="output .zarr (one float32 array per output)")
    parser.add_argument("--dataset", help="dataset inside the input file (e.g. volumes/raw)")
    parser.add_argument("--tile", type=positive_int, nargs="+", metavar="N", help="tile shape (voxels per axis)")
    parser.add_argument("--margin", type=non_negative_int, nargs="+", metavar="N", help="context per inner tile side")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="tiles per forward pass")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output that `segtrain predict` wrote (never another zarr group or "
                             "folder, never the input)")
    parser.add_argument("--tta", type=positive_int, default=None, metavar="N",
                        help="test-time augmentation: average N flipped/transposed predictions (1 = off, 2, 4, 8, "
                             "16 in 3D; default: the run's predict.tta)")
    parser.add_argument("--match-size", dest="match_size", action="store_true", default=None,
                        help="zoom each image so that its objects have the model's object size (2D mask/instance "
                             "runs tuned with `segtrain tune`; predict.match_object_size, off by default: it helps "
                             "where only the magnification differs and lowered F1 on real new dishes)")
    parser.add_argument("--no-match-size", dest="match_size", action="store_false", default=None,
                        help="do not zoom the image to the model's object size (where a run's config turns "
                             "predict.match_object_size on)")
    parser.add_argument("--uncertainty", action="store_true",
                        help="also write 'uncertainty': the disagreement (standard deviation) between the test-time "
                             "augmented predictions, from the same pass (needs --tta 2 or more, or a run whose "
                             "predict.tta is)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from segtrain.errors import InputError
    from segtrain.io import read_volume
    from segtrain.predict import load_model, predict_to_zarr
    from segtrain.predict.model_io import open_model
    from segtrain.predict.package import ZooModel, is_package
    from segtrain.predict.infer import check_prediction_output
    from segtrain.predict.tta import model_tta

    output = Path(args.output)
    if output.suffix != ".zarr":
        raise InputError(f"Output {output} must be a .zarr folder; name it e.g. {output.with_suffix('.zarr')}.")
    check_prediction_output(output, args.overwrite, [(args.input, args.dataset)])
    model = open_model(args.run) if is_package(args.run) else load_model(args.run, which=args.checkpoint)
    volume = read_volume(args.input, args.dataset)
    if isinstance(model, ZooModel):
        return _predict_zoo(args, model, volume, output)
    data = volume.data
    if "c" in volume.axes and volume.axes.index("c") != 0:
        import numpy as np

        data = np.moveaxis(np.asarray(data), volume.axes.index("c"), 0)
    spatial = len([a for a in volume.axes if a != "c"])
    tta = model.config.predict.tta if args.tta is None else args.tta
    if args.uncertainty and tta < 2:
        raise InputError(f"--uncertainty needs test-time augmentation (this run predicts with tta {tta}); "
                         f"add --tta {2 ** spatial} (every flip) or another count of 2 or more.")
    if args.tta is not None or args.uncertainty:
        # a wrong --tta fails before the progress bar
        model_tta(model.config, tta, volume.voxel_size[-spatial:], args.uncertainty)
    with tqdm(unit="tile", dynamic_ncols=True) as bar, _naming_nonfinite(args.input):
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        predict_to_zarr(model, data, output, voxel_size=volume.voxel_size[-spatial:], offset=volume.offset[-spatial:],
                        tile_shape=args.tile, margin=args.margin, progress=progress, overwrite=args.overwrite,
                        batch_size=args.batch_size, tta=args.tta, uncertainty=args.uncertainty,
                        match_size=args.match_size)
    written = [h.name for h in model.model.heads] + (["uncertainty"] if args.uncertainty else [])
    print(f"wrote {', '.join(written)} to {output} with {model.describe()}{matched_note(output)} "
          f"(device: {describe_device()})")
    return 0


def _predict_zoo(args: argparse.Namespace, model, volume, output: Path) -> int:
    """A zoo model segtrain did not export: bioimageio.core's pipeline (its pre/post-processing and tiling)."""
    import numpy as np

    from segtrain.errors import InputError
    from segtrain.predict.model_io import default_device
    from segtrain.predict.package import predict_zoo_to_zarr

    given = [flag for flag, value in (("--tta", args.tta), ("--tile", args.tile), ("--margin", args.margin),
                                      ("--uncertainty", args.uncertainty or None)) if value is not None]
    if given:
        raise InputError(f"{', '.join(given)} do not apply to {model.describe()}: bioimageio.core runs it with its own "
                         "processing and tiling; leave them out.")
    data = volume.data
    if "c" in volume.axes and volume.axes.index("c") != 0:
        data = np.moveaxis(np.asarray(data), volume.axes.index("c"), 0)
    spatial = len([a for a in volume.axes if a != "c"])
    with _naming_nonfinite(args.input):
        predict_zoo_to_zarr(model, data, output, voxel_size=volume.voxel_size[-spatial:],
                            offset=volume.offset[-spatial:], axes=volume.axes, overwrite=args.overwrite,
                            device=default_device())
    print(f"wrote {', '.join(model.output_names)} to {output} with {model.describe()} (device: {describe_device()})")
    return 0


def matched_note(output: Path) -> str:
    """``; objects matched to the model's size: image zoomed 1.55x`` for a size-matched prediction."""
    import zarr

    factors = zarr.open_group(str(output), mode="r").attrs.get("object_scale")
    if not factors:
        return ""
    shown = ", ".join(f"{f:.2f}x" for f in factors[:8]) + (" ..." if len(factors) > 8 else "")
    return f"; objects matched to the model's size: image zoomed {shown}"


@contextlib.contextmanager
def _naming_nonfinite(path: str):
    """NaN or infinity found in the image while predicting: the sentence names the file."""
    from segtrain.io.read import NonFiniteError

    try:
        yield
    except NonFiniteError as error:
        raise error.named(path) from None
