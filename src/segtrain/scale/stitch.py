"""Pieces of one fragment cut by block faces: which piece on one side of a face is the same
watershed basin as which piece on the other.

Each block's fragments are computed on the block plus its context and cropped to the block, so a
basin that crosses a face is stored as two fragments, one per block. Where the context is
enough, both blocks computed the same basins near the face as the whole volume would. The
fragments step keeps, for each face, what the block's own watershed found on the neighbour's
first plane beyond the face (its *view* of that plane, in the block's stored ids), and the
agglomerate step of the lower block compares, on the two planes either side of the face, each
side's stored fragments with the other side's view:

    plane of the upper block:  lower block's view  |  upper block's stored fragments
    plane of the lower block:  lower block's stored fragments  |  upper block's view

A lower piece ``u`` and an upper piece ``v`` are one basin when more than half of the face
voxels either side labels ``u`` are labelled ``v`` by the other side, and more than half of those
labelled ``v`` are labelled ``u`` (mutual majority: each piece has at most one partner per face,
and two different basins are never joined where the two blocks agree on neither). Where both
blocks computed the whole volume's basins near the face, every piece of a basin that crosses
the face finds its partner, so the union of the pieces is the whole volume's fragment.

This is the overlap matching that tile-stitching tools do (e.g. elf's ``stitch_segmentation``),
restricted to a one-voxel plane either side of each face; the LSD pipeline and volara's
``ExtractFrags`` leave the pieces apart and rely on agglomeration to join them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from segtrain.io.atomic import atomic_path

#: The faces of a block: ``(axis, side)`` with side -1 (towards lower coordinates) or +1.
FACES = tuple((axis, side) for axis in range(3) for side in (-1, 1))


def face_key(axis: int, side: int) -> str:
    return f"{'zyx'[axis]}{'-' if side < 0 else '+'}"


def block_ids(labels: np.ndarray, ids: np.ndarray, offset: int) -> np.ndarray:
    """``labels`` (a block's watershed labels) as the ids the block stores: label ``ids[k]``
    (sorted, non-zero: the labels found in the block itself) becomes ``offset + k + 1``; every
    other label becomes 0."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.uint64)
    if not len(ids):
        return out
    at = np.minimum(np.searchsorted(ids, labels), len(ids) - 1)
    found = (labels != 0) & (ids[at] == labels)
    out[found] = at[found].astype(np.uint64) + np.uint64(offset + 1)
    return out


def face_views(labels: np.ndarray, inner: tuple[slice, ...], ids: np.ndarray,
               offset: int) -> dict[str, np.ndarray]:
    """A block's views of its neighbours' first planes: ``labels`` is its watershed on the block
    plus context, ``inner`` the block in it, ``ids`` and ``offset`` as in :func:`block_ids`. One
    2D array per face whose plane beyond the block lies in ``labels`` (the block's extent along
    the other two axes), keyed by :func:`face_key`."""
    views = {}
    for axis, side in FACES:
        plane = inner[axis].start - 1 if side < 0 else inner[axis].stop
        if not 0 <= plane < labels.shape[axis]:
            continue
        region = list(inner)
        region[axis] = plane
        views[face_key(axis, side)] = block_ids(labels[tuple(region)], ids, offset)
    return views


def save_views(path: Path, views: dict[str, np.ndarray]) -> None:
    """Write a block's views atomically (a retried block writes the same file again)."""

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **views)


def load_view(path: Path, axis: int, side: int) -> np.ndarray | None:
    """One view of a block, or None when it has none (no file, or no context on that side)."""
    if not path.exists():
        return None
    with np.load(path) as views:
        key = face_key(axis, side)
        return views[key] if key in views.files else None


def same_basin_pairs(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(u, v)`` of a lower piece ``u`` and an upper piece ``v`` that are one basin, from
    face voxels labelled by both sides (``lower[i]`` by the lower block, ``upper[i]`` by the
    upper one; 0 = no piece of that block): mutual majority (see the module docstring)."""
    lower = np.asarray(lower, np.uint64).reshape(-1)
    upper = np.asarray(upper, np.uint64).reshape(-1)
    both = (lower != 0) & (upper != 0)
    if not both.any():
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    pairs, together = np.unique(np.stack([lower[both], upper[both]], axis=1), axis=0,
                                return_counts=True)
    lower_ids, lower_total = np.unique(lower[lower != 0], return_counts=True)
    upper_ids, upper_total = np.unique(upper[upper != 0], return_counts=True)
    of_u = lower_total[np.searchsorted(lower_ids, pairs[:, 0])]
    of_v = upper_total[np.searchsorted(upper_ids, pairs[:, 1])]
    keep = (2 * together > of_u) & (2 * together > of_v)
    return pairs[keep, 0], pairs[keep, 1]
