"""Augmentation that never misaligns image and target.

Geometric transforms (in-plane zoom, flips, in-plane 90-degree rotations, elastic warps) are
applied to raw, labels, known mask and weights together, before targets are computed from the transformed labels; intensity
transforms (scale/shift, gamma, noise, blur, missing sections) touch raw only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segtrain.config import AugmentConfig
from segtrain.train.sources import Sample


def _geometric(array: np.ndarray | None, flips, k: int, spatial_from: int) -> np.ndarray | None:
    if array is None:
        return None
    for axis in flips:
        array = np.flip(array, axis=spatial_from + axis)
    if k:
        array = np.rot90(array, k=k, axes=(array.ndim - 2, array.ndim - 1))
    return np.ascontiguousarray(array)


def _elastic(sample: Sample, magnitude: float, spacing: int, rng: np.random.Generator) -> Sample:
    """Smooth random in-plane (y, x) displacements, the same for every array of the sample:
    linear interpolation for raw, nearest for labels, known mask and weights."""
    shape = sample.labels.shape
    plane = shape[-2:]
    coarse = [max(2, int(np.ceil(s / spacing)) + 1) for s in plane]
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    coords = list(grids)
    for axis in (-2, -1):
        field = rng.uniform(-magnitude, magnitude, coarse).astype(np.float32)
        field = ndimage.zoom(field, [p / c for p, c in zip(plane, coarse)], order=3)[: plane[0], : plane[1]]
        coords[axis] = coords[axis] + field  # broadcast over z in 3D
    coords = np.stack(coords)

    def warp(array, order):
        return ndimage.map_coordinates(array, coords, order=order, mode="reflect")

    raw = np.stack([warp(c, 1) for c in sample.raw]).astype(np.float32)
    labels = warp(sample.labels, 0)
    known = warp(sample.known.astype(np.uint8), 0).astype(bool)
    weights = None if sample.weights is None else warp(sample.weights, 0)
    return Sample(raw, labels, known, weights)


def zoom_factor(config: AugmentConfig, rng: np.random.Generator) -> float:
    """How much a patch's objects are enlarged (> 1) or shrunk (< 1): log-uniform in
    ``[1 / (1 + scale), 1 + scale]``; 1 when ``config.scale`` is 0."""
    if config.scale <= 0:
        return 1.0
    bound = float(np.log1p(config.scale))
    return float(np.exp(rng.uniform(-bound, bound)))


def source_shape(patch_shape, factor: float) -> tuple[int, ...]:
    """The shape to draw from a source so that zooming by ``factor`` in-plane (the last two axes)
    gives ``patch_shape``."""
    shape = list(patch_shape)
    for axis in (-2, -1):
        shape[axis] = max(2, int(round(shape[axis] / factor)))
    return tuple(shape)


def zoomed(sample: Sample, patch_shape) -> Sample:
    """``sample`` resampled in-plane to ``patch_shape``: linear for raw, nearest for labels, known
    mask and weights, so every array stays aligned with the others."""
    patch_shape = tuple(patch_shape)
    if sample.labels.shape == patch_shape:
        return sample
    factors = [p / s for p, s in zip(patch_shape, sample.labels.shape)]

    def resample(array, order):
        out = ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)
        return out[tuple(slice(0, p) for p in patch_shape)]

    raw = np.stack([resample(c, 1) for c in sample.raw]).astype(np.float32)
    labels = resample(sample.labels, 0)
    known = resample(sample.known.astype(np.uint8), 0).astype(bool)
    weights = None if sample.weights is None else resample(sample.weights, 0)
    return Sample(raw, labels, known, weights)


def augment(sample: Sample, config: AugmentConfig, rng: np.random.Generator) -> Sample:
    """A randomly transformed copy of ``sample`` (raw ``(C, *spatial)``)."""
    ndim = sample.labels.ndim
    flips = [axis for axis in range(ndim) if config.flip and rng.random() < 0.5]
    square = sample.labels.shape[-1] == sample.labels.shape[-2]
    k = int(rng.integers(4)) if config.rotate90 and square else 0
    raw = _geometric(sample.raw, flips, k, 1)
    labels = _geometric(sample.labels, flips, k, 0)
    known = _geometric(sample.known, flips, k, 0)
    weights = _geometric(sample.weights, flips, k, 0)
    if config.elastic > 0:
        warped = _elastic(Sample(raw, labels, known, weights), config.elastic, config.elastic_spacing, rng)
        raw, labels, known, weights = warped.raw, warped.labels, warped.known, warped.weights

    if rng.random() < config.probability:
        raw = raw.astype(np.float32, copy=True)
        if config.intensity_scale:
            raw *= rng.uniform(1 - config.intensity_scale, 1 + config.intensity_scale)
        if config.intensity_shift:
            raw += rng.uniform(-config.intensity_shift, config.intensity_shift)
        if config.gamma:
            gamma = rng.uniform(1 - config.gamma, 1 + config.gamma)
            low, high = float(raw.min()), float(raw.max())
            if high > low:
                raw = ((raw - low) / (high - low)) ** gamma * (high - low) + low
        if config.blur and rng.random() < 0.3:
            sigma = rng.uniform(0, config.blur)
            for c in range(raw.shape[0]):
                raw[c] = ndimage.gaussian_filter(raw[c], sigma)
        if config.noise:
            raw += rng.normal(0, rng.uniform(0, config.noise), raw.shape).astype(np.float32)
        if ndim == 3 and config.missing_section and rng.random() < config.missing_section:
            z = int(rng.integers(raw.shape[1]))
            raw[:, z] = 0.0 if rng.random() < 0.5 else float(raw.mean())
    return Sample(raw.astype(np.float32, copy=False), labels, known, weights)
