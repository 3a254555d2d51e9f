"""`segtrain export-model`: write a run as a BioImage.IO model package, tested before it is written."""

from __future__ import annotations

import argparse

HELP = "export a run as a BioImage.IO model package (.zip), tested with bioimageio.core before it is written"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder")
    parser.add_argument("output", help="the package to write (.zip)")
    parser.add_argument("--checkpoint", default="newest", metavar="WHICH",
                        help="which checkpoint of the run: newest (default), best, or a file name in checkpoints/")
    parser.add_argument("--name", help="the model's name (default: task, dimensions and run name)")
    parser.add_argument("--description", help="one paragraph on the model (default: made from the run)")
    parser.add_argument("--author", action="append", default=[], metavar="NAME",
                        help="an author (repeat for several; default: your login name)")
    parser.add_argument("--license", default=None, metavar="SPDX",
                        help="SPDX licence identifier of the weights (default: MIT; choose the one your data allows)")
    parser.add_argument("--cite", action="append", default=[], metavar="TEXT",
                        help="a citation text (repeat for several, each with its --doi; default: the U-Net paper, and "
                             "the affinity / LSD papers for such models)")
    parser.add_argument("--doi", action="append", default=[], metavar="DOI",
                        help="the DOI (or URL) of each --cite, in the same order")
    parser.add_argument("--tag", action="append", default=[], metavar="TAG", help="a tag (repeat for several)")
    parser.add_argument("--test-image", metavar="IMAGE",
                        help="image to cut the test tensors and cover from (default: the run's validation image)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing .zip file")


def run(args: argparse.Namespace) -> int:
    from segtrain.zoo.export import DEFAULT_LICENSE, PackageInfo, export_run

    info = PackageInfo(name=args.name, description=args.description, authors=args.author, license=args.license,
                       cite=args.cite, doi=args.doi, tags=args.tag)
    if args.license is None:
        print(f"note: licence {DEFAULT_LICENSE} (the default); give --license to choose another")
    output = export_run(args.run, args.output, info, which=args.checkpoint, test_image=args.test_image,
                        overwrite=args.overwrite, progress=lambda text: print(f"{text} ..."))
    print(f"wrote {output}: passed bioimageio.core's test_model (pytorch_state_dict and torchscript weights)")
    return 0
