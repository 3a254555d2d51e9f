"""The `segtrain` command line.

Each subcommand lives in its own module under :mod:`segtrain.commands` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Errors a user can cause
(:class:`segtrain.errors.SegtrainError`) are printed as one line and give exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from segtrain.errors import SegtrainError, os_error

SUBCOMMANDS = ["gui", "train", "selftrain", "predict", "tune", "segment", "sweep", "evaluate", "export", "runs",
               "scale", "segment-batch", "measure", "export-model"]


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the problem and where the help is (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="segtrain",
        description="Train segmentation networks on microscopy images and tune the result. "
        "With no subcommand, opens the napari GUI.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"segtrain.commands.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui", *(argv or [])])
    try:
        return int(args._run(args) or 0)
    except SegtrainError as error:
        print(f"segtrain {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a read-only folder: one sentence, not a traceback
        sentence = os_error(error)
        if sentence is None:
            raise
        print(f"segtrain {args.command}: error: {sentence}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"segtrain {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
