"""`segtrain selftrain`: self-training from a YAML config with a ``selftrain`` section."""

from __future__ import annotations

import argparse

from segtrain.commands._numbers import non_negative_int, positive_int

HELP = "self-train: train, pseudo-label the unlabelled images, retrain (the config's selftrain section)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="YAML config naming the labelled data (data.train) and the unlabelled images "
                        "(selftrain.unlabelled); not needed with --resume")
    parser.add_argument("--resume", metavar="RUN",
                        help="continue this self-training run: its finished iterations are reused, an "
                        "interrupted one continues from its last checkpoint (the run's own config is used)")
    parser.add_argument("--runs-root", metavar="DIR", help="folder for run folders (default: $SEGTRAIN_RUNS, "
                        "else segtrain/runs in the user data folder: ~/.local/share/segtrain/runs on Linux)")
    parser.add_argument("--name", help="run name (default: the config's name)")
    parser.add_argument("--iterations", type=non_negative_int, metavar="N", help="override selftrain.iterations")
    parser.add_argument("--steps", type=positive_int, metavar="N", help="override the training steps per iteration")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from segtrain.config import load_config
    from segtrain.errors import ConfigError
    from segtrain.train.selftrain import IterationResult, SelfTraining

    resume = getattr(args, "resume", None)
    iterations, steps = getattr(args, "iterations", None), getattr(args, "steps", None)
    if resume is not None:
        if iterations is not None or steps is not None:
            raise ConfigError("--iterations and --steps cannot change a self-training run being resumed; it "
                              "continues with its own config (leave them out, or start a new run).")
        training = SelfTraining(args.config, resume=resume)
        print(f"run folder: {training.run_dir}")
        print(training.plan.describe(), flush=True)
    else:
        if not args.config:
            raise ConfigError("Give --config FILE to start self-training, or --resume RUN to continue a run.")
        config = load_config(args.config)
        if iterations is not None:
            config.selftrain.iterations = iterations
        if steps is not None:
            if steps < 1:
                raise ConfigError(f"--steps must be positive, not {steps}.")
            config.selftrain.steps = steps
        training = SelfTraining(config, runs_root=args.runs_root, name=args.name)
        print(f"run folder: {training.run_dir}")
    n = training.config.selftrain.iterations
    bar = None
    interrupted = False
    try:
        for item in training.reports():
            if isinstance(item, IterationResult):
                if bar is not None:
                    bar.close()
                    bar = None
                print(item.describe(), flush=True)
                continue
            if bar is None:
                index = item.iteration[0] if item.iteration else 0
                bar = tqdm(total=training.steps, unit="step", dynamic_ncols=True,
                           desc=f"iteration {index}/{n}", leave=False)
            bar.update(max(0, item.step - bar.n))
            if "loss" in item.losses:
                bar.set_postfix({"loss": f"{item.losses['loss']:.4f}"}, refresh=False)
    except KeyboardInterrupt:
        interrupted = True
        print("stopping: the current iteration saves a final checkpoint...")
        training.stop()
    finally:
        if bar is not None:
            bar.close()
    done = [r for r in training.results if not r.stopped]
    print(f"{len(done)} of {n + 1} iterations done; iteration folders in {training.run_dir / 'iterations'}")
    return 130 if interrupted else 0
