"""Intensity normalisation shared by training and prediction: the same mapping to about [0, 1]."""

from __future__ import annotations

import numpy as np


def intensity_range(array, mode: str = "percentile") -> tuple[float, float]:
    """``(low, high)`` that :func:`normalize` maps to 0 and 1.

    ``percentile``: 1st and 99.8th percentile of (a strided subsample of) the array;
    ``dtype``: 0 and the integer type's maximum (1 for floats); ``none``: 0 and 1.
    """
    if mode == "none":
        return 0.0, 1.0
    dtype = np.dtype(array.dtype)
    if mode == "dtype":
        return (0.0, float(np.iinfo(dtype).max)) if np.issubdtype(dtype, np.integer) else (0.0, 1.0)
    size = int(np.prod(array.shape))
    step = max(1, int(round((size / 2_000_000) ** (1 / max(1, len(array.shape))))))
    sub = np.asarray(array[tuple(slice(None, None, step) for _ in array.shape)], dtype=np.float32)
    if sub.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(sub, [1.0, 99.8])
    if high <= low:
        high = low + 1.0
    return float(low), float(high)


def normalize(array: np.ndarray, low: float, high: float) -> np.ndarray:
    return ((np.asarray(array, dtype=np.float32) - low) / (high - low)).astype(np.float32, copy=False)
