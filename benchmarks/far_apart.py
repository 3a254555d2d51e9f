"""Quality on data the model has never seen: far-apart splits (segtrain.splits), a table of the
far part's score at the settings chosen on the tuning part, at the run's own settings and in
hindsight (segtrain.workflows.generalisation).

    # em3d-fibsem: train the config on the corner block (or score a run trained on it), far block
    python benchmarks/far_apart.py em3d --config benchmarks/quality/em3d_far.yaml --out runs/far [--run RUN]
    # cells2d-phase: leave sets out (train set01-06, tune set07-08, score set09-10), the held-out
    # sets resampled (0.58x) and re-contrasted, and natively; with and without size matching
    python benchmarks/far_apart.py cells --config benchmarks/quality/cells2d_far.yaml --out runs/far \
        [--run RUN] [--match-size]
    # another domain: a 2D EM model (ISBI) tuned and scored on em3d-fibsem's far block, slice by slice
    python benchmarks/far_apart.py isbi-on-em3d --run RUN --zoom 2.5

Results: one JSON line per report in --json (appended).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from segtrain.config import SourceConfig, load_config
from segtrain.splits import HELD_OUT_DISHES, Acquisition, domain_split, em_far_split, sets_far_split
from segtrain.workflows.generalisation import far_apart_reports

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def em3d_entry() -> SourceConfig:
    return SourceConfig(raw=str(DATA / "em3d-fibsem" / "train-image.h5"), labels=str(DATA / "em3d-fibsem" / "train-gt.lzf.h5"))


def isbi_entry(crop: list | None = None) -> SourceConfig:
    """ISBI 2012's slices (membrane masks as labels), all of them or ``crop``."""
    return SourceConfig(raw=str(DATA / "em2d-isbi2012" / "image"), labels=str(DATA / "em2d-isbi2012" / "label"),
                        labels_kind="mask", crop=crop)


def cells_entries() -> list[SourceConfig]:
    return [SourceConfig(raw=str(DATA / "cells2d-phase" / f"set{i:02d}" / "raw.tif"),
                         labels=str(DATA / "cells2d-phase" / f"set{i:02d}" / "instances_ids.png")) for i in range(1, 11)]


def splits_for(kind: str, config, zoom: float):
    if kind == "em3d":
        return [em_far_split(em3d_entry(), (50, 100, 200), config.model)]
    if kind == "cells":
        far = sets_far_split(cells_entries(), n_tune=2, n_test=2, acquisitions=HELD_OUT_DISHES, name="cells-sets-far")
        return [far, far.with_acquisitions([Acquisition()], name="cells-sets-native")]
    if kind == "isbi-on-em3d":
        from segtrain.config import preset

        block = em_far_split(em3d_entry(), (50, 100, 200), preset("em3d_quick").model)
        return [domain_split([isbi_entry()], block.tune, block.test, zoom=zoom, name="isbi-on-em3d")]
    raise SystemExit(f"unknown split kind {kind!r}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["em3d", "cells", "isbi-on-em3d"])
    parser.add_argument("--config", help="config to train on the split's training part")
    parser.add_argument("--run", help="a run already trained on the split's training part")
    parser.add_argument("--out", default="runs/far", help="folder for the runs trained here")
    parser.add_argument("--tta", type=int, action="append", help="test-time transforms (repeat; default the run's)")
    parser.add_argument("--match-size", action="store_true",
                        help="also score the run's own settings on predictions zoomed to its object size")
    parser.add_argument("--zoom", type=float, default=2.5, help="isbi-on-em3d: resampling of the em3d slices")
    parser.add_argument("--json", help="append one JSON line per report here")
    args = parser.parse_args(argv)
    config = load_config(args.config) if args.config else None
    model_config = config if config is not None else None
    if model_config is None and args.kind == "em3d":
        from segtrain.predict import load_model

        model_config = load_model(args.run).config
    splits = splits_for(args.kind, model_config, args.zoom)
    rows = []
    for report in far_apart_reports(config, splits, args.out, run=args.run, tta_values=args.tta or [None],
                                    match_size=args.match_size):
        rows.append(report)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(dataclasses.asdict(report)) + "\n")
    print(f"\n| split | run (step) | TTA | {rows[0].metric} chosen on the far tuning part | run's own settings | "
          "own settings, size-matched | hindsight | tuned |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        matched = r.chosen_detail.get("own_matched")
        print(f"| {r.split} | {Path(r.run).name} ({r.step}) | {r.tta} | {r.chosen:.3f} | {r.own:.3f} | "
              f"{'-' if matched is None else f'{matched:.3f}'} | {r.hindsight:.3f} | {r.tuned} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
