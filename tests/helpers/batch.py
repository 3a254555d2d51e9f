"""A tiny trained cells run and a plate folder made from the shared cells images, for the batch
tests (core, CLI, panels): ten downscaled real images named as wells, one corrupt TIFF, one text file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_RUN: dict[str, Path] = {}


def cells_crops(cells_dir: Path, step: int = 8) -> list[np.ndarray]:
    """The ten shared phase-contrast images, every ``step``-th pixel (128 x 128 at 8)."""
    import imageio.v3 as iio

    return [np.asarray(iio.imread(cells_dir / f"set{i:02d}" / "raw.tif"))[::step, ::step] for i in range(1, 11)]


def plate_folder(folder: Path, cells_dir: Path) -> Path:
    """``A01.tif`` .. ``A10.tif`` (the cells images, 128 x 128), ``A11.tif`` (not a TIFF inside)
    and ``notes.txt``."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(cells_crops(cells_dir), start=1):
        tifffile.imwrite(folder / f"A{i:02d}.tif", image)
    (folder / "A11.tif").write_bytes(b"II*\x00" + b"not an image" * 20)
    (folder / "notes.txt").write_text("plate 7, fixed at 24 h\n")
    return folder


def tiny_cells_run(root: Path, cells_dir: Path, steps: int = 30) -> Path:
    """A masks run trained ``steps`` steps on two downscaled cells images with their ground truth
    (made once per test session)."""
    if "run" in _RUN:
        return _RUN["run"]
    import imageio.v3 as iio

    from segtrain.config import config_from_dict
    from segtrain.train import TrainingRun
    from segtrain.train.sources import ArraySource

    def pair(name):
        raw = np.asarray(iio.imread(cells_dir / name / "raw.tif"))[::4, ::4]
        gt = np.asarray(iio.imread(cells_dir / name / "instances_ids.png"))[::4, ::4].astype(np.uint32)
        return ArraySource(raw, gt, name=name)

    config = config_from_dict({
        "preset": "wells2d_quick", "name": "tiny-cells",
        "data": {"patch_shape": [64, 64], "val_patches": 1},
        "model": {"task": "masks", "encoder_depth": 3},
        "segment": {"min_size": 5, "min_seed_distance": 3},
        "predict": {"tile_shape": None, "margin": None},
        "train": {"max_steps": steps, "val_every": steps, "checkpoint_every": steps, "batch_size": 2,
                  "report_interval": 0.0, "threads": 1, "lr": 3e-3, "warmup_steps": 0}})
    run = TrainingRun(config, [pair("set01")], [pair("set02")], runs_root=root)
    run.run()
    _RUN["run"] = Path(run.run_dir)
    return _RUN["run"]
