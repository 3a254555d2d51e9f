"""Fragments (over-segmentation) from affinities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from segtrain.errors import InputError
from segtrain.segment._waterz import agglomerate, as_waterz_affinities, check_threshold


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """uint64 copy with the non-zero ids renumbered 1..n in order of their first value; 0 stays 0."""
    labels = np.asarray(labels)
    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape).astype(np.uint64)
    if ids.size and ids[0] == 0:
        return inverse
    return inverse + np.uint64(1)


def _watershed_2d_or_3d(
    foreground: np.ndarray,
    min_seed_distance: int,
    min_size: int,
    sampling: Sequence[float] | None,
) -> tuple[np.ndarray, int]:
    from skimage.segmentation import watershed

    if not foreground.any():
        return np.zeros(foreground.shape, dtype=np.int64), 0
    distance = ndimage.distance_transform_edt(foreground, sampling=sampling)
    size = 2 * int(min_seed_distance) + 1
    maxima = (distance == ndimage.maximum_filter(distance, size=size, mode="constant")) & foreground
    seeds, n = ndimage.label(maxima)
    frags = watershed(-distance, markers=seeds, mask=foreground)
    if min_size > 1 and n:
        sizes = np.bincount(frags.reshape(-1))
        small = sizes < min_size
        small[0] = False
        if small.any():
            # drop small fragments, let their neighbours grow into the space they leave
            frags[small[frags]] = 0
            frags = watershed(-distance, markers=frags, mask=foreground)
    return frags.astype(np.int64), int(frags.max())


def fragments_watershed(
    affs,
    boundary_threshold: float = 0.5,
    min_seed_distance: int = 10,
    min_size: int = 0,
    per_slice: bool = False,
    voxel_size: Sequence[float] | None = None,
) -> np.ndarray:
    """Seeded watershed on the distance transform of the boundary mask.

    The mean of the nearest-neighbour affinities above ``boundary_threshold`` is the inside of
    objects; seeds are the maxima of the distance to the boundary (at least
    ``min_seed_distance`` voxels apart), fragments grow from them down the distance map inside
    that mask. Fragments smaller than ``min_size`` voxels are absorbed by their neighbours.

    Parameters
    ----------
    affs
        ``(C>=3, z, y, x)`` or ``(C>=2, y, x)``, float in [0, 1].
    per_slice
        Cut each z-slice on its own (for anisotropic data); ids stay unique across slices.
    voxel_size
        Sampling for the distance transform (3D only, optional).

    Returns
    -------
    uint64 fragments of the affinities' spatial shape, ids 1..n, 0 = boundary/background.
    """
    boundary_threshold = check_threshold(boundary_threshold, "boundary threshold")
    waffs, is_2d = as_waterz_affinities(affs)
    if int(min_seed_distance) < 0 or int(min_size) < 0:
        raise InputError("min_seed_distance and min_size must not be negative.")
    if is_2d:
        mean_aff = waffs[1:].mean(axis=0)  # (1, y, x)
    else:
        mean_aff = waffs.mean(axis=0)
    foreground = mean_aff > boundary_threshold

    out = np.zeros(foreground.shape, dtype=np.uint64)
    if per_slice or is_2d:
        sampling = None if voxel_size is None else tuple(voxel_size)[-2:]
        next_id = 0
        for z in range(foreground.shape[0]):
            frags, n = _watershed_2d_or_3d(foreground[z], min_seed_distance, min_size, sampling)
            frags = relabel_consecutive(frags)
            nz = frags != 0
            frags[nz] += np.uint64(next_id)
            out[z] = frags
            next_id = int(out[z].max()) if nz.any() else next_id
    else:
        frags, _ = _watershed_2d_or_3d(foreground, min_seed_distance, min_size, voxel_size)
        out = relabel_consecutive(frags)
    return out[0] if is_2d else out


def fragments_waterz(
    affs,
    aff_threshold_low: float = 0.0001,
    aff_threshold_high: float = 0.9999,
) -> np.ndarray:
    """waterz's own initial watershed (zwatershed) on the affinities: uint64, 0 = background."""
    low = check_threshold(aff_threshold_low, "low affinity threshold")
    high = check_threshold(aff_threshold_high, "high affinity threshold")
    if not low < high:
        raise InputError(
            f"The low affinity threshold ({low}) must be smaller than the high one ({high})."
        )
    waffs, is_2d = as_waterz_affinities(affs)
    seg = None
    for seg in agglomerate(
        waffs, [0.0], aff_threshold_low=low, aff_threshold_high=high
    ):
        seg = seg.copy()
    out = relabel_consecutive(seg)
    return out[0] if is_2d else out
