"""Local shape descriptors (Sheridan et al. 2022), computed with scipy.ndimage.

For every voxel of object ``l`` the descriptors summarise the part of ``l`` inside a Gaussian
window around the voxel (sigma in world units):

- mean offset (``ndim`` channels): centre of mass of the windowed object minus the voxel position,
- covariance (``ndim`` channels): the variances along each axis,
- Pearson correlation (3 channels in 3D: zy, zx, yx; 1 in 2D: yx),
- size (1 channel): the windowed mass of the object relative to a full window.

10 channels in 3D, 6 in 2D, all scaled into [0, 1] as the reference ``lsd`` package does it
(``lsd/train/local_shape_descriptor.py``, gaussian mode): offsets as ``0.5 + offset / (2 sigma)``
(offset divided by ``max_distance = sigma``, times 0.5, plus 0.5), variances as
``variance / sigma**2``, correlations as ``(r + 1) / 2``; background voxels are 0.
tests/targets/test_lsd_reference.py compares them with values the reference package computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from segtrain.errors import InputError

TRUNCATE = 3.0
STACK_DTYPE = np.float32


def n_descriptor_channels(ndim: int) -> int:
    """10 for 3D, 6 for 2D."""
    return {2: 6, 3: 10}[ndim]


def _per_axis(value: float | Sequence[float] | None, ndim: int, name: str, default: float):
    if value is None:
        return np.full(ndim, default, dtype=np.float64)
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.size == 1:
        arr = np.full(ndim, float(arr[0]))
    if arr.size != ndim:
        raise InputError(f"{name} has {arr.size} entries but the labels are {ndim}D; give one per axis.")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(f"{name} must be positive, not {tuple(arr)}.")
    return arr


def _small_ids(labels: np.ndarray) -> np.ndarray:
    """The labels as small non-negative integers (0 stays 0): as they are when their largest id is
    at most a few times the voxel count (no sort), else renumbered."""
    if labels.dtype == bool:
        return labels.astype(np.intp)
    low, high = int(labels.min()), int(labels.max())
    if low >= 0 and high <= 4 * labels.size:
        return labels.astype(np.intp, copy=False)
    ids, inverse = np.unique(labels, return_inverse=True)
    compact = inverse.reshape(labels.shape).astype(np.intp)
    return compact if ids[0] == 0 else compact + 1


def local_shape_descriptors(
    labels: np.ndarray,
    sigma: float | Sequence[float],
    voxel_size: float | Sequence[float] | None = None,
    downsample: int = 1,
) -> np.ndarray:
    """Local shape descriptors of a 2D or 3D label array.

    Parameters
    ----------
    labels
        Instance labels ``(y, x)`` or ``(z, y, x)``; 0 is background (descriptors 0 there).
    sigma
        Gaussian window sigma in world units (same units as ``voxel_size``); one value or one per
        axis.
    voxel_size
        World size of a voxel per axis (anisotropic data: e.g. ``(40, 4, 4)``); default 1.
    downsample
        Integer factor to compute the window statistics on a coarser grid (faster, approximate).

    Returns
    -------
    float32 array ``(10 | 6, *labels.shape)`` with values in [0, 1].
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InputError(
            f"Labels must be 2D or 3D for shape descriptors, not of shape {labels.shape}."
        )
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise InputError(f"Labels must be integers, not {labels.dtype}.")
    ndim = labels.ndim
    sigma_w = _per_axis(sigma, ndim, "sigma", 1.0)
    vs = _per_axis(voxel_size, ndim, "voxel_size", 1.0)
    downsample = int(downsample)
    if downsample < 1:
        raise InputError(f"downsample must be a positive integer, not {downsample}.")

    n_ch = n_descriptor_channels(ndim)
    out = np.zeros((n_ch, *labels.shape), dtype=np.float32)
    pairs = [(i, j) for i in range(ndim) for j in range(i + 1, ndim)]

    # work on a (possibly) coarser grid
    step = np.array([downsample] * ndim)
    vs_ds = vs * step
    sigma_vox = sigma_w / vs_ds
    margin = np.ceil(TRUNCATE * sigma_vox).astype(int) + 1

    labels = _small_ids(labels)  # find_objects needs small non-negative integers
    lab_ds = labels[tuple(slice(None, None, downsample) for _ in range(ndim))]
    objects = ndimage.find_objects(lab_ds)
    full_objects = ndimage.find_objects(labels) if downsample > 1 else objects

    for index, box in enumerate(objects):
        if box is None:
            continue
        label = index + 1
        if downsample > 1:  # the coarse box grown by the window: full-resolution voxels map into it
            lo = [max(s.start - m, 0) for s, m in zip(box, margin)]
            hi = [min(s.stop + m, n) for s, m, n in zip(box, margin, lab_ds.shape)]
        else:
            # the object's own box: outside it the object's mask is 0, as the filter's constant
            # padding is, so the window sums at its voxels are exactly those over the whole array
            lo = [s.start for s in box]
            hi = [s.stop for s in box]
        cbox = tuple(slice(a, b) for a, b in zip(lo, hi))
        mask = lab_ds[cbox] == label
        # coordinates (world units) relative to the box centre on the coarse grid: small numbers
        # keep the second moments exact in float32
        centre = [(b - a - 1) / 2.0 for a, b in zip(lo, hi)]
        coords = [
            ((np.arange(b - a) - centre[d]) * vs_ds[d]).astype(np.float32).reshape(
                [-1 if k == d else 1 for k in range(ndim)]
            )
            for d, (a, b) in enumerate(zip(lo, hi))
        ]
        # all window sums of this object in one separable filtering of a stack (float32):
        # mass, first moments, second moments (ii then ij)
        products = [np.ones(1, np.float32), *coords, *(c * c for c in coords),
                    *(coords[i] * coords[j] for i, j in pairs)]
        stack = np.zeros((len(products), *mask.shape), STACK_DTYPE)
        for k, product in enumerate(products):
            np.multiply(mask, product, out=stack[k])
        ndimage.gaussian_filter(stack, (0, *sigma_vox), mode="constant", truncate=TRUNCATE, output=stack)

        # the full-resolution voxels of this label
        if downsample > 1:
            fbox = full_objects[label - 1] if label - 1 < len(full_objects) else None
            if fbox is None:
                continue
            fsel = labels[fbox] == label
            fidx = np.nonzero(fsel)
            full_pos = [fidx[d] + fbox[d].start for d in range(ndim)]
            # nearest coarse sample, clipped into the coarse box
            cpos = [
                np.clip(np.round(p / downsample).astype(int), lo[d], hi[d] - 1) - lo[d]
                for d, p in enumerate(full_pos)
            ]
            world = [(full_pos[d] * vs[d] - lo[d] * vs_ds[d] - centre[d] * vs_ds[d]) for d in range(ndim)]
            target = tuple(full_pos)
        else:
            cidx = np.nonzero(mask)
            cpos = list(cidx)
            world = [(cidx[d] - centre[d]) * vs[d] for d in range(ndim)]
            target = tuple(cidx[d] + lo[d] for d in range(ndim))
        cpos = tuple(cpos)

        values = stack[(slice(None), *cpos)].astype(np.float64)  # (channels, voxels of the object)
        mass = values[0]
        safe = np.where(mass > 1e-12, mass, 1.0)
        means = [values[1 + d] / safe for d in range(ndim)]
        second = {}
        for d in range(ndim):
            second[(d, d)] = values[1 + ndim + d] / safe - means[d] ** 2
        for k, (i, j) in enumerate(pairs):
            second[(i, j)] = values[1 + 2 * ndim + k] / safe - means[i] * means[j]

        ch = 0
        for d in range(ndim):
            out[ch][target] = 0.5 + (means[d] - world[d]) / (2.0 * sigma_w[d])
            ch += 1
        for d in range(ndim):
            out[ch][target] = second[(d, d)] / sigma_w[d] ** 2
            ch += 1
        for i, j in pairs:
            vi = np.maximum(second[(i, i)], 0)
            vj = np.maximum(second[(j, j)], 0)
            denom = np.sqrt(vi * vj)
            r = np.where(denom > 1e-12, second[(i, j)] / np.where(denom > 1e-12, denom, 1), 0)
            out[ch][target] = 0.5 * (r + 1.0)
            ch += 1
        out[ch][target] = mass
    np.clip(out, 0.0, 1.0, out=out)
    return out
