"""Affinities -> fragments -> waterz merge tree, with the settings of a SegmentConfig."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from segtrain.config import SegmentConfig
from segtrain.errors import InputError
from segtrain.segment import MergeTree, make_fragments

MAX_CHANNELS = 32  # nearest and long-range offsets; more channels are not affinities


def check_affinities(affs, model_ndim: int | None = None) -> np.ndarray:
    """``affs`` as a float32 array if it can be affinities, else one sentence saying what was
    expected: floating point in [0, 1], channels first, 2 (2D) or 3 (3D) to
    :data:`MAX_CHANNELS` channels (an EM volume or labels are refused, not segmented). A 2D
    model's (``model_ndim == 2``) prediction of a stack of slices is ``(2+, z, y, x)``."""
    if hasattr(affs, "compute") and not isinstance(affs, np.ndarray):
        affs = affs.compute()
    affs = np.asarray(affs)
    if affs.ndim not in (3, 4):
        raise InputError(
            f"Affinities have channels first, (channels, z, y, x) or (channels, y, x); this array has shape "
            f"{affs.shape}: give the affinities output of `segtrain predict`."
        )
    need = 3 if affs.ndim == 4 and model_ndim != 2 else 2
    if affs.shape[0] < need or affs.shape[0] > MAX_CHANNELS:
        stack = " (a 2D model's affinities of a stack of slices have 2: segment the output of `segtrain " \
                "predict`, which records the model, or name the run with --run)" if affs.shape[0] == 2 else ""
        raise InputError(
            f"Affinities of a {affs.ndim - 1}D volume have at least {need} channels first, this array has "
            f"shape {affs.shape}: give the affinities output of `segtrain predict`, not an image{stack}."
        )
    if not np.issubdtype(affs.dtype, np.floating):
        raise InputError(
            f"Affinities are floating point in [0, 1], not {affs.dtype}: this looks like an image or labels; "
            "give the affinities output of `segtrain predict`."
        )
    lo, hi = float(np.nanmin(affs)), float(np.nanmax(affs))
    if not np.isfinite([lo, hi]).all() or lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(
            f"Affinities lie in [0, 1], these span [{lo:.3g}, {hi:.3g}]: give the affinities output of "
            "`segtrain predict` (probabilities, after the sigmoid)."
        )
    return affs.astype(np.float32, copy=False)


def _stack_as_3d(affs: np.ndarray) -> np.ndarray:
    """2D affinities of a stack ``(2+, N, y, x)`` as 3D ``(3, N, y, x)`` with no z-affinity."""
    return np.concatenate([np.zeros_like(affs[:1]), affs[:2]], axis=0)


def fragments_of(affs, settings: SegmentConfig, voxel_size: Sequence[float] | None = None,
                 per_slice: bool | None = None) -> np.ndarray:
    """Fragments of affinities ``(C, z, y, x)`` / ``(C, y, x)`` with ``settings`` (method,
    boundary_threshold, min_seed_distance, min_size, per_slice unless given): uint64, 0 = boundary.
    The distance transform of the watershed works in world units of ``voxel_size``."""
    return make_fragments(affs, settings.fragments, boundary_threshold=settings.boundary_threshold,
                          min_seed_distance=settings.min_seed_distance, min_size=settings.min_size,
                          per_slice=settings.per_slice if per_slice is None else per_slice,
                          voxel_size=spatial_voxel_size(voxel_size, np.ndim(affs) - 1))


def spatial_voxel_size(voxel_size: Sequence[float] | None, spatial: int) -> tuple[float, ...] | None:
    """The last ``spatial`` entries of ``voxel_size`` as floats (None stays None)."""
    if voxel_size is None:
        return None
    values = tuple(float(v) for v in voxel_size)[-spatial:]
    if len(values) != spatial:
        raise InputError(f"Give one voxel size per spatial axis ({spatial}), not {tuple(voxel_size)}.")
    return values


def prepared_affinities(affs, settings: SegmentConfig, model_ndim: int | None = None) -> tuple[np.ndarray, bool]:
    """``(nearest-neighbour affinities, per_slice)`` as the fragments and waterz take them: checked,
    float32, the first 3 (3D) or 2 (2D) channels; a 2D model's prediction of a stack becomes 3D
    affinities with no z-affinity, cut slice by slice."""
    affs = check_affinities(affs, model_ndim)
    per_slice = bool(settings.per_slice)
    if affs.ndim == 4 and model_ndim == 2:  # a stack of 2D images
        affs = _stack_as_3d(affs)
        per_slice = True
    return np.ascontiguousarray(affs[: 3 if affs.ndim == 4 else 2]), per_slice


def prediction_fragments(affs, settings: SegmentConfig, voxel_size: Sequence[float] | None = None,
                         model_ndim: int | None = None) -> np.ndarray:
    """The fragments :func:`segment_affinities` makes of ``affs`` (a 2D model's stack: each slice
    on its own, ids unique across the stack), to be given back to it as ``fragments``."""
    affs, per_slice = prepared_affinities(affs, settings, model_ndim)
    voxel_size = spatial_voxel_size(voxel_size, affs.ndim - 1)
    if model_ndim == 2 and affs.ndim == 4:
        return _slice_fragments(affs, settings, voxel_size)
    return fragments_of(affs, settings, voxel_size, per_slice)


def _slice_fragments(affs: np.ndarray, settings: SegmentConfig, voxel_size) -> np.ndarray:
    """Fragments of each slice of prepared stack affinities ``(3, z, y, x)`` (no z-affinity) made
    from that slice's 2D affinities alone; ids unique across the stack."""
    out, offset = np.zeros(affs.shape[1:], np.uint64), 0
    for z in range(affs.shape[1]):
        frags = np.asarray(fragments_of(affs[1:, z], settings, None if voxel_size is None else voxel_size[1:],
                                        False)).astype(np.uint64)
        out[z] = np.where(frags != 0, frags + np.uint64(offset), 0)
        offset = max(offset, int(out[z].max()))
    return out


def segment_affinities(affs, settings: SegmentConfig, voxel_size: Sequence[float] | None = None,
                       model_ndim: int | None = None, fragments=None) -> MergeTree:
    """The merge tree of ``affs`` made with ``settings``: fragments (``settings.fragments``:
    seeded watershed with ``boundary_threshold``, ``min_seed_distance``, ``min_size``,
    ``per_slice``, on the distance transform in world units of ``voxel_size``; or waterz's own),
    then waterz agglomeration with ``settings.scoring`` run once to threshold 1.

    ``affs`` is ``(C, z, y, x)`` or ``(C, y, x)``; a 2D model's prediction of a stack
    (``model_ndim == 2`` and 4D affinities) is segmented slice by slice, fragments and waterz on each
    slice alone, in one tree (:meth:`MergeTree.stacked`): no object crosses slices. ``fragments`` (same spatial
    shape) replaces the fragment step. The tree's ``attrs`` record the settings and voxel size.
    """
    affs, per_slice = prepared_affinities(affs, settings, model_ndim)
    voxel_size = spatial_voxel_size(voxel_size, affs.ndim - 1)
    if model_ndim == 2 and affs.ndim == 4:  # a 2D model's stack: each slice on its own
        frags = np.asarray(fragments) if fragments is not None else _slice_fragments(affs, settings, voxel_size)
        tree = MergeTree.stacked([MergeTree.build(affs[1:, z], frags[z], scoring=settings.scoring)
                                  for z in range(affs.shape[1])])
    else:
        frags = fragments if fragments is not None else fragments_of(affs, settings, voxel_size, per_slice)
        tree = MergeTree.build(affs, np.asarray(frags), scoring=settings.scoring)
    tree.attrs.update(settings=dataclasses.asdict(settings),
                      voxel_size=None if voxel_size is None else list(voxel_size))
    return tree
