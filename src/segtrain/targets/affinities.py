"""Affinities from instance labels: 1 where two voxels belong to the same non-zero object."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segtrain.errors import InputError


def default_offsets(ndim: int) -> list[tuple[int, ...]]:
    """Nearest-neighbour offsets: one per axis, pointing to the previous voxel.

    3D: ``[(-1, 0, 0), (0, -1, 0), (0, 0, -1)]``; 2D: ``[(-1, 0), (0, -1)]``. Channel ``d`` at voxel
    ``p`` is the affinity between ``p`` and ``p + offset`` (waterz's convention: channel 0 is the
    affinity to the voxel at z - 1).
    """
    if ndim not in (2, 3):
        raise InputError(f"Labels must be 2D or 3D, not {ndim}D; pass a single image or volume.")
    offsets = []
    for axis in range(ndim):
        offset = [0] * ndim
        offset[axis] = -1
        offsets.append(tuple(offset))
    return offsets


def _shifted_slices(shape: Sequence[int], offset: Sequence[int]) -> tuple[tuple, tuple]:
    """Slices ``(here, there)`` such that ``array[there]`` is ``array[here]`` moved by offset."""
    here, there = [], []
    for size, o in zip(shape, offset):
        if abs(o) >= size:
            return (slice(0, 0),) * len(shape), (slice(0, 0),) * len(shape)
        if o >= 0:
            here.append(slice(0, size - o))
            there.append(slice(o, size))
        else:
            here.append(slice(-o, size))
            there.append(slice(0, size + o))
    return tuple(here), tuple(there)


def affinities(
    labels: np.ndarray,
    offsets: Sequence[Sequence[int]] | None = None,
    known: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Affinities of a label image or volume, and which of them are known.

    Parameters
    ----------
    labels
        Integer instance labels, 2D ``(y, x)`` or 3D ``(z, y, x)``; 0 is background, never affine.
    offsets
        One offset per output channel (negative = towards the previous voxel). Defaults to
        :func:`default_offsets`; long-range offsets such as ``(0, -9, 0)`` are allowed.
    known
        Optional boolean mask of annotated voxels (False = unannotated or ignored). An affinity is
        known iff both its voxels are known and inside the array.

    Returns
    -------
    affs, affs_known
        Two float32 arrays of shape ``(len(offsets), *labels.shape)``.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InputError(
            f"Labels must be 2D (y, x) or 3D (z, y, x), not of shape {labels.shape}; "
            "pass one image or volume without channels."
        )
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise InputError(
            f"Labels must be integers, not {labels.dtype}; convert the label layer to integers."
        )
    if offsets is None:
        offsets = default_offsets(labels.ndim)
    offsets = [tuple(int(v) for v in o) for o in offsets]
    for o in offsets:
        if len(o) != labels.ndim:
            raise InputError(
                f"Offset {o} has {len(o)} entries but the labels are {labels.ndim}D; "
                "give one entry per spatial axis."
            )
    if known is not None:
        known = np.asarray(known, dtype=bool)
        if known.shape != labels.shape:
            raise InputError(
                f"The known mask has shape {known.shape} but the labels {labels.shape}; "
                "they must match."
            )

    shape = labels.shape
    affs = np.zeros((len(offsets), *shape), dtype=np.float32)
    affs_known = np.zeros((len(offsets), *shape), dtype=np.float32)
    for c, offset in enumerate(offsets):
        here, there = _shifted_slices(shape, offset)
        a = labels[here]
        b = labels[there]
        affs[c][here] = (a == b) & (a != 0)
        if known is None:
            affs_known[c][here] = 1.0
        else:
            affs_known[c][here] = known[here] & known[there]
    return affs, affs_known
