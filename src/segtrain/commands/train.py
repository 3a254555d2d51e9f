"""`segtrain train`: train a network from a YAML config (data files named inside it)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from segtrain.commands._numbers import positive_int
from segtrain.tasks import task_of

HELP = "train a network from a YAML config (or continue a run with --resume)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="YAML config naming the data files (may start from a preset: 'preset: em3d_quick')")
    parser.add_argument("--resume", metavar="RUN", help="run folder or checkpoint to continue from")
    parser.add_argument("--init-from", metavar="RUN",
                        help="start a new run from this run folder's (or checkpoint's) weights: fine-tuning, "
                        "e.g. on corrections; the new run records it as its parent")
    parser.add_argument("--runs-root", metavar="DIR", help="folder for run folders (default: $SEGTRAIN_RUNS, "
                        "else segtrain/runs in the user data folder: ~/.local/share/segtrain/runs on Linux)")
    parser.add_argument("--name", help="run name (default: the config's name)")
    parser.add_argument("--max-steps", type=positive_int, metavar="N", help="override train.max_steps")
    parser.add_argument("--run-dir", metavar="DIR",
                        help="use this run folder instead of a new <name>-<timestamp> one; give the same "
                        "folder to every process when torchrun or several machines start them")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from segtrain.config import load_config
    from segtrain.errors import ConfigError
    from segtrain.train import TrainingRun
    from segtrain.train.run import env_rank_zero
    from segtrain.workflows.training import selftrain_root, selftraining_wanted

    if args.resume is not None and selftrain_root(args.resume) is not None:
        from segtrain.commands import selftrain

        if args.max_steps is not None or args.init_from is not None or args.run_dir is not None:
            raise ConfigError(f"{args.resume} is a self-training run: resume it without --max-steps, --init-from "
                              "or --run-dir (it continues with its own config).")
        print(f"{args.resume} is a self-training run: resuming it (as `segtrain selftrain --resume`)")
        args.iterations = args.steps = None
        return selftrain.run(args)
    config = load_config(args.config)
    if selftraining_wanted(config, args.resume, args.init_from, args.run_dir):
        from segtrain.commands import selftrain

        print(f"the config has a selftrain section ({config.selftrain.iterations} iterations): self-training "
              "(as `segtrain selftrain`)")
        if args.max_steps is not None:
            args.steps = args.max_steps
        return selftrain.run(args)
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise ConfigError(f"--max-steps must be positive, not {args.max_steps}.")
        config.train.max_steps = args.max_steps
    # Lightning starts extra devices' processes by running this command line again: allowed only when
    # this process's command line is `segtrain train ...` (not when main() is called from other code)
    multiprocess = sys.argv[1:2] == ["train"]
    training = TrainingRun(config, runs_root=args.runs_root, name=args.name, resume=args.resume,
                           run_dir=args.run_dir, multiprocess=multiprocess,
                           init_from=args.init_from)
    quiet = not env_rank_zero()  # other ranks of a multi-process run: rank 0 speaks for all
    if not quiet:
        print(f"run folder: {training.run_dir}")
        print(f"device: {training.device.describe()}")
        for note in (training.resume_note, training.fine_tune_note):
            if note:
                print(note)
    last = None
    interrupted = False
    with tqdm(total=config.train.max_steps, unit="step", dynamic_ncols=True, disable=quiet) as bar, \
            _terminate_as_interrupt():
        try:
            for last in training.reports():
                bar.update(max(0, last.step - bar.n))
                postfix = {k: f"{v:.4f}" for k, v in last.losses.items() if k == "loss"}
                postfix.update({k: f"{v:.4g}" for k, v in last.metrics.items() if k in ("voi", "f1", "dice")})
                bar.set_postfix(postfix, refresh=False)
                if last.metrics and last.checkpoint is not None and not last.done and not quiet:
                    bar.write(f"step {last.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in last.metrics.items()))
        except KeyboardInterrupt:
            interrupted = True
            if not quiet:
                bar.write("stopping: saving a final checkpoint...")
            training.stop()
    final = training.final_checkpoint
    code = 130 if interrupted else 0  # the shell's code for Ctrl-C; the run ended with final.ckpt
    if quiet:
        return code
    status = last.message if last is not None and last.done else "stopped"
    step = last.step if last else 0
    if final is not None:  # a stopped run's last report may be a step behind what it saved
        from segtrain.runs import checkpoint_step

        step = checkpoint_step(final) or step
    print(f"{status} at step {step}; checkpoints in {training.folder.checkpoints_dir}"
          + (f" (final: {final.name})" if final else ""))
    if last is not None and last.metrics:
        print("last validation: " + ", ".join(f"{k} {v:.4g}" for k, v in last.metrics.items()))
    if task_of(config).foreground:
        print(f"next: `segtrain tune {training.run_dir}` chooses the threshold, seed and size settings "
              "for the best instance F1 (validation above used the config's settings)")
    return code


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a cluster's time limit, `kill`) stops training like Ctrl-C: after the current step,
    with a final checkpoint to resume from."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
