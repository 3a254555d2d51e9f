"""`segtrain gui`: open napari with the segtrain dock widgets and the sample EM volume."""

from __future__ import annotations

import argparse

HELP = "open napari with the segtrain panels (and the sample volume, or the files given)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", help="files or folders to open (any format segtrain reads)")
    parser.add_argument("--no-sample", action="store_true", help="do not load the sample volume")


def run(args: argparse.Namespace) -> int:
    import napari

    from segtrain.io import read_volumes
    from segtrain.plugin.launcher import open_viewer

    for path in args.paths:  # report unreadable input in one line before the window opens
        read_volumes(path)
    open_viewer(load_sample=not args.no_sample, show=True, paths=args.paths)
    napari.run()
    return 0
