"""`segtrain segment`: a prediction -> segmentation, with the run's own settings.

Affinities: fragments, the waterz merge tree and, at the threshold the run's validation chose (or
``--threshold``), the segmentation. Probabilities (masks / instances): instance labels. The
settings come from ``--run``, else from what `segtrain predict` recorded in the prediction, else
the defaults; options given here override them. The work is :mod:`segtrain.postprocess`, the same
calls the Segment panel and validation make.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

HELP = "segment a prediction (affinities: fragments, merge tree, segmentation; probabilities: instances) " \
       "with the run's settings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from segtrain.commands._engine import add_setting_options

    parser.add_argument("prediction", help="output of `segtrain predict` (or affinities (C, z, y, x) / (C, y, x), "
                        "probabilities) in any format segtrain reads")
    parser.add_argument("out", help="output folder: fragments, merge_tree.npz, segmentation")
    parser.add_argument("--dataset", help="array inside the file (default: the one the prediction's task needs)")
    add_setting_options(parser)
    parser.add_argument("--format", default=".zarr", choices=[".zarr", ".h5", ".tif"],
                        help="file format of fragments and segmentation (default .zarr)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def run(args: argparse.Namespace) -> int:
    from segtrain.commands._engine import (
        Step,
        log,
        make_dir,
        output_dir,
        read_prediction,
        write_labels,
    )
    from segtrain.postprocess import check_affinities, instances, segment_affinities
    from segtrain.tasks import is_probabilities

    ext = args.format
    source = (args.prediction, args.dataset)
    out = output_dir(args.out, args.overwrite, (f"fragments{ext}", "merge_tree.npz", f"segmentation{ext}"),
                     inputs=[source])
    with Step(f"reading {args.prediction}"):
        prediction = read_prediction(args.prediction, args.dataset, args)
    settings, volume = prediction.settings, prediction.volume
    log(f"segment settings from {prediction.origin}")
    summary = {"settings": dataclasses.asdict(settings), "settings_from": prediction.origin, "outputs": {}}
    voxel_size = tuple(volume.voxel_size)
    if is_probabilities(prediction.kind):
        with Step(f"instances ({prediction.spec.task})"):
            labels = instances(prediction.array, settings, prediction.spec)
        summary["outputs"]["segmentation"] = str(write_labels(
            make_dir(out) / f"segmentation{ext}", labels, volume, "segmentation", args.overwrite,
            attrs={"kind": "segmentation", "task": prediction.spec.task, "settings": summary["settings"]},
            inputs=[source]))
        summary["objects"] = int(labels.max()) if labels.size else 0
        print(json.dumps(summary, indent=2))
        return 0
    check_affinities(prediction.array, prediction.spec.ndim)  # one clear sentence before any work
    with Step(f"fragments ({settings.fragments}) and merge tree (waterz, {settings.scoring})"):
        tree = segment_affinities(prediction.array, settings, voxel_size=voxel_size,
                                  model_ndim=prediction.spec.ndim)
    if tree.n_present == 0:  # nothing to segment: no output, not an empty one reported as success
        from segtrain.errors import InputError

        raise InputError(f"The affinities in {args.prediction} give no fragments (no voxel is inside an object at "
                         f"boundary threshold {settings.boundary_threshold}); check that they are affinities "
                         "(1 = same object) or lower --boundary-threshold.")
    tree.attrs.update(source=str(args.prediction))
    summary["outputs"]["fragments"] = str(write_labels(make_dir(out) / f"fragments{ext}", tree.fragments, volume,
                                                       "fragments", args.overwrite, inputs=[source]))
    summary["outputs"]["merge_tree"] = str(tree.save(out / "merge_tree.npz", overwrite=args.overwrite))
    summary.update(fragments=tree.n_present, merges=int(len(tree.scores)))
    if settings.threshold is not None:
        seg = tree.segmentation(settings.threshold)
        summary["outputs"]["segmentation"] = str(write_labels(
            out / f"segmentation{ext}", seg, volume, "segmentation", args.overwrite,
            attrs={"kind": "segmentation", "task": "affinities", "model_ndim": prediction.spec.ndim,
                   "threshold": settings.threshold,
                   "settings": summary["settings"]}, inputs=[source]))
        summary.update(threshold=settings.threshold, segments=tree.n_segments(settings.threshold))
    else:
        log("no threshold was chosen on validation data (and none given): choose one with `segtrain sweep "
            f"--tree {out / 'merge_tree.npz'} --gt GT`, then `segtrain export` or --threshold")
    print(json.dumps(summary, indent=2))
    return 0
