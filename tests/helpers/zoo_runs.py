"""Tiny real runs for the BioImage.IO tests (tests/zoo, tests/plugin): a 2D instance run on cells2d-phase and a 3D
affinity+LSD run on em3d-fibsem, read from files (so run.json names their validation images),
trained once per module in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.tiny import tiny_em_config


def _shared(sub: str) -> Path:
    """The folder of ../shared/data (as tests/conftest.py's fixtures find it, usable in module scope)."""
    root = Path(os.environ.get("SEGTRAIN_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
    if not (root / sub).exists():
        if os.environ.get("CI"):
            pytest.fail(f"real data not found at {root / sub}; CI needs it")
        pytest.skip(f"real data not found at {root / sub} (set SEGTRAIN_SHARED_DATA to its folder)")
    return root / sub


def _train(root, config, train, val):
    from segtrain.train.run import TrainingRun

    run = TrainingRun(config, train, val, runs_root=root)
    assert run.run().done
    return run.run_dir


@pytest.fixture(scope="module")
def cells_run(tmp_path_factory):
    from segtrain.config import config_from_dict
    from segtrain.train.sources import FileSource

    cells = _shared("cells2d-phase") / "set01"
    config = config_from_dict({"preset": "wells2d_quick", "name": "zoo-cells",
                               "data": {"patch_shape": [64, 64], "val_patches": 1},
                               "model": {"task": "instances", "encoder_depth": 3, "encoder": "mobilenet_v2"},
                               "train": {"max_steps": 4, "val_every": 4, "batch_size": 2, "checkpoint_every": 4}})
    raw, labels = cells / "raw.tif", cells / "instances_ids.png"
    train = [FileSource(raw, labels, crop=[[0, 96], [0, 128]])]
    val = [FileSource(raw, labels, crop=[[96, 224], [0, 128]])]
    return _train(tmp_path_factory.mktemp("cells-runs"), config, train, val)


@pytest.fixture(scope="module")
def em_run(tmp_path_factory):
    from segtrain.train.sources import FileSource

    em = _shared("em3d-fibsem")
    raw, labels = em / "train-image.h5", em / "train-gt.lzf.h5"
    config = tiny_em_config(max_steps=4, val_every=4, checkpoint_every=4)
    train = [FileSource(raw, labels, crop=[[0, 16], [0, 48], [0, 64]])]
    val = [FileSource(raw, labels, crop=[[35, 51], [0, 64], [0, 64]])]
    return _train(tmp_path_factory.mktemp("em-runs"), config, train, val)


def repack(source: Path, target: Path, edit=None, drop=()) -> Path:
    """A copy of a package with its rdf.yaml edited and files left out."""
    import zipfile

    import yaml

    with zipfile.ZipFile(source) as package, zipfile.ZipFile(target, "w") as out:
        for name in package.namelist():
            if name in drop:
                continue
            data = package.read(name)
            if name == "rdf.yaml" and edit is not None:
                rdf = yaml.safe_load(data)
                edit(rdf)
                data = yaml.safe_dump(rdf).encode()
            out.writestr(name, data)
    return target
