"""Where the network is unsure: the disagreement between test-time augmented predictions, and the
patches and objects where it is largest ("where to look next").

The uncertainty of a voxel is the standard deviation, across the test-time transforms (see
:mod:`segtrain.predict.tta`), of the mapped-back predictions of the model's main head (affinities
for affinity models, else probabilities), averaged over its channels. It is computed in the same
pass as the TTA mean with Welford's running update (one extra array of the head's size, never a
stack of members): ``predict_array(..., tta=8, uncertainty=True)`` returns it as the output
``uncertainty`` ``(1, *spatial)``; ``segtrain predict --tta 8 --uncertainty`` writes it beside the
other arrays. It is 0 where the model is equivariant to the transforms and grows where flipped
views of the image disagree, which is where its predictions are least stable.

:func:`rank_patches` and :func:`rank_objects` turn it into a ranked list of places to proofread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: name of the output (and of the zarr array) that holds the uncertainty
UNCERTAINTY = "uncertainty"


def spread_head(heads: Sequence[str]) -> str | None:
    """The head whose disagreement is the uncertainty: ``affinities`` if the model has it, else
    ``probabilities``; None if neither."""
    for name in ("affinities", "probabilities"):
        if name in heads:
            return name
    return None


def welford_update(sums: torch.Tensor, counts: torch.Tensor, m2: torch.Tensor, values: torch.Tensor,
                   weights: torch.Tensor) -> None:
    """Add one member to running sums, counts and squared deviations (Welford), in place.

    ``sums``, ``m2``, ``values``: ``(N, C, *spatial)``; ``counts``, ``weights``: ``(C, *spatial)``,
    ``weights`` 1 where ``values`` holds a member's value and 0 where this member has none (where
    ``values`` must be 0). The mean stays ``sums / counts`` (what plain TTA averaging gives), and
    ``m2 / counts`` is the population variance of the members seen so far.
    """
    old_mean = sums / counts.clamp(min=1.0)
    delta = values - old_mean
    del old_mean
    sums.add_(values)
    counts.add_(weights)
    delta.mul_(values - sums / counts.clamp(min=1.0)).mul_(weights)
    m2.add_(delta)


def channel_spread(m2: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The members' standard deviation averaged over channels, ``(N, 1, *spatial)``: per voxel over
    the channels that at least two members filled (an affinity channel without a partner under
    a transform, or at the border of a shifted one, has fewer); 0 where none has two."""
    std = (m2 / counts.clamp(min=1.0)).clamp_(min=0.0).sqrt_()
    filled = (counts >= 2).to(std.dtype)
    total = (std * filled).sum(dim=1, keepdim=True)
    return total / filled.sum(dim=0, keepdim=True).clamp(min=1.0).unsqueeze(0)


@dataclass(frozen=True)
class UncertainPatch:
    """A patch of the uncertainty map: ``box`` (slices, start inclusive, stop exclusive; a patch at
    the far border of an axis may be shorter than the patch shape), ``center`` (voxel index of the
    box's middle) and ``score`` (the mean uncertainty inside it)."""

    center: tuple[int, ...]
    box: tuple[slice, ...]
    score: float


@dataclass(frozen=True)
class UncertainObject:
    """An object (label id) of a segmentation with its mean uncertainty (``score``), size in
    voxels, centroid (voxel index, rounded) and bounding box (slices)."""

    label: int
    score: float
    size: int
    center: tuple[int, ...]
    box: tuple[slice, ...]


def _spatial(uncertainty, ndim: int) -> np.ndarray:
    array = np.asarray(uncertainty, dtype=np.float32)
    while array.ndim > ndim and array.shape[0] == 1:
        array = array[0]  # the (1, *spatial) output of predict_array
    if array.ndim != ndim:
        from segtrain.errors import InputError

        raise InputError(f"An uncertainty map of shape {np.shape(uncertainty)} does not fit a {ndim}D patch shape; "
                         f"give a patch shape with one entry per spatial axis.")
    return array


def _window_sums(array: np.ndarray, stride: Sequence[int], k: Sequence[int]) -> np.ndarray:
    """Sums of ``array`` over windows of ``k[d]`` blocks of ``stride[d]`` voxels that start at every
    multiple of the stride (the last block of an axis may be partial; windows end at the border)."""
    out = array.astype(np.float64, copy=False)
    for axis, (s, kk) in enumerate(zip(stride, k)):
        starts = np.arange(0, out.shape[axis], s)
        blocks = np.add.reduceat(out, starts, axis=axis)  # one sum per block: the array shrinks s-fold
        cum = np.cumsum(blocks, axis=axis)
        n = blocks.shape[axis]
        kk = min(kk, n)
        zero = np.zeros_like(np.take(cum, [0], axis=axis))
        cum = np.concatenate([zero, cum], axis=axis)
        out = np.take(cum, np.arange(kk, n + 1), axis=axis) - np.take(cum, np.arange(0, n + 1 - kk), axis=axis)
    return out


def rank_patches(uncertainty, patch_shape: Sequence[int], n: int | None = 10,
                 stride: Sequence[int] | None = None) -> list[UncertainPatch]:
    """The ``n`` most uncertain non-overlapping patches, most uncertain first.

    Parameters
    ----------
    uncertainty
        The uncertainty map ``(*spatial)`` (or the ``(1, *spatial)`` output of prediction).
    patch_shape
        Patch size per spatial axis (clipped to the map's shape), e.g. ``(64, 64)`` or ``(8, 64, 64)``.
    n
        How many patches (None: as many non-overlapping ones as the greedy choice finds).
    stride
        Candidate patches start at multiples of ``stride`` (default a quarter of the patch shape,
        at least 1); ``stride = patch_shape`` ranks the patches of a regular tiling.

    The score is the mean uncertainty inside a patch; patches are chosen greedily from the highest
    score, skipping candidates that overlap one already chosen.
    """
    patch = [int(p) for p in patch_shape]
    array = _spatial(uncertainty, len(patch))
    shape = array.shape
    patch = [max(1, min(p, s)) for p, s in zip(patch, shape)]
    stride = [max(1, p // 4) for p in patch] if stride is None else [max(1, int(s)) for s in stride]
    if any(p % s for p, s in zip(patch, stride)):
        from segtrain.errors import InputError

        raise InputError(f"The stride {tuple(stride)} must divide the patch shape {tuple(patch)}.")
    k = [p // s for p, s in zip(patch, stride)]
    sums = _window_sums(array, stride, k)
    # voxels per window (windows at the far border are shorter)
    sizes = np.ones(sums.shape)
    for axis, (s, p, length) in enumerate(zip(stride, patch, shape)):
        starts = np.arange(sums.shape[axis]) * s
        along = (np.minimum(starts + p, length) - starts).astype(np.float64)
        sizes = sizes * along.reshape([-1 if d == axis else 1 for d in range(len(shape))])
    scores = sums / sizes
    order = np.argsort(-scores, axis=None, kind="stable")
    taken = np.zeros(scores.shape, bool)
    chosen: list[UncertainPatch] = []
    limit = np.inf if n is None else int(n)
    for flat in order:
        if len(chosen) >= limit:
            break
        index = np.unravel_index(flat, scores.shape)
        if taken[index]:
            continue
        # every candidate whose window overlaps this one: fewer than k blocks away on every axis
        taken[tuple(slice(max(0, i - kk + 1), i + kk) for i, kk in zip(index, k))] = True
        box = tuple(slice(int(i) * s, min(int(i) * s + p, length))
                    for i, s, p, length in zip(index, stride, patch, shape))
        center = tuple((b.start + b.stop - 1) // 2 for b in box)
        chosen.append(UncertainPatch(center=center, box=box, score=float(scores[index])))
    return chosen


def rank_objects(uncertainty, labels, n: int | None = None) -> list[UncertainObject]:
    """The objects of ``labels`` (0 = background, left out) by mean uncertainty, most uncertain
    first (the ``n`` first; None: all)."""
    from scipy import ndimage

    labels = np.asarray(labels)
    array = _spatial(uncertainty, labels.ndim)
    if array.shape != labels.shape:
        from segtrain.errors import InputError

        raise InputError(f"The labels of shape {labels.shape} do not match the uncertainty map of shape "
                         f"{array.shape}; give the segmentation of the predicted image.")
    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    sizes = np.bincount(inverse.ravel(), minlength=len(ids))
    sums = np.bincount(inverse.ravel(), weights=array.ravel(), minlength=len(ids))
    means = sums / np.maximum(sizes, 1)
    centers = []
    for axis in range(labels.ndim):
        coords = np.broadcast_to(np.arange(labels.shape[axis]).reshape(
            [-1 if d == axis else 1 for d in range(labels.ndim)]), labels.shape)
        centers.append(np.bincount(inverse.ravel(), weights=coords.ravel(), minlength=len(ids)) / np.maximum(sizes, 1))
    boxes = ndimage.find_objects(inverse.astype(np.int64) + 1)
    objects = [UncertainObject(label=int(ids[i]), score=float(means[i]), size=int(sizes[i]),
                               center=tuple(round(float(c[i])) for c in centers), box=boxes[i])
               for i in range(len(ids)) if ids[i] != 0]
    objects.sort(key=lambda o: (-o.score, o.label))
    return objects if n is None else objects[:int(n)]
