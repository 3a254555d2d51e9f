"""The mask path: probabilities -> binary masks -> instances (per class for multi-class)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segtrain.errors import InputError
from segtrain.segment._waterz import check_threshold
from segtrain.segment.fragments import _watershed_from_mask, relabel_consecutive


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Set objects smaller than ``min_size`` voxels to 0, in place; returns ``labels``."""
    if min_size > 1 and labels.size:
        sizes = np.bincount(labels.reshape(-1))
        small = sizes < min_size
        small[0] = False
        labels[small[labels]] = 0
    return labels


def _instances_of_mask(mask: np.ndarray, method: str, min_size: int, min_seed_distance: int):
    if method == "components":
        labels, _ = ndimage.label(mask)
    elif method == "watershed":
        labels = _watershed_from_mask(mask, mask, min_seed_distance, min_size, None)
    else:
        raise InputError(f"Unknown method {method!r}: use 'components' or 'watershed'.")
    return relabel_consecutive(remove_small(labels, min_size))


def instances_from_foreground_boundary(
    foreground,
    boundary,
    probability_threshold: float = 0.5,
    seed_boundary_max: float = 0.5,
    seed_min_size: int = 0,
    min_size: int = 0,
    per_slice: bool = False,
) -> np.ndarray:
    """Instances (uint32, 0 = background) from foreground and boundary probability maps.

    The object mask is ``foreground > probability_threshold``. Seeds are the connected components
    of mask pixels whose boundary probability is below ``seed_boundary_max`` (so a thin predicted
    boundary between touching cells keeps them apart); seeds under ``seed_min_size`` voxels are
    dropped. Seeds grow through the mask by a watershed on the inverted foreground probability;
    objects under ``min_size`` voxels are removed. ``per_slice`` treats the first axis of a 3D
    array as a stack of 2D images (ids stay unique across the stack).
    """
    from skimage.segmentation import watershed

    fg = np.asarray(foreground, dtype=np.float32)
    bd = np.asarray(boundary, dtype=np.float32)
    if fg.shape != bd.shape:
        raise InputError(f"Foreground {fg.shape} and boundary {bd.shape} probabilities differ in shape.")
    if fg.ndim not in (2, 3):
        raise InputError(f"Probabilities must be 2D or 3D, not of shape {fg.shape}.")
    t = check_threshold(probability_threshold)
    b = check_threshold(seed_boundary_max, "seed boundary maximum")
    out = np.zeros(fg.shape, np.uint32)
    next_id = 0
    for index in range(fg.shape[0]) if per_slice and fg.ndim == 3 else [...]:
        mask = fg[index] > t
        markers, _ = ndimage.label(mask & (bd[index] < b))
        remove_small(markers, int(seed_min_size))
        labels = watershed(-fg[index], markers, mask=mask)
        labels = relabel_consecutive(remove_small(labels, int(min_size)))
        out[index] = np.where(labels > 0, labels + next_id, 0)
        next_id += int(labels.max())
    return out


def instances_from_probabilities(
    prob,
    threshold: float = 0.5,
    method: str = "components",
    min_size: int = 0,
    min_seed_distance: int = 5,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Instances from a foreground probability map (2D or 3D), as uint32 (0 = background).

    ``method="components"`` labels connected components of ``prob > threshold``;
    ``"watershed"`` splits touching objects by a seeded watershed on the distance transform.
    With ``channel_axis`` set, each channel (class) is done on its own and the result is stacked
    along that axis, with ids unique across classes.
    """
    threshold = check_threshold(threshold)
    prob = np.asarray(prob)
    if not (np.issubdtype(prob.dtype, np.floating) or prob.dtype == bool or prob.dtype == np.uint8):
        raise InputError(f"Probabilities must be floating point in [0, 1], not {prob.dtype}.")
    if prob.dtype == np.uint8:
        prob = prob.astype(np.float32) / 255.0
    if prob.dtype != bool and not np.all(np.isfinite(prob)):
        raise InputError("The probabilities contain NaN or infinite values.")
    if channel_axis is not None:
        channels = np.moveaxis(prob, channel_axis, 0)
        out = np.zeros(channels.shape, dtype=np.uint32)
        next_id = 0
        for c, channel in enumerate(channels):
            inst = instances_from_probabilities(
                channel, threshold, method, min_size, min_seed_distance
            ).astype(np.uint64)
            nz = inst != 0
            inst[nz] += np.uint64(next_id)
            out[c] = inst
            next_id = int(inst.max()) if nz.any() else next_id
        return np.moveaxis(out, 0, channel_axis)
    if prob.ndim not in (2, 3):
        raise InputError(
            f"Probabilities must be 2D or 3D (or pass channel_axis for classes), not {prob.shape}."
        )
    mask = prob if prob.dtype == bool else prob > threshold
    labels = _instances_of_mask(mask, method, int(min_size), int(min_seed_distance))
    if labels.size and labels.max() > np.iinfo(np.uint32).max:
        raise InputError("More instances than fit into uint32.")
    return labels.astype(np.uint32)
