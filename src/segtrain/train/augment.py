"""Augmentation that never misaligns image and target.

Geometric transforms (in-plane zoom, flips, in-plane 90-degree rotations, elastic warps, shifted
sections) are applied to raw, labels, known mask and weights together, before targets are computed
from the transformed labels; intensity transforms (scale/shift, gamma, noise, blur, missing and
low-contrast sections, illumination gradients, halos) touch raw only.

The augmentations against domain shift (all off by default) and gunpowder's, their reference:

- ``section_wise`` (3D): intensity scale, shift and gamma drawn per z-section, as IntensityAugment's
  ``z_section_wise``. Gunpowder scales about the mean (``mean + (a - mean) * scale + shift``) and
  clips to [0, 1]; here each section gets this module's per-patch formula (``a * scale + shift``, no
  clipping) and its own gamma (over the section's own range).
- ``shifted_section`` / ``max_shift`` (3D): gunpowder's misalignment is ElasticAugment's
  ``prob_shift`` / ``max_misalign`` (not DefectAugment): a probability per section that it and all
  following sections move in-plane, offsets accumulating, applied to every array (raw and labels
  alike). Here: a probability per patch, one z drawn in ``1..Z-1``, one integer offset per axis in
  ``[-max_shift, max_shift]`` for the sections from z on; raw, labels, known mask and weights move
  together (the targets, computed afterwards, see the misalignment). Gunpowder reads a larger region
  so nothing is uncovered; here the uncovered strip repeats the edge and is marked unknown (no loss).
  ElasticAugment's ``prob_slip`` (one section alone) is not present.
- ``low_contrast_section`` / ``contrast_scale`` (3D): DefectAugment's ``prob_low_contrast`` /
  ``contrast_scale``: each section with that probability becomes ``mean + (a - mean) * contrast_scale``
  (its own mean). Gunpowder draws missing and low-contrast from one number (at most one defect per
  section); here they are drawn independently, and ``missing_section`` is one section per patch.
- ``illumination`` (light microscopy, 2D/3D; no gunpowder node): raw times ``1 + g`` with ``g`` a
  random linear + quadratic in-plane gradient (the same for every section), ``max |g|`` drawn in
  ``[0, illumination]`` per patch.
- ``halo`` / ``halo_sigma`` (phase contrast; no gunpowder node): ``raw + a * (raw - gaussian(raw,
  halo_sigma))`` in-plane, ``a`` drawn in ``[0, halo]``: an unsharp-mask overshoot, a bright rim on
  the bright side of every edge (around dark cells) and a dark one on the dark side. It is not an
  optical model of phase halos.

Those touching raw only are applied, like the others, with ``probability``; ``shifted_section`` is
geometric and, like the elastic warp, is not gated by it. Each draws from the generator only when it
is on, so a config without them gives the same patches for the same seed as before.
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


def _shift_sections(array: np.ndarray | None, z0: int, dy: int, dx: int) -> np.ndarray | None:
    """``array`` (``(..., Z, Y, X)``) with the sections from ``z0`` on moved by ``(dy, dx)`` in-plane;
    the uncovered strip repeats the edge."""
    if array is None:
        return None
    ys = np.clip(np.arange(array.shape[-2]) - dy, 0, array.shape[-2] - 1)
    xs = np.clip(np.arange(array.shape[-1]) - dx, 0, array.shape[-1] - 1)
    out = array.copy()
    out[..., z0:, :, :] = array[..., z0:, :, :][..., ys[:, None], xs[None, :]]
    return out


def _shifted(sample: Sample, max_shift: int, rng: np.random.Generator) -> Sample:
    """The sections of a 3D sample from a random z (1..Z-1) on shifted by one random in-plane offset,
    raw, labels, known mask and weights together; the uncovered strip is marked unknown."""
    depth, height, width = sample.labels.shape
    z0 = int(rng.integers(1, depth))
    dy, dx = (int(v) for v in rng.integers(-max_shift, max_shift + 1, 2))
    known = _shift_sections(sample.known, z0, dy, dx)
    ys, xs = np.arange(height) - dy, np.arange(width) - dx
    uncovered = ((ys < 0) | (ys >= height))[:, None] | ((xs < 0) | (xs >= width))[None, :]
    known[z0:] &= ~uncovered
    return Sample(_shift_sections(sample.raw, z0, dy, dx), _shift_sections(sample.labels, z0, dy, dx), known,
                  _shift_sections(sample.weights, z0, dy, dx))


def illumination_gradient(shape, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth in-plane field ``g`` of ``shape`` (y, x): a random linear + quadratic polynomial of the
    coordinates scaled so that ``max |g| == amplitude`` (zeros if it came out flat)."""
    u = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None]
    v = np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :]
    c = rng.uniform(-1, 1, 5).astype(np.float32)
    field = c[0] * u + c[1] * v + c[2] * u * u + c[3] * v * v + c[4] * u * v
    peak = float(np.abs(field).max())
    return (field * (amplitude / peak) if peak > 0 else np.zeros_like(field)).astype(np.float32)


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
    if (ndim == 3 and config.shifted_section and config.max_shift and labels.shape[0] > 1
            and rng.random() < config.shifted_section):
        shifted = _shifted(Sample(raw, labels, known, weights), config.max_shift, rng)
        raw, labels, known, weights = shifted.raw, shifted.labels, shifted.known, shifted.weights

    if rng.random() < config.probability:
        raw = raw.astype(np.float32, copy=True)
        # per z-section draws broadcast over (C, Z, Y, X); size None = one draw, as before
        sections = ndim == 3 and config.section_wise
        size = raw.shape[1] if sections else None

        def per_section(value):
            return np.asarray(value, np.float32).reshape(1, -1, 1, 1) if sections else value

        if config.intensity_scale:
            raw *= per_section(rng.uniform(1 - config.intensity_scale, 1 + config.intensity_scale, size))
        if config.intensity_shift:
            raw += per_section(rng.uniform(-config.intensity_shift, config.intensity_shift, size))
        if config.gamma:
            gamma = per_section(rng.uniform(1 - config.gamma, 1 + config.gamma, size))
            if sections:
                low = raw.min(axis=(0, 2, 3), keepdims=True)
                span = raw.max(axis=(0, 2, 3), keepdims=True) - low
                flat = span <= 0
                span = np.where(flat, 1, span)
                raw = np.where(flat, raw, ((raw - low) / span) ** gamma * span + low)
            else:
                low, high = float(raw.min()), float(raw.max())
                if high > low:
                    raw = ((raw - low) / (high - low)) ** gamma * (high - low) + low
        if ndim == 3 and config.low_contrast_section:
            for z in np.flatnonzero(rng.random(raw.shape[1]) < config.low_contrast_section):
                mean = raw[:, z].mean()
                raw[:, z] = mean + (raw[:, z] - mean) * config.contrast_scale
        if config.illumination:
            raw = raw * (1 + illumination_gradient(raw.shape[-2:], rng.uniform(0, config.illumination), rng))
        if config.halo:
            strength = rng.uniform(0, config.halo)
            sigma = (0,) * (ndim - 2) + (config.halo_sigma, config.halo_sigma)
            for c in range(raw.shape[0]):
                raw[c] = raw[c] + strength * (raw[c] - ndimage.gaussian_filter(raw[c], sigma))
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
