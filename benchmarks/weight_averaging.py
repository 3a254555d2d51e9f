"""Weight averaging on the em3d far split: each run's last checkpoint against the mean weights of
its last 2 and last 3 periodic checkpoints (stochastic weight averaging over checkpoints, a "model
soup" of one run), each tuned and scored as `benchmarks/far_apart.py em3d --run` does
(docs/training.md "Ensembles").

    python benchmarks/weight_averaging.py RUN [RUN ...] --out runs/averaged [--last 2 3] [--json out.jsonl]

The averaged models are written as copies of the run folders (config and records, no TensorBoard)
under --out, named RUN-mean-K, whose one checkpoint (step-N, N the newest step) holds the mean weights.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from far_apart import main as far_apart

from segtrain.runs import RunFolder

#: run.json key of an averaged copy: the checkpoints it averages (and the mark that this script made it)
AVERAGED_FROM = "averaged_from"


def periodic_checkpoints(run: Path) -> list[Path]:
    """The run's step-N checkpoints, oldest first."""
    infos = [i for i in RunFolder(run).checkpoints() if i.readable and i.name.startswith("step-")]
    return [i.path for i in sorted(infos, key=lambda i: i.step)]


def averaged_copy(run: Path, checkpoints: list[Path], out: Path) -> Path:
    """A copy of ``run`` whose only checkpoint holds the mean of ``checkpoints``' floating-point
    weights (the newest one's integer buffers, step and config); returns that checkpoint."""
    states = [torch.load(p, map_location="cpu", weights_only=False) for p in checkpoints]
    newest = states[-1]
    newest["state_dict"] = {k: (sum(s["state_dict"][k] for s in states) / len(states)
                                if v.is_floating_point() else v) for k, v in newest["state_dict"].items()}
    for key in ("optimizer_states", "lr_schedulers", "loops", "callbacks"):  # weights only: nothing to resume
        newest.pop(key, None)
    source, copy = RunFolder(run), RunFolder(out)
    if out.exists():  # only an averaged copy this script made is replaced
        if not copy.info().get(AVERAGED_FROM):
            raise SystemExit(f"{out} exists and is not an averaged copy made here; choose another --out.")
        shutil.rmtree(out)
    skip = {source.checkpoints_dir.name, source.tensorboard_dir.name}
    shutil.copytree(run, out, ignore=lambda _folder, names: [n for n in names if n in skip])
    copy.set_info(**{AVERAGED_FROM: [str(p) for p in checkpoints]})
    copy.checkpoints_dir.mkdir()
    target = copy.checkpoint_path(checkpoints[-1].name)
    torch.save(newest, target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="affinity runs trained on the far split's corner block")
    parser.add_argument("--out", type=Path, required=True, help="folder for the averaged copies")
    parser.add_argument("--last", type=int, nargs="+", default=[2, 3], help="how many of the last checkpoints to average")
    parser.add_argument("--json", help="append one JSON line per model (far_apart.py's)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    json = ["--json", args.json] if args.json else []
    for run in args.runs:
        steps = periodic_checkpoints(run)
        if not steps:
            print(f"{run} has no step-N checkpoints", file=sys.stderr)
            return 2
        far_apart(["em3d", "--run", str(steps[-1]), *json])
        for k in args.last:
            if len(steps) >= k:
                far_apart(["em3d", "--run", str(averaged_copy(run, steps[-k:], args.out / f"{run.name}-mean-{k}")),
                           *json])
    return 0


if __name__ == "__main__":
    sys.exit(main())
