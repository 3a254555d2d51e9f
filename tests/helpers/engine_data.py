"""Ground truth from ../shared/data and affinities derived from it, for the engine's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def em3d_gt(em3d_dir: Path, crop=(slice(0, 20), slice(0, 100), slice(0, 100))) -> np.ndarray:
    """A crop of the FIB-SEM ground truth, split into connected pieces (crops cut objects)."""
    import h5py
    from skimage.measure import label

    with h5py.File(em3d_dir / "train-gt.lzf.h5", "r") as f:
        gt = f["stack"][crop]
    return label(gt, background=0, connectivity=1).astype(np.uint64)


def isbi_gt(isbi_dir: Path, index: int = 0, size: int = 256) -> np.ndarray:
    """One ISBI 2012 slice crop: connected components of the interior (255) are the cells."""
    import imageio.v3 as iio
    from scipy import ndimage

    lab = iio.imread(isbi_dir / "label" / f"{index}.png")[:size, :size]
    cells, _ = ndimage.label(lab > 127)
    return cells.astype(np.uint64)


def noisy(affs: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    if sigma == 0:
        return affs
    rng = np.random.default_rng(seed)
    return np.clip(affs + rng.normal(0, sigma, affs.shape).astype(np.float32), 0, 1)
