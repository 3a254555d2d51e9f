"""Fine-tuning from proofreading corrections, against the same training time without them.

    python benchmarks/finetune_corrections.py --task cells [--parent-steps 600 --steps 300] [--json OUT]
    python benchmarks/finetune_corrections.py --task em3d  [--parent-steps 400 --steps 200] [--json OUT]
    ... [--parent RUN] [--scopes confirmed,edited] [--seeds 0,1] [--lr-scale X] [--radius R]
    python benchmarks/finetune_corrections.py --task cells --shift invert --scopes all,confirmed,ground-truth
    ... --task cells --shift invert --scopes confirmed --parent P --repeat F_RUN B_RUN   # a second round
    python benchmarks/finetune_corrections.py --task isbi-em3d --scopes confirmed --seeds 0,1 \
        [--correction-weight 3] [--membranes 0.5] [--scopes ground-truth]   # a real shift: ISBI -> FIB-SEM

``--shift invert``: the unlabelled and held-out cells images (set02-04, set09-10) are shown as
another instrument would (intensities inverted) while P learns on set01 as it is: new data unlike
the training data, the case correcting and fine-tuning is for. ``--task isbi-em3d`` is a real shift
(another instrument and tissue): see :func:`isbi_em3d`.

For the cells and em3d tasks:

1. **P** (parent): trained on the labelled data only. cells2d-phase: set01, validated on set08;
   em3d-fibsem: z 0-9, x 0-149, validated on z 0-9, x 150-199 (a held-out piece of the labelled
   slab, which no model of this script trains on). Every model is used at its final checkpoint
   (one cosine schedule), so validation chooses no checkpoint.
2. P predicts the unlabelled data (cells: set02-04; em3d: z 10-34) and segments it with its own
   settings (cells: instance settings tuned on set01 with :func:`tune_postprocessing`, the
   function ``segtrain tune`` uses; em3d: the merge threshold a sweep on the held-out piece of the
   slab chooses, as the run's validation does). The oracle (:mod:`segtrain.proofread.oracle`) makes
   ``--edits`` edits per image / volume against the ground truth, and ``corrections_annotation``
   turns them into annotation (unknown elsewhere), once per ``--scopes`` entry: ``confirmed`` (the
   neighbourhood of what each edit decided, the product's default) and ``edited`` (the edited
   segments whole, the previous default). :func:`annotation_summary` says how right each is.
3. **F[scope]**: fine-tuned from P (``init_from``) on the labelled data (full labels) + the
   corrections (known = annotated), ``--steps`` steps, at the fine-tuning learning rate and warm-up
   every fine-tuning run gets (``train.finetune_lr_scale``, ``train.finetune_warmup_steps``;
   ``--lr-scale 1 --warmup W`` gives the schedule of training from scratch).
4. **B** (control): the same ``--steps`` steps from P on the labelled data alone, same schedule.
5. P, F, B scored on held-out data: cells instance F1 at IoU 0.5 on set09 and set10, each model's
   instance settings tuned on set01 only; em3d VOI on z 35-49 at the threshold chosen on the
   held-out piece of the labelled slab, and the best-in-hindsight VOI of the sweep on z 35-49.

F and B are trained once per ``--seeds`` entry (``train.seed``: patches and augmentation); P once.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from segtrain.config import config_from_dict
from segtrain.predict import load_model
from segtrain.proofread.annotation import RADIUS
from segtrain.train import ArraySource
from segtrain.workflows.finetuning import (
    GROUND_TRUTH,
    FineTuned,
    correct_images,
    fine_tune_runs,
    fine_tuning_plan,
    instance_f1,
    next_round,
    score_affinity_runs,
    score_instance_runs,
    settings_at_threshold,
    tuned_settings,
    voi,
)
from segtrain.workflows.training import run_to_end, train_sources

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def log(line: str) -> None:
    print(f"  {line}", flush=True)


def train(config, sources, val, runs_root, init_from=None) -> tuple[Path, float]:
    ended = run_to_end(train_sources(config, sources, val, runs_root, init_from=init_from), log)
    return ended.run_dir, ended.seconds


def run_config(config, args, name: str, seed: int):
    """The config of one F or B run: ``--steps`` steps, training seed ``seed``, and ``--lr-scale`` /
    ``--warmup`` where given."""
    c = config(args.steps, f"{name}-s{seed}")
    c.train.seed = seed
    if args.lr_scale is not None:
        c.train.finetune_lr_scale = args.lr_scale
    if args.warmup is not None:
        c.train.finetune_warmup_steps = args.warmup
    return c


def fine_tuned(out: dict, args, config, labelled, corrections: dict, val, parent, task: str, what: str,
               sources: str) -> dict[str, Path]:
    """Every F (the parent fine-tuned on the labelled data + one scope's corrections) and B (the same
    steps on the labelled data alone, the control), recorded in ``out``; ``{key: run folder}``."""
    plans = fine_tuning_plan(
        parent, lambda scope, seed: run_config(config, args, f"ft-{task}-{'B' if scope is None else 'F-' + scope}", seed),
        labelled, corrections, args.seeds, args.scopes, control=not args.no_control)
    return train_plans(out, plans, val, args, what, sources)


def train_plans(out: dict, plans, val, args, what: str | None = None, sources: str | None = None) -> dict[str, Path]:
    """Train the fine-tuning plans, printing each as it starts (``what``: the labelled data's name;
    without it the parent's); records in ``out`` (``sources``: the data of an F), ``{key: run}``."""
    runs = {}
    for report in fine_tune_runs(plans, val, args.runs_root, log):
        if isinstance(report, FineTuned):
            out[report.key] = report.record()
            if what is not None:
                out[report.key]["sources"] = what if report.scope is None else sources
            runs[report.key] = report.run_dir
        elif what is None:
            print(f"{report.key}: from {report.parent.name}", flush=True)
        else:
            print(f"{report.key}: {what}" + ("" if report.scope is None else f" + corrections ({report.scope})") +
                  (" (control)" if report.scope is None else ""), flush=True)
    return runs


def summary_rows(out: dict) -> list[str]:
    return ["P", *[k for k in out if k.startswith(("B", "F[", "F2["))]]


# --- cells2d-phase --------------------------------------------------------------------------------

# --shift: the images a user brings after training (the unlabelled set02-04 and the held-out
# set09-10) come from another microscope than the labelled set01
SHIFTED = ("set02", "set03", "set04", "set09", "set10")
UNLABELLED = ("set02", "set03", "set04")
HELD_OUT = ("set09", "set10")


def shifted(raw: np.ndarray, shift: str | None) -> np.ndarray:
    """``raw`` as another instrument would show it. ``invert``: dark and bright swapped (the phase
    halo becomes a dark rim), which no training augmentation produces."""
    if shift is None:
        return raw
    if shift == "invert":
        wide = raw.astype(np.int64)
        return (wide.max() + wide.min() - wide).astype(raw.dtype)
    raise ValueError(f"unknown shift {shift!r}")


def _cells_image(name: str, shift: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    import imageio.v3 as iio

    raw = np.asarray(iio.imread(DATA / "cells2d-phase" / name / "raw.tif"))
    gt = np.asarray(iio.imread(DATA / "cells2d-phase" / name / "instances_ids.png")).astype(np.uint32)
    return shifted(raw, shift if name in SHIFTED else None), gt


def _correct_cells(loaded, settings, images, args, scopes, **kwargs):
    """The oracle's corrections of set02-04 (at most ``--edits`` per image), weight 1/3 each (three
    corrected images weigh as much as set01)."""
    return correct_images(loaded, {n: images[n] for n in UNLABELLED}, args.edits, scopes, instance_f1,
                          settings=settings, tta=1, background=True, kind=args.oracle, weight=1 / 3,
                          radius=args.radius, outline=args.outline, ring=not args.no_ring, **kwargs)


def _print_oracle(what: str, record: dict) -> None:
    print(f"  {what}: F1 {record['before']:.3f} -> {record['after']:.3f} after {record['edits']} edits "
          f"{record['ops']}; annotated {record['annotation']}", flush=True)


def cells(args) -> dict:
    def config(steps, name):
        return config_from_dict({"preset": "wells2d_quick", "name": name, "predict": {"tta": 1},
                                 "train": {"max_steps": steps, "val_every": steps, "checkpoint_every": steps,
                                           "threads": args.threads}})

    images = {n: _cells_image(n, args.shift) for n in ("set01", *UNLABELLED, "set08", *HELD_OUT)}
    labelled = lambda: ArraySource(*images["set01"], name="set01")
    val = lambda: [ArraySource(*images["set08"], name="set08")]
    out: dict = {"task": "cells", "edits_per_image": args.edits, "validation": "set08 (monitoring only; final "
                 "checkpoints used)", "tuning": "instance settings tuned on set01 per model",
                 "radius": args.radius, "outline": args.outline, "ring": not args.no_ring,
                 "shift": args.shift and f"{args.shift} on {', '.join(SHIFTED)}"}
    print("P: set01 only", flush=True)
    parent, seconds = (Path(args.parent), None) if args.parent else \
        train(config(args.parent_steps, "ft-cells-P"), [labelled()], val(), args.runs_root)
    out["P"] = {"run": str(parent), "steps": args.parent_steps, "seconds": seconds}
    loaded = load_model(parent)
    settings, tuned = tuned_settings(loaded, *images["set01"])
    print(f"  P tuned on set01: {tuned.describe()} {tuned.settings}", flush=True)
    corrections: dict[str, list] = {scope: [] for scope in args.scopes}
    annotations: dict[str, dict] = {scope: {} for scope in args.scopes}  # scope -> image -> annotation
    oracle = {}
    if args.evaluate:  # score the runs of earlier calls again (same parent), train nothing
        runs = {}
        for path in args.evaluate:
            earlier = json.loads(Path(path).read_text())
            for key, record in earlier.items():
                if key.startswith(("B", "F[")):
                    name = f"{key} ({Path(path).stem})"
                    out[name] = {k: record[k] for k in ("run", "steps", "seconds", "seed", "scope") if k in record}
                    runs[name] = Path(record["run"])
    for report in _correct_cells(loaded, settings, images, args, args.scopes) if not args.evaluate else ():
        oracle[report.name] = report.record()
        for scope in args.scopes:
            corrections[scope].append(report.sources[scope])
            if scope != GROUND_TRUTH:
                annotations[scope][report.name] = report.annotations[scope]
        if report.round is not None:
            _print_oracle(report.name, oracle[report.name])
    out["oracle"] = oracle
    if args.corrections_only:
        return out
    if args.repeat:
        runs = second_round(out, args, config, images, labelled, val, annotations["confirmed"])
    elif not args.evaluate:
        runs = fine_tuned(out, args, config, labelled, corrections, val, parent, "cells", "set01",
                          "set01 (weight 1) + set02-04 corrections (weight 1/3 each): half the patches each")
    held_out = {n: images[n] for n in HELD_OUT}
    for report in score_instance_runs({"P": parent, **runs}, images["set01"], held_out):
        key = report.key
        out[key].update(report.record())
        print(f"  {key}: F1 {out[key]['f1']}, at P's settings {out[key]['f1_parent_settings']}, hindsight "
              f"{out[key]['f1_hindsight']}", flush=True)
    print("\ncells2d-phase, instance F1 at IoU 0.5 on set09 / set10 / mean: settings tuned on set01 (each model), "
          "P's settings, best in hindsight (mean)")
    print(f"{'model':<40}{'steps':>6}{'set09':>7}{'set10':>7}{'mean':>7}  {'at P':>7}{'hindsight':>10}")
    for key in summary_rows(out):
        r = out[key]
        print(f"{key:<40}{r['steps']:>6}" + "".join(f"{r['f1'][n]:>7.3f}" for n in ("set09", "set10", "mean")) +
              f"  {r['f1_parent_settings']['mean']:>7.3f}{r['f1_hindsight']['f1']:>10.3f}")
    return out


def second_round(out: dict, args, config, images, labelled, val, first_annotations: dict) -> dict[str, Path]:
    """Correct, fine-tune, repeat: the oracle corrects the round-1 fine-tuned run's results on
    set02-04 again (``--edits`` more per image), the new confirmed corrections are added to the first
    round's (``corrections_annotation(existing=...)``, as the Proofread panel adds to the annotation
    layer), and that run is fine-tuned on set01 + both rounds; the control trains the same steps more
    on set01 alone. ``{key: run}`` of both rounds' runs."""
    first, control = (Path(r) for r in args.repeat)
    loaded = load_model(first)
    settings, _ = tuned_settings(loaded, *images["set01"])
    sources, oracle = [], {}
    for report in _correct_cells(loaded, settings, images, args, ["confirmed"], existing=first_annotations,
                                 source_name="{image}-corrections-rounds-1-2"):
        oracle[report.name] = {**report.round.summary(),
                               "annotation": {"confirmed, both rounds": report.summaries["confirmed"]}}
        sources.append(report.sources["confirmed"])
        _print_oracle(f"round 2, {report.name}", oracle[report.name])
    out["oracle_round2"] = oracle
    runs = {"B (round 1)": control, "F[confirmed] (round 1)": first}
    for key, run in runs.items():
        out[key] = {"run": str(run), "steps": args.steps}
    plans = next_round(first, control, lambda tag, seed: run_config(config, args, f"ft-cells-{tag}", seed),
                       labelled, sources, args.seeds[0])
    runs.update(train_plans(out, plans, val, args))
    return runs


# --- em3d-fibsem ----------------------------------------------------------------------------------

def em3d(args) -> dict:
    import h5py

    with h5py.File(DATA / "em3d-fibsem" / "train-image.h5", "r") as f:
        raw = f["stack"][:]
    with h5py.File(DATA / "em3d-fibsem" / "train-gt.lzf.h5", "r") as f:
        gt = f["stack"][:].astype(np.uint64)

    def config(steps, name):
        return config_from_dict({"preset": "em3d_quick", "name": name, "predict": {"tta": args.tta},
                                 "data": {"patch_shape": [8, 64, 64]},
                                 "train": {"max_steps": steps, "val_every": steps, "checkpoint_every": steps,
                                           "warmup_steps": min(100, steps // 4), "threads": args.threads}})

    def labelled():  # z 0-9, x 0-149
        return ArraySource(raw[:10, :, :150], gt[:10, :, :150], name="z0-9,x0-149")

    val_raw, val_gt = raw[:10, :, 150:], gt[:10, :, 150:]

    def val():  # z 0-9, x 150-199: held out of every model's training
        return [ArraySource(val_raw, val_gt, name="z0-9,x150-199")]

    out: dict = {"task": "em3d", "edits": args.edits, "tta": args.tta, "radius": args.radius,
                 "membranes": args.membranes,
                 "labelled": "z 0-9, x 0-149", "validation": "z 0-9, x 150-199 (threshold choice; final "
                 "checkpoints used)", "corrections": "z 10-34", "test": "z 35-49"}

    print("P: z 0-9 only", flush=True)
    parent, seconds = (Path(args.parent), None) if args.parent else \
        train(config(args.parent_steps, "ft-em3d-P"), [labelled()], val(), args.runs_root)
    out["P"] = {"run": str(parent), "steps": args.parent_steps, "seconds": seconds}
    loaded = load_model(parent)
    settings, threshold, val_voi = settings_at_threshold(loaded, val_raw, val_gt)
    print(f"  P: threshold {threshold} on the held-out piece (VOI {val_voi:.3f}); the run's own: "
          f"{loaded.config.segment.threshold}", flush=True)
    (report,) = correct_images(loaded, {"z10-34": (raw[10:35], gt[10:35])}, args.edits, args.scopes, voi,
                               settings=settings, threshold=threshold, lower_is_better=True, kind=args.oracle,
                               radius=args.radius, sampling=loaded.config.data.voxel_size,
                               boundary_background=args.membranes)
    out["oracle"] = oracle = report.record()
    corrections = {scope: [source] for scope, source in report.sources.items()}
    print(f"  z 10-34: VOI {oracle['before']:.3f} -> {oracle['after']:.3f} after {oracle['edits']} edits "
          f"{oracle['ops']}; annotated {oracle['annotation']}", flush=True)
    if args.corrections_only:
        return out
    runs = fine_tuned(out, args, config, labelled, corrections, val, parent, "em3d", "z 0-9",
                      "z 0-9 (weight 1) + z 10-34 corrections (weight 1): half the patches each")
    test = raw[35:50], gt[35:50].astype(np.uint32)
    for scores in score_affinity_runs({"P": parent, **runs}, (val_raw, val_gt), test):
        key = scores.key
        out[key].update(scores.record())
        print(f"  {key}: VOI {out[key]['voi']:.3f} at {scores.threshold:.2f}, best {out[key]['best_voi']:.3f}",
              flush=True)
    print(f"\nem3d-fibsem, VOI on z 35-49 (tta {args.tta}; threshold chosen on z 0-9, x 150-199)")
    print(f"{'model':<30}{'steps':>7}{'train s':>9}{'thr':>6}{'VOI':>8}{'split':>8}{'merge':>8}"
          f"{'best VOI':>10}{'at':>6}")
    for key in summary_rows(out):
        r = out[key]
        print(f"{key:<30}{r['steps']:>7}{r['seconds'] or float('nan'):>9.0f}{r['threshold']:>6.2f}{r['voi']:>8.3f}"
              f"{r['voi_split']:>8.3f}{r['voi_merge']:>8.3f}{r['best_voi']:>10.3f}{r['best_threshold']:>6.2f}")
    return out


# --- a real shift: ISBI 2012 (serial-section TEM) -> em3d-fibsem (FIB-SEM) slices -------------------

#: slices of the far split's corner block (never tuned on or scored) that the oracle corrects
CORRECTED_SLICES = (10, 25, 40)


def isbi_em3d(args) -> dict:
    """P learns ISBI 2012 slices 0-14 (2D affinities); the images the user brings are FIB-SEM
    slices of another instrument and tissue (em3d-fibsem at ``--zoom``, as far_apart.py's
    isbi-on-em3d split shows them). The oracle corrects ``--images`` slices of the far split's
    corner block; every model is tuned on the far block's z 0-24 and scored on its z 25-49 (2D VOI
    per slice), at the settings chosen there (as `segtrain tune`) and in hindsight."""
    from far_apart import isbi_entry, splits_for

    from segtrain.config import preset
    from segtrain.splits import resample
    from segtrain.train.sources import annotated_volumes, sources_from_config
    from segtrain.workflows.generalisation import evaluate_far

    (block,) = splits_for("em3d", preset("em3d_quick"), args.zoom)  # its corner block: the sections to correct
    (split,) = splits_for("isbi-on-em3d", None, args.zoom)  # its far block at the zoom: tuned and scored
    isbi = lambda lo, hi: isbi_entry(crop=[[lo, hi]])

    def config(steps, name):
        c = config_from_dict({"preset": "isbi2d_quick", "name": name, "predict": {"tta": 1},
                              "train": {"max_steps": steps, "val_every": steps, "checkpoint_every": steps,
                                        "threads": args.threads}})
        c.data.train, c.data.val = [isbi(0, 15)], [isbi(15, 20)]
        return c

    base = config(args.parent_steps, "ft-isbi-P")
    labelled = lambda: sources_from_config([isbi(0, 15)], base.data)[0]
    val = lambda: sources_from_config([isbi(15, 20)], base.data)
    (corner,) = annotated_volumes(block.train, base)
    slices = CORRECTED_SLICES[:args.images]
    images = {}
    for z in slices:
        zoomed = resample({"raw": corner["raw"][z], "labels": corner["labels"][z], "known": None}, args.zoom)
        images[f"em3d z{z}"] = zoomed["raw"], zoomed["labels"].astype(np.uint32)
    out: dict = {"task": "isbi-em3d", "edits_per_image": args.edits, "zoom": args.zoom, "radius": args.radius,
                 "correction_weight": args.correction_weight, "membranes": args.membranes,
                 "labelled": "ISBI 2012 slices 0-14", "validation": "ISBI slices 15-19 (P's threshold for the "
                 "oracle's segmentation; final checkpoints used)",
                 "corrections": f"em3d-fibsem corner block {block.train[0].crop}, slices {list(slices)}, "
                                f"zoom {args.zoom}", "scored": split.description}
    print("P: ISBI slices 0-14", flush=True)
    parent, seconds = (Path(args.parent), None) if args.parent else \
        train(base, [labelled()], val(), args.runs_root)
    out["P"] = {"run": str(parent), "steps": args.parent_steps, "seconds": seconds}
    loaded = load_model(parent)
    (isbi_val,) = annotated_volumes([isbi(15, 20)], loaded.config)
    settings, threshold, val_voi = settings_at_threshold(loaded, isbi_val["raw"], isbi_val["labels"])
    print(f"  P: threshold {threshold} on ISBI 15-19 (VOI {val_voi:.3f})", flush=True)
    corrections: dict[str, list] = {scope: [] for scope in args.scopes}
    oracle = {}
    for report in correct_images(loaded, images, args.edits, args.scopes, voi, settings=settings,
                                 threshold=threshold, lower_is_better=True, kind=args.oracle,
                                 weight=args.correction_weight / len(images), radius=args.radius,
                                 boundary_background=args.membranes):
        oracle[report.name] = report.record()
        for scope in args.scopes:
            corrections[scope].append(report.sources[scope])
        if report.round is not None:
            r = oracle[report.name]
            print(f"  {report.name}: VOI {r['before']:.3f} -> {r['after']:.3f} after {r['edits']} edits {r['ops']}; "
                  f"annotated {r['annotation']}", flush=True)
    out["oracle"] = oracle
    if args.corrections_only:
        return out
    runs = fine_tuned(out, args, config, labelled, corrections, val, parent, "isbi", "ISBI 0-14",
                      f"ISBI 0-14 (weight 1) + {len(images)} corrected em3d slices (weight "
                      f"{args.correction_weight:g}/{len(images)} each)")
    for key, run in {"P": parent, **runs}.items():
        report = evaluate_far(run, split, tta=1, log=log)
        out[key].update({"voi": report.chosen, "hindsight": report.hindsight, "own": report.own,
                         "tuned": report.tuned, **report.chosen_detail})
        print(f"  {key}: VOI {report.chosen:.3f} chosen ({report.tuned}), hindsight {report.hindsight:.3f}, "
              f"own settings {report.own:.3f}", flush=True)
    print(f"\nem3d-fibsem far block at zoom {args.zoom}, 2D VOI per slice: chosen on z 0-24, scored on z 25-49")
    print(f"{'model':<30}{'steps':>7}{'chosen':>8}{'split':>8}{'merge':>8}{'hindsight':>10}{'own':>8}")
    for key in summary_rows(out):
        r = out[key]
        print(f"{key:<30}{r['steps']:>7}{r['voi']:>8.3f}{r.get('voi_split', float('nan')):>8.3f}"
              f"{r.get('voi_merge', float('nan')):>8.3f}{r['hindsight']:>10.3f}{r['own']:>8.3f}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("cells", "em3d", "isbi-em3d"), required=True)
    parser.add_argument("--parent-steps", type=int, help="steps of P (cells 600, em3d 400)")
    parser.add_argument("--steps", type=int, help="steps of F and of B (cells 300, em3d 200)")
    parser.add_argument("--edits", type=int, default=25, help="oracle edits per image / volume (at most)")
    parser.add_argument("--oracle", choices=("score", "voxels"), default="score",
                        help="score: keep only edits that improve F1 / VOI (stop when none does); voxels: the "
                        "edit that puts most voxels right (the previous stops' oracle)")
    parser.add_argument("--tta", type=int, default=1, help="em3d: test-time transforms in every prediction")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads while training")
    parser.add_argument("--runs-root", default="runs/finetune_corrections")
    parser.add_argument("--parent", help="reuse this run as P instead of training it")
    parser.add_argument("--scopes", default="confirmed,edited",
                        help="corrections_annotation scopes, one F per scope (comma-separated); cells: "
                        "'ground-truth' fine-tunes on the corrected images' full ground truth instead (an upper bound)")
    parser.add_argument("--radius", type=float, default=RADIUS, help="the confirmed scope's radius (voxels)")
    parser.add_argument("--membranes", type=float, default=None,
                        help="em3d, isbi-em3d: corrected object voxels whose predicted boundary exceeds this become "
                        "background, as membranes are in the ground truth (corrections_annotation's "
                        "boundary_background)")
    parser.add_argument("--outline", type=float, default=0,
                        help="cells, scope confirmed: object pixels this close to the segmentation's background "
                        "stay unknown (corrections_annotation's outline)")
    parser.add_argument("--no-ring", action="store_true",
                        help="cells, scope confirmed: no background ring around the confirmed objects")
    parser.add_argument("--seeds", default="0", help="training seeds of F and B (comma-separated)")
    parser.add_argument("--lr-scale", type=float, help="train.finetune_lr_scale of F and B (default: the config's)")
    parser.add_argument("--warmup", type=int, help="train.finetune_warmup_steps of F and B (default: the config's)")
    parser.add_argument("--no-control", action="store_true",
                        help="train no B (its figures from an earlier call with the same parent and seeds)")
    parser.add_argument("--evaluate", nargs="+", metavar="JSON",
                        help="cells: score the B and F runs of earlier calls' JSON files again (same parent), train nothing")
    parser.add_argument("--shift", choices=("invert",),
                        help="cells: the unlabelled and held-out images come from another instrument (set02-04 "
                        "and set09-10 transformed; set01 as it is): the case fine-tuning on corrections is for")
    parser.add_argument("--repeat", nargs=2, metavar=("F_RUN", "B_RUN"),
                        help="cells, with --parent P: a second round of correcting and fine-tuning F_RUN (an "
                        "F[confirmed] of an earlier call from P) on set02-04, against B_RUN (that call's control) "
                        "trained as long on set01")
    parser.add_argument("--corrections-only", action="store_true",
                        help="stop after the oracle's corrections (with --parent: their statistics only)")
    parser.add_argument("--images", type=int, default=len(CORRECTED_SLICES),
                        help=f"isbi-em3d: em3d slices the oracle corrects (1-{len(CORRECTED_SLICES)})")
    parser.add_argument("--zoom", type=float, default=2.5, help="isbi-em3d: resampling of the em3d slices")
    parser.add_argument("--correction-weight", type=float, default=1.0,
                        help="isbi-em3d: the corrected slices' weight together, against the labelled data's 1 "
                        "(1: half the patches; 3: three quarters)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    defaults = {"cells": (600, 300), "em3d": (400, 200), "isbi-em3d": (400, 200)}[args.task]
    args.parent_steps = args.parent_steps or defaults[0]
    args.steps = args.steps or defaults[1]
    args.scopes = [s for s in args.scopes.split(",") if s]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.shift and args.task != "cells":
        parser.error("--shift applies to --task cells")
    if args.repeat and (args.task != "cells" or not args.parent or args.scopes != ["confirmed"]):
        parser.error("--repeat needs --task cells, --parent P (the first round's parent) and --scopes confirmed")
    start = time.perf_counter()
    results = {"cells": cells, "em3d": em3d, "isbi-em3d": isbi_em3d}[args.task](args)
    results["total_seconds"] = time.perf_counter() - start
    results["command"] = "python benchmarks/finetune_corrections.py " + " ".join(argv or __import__("sys").argv[1:])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
