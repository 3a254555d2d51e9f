"""Tiny configs and real crops for fast training tests (CPU, seconds); fixtures for tests/train and
tests/postprocess."""

from __future__ import annotations

import numpy as np
import pytest

from segtrain.config import config_from_dict


@pytest.fixture
def em_crop(em3d_dir):
    from segtrain.io import read_volume

    raw = np.asarray(read_volume(em3d_dir / "train-image.h5").data)
    gt = np.asarray(read_volume(em3d_dir / "train-gt.lzf.h5").data)
    return raw[:16, :48, :64], gt[:16, :48, :64], raw[35:43, :48, :48], gt[35:43, :48, :48]


def tiny_em_config(**train) -> object:
    values = {"preset": "em3d_quick", "name": "tiny",
              "data": {"patch_shape": [8, 32, 32], "val_patches": 2, "min_annotated_fraction": 0.1},
              "model": {"num_fmaps": 3, "fmap_inc_factor": 2, "lsd_sigma": 2.0},
              "train": {"max_steps": 12, "val_every": 6, "checkpoint_every": 6, "batch_size": 1,
                        "report_interval": 0.0, "lr": 3e-3, "warmup_steps": 0, **train}}
    return config_from_dict(values)


@pytest.fixture
def tiny_config():
    return tiny_em_config
