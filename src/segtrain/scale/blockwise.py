"""Blockwise fragments and agglomeration for volumes larger than memory (dask).

- :func:`fragments_blockwise`: fragments per block, ids unique across blocks
  (``local id + block index * voxels per block``), 0 = background.
- :func:`region_graph_blockwise`: edges between touching fragments with the sum and count of the
  affinities across their contact, counted block by block (each block also looks one voxel back
  into its predecessors, so contacts across block faces are counted exactly once) and reduced.
- :func:`agglomerate_graph`: edges whose score ``1 - mean affinity`` is below the threshold are
  cut out of the global graph and connected components give the segments (a lookup).

Each step equals its in-memory counterpart (:func:`region_graph` on the whole arrays); the
lookup is applied with :func:`segtrain.scale.relabel_blockwise`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segtrain.errors import InputError
from segtrain.scale.relabel import _scheduler
from segtrain.segment import fragments_watershed
from segtrain.segment import fragments_waterz
from segtrain.segment._waterz import check_threshold


def _dask(array, chunks=None):
    import dask.array as da

    data = getattr(array, "data", array)
    if isinstance(data, da.Array):
        return data if chunks is None else data.rechunk(chunks)
    return da.from_array(data, chunks=chunks or "auto")


def fragments_blockwise(affs, block_shape: Sequence[int], method: str = "watershed", **params):
    """Lazy uint64 fragments of ``affs (C, z, y, x)`` computed block by block.

    ``method`` is "watershed" (:func:`segtrain.segment.fragments_watershed`, ``params`` passed on)
    or "waterz" (:func:`segtrain.segment.fragments_waterz`).
    """

    block_shape = tuple(int(b) for b in block_shape)
    a = _dask(affs)
    if a.ndim != 4 or len(block_shape) != 3:
        raise InputError("Blockwise fragments need affinities (C, z, y, x) and a 3D block shape.")
    a = a[:3].rechunk((3, *block_shape))
    voxels = int(np.prod(block_shape))
    grid = a.numblocks[1:]
    fn = fragments_waterz if method == "waterz" else fragments_watershed
    if method not in ("waterz", "watershed"):
        raise InputError(f"Unknown fragments method {method!r}: use 'watershed' or 'waterz'.")

    def block(x, block_info=None):
        loc = block_info[0]["chunk-location"][1:]
        index = int(np.ravel_multi_index(loc, grid))
        frags = fn(np.asarray(x, dtype=np.float32), **params)
        nz = frags != 0
        frags[nz] += np.uint64(index * voxels)
        return frags

    return a.map_blocks(block, dtype=np.uint64, drop_axis=0)


@dataclass
class RegionGraph:
    """Edges ``u < v`` between touching fragments with the affinity sum and count of the contact."""

    u: np.ndarray
    v: np.ndarray
    affinity_sum: np.ndarray
    count: np.ndarray

    @property
    def mean_affinity(self) -> np.ndarray:
        return self.affinity_sum / np.maximum(self.count, 1)

    @property
    def scores(self) -> np.ndarray:
        """``1 - mean affinity`` (low = merge first), as waterz's ``mean`` scoring starts out."""
        return 1.0 - self.mean_affinity


def _edges(affs: np.ndarray, frags: np.ndarray, starts: Sequence[int]) -> RegionGraph:
    """Edges of voxels at index >= ``starts`` (per axis) with their predecessors."""
    us, vs, sums = [], [], []
    for d in range(3):
        here = [slice(starts[k], None) for k in range(3)]
        here[d] = slice(max(starts[d], 1), None)
        prev = list(here)
        prev[d] = slice(here[d].start - 1, frags.shape[d] - 1)
        a = frags[tuple(here)].reshape(-1)
        b = frags[tuple(prev)].reshape(-1)
        w = affs[d][tuple(here)].reshape(-1)
        keep = (a != b) & (a != 0) & (b != 0)
        lo = np.minimum(a[keep], b[keep])
        hi = np.maximum(a[keep], b[keep])
        us.append(lo)
        vs.append(hi)
        sums.append(w[keep].astype(np.float64))
    return _reduce(np.concatenate(us), np.concatenate(vs), np.concatenate(sums),
                   np.ones(sum(len(u) for u in us), dtype=np.int64))


def _reduce(u, v, s, c) -> RegionGraph:
    if len(u) == 0:
        z = np.zeros(0, dtype=np.uint64)
        return RegionGraph(z, z.copy(), np.zeros(0), np.zeros(0, dtype=np.int64))
    pairs = np.stack([u.astype(np.uint64), v.astype(np.uint64)], axis=1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return RegionGraph(
        uniq[:, 0], uniq[:, 1],
        np.bincount(inverse, weights=s, minlength=len(uniq)),
        np.bincount(inverse, weights=c, minlength=len(uniq)).astype(np.int64),
    )


def region_graph(affs: np.ndarray, fragments: np.ndarray) -> RegionGraph:
    """In-memory region graph of nearest-neighbour affinities ``(>=3, z, y, x)`` and fragments."""
    affs = np.asarray(affs)
    fragments = np.asarray(fragments)
    if affs.ndim != 4 or affs.shape[0] < 3 or affs.shape[1:] != fragments.shape:
        raise InputError(f"Affinities {affs.shape} and fragments {fragments.shape} do not fit; "
                         "expected (C>=3, z, y, x) and (z, y, x).")
    return _edges(affs, fragments, (0, 0, 0))


def region_graph_blockwise(affs, fragments, block_shape: Sequence[int] | None = None,
                           scheduler_address: str | None = None) -> RegionGraph:
    """The region graph computed block by block (one voxel of look-back per block) and reduced."""
    import dask

    f = _dask(fragments)
    a = _dask(affs)
    if a.ndim != 4 or a.shape[0] < 3 or tuple(a.shape[1:]) != tuple(f.shape):
        raise InputError(f"Affinities {a.shape} and fragments {f.shape} do not fit; "
                         "expected (C>=3, z, y, x) and (z, y, x).")
    if block_shape is not None:
        f = f.rechunk(tuple(block_shape))
    tasks = []
    for index in np.ndindex(*f.numblocks):
        starts = [int(sum(f.chunks[d][: index[d]])) for d in range(3)]
        stops = [starts[d] + f.chunks[d][index[d]] for d in range(3)]
        lo = [max(s - 1, 0) for s in starts]  # one voxel back
        sl = tuple(slice(l0, s1) for l0, s1 in zip(lo, stops))
        inner = [s - l0 for s, l0 in zip(starts, lo)]
        tasks.append(dask.delayed(_edges)(a[(slice(0, 3), *sl)], f[sl], inner))
    with _scheduler(scheduler_address):
        parts = dask.compute(*tasks)
    return _reduce(
        np.concatenate([p.u for p in parts]), np.concatenate([p.v for p in parts]),
        np.concatenate([p.affinity_sum for p in parts]), np.concatenate([p.count for p in parts]),
    )


def agglomerate_graph(graph: RegionGraph, threshold: float,
                      fragment_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the edges scoring below ``threshold``: ``(fragment_ids,
    segment_ids)`` (each segment is named by its smallest fragment id)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    threshold = check_threshold(threshold)
    ids = np.unique(np.concatenate([graph.u, graph.v] + (
        [np.asarray(fragment_ids, dtype=np.uint64)] if fragment_ids is not None else [])))
    ids = ids[ids != 0]
    keep = graph.scores < threshold
    ui = np.searchsorted(ids, graph.u[keep])
    vi = np.searchsorted(ids, graph.v[keep])
    n = len(ids)
    matrix = coo_matrix((np.ones(len(ui), dtype=np.int8), (ui, vi)), shape=(n, n))
    _, component = connected_components(matrix, directed=False)
    smallest = np.full(component.max() + 1 if n else 0, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(smallest, component, ids)
    return ids, smallest[component]
