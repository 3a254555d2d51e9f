"""How `segtrain tune`'s rule for the merge threshold transfers to far data: for each affinity run
(or checkpoint) trained on the em3d far split's corner block, the unbiased search on the far
tuning part and on the far part, then each rule (the lowest threshold within SPLIT_BIAS of the
lowest VOI; 0 = the lowest VOI) chosen on one part and scored on the other, both ways.

    python benchmarks/threshold_rules.py RUN_OR_CKPT [RUN_OR_CKPT ...] [--bias 0 0.01 0.02 0.03 0.05]

Prints one row per rule: mean VOI at the choice, mean and largest gap to the best in hindsight,
cases within 0.15 (docs/training.md, "Choosing the threshold for new data").
"""

from __future__ import annotations

import argparse
import sys

from far_apart import em3d_entry

from segtrain.predict import load_model
from segtrain.splits import em_far_split
from segtrain.workflows.generalisation import rule_summary, threshold_rule_cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="affinity runs or checkpoints trained on the far split's corner block")
    parser.add_argument("--bias", type=float, nargs="+", default=[0.0, 0.01, 0.02, 0.03, 0.05])
    parser.add_argument("--tta", type=int, help="test-time transforms (default: the run's)")
    args = parser.parse_args(argv)
    cases = []
    for run in args.runs:
        split = em_far_split(em3d_entry(), (50, 100, 200), load_model(run).config.model)
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
