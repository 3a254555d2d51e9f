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


def _incident_stats(nn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum, maximum and mean over the edges incident to each voxel (both directions along each axis).

    ``nn[d]`` holds the affinity between a voxel and its predecessor along axis ``d``; edges
    that would leave the array do not count.
    """
    ndim = nn.shape[0]
    shape = nn.shape[1:]
    lo = np.full(shape, np.inf, dtype=np.float32)
    hi = np.zeros(shape, dtype=np.float32)
    total = np.zeros(shape, dtype=np.float32)
    count = np.zeros(shape, dtype=np.float32)
    for d in range(ndim):
        if shape[d] < 2:
            continue
        here = [slice(None)] * ndim
        prev = [slice(None)] * ndim
        here[d] = slice(1, None)
        prev[d] = slice(0, -1)
        edge = nn[d][tuple(here)]
        for sl in (tuple(here), tuple(prev)):  # the edge touches both of its voxels
            np.minimum(lo[sl], edge, out=lo[sl])
            np.maximum(hi[sl], edge, out=hi[sl])
            total[sl] += edge
            count[sl] += 1
    lo[np.isinf(lo)] = 0
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return lo, hi, mean


def _seeded_watershed(
    nn: np.ndarray,
    threshold: float,
    min_seed_distance: int,
    min_size: int,
    sampling: Sequence[float] | None,
) -> np.ndarray:
    """Fragments of one 2D or 3D block from its nearest-neighbour affinities ``nn (ndim, ...)``.

    Interior = voxels all of whose incident affinities exceed ``threshold`` (so objects that
    touch without a gap stay apart); the boundary mask is its complement. Seeds are the maxima of
    the distance transform of the interior; fragments grow down the distance map into the voxels
    whose mean incident affinity exceeds the threshold.
    """
    lo, hi, mean = _incident_stats(nn)
    interior = lo > threshold
    mask = hi > threshold
    return _watershed_from_mask(interior, mask, min_seed_distance, min_size, sampling, mean)


def _watershed_from_mask(
    interior: np.ndarray,
    mask: np.ndarray,
    min_seed_distance: int,
    min_size: int,
    sampling: Sequence[float] | None,
    affinity: np.ndarray | None = None,
) -> np.ndarray:
    from skimage.segmentation import watershed

    if not interior.any():
        return np.zeros(interior.shape, dtype=np.int64)
    distance = ndimage.distance_transform_edt(interior, sampling=sampling)
    size = 2 * int(min_seed_distance) + 1
    maxima = (distance == ndimage.maximum_filter(distance, size=size, mode="constant")) & interior
    seeds, n = ndimage.label(maxima)
    # flood down the distance map; outside the interior (distance 0), high affinities first
    elevation = -distance if affinity is None else -distance - affinity
    frags = watershed(elevation, markers=seeds, mask=mask | interior)
    if min_size > 1 and n:
        sizes = np.bincount(frags.reshape(-1))
        small = sizes < min_size
        small[0] = False
        if small.any():
            # drop small fragments, let their neighbours grow into the space they leave
            frags[small[frags]] = 0
            frags = watershed(elevation, markers=frags, mask=mask | interior)
    return frags.astype(np.int64)


def fragments_watershed(
    affs,
    boundary_threshold: float = 0.5,
    min_seed_distance: int = 10,
    min_size: int = 0,
    per_slice: bool = False,
    voxel_size: Sequence[float] | None = None,
) -> np.ndarray:
    """Seeded watershed on the distance transform of the boundary mask.

    A voxel is inside an object when every nearest-neighbour affinity it takes part in exceeds
    ``boundary_threshold`` (so objects that touch without a gap stay apart); everything else is
    the boundary mask. Seeds are the maxima of the distance transform of the inside (at least
    ``min_seed_distance`` voxels apart); fragments grow from them down the distance map into
    every voxel whose mean affinity exceeds the threshold (the rest stays 0).
    Fragments smaller than ``min_size`` voxels are absorbed by their neighbours.

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
    out = np.zeros(waffs.shape[1:], dtype=np.uint64)
    if per_slice or is_2d:
        sampling = None if voxel_size is None else tuple(voxel_size)[-2:]
        next_id = 0
        for z in range(out.shape[0]):
            frags = _seeded_watershed(
                waffs[1:, z], boundary_threshold, min_seed_distance, min_size, sampling
            )
            frags = relabel_consecutive(frags)
            nz = frags != 0
            frags[nz] += np.uint64(next_id)
            out[z] = frags
            next_id = int(out[z].max()) if nz.any() else next_id
    else:
        frags = _seeded_watershed(
            waffs, boundary_threshold, min_seed_distance, min_size, voxel_size
        )
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


FRAGMENT_METHODS = ("watershed", "waterz")


def make_fragments(affs, method: str = "watershed", **watershed_params) -> np.ndarray:
    """Fragments by method name: ``watershed`` (:func:`fragments_watershed` with
    ``watershed_params``) or ``waterz`` (:func:`fragments_waterz`; the parameters do not apply)."""
    if method == "waterz":
        return fragments_waterz(affs)
    if method == "watershed":
        return fragments_watershed(affs, **watershed_params)
    raise InputError(
        f"Unknown fragment method {method!r}; choose one of {', '.join(FRAGMENT_METHODS)}."
    )
