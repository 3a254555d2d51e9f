"""Blockwise relabelling: apply a merge tree's lookup table to a large fragment volume with dask.

The result equals ``tree.segmentation(threshold)`` voxel for voxel; only one block per worker is
in memory at a time, and the output is written atomically (zarr by default, any format
:func:`segtrain.io.write_volume` writes).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.segment.merge_tree import apply_lut
from segtrain.segment._waterz import check_threshold


def _as_dask(fragments, chunks=None):
    import dask.array as da

    if isinstance(fragments, (str, Path)):
        from segtrain.io import read_volume

        fragments = read_volume(fragments)
    data = getattr(fragments, "data", fragments)  # a segtrain Volume
    if isinstance(data, da.Array):
        arr = data
    else:
        if not hasattr(data, "shape") or not hasattr(data, "dtype"):
            data = np.asarray(data)
        arr = da.from_array(data, chunks=chunks or "auto")
    if chunks is not None:
        arr = arr.rechunk(chunks)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"Fragments must hold integer ids, not {arr.dtype}.")
    return arr


def dense_lut(tree_or_lut, threshold: float | None = None) -> np.ndarray:
    """A dense uint64 table ``segment = lut[fragment]`` from a MergeTree (at ``threshold``), a
    dense table, or a ``(fragment_ids, segment_ids)`` pair."""
    if hasattr(tree_or_lut, "lut"):
        if threshold is None:
            raise InputError("Give the threshold to relabel at.")
        return tree_or_lut.lut(threshold)
    if isinstance(tree_or_lut, tuple) and len(tree_or_lut) == 2:
        frag_ids = np.asarray(tree_or_lut[0], dtype=np.uint64)
        seg_ids = np.asarray(tree_or_lut[1], dtype=np.uint64)
        if frag_ids.shape != seg_ids.shape:
            raise InputError("Fragment and segment id lists of a lookup must have the same length.")
        if _too_sparse(frag_ids):
            raise InputError("Fragment ids are too sparse for a lookup table; relabel them 1..n first.")
        lut = np.arange(int(frag_ids.max()) + 1 if frag_ids.size else 1, dtype=np.uint64)
        lut[frag_ids] = seg_ids
        return lut
    lut = np.asarray(tree_or_lut)
    if lut.ndim != 1 or not np.issubdtype(lut.dtype, np.integer):
        raise InputError("A lookup table must be a 1D integer array, a (fragments, segments) "
                         "pair or a MergeTree.")
    return lut.astype(np.uint64, copy=False)


def _apply_sparse(block: np.ndarray, ids: np.ndarray, segments: np.ndarray) -> np.ndarray:
    block = block.astype(np.uint64, copy=False)
    pos = np.clip(np.searchsorted(ids, block), 0, max(len(ids) - 1, 0))
    if len(ids) == 0:
        return block.copy()
    found = ids[pos] == block
    return np.where(found, segments[pos], block)


def _too_sparse(ids: np.ndarray) -> bool:
    """Whether a dense table up to the largest id would be far larger than the ids themselves."""
    return bool(ids.size) and int(ids.max()) + 1 > 10 * (ids.size + 1) + 1_000_000


def _is_sparse_pair(tree_or_lut) -> bool:
    if not (isinstance(tree_or_lut, tuple) and len(tree_or_lut) == 2):
        return False
    return _too_sparse(np.asarray(tree_or_lut[0]))


def relabel_lazy(fragments, tree_or_lut, threshold: float | None = None, chunks=None):
    """The relabelled volume as a lazy dask array (uint64)."""
    arr = _as_dask(fragments, chunks)
    if _is_sparse_pair(tree_or_lut):  # e.g. block-offset fragment ids: look up by search
        ids = np.asarray(tree_or_lut[0], dtype=np.uint64)
        segments = np.asarray(tree_or_lut[1], dtype=np.uint64)
        order = np.argsort(ids)
        fn = functools.partial(_apply_sparse, ids=ids[order], segments=segments[order])
        return arr.map_blocks(fn, dtype=np.uint64)
    lut = dense_lut(tree_or_lut, threshold)
    return arr.map_blocks(functools.partial(apply_lut, lut), dtype=np.uint64)


@contextlib.contextmanager
def _scheduler(address: str | None):
    if not address:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise InputError("dask.distributed is not installed; install it to use a scheduler.") from None
    try:
        client = Client(address, timeout="10s")
    except OSError as error:
        raise InputError(f"Cannot reach the dask scheduler at {address} ({error}).") from None
    try:
        yield client
    finally:
        client.close()


class _Progress:
    """A dask callback that reports (done, total) tasks."""

    def __init__(self, report: Callable[[int, int], None]):
        from dask.callbacks import Callback

        outer = self

        class _CB(Callback):
            def _start_state(self, dsk, state):
                outer.total = sum(len(state[k]) for k in ("ready", "waiting", "running"))
                outer.done = 0
                report(0, outer.total)

            def _posttask(self, key, result, dsk, state, worker_id):
                outer.done += 1
                report(outer.done, outer.total)

        self.callback = _CB()
        self.total = 0
        self.done = 0


def relabel_blockwise(
    fragments,
    tree_or_lut,
    threshold: float | None = None,
    out_path=None,
    chunks=None,
    voxel_size=None,
    offset=None,
    axes=None,
    overwrite: bool = False,
    scheduler_address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    attrs: dict | None = None,
    inputs=(),
):
    """Apply the lookup table for ``threshold`` to ``fragments`` block by block.

    Parameters
    ----------
    fragments
        numpy, dask or zarr array, a segtrain Volume or a path readable by segtrain.
    tree_or_lut
        A :class:`segtrain.segment.MergeTree`, a dense table or ``(fragment_ids, segment_ids)``.
    out_path
        Where to write (``.zarr`` by default; any format segtrain writes). None: return the
        computed numpy array instead.
    scheduler_address
        Address of a dask.distributed scheduler (e.g. a SLURM cluster); default: local threads.
    inputs
        Paths (or ``(path, dataset)``) the caller read, refused as ``out_path``; a path given as
        ``fragments`` is one too. The output follows :func:`segtrain.io.write_volume`'s rule.

    Returns
    -------
    The written path, or the relabelled numpy array when ``out_path`` is None.
    """

    if threshold is not None:
        check_threshold(threshold)
    if out_path is not None:
        from segtrain.io.write import check_not_input

        source = getattr(fragments, "source", None) or (fragments if isinstance(fragments, (str, Path)) else None)
        check_not_input(out_path, [*inputs, (source, getattr(fragments, "dataset", None))], overwrite)
    lazy = relabel_lazy(fragments, tree_or_lut, threshold, chunks)
    volume_meta = getattr(fragments, "voxel_size", None)
    callback = _Progress(progress).callback if progress and not scheduler_address else None
    with _scheduler(scheduler_address), callback or contextlib.nullcontext():
        if out_path is None:
            return lazy.compute()
        from segtrain.io import Volume, write_volume

        meta = dict(attrs or {})
        if threshold is not None:
            meta.setdefault("threshold", float(threshold))
        if hasattr(tree_or_lut, "scoring"):
            meta.setdefault("scoring", tree_or_lut.scoring)
        volume = Volume(
            data=lazy,
            voxel_size=tuple(voxel_size) if voxel_size is not None else (volume_meta or ()),
            offset=tuple(offset) if offset is not None else getattr(fragments, "offset", ()),
            axes=tuple(axes) if axes is not None else getattr(fragments, "axes", ()),
            name="segmentation",
            is_labels=True,
            attrs=meta,
        )
        return write_volume(out_path, volume, overwrite=overwrite, chunks=chunks, inputs=inputs)
