"""How `segtrain tune`'s rule for the merge threshold transfers to far data: for each affinity run
(or checkpoint) trained on the em3d far split's corner block, the unbiased search on the far
tuning part and on the far part, then each rule (the lowest threshold within SPLIT_BIAS of the
lowest VOI; 0 = the lowest VOI) chosen on one part and scored on the other, both ways.

    python benchmarks/threshold_rules.py RUN_OR_CKPT [RUN_OR_CKPT ...] [--bias 0 0.01 0.02 0.03 0.05]
    # another domain: a 2D ISBI 2012 model on the em3d far block's slices (resampled --zoom), slice by slice
    python benchmarks/threshold_rules.py --kind isbi-on-em3d ISBI_RUN [--zoom 2.5]

Prints one row per rule: mean VOI at the choice, mean and largest gap to the best in hindsight,
cases within 0.15 (docs/training.md, "Choosing the threshold for new data").
"""

from __future__ import annotations

import argparse
import sys

from far_apart import splits_for

from segtrain.predict import load_model
from segtrain.workflows.generalisation import rule_summary, threshold_rule_cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="affinity runs or checkpoints trained on the far split's corner block")
    parser.add_argument("--bias", type=float, nargs="+", default=[0.0, 0.01, 0.02, 0.03, 0.05])
    parser.add_argument("--tta", type=int, help="test-time transforms (default: the run's)")
    parser.add_argument("--kind", choices=["em3d", "isbi-on-em3d"], default="em3d", help="the far-apart split")
    parser.add_argument("--zoom", type=float, default=2.5, help="isbi-on-em3d: resampling of the em3d slices")
    args = parser.parse_args(argv)
    cases = []
    for run in args.runs:
        (split,) = splits_for(args.kind, load_model(run).config, args.zoom)
        cases.extend(threshold_rule_cases(run, split, tta=args.tta))
        print(f"{run}: searched", flush=True)
    print("\n| lowest threshold within (VOI) | cases | mean VOI chosen | mean gap | largest gap | within 0.15 |")
    print("|---|---|---|---|---|---|")
    for bias in args.bias:
        s = rule_summary(cases, bias)
        print(f"| {bias:.2f} | {s['cases']} | {s['mean_voi']:.3f} | {s['mean_gap']:.3f} | {s['max_gap']:.3f} | "
              f"{s['within']} / {s['cases']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
