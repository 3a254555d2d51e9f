"""Every quality config under benchmarks/quality/ trains through its first validation.

The configs are the ones the README quotes figures for; each is copied into tmp_path the way a
user would shorten it (fewer steps, an early validation, smaller patches, a small crop of each of
its sources) and trained with `segtrain train`. A new config in the folder is covered by itself.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from segtrain.cli import main
from segtrain.config import config_from_dict

QUALITY = Path(__file__).resolve().parents[2] / "benchmarks" / "quality"
CONFIGS = sorted(QUALITY.glob("*.yaml"))


def test_the_quality_folder_has_configs():
    assert len(CONFIGS) >= 3, f"no quality configs found in {QUALITY}"


def data_path(path: str, shared_data: Path) -> str:
    """A config's data path (relative to its YAML, e.g. ../../../shared/data/x) under ``shared_data``."""
    marker = "shared/data/"
    return str(shared_data / path.split(marker, 1)[1]) if marker in path else str((QUALITY / path).resolve())


def small_crop(source: dict, shape: tuple[int, ...], model_ndim: int) -> list[list[int]]:
    """The start of the source's own crop, a few slices / 96 pixels long: the same part of the data."""
    crop = source.get("crop") or []
    if len(shape) == 2:
        sizes = [96, 96]
    else:  # a volume, or a stack of 2D images (2 slices)
        sizes = [12, 48, 48] if model_ndim == 3 else [2, 96, 96]
    out = []
    for axis, (n, size) in enumerate(zip(shape, sizes)):
        start = crop[axis][0] if axis < len(crop) else 0
        out.append([start, min(start + size, n)])
    return out


def shortened(config_path: Path, shared_data: Path, tmp_path: Path) -> Path:
    """``config_path`` as a user would shorten it for a smoke run, written into ``tmp_path``."""
    from segtrain.io import read_volume

    values = yaml.safe_load(config_path.read_text())
    ndim = config_from_dict(values).ndim
    for split in ("train", "val"):
        for source in values["data"][split]:
            for key in ("raw", "labels", "known"):
                if source.get(key):
                    source[key] = data_path(source[key], shared_data)
            volume = read_volume(source["raw"], source.get("raw_dataset"))
            shape = tuple(n for n, axis in zip(volume.data.shape, volume.axes) if axis != "c")
            source["crop"] = small_crop(source, shape, ndim)
    values.setdefault("data", {}).update(patch_shape=[8, 32, 32] if ndim == 3 else [64, 64], val_patches=1)
    values["train"] = {**values.get("train", {}), "max_steps": 2, "val_every": 2, "checkpoint_every": 2,
                       "batch_size": 2, "warmup_steps": 0}
    path = tmp_path / config_path.name
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


@pytest.mark.parametrize("config_path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_quality_config_trains_through_its_first_validation(config_path, shared_data, tmp_path, capsys):
    config = shortened(config_path, shared_data, tmp_path)
    runs = tmp_path / "runs"
    assert main(["train", "--config", str(config), "--runs-root", str(runs)]) == 0, capsys.readouterr().err
    (run_dir,) = list(runs.iterdir())
    summary = json.loads((run_dir / "metrics.json").read_text())
    monitor = summary["monitor"]  # e.g. val/voi for affinities, val/f1 for instances
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    scored = [row for row in rows if row.get(monitor) not in (None, "")]
    assert scored, f"no {monitor} recorded in {run_dir / 'metrics.csv'}"
    assert all(math.isfinite(float(row[monitor])) for row in scored)
    assert math.isfinite(float(summary["best"])) and summary["steps"] == 2
    assert (run_dir / "checkpoints" / "final.ckpt").is_file()
    assert np.isfinite(float(scored[-1]["val/loss"]))
