"""Score a trained run on its validation data (the config's data.val), or cross-validate a config.

    python benchmarks/quality_eval.py runs/quality/q-em3d-fibsem-<timestamp> [--json OUT]
    python benchmarks/quality_eval.py --folds 3 --config benchmarks/quality/em3d_fibsem.yaml \
        --out runs/folds-em3d [--steps N] [--tta 8]

Cross-validation (``--folds K``, :mod:`segtrain.evaluate.folds`): the config's annotated data
(train + val) is cut into K parts (one volume: slabs along z; several images: groups of whole
images); per fold a run trains on the other K-1 parts (``OUT/foldI``; a finished one is reused, an
unfinished one resumed), `segtrain tune` chooses its post-processing on those same parts, and the
held-out part is scored (1) at the chosen settings, (2) at the best threshold for the chosen
fragments and scoring (affinities) and (3) at the best settings of the whole search, both chosen
on the held-out part itself ("best in hindsight"). With ``--tta N`` every fold is also tuned and
scored on test-time augmented predictions. Figures per fold, mean and spread: OUT/folds.json.

A run that `segtrain tune` has tuned (``postprocess.yaml``) is scored with the tuned settings
("run settings") and with the settings it was trained with ("untuned").

Affinity models: VOI (split, merge) and ARAND after fragments + waterz agglomeration at the
threshold a sweep against the validation ground truth chooses. Mask/instance models: Dice and
instance F1 at IoU 0.5.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from segtrain.predict import load_model
from segtrain.predict.model_io import config_of_checkpoint, read_checkpoint
from segtrain.tasks import task_of
from segtrain.train.sources import annotated_volumes
from segtrain.workflows.tuning import score_settings

AFFINITY_VARIANTS = {
    "watershed, boundary 0.3": {"fragments": "watershed", "boundary_threshold": 0.3},
    "watershed, boundary 0.7": {"fragments": "watershed", "boundary_threshold": 0.7},
    "waterz fragments": {"fragments": "waterz"},
    "watershed fragments": {"fragments": "watershed"},
}
MASK_VARIANTS = {"probability threshold 0.4": {"probability_threshold": 0.4},
                 "probability threshold 0.6": {"probability_threshold": 0.6}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="run folder or checkpoint")
    parser.add_argument("--folds", type=int, help="cross-validate --config with this many folds")
    parser.add_argument("--config", help="config to cross-validate (its data.train + data.val are folded)")
    parser.add_argument("--out", help="folder for the folds' runs and folds.json")
    parser.add_argument("--steps", type=int, help="override train.max_steps of every fold's run")
    parser.add_argument("--zoom", type=float, action="append", default=None,
                        help="also score the held-out images resampled by this factor (2D; e.g. 0.6: cells at 0.6x "
                             "their size, as denser cultures or another magnification give); repeat for several")
    parser.add_argument("--fold", type=int, action="append",
                        help="run only this fold (0-based; repeat for several): separate processes may run "
                             "different folds into the same --out, folds.json keeps them all")
    parser.add_argument("--json", help="also write the scores here")
    parser.add_argument("--tta", type=int, default=None, help="test-time augmentation: transforms averaged "
                        "(default: the run's predict.tta)")
    parser.add_argument("--checkpoint", default="newest",
                        help="which checkpoint of the run: newest (the default everywhere), best, or a file name")
    args = parser.parse_args(argv)
    if args.folds is not None:
        if not (args.config and args.out):
            parser.error("--folds needs --config and --out")
        from segtrain.workflows.crossval import cross_validate

        summary = cross_validate(args.config, args.folds, args.out, steps=args.steps, tta=args.tta, folds=args.fold,
                                 zooms=(1.0, *(args.zoom or [])))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=1)
        return 0
    if args.run is None:
        parser.error("name a run, or --folds K --config FILE --out DIR")
    loaded = load_model(args.run, which=args.checkpoint)
    config = loaded.config
    variants = {"run settings": {}}
    if loaded.folder is not None and loaded.folder.postprocess():
        # the run settings came from `segtrain tune`; also score the settings it was trained with
        untuned = config_of_checkpoint(read_checkpoint(loaded.checkpoint), loaded.checkpoint).segment
        variants["untuned (training config)"] = dataclasses.asdict(untuned)
    variants.update(AFFINITY_VARIANTS if task_of(config).agglomerates else MASK_VARIANTS)
    scores, seconds = score_settings(loaded, annotated_volumes(config.data.val, config), variants, tta=args.tta)
    for name, mean in scores.items():
        print(f"{name:28s} " + "  ".join(f"{k} {v:.4f}" for k, v in mean.items()), flush=True)
    results = {"checkpoint": str(loaded.checkpoint), "step": loaded.step, "task": config.task, "tta": args.tta,
               "variants": scores, "predict_seconds": [round(t, 2) for t in seconds]}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
