"""What waterz scores a region-graph edge with, per edge, so that blocks can gather it and the
driver can agglomerate the whole graph (:mod:`segtrain.scale.agglomeration`).

waterz's region graph (``region_graph.hpp``): for every voxel ``p`` and axis ``d`` (z, y, x) with
``p[d] > 0``, the voxel pair ``(p - e_d, p)`` across the boundary between two non-zero fragments
adds the affinity ``affs[d][p]`` to the edge between them. Its scoring functions summarise these
values per edge, and merge the summaries of parallel edges when regions merge:

- ``mean`` (``OneMinus<MeanAffinity>``): ``1 - sum / count``; merged edges add sums and counts.
- ``hist_quant_Q`` (``OneMinus<HistogramQuantileAffinity<.., Q, .., 256, false>>``): a 256-bin
  histogram of the values (bin ``min(int(a * 256), 255)``, 0 for ``a <= 0``); the score is
  ``1 - (b + 0.5) / 256`` for the first bin ``b`` whose cumulative count reaches
  ``Q * total // 100 + 1``; merged edges add histograms.

:class:`EdgeStatistics` holds both for a set of edges ``u < v``: sums and counts, and histograms
in compressed sparse rows (the non-empty bins of each edge), which is what the database stores.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from segtrain.errors import InputError
from segtrain.scoring import scoring_function

BINS = 256


def scoring_quantile(scoring: str) -> int | None:
    """The quantile ``Q`` of a histogram scoring, None for the mean (a name in
    :data:`segtrain.scoring.SCORING_TABLE`, or waterz's type string of one)."""
    return scoring_function(scoring).quantile


def discretize(values: np.ndarray) -> np.ndarray:
    """waterz's histogram bin of each float32 affinity (``discretize<int>(a, 256)``)."""
    a = np.asarray(values, dtype=np.float32)
    bins = np.minimum((a * np.float32(BINS)).astype(np.int64, copy=False), BINS - 1)
    bins[~(a > 0)] = 0  # also NaN, as waterz
    return bins


@dataclass
class EdgeStatistics:
    """Edges ``u < v`` (sorted, unique) with the affinity sum and count of their contact and,
    when ``hist_ptr`` is given, histograms: edge ``k`` has ``hist_counts[hist_ptr[k]:
    hist_ptr[k + 1]]`` values in bins ``hist_bins[...]`` (ascending, only non-empty bins)."""

    u: np.ndarray
    v: np.ndarray
    affinity_sum: np.ndarray
    count: np.ndarray
    hist_ptr: np.ndarray | None = None
    hist_bins: np.ndarray | None = None
    hist_counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.u = np.asarray(self.u, dtype=np.uint64)
        self.v = np.asarray(self.v, dtype=np.uint64)
        self.affinity_sum = np.asarray(self.affinity_sum, dtype=np.float64)
        self.count = np.asarray(self.count, dtype=np.int64)
        if not (len(self.u) == len(self.v) == len(self.affinity_sum) == len(self.count)):
            raise InputError("Edge statistics need one u, v, sum and count per edge.")
        if self.hist_ptr is not None:
            self.hist_ptr = np.asarray(self.hist_ptr, dtype=np.int64)
            self.hist_bins = np.asarray(self.hist_bins, dtype=np.uint8)
            self.hist_counts = np.asarray(self.hist_counts, dtype=np.int64)
            if len(self.hist_ptr) != len(self.u) + 1 or len(self.hist_bins) != len(self.hist_counts):
                raise InputError("Edge histograms need one row per edge.")

    def __len__(self) -> int:
        return int(len(self.u))

    @property
    def has_histograms(self) -> bool:
        return self.hist_ptr is not None

    def take(self, order: np.ndarray) -> EdgeStatistics:
        """The edges ``order`` (indices), in that order."""
        order = np.asarray(order, dtype=np.int64)
        if not self.has_histograms:
            return EdgeStatistics(self.u[order], self.v[order], self.affinity_sum[order],
                                  self.count[order])
        starts, sizes = self.hist_ptr[order], np.diff(self.hist_ptr)[order]
        ptr = np.concatenate([[0], np.cumsum(sizes)])
        cells = np.repeat(starts - ptr[:-1], sizes) + np.arange(ptr[-1])
        return EdgeStatistics(self.u[order], self.v[order], self.affinity_sum[order],
                              self.count[order], ptr, self.hist_bins[cells], self.hist_counts[cells])

    @classmethod
    def empty(cls, u, v, histograms: bool) -> EdgeStatistics:
        """Edges ``(u, v)`` without any value (their fragments do not touch)."""
        u, v = np.asarray(u, np.uint64), np.asarray(v, np.uint64)
        zeros = np.zeros(len(u), np.int64)
        if not histograms:
            return cls(u, v, zeros, zeros)
        return cls(u, v, zeros, zeros, np.zeros(len(u) + 1, np.int64), np.zeros(0, np.uint8),
                   np.zeros(0, np.int64))

    def contains(self, u, v) -> np.ndarray:
        """For each edge here, whether it is one of the pairs ``(u[k], v[k])``."""
        u, v = np.asarray(u, np.uint64), np.asarray(v, np.uint64)
        if not len(u) or not len(self):
            return np.zeros(len(self), bool)
        mine = np.stack([self.u, self.v], axis=1)
        _, code = np.unique(np.concatenate([mine, np.stack([u, v], axis=1)]), axis=0,
                            return_inverse=True)
        code = code.reshape(-1)
        return np.isin(code[:len(self)], code[len(self):])

    @classmethod
    def concatenate(cls, parts: Sequence[EdgeStatistics]) -> EdgeStatistics:
        """The edges of all ``parts`` (all with histograms, or none), sorted by ``(u, v)``; an
        edge in several parts has their statistics added up."""
        parts = list(parts)
        histograms = {p.has_histograms for p in parts}
        if len(histograms) > 1:
            raise InputError("Edge statistics with and without histograms cannot be combined.")
        if not histograms or not parts:
            return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0), np.zeros(0))
        u = np.concatenate([p.u for p in parts])
        v = np.concatenate([p.v for p in parts])
        whole = cls(u, v, np.concatenate([p.affinity_sum for p in parts]),
                    np.concatenate([p.count for p in parts]))
        if histograms == {True}:
            offsets = np.cumsum([0] + [len(p.hist_bins) for p in parts[:-1]])
            whole.hist_ptr = np.concatenate(
                [[0]] + [p.hist_ptr[1:] + o for p, o in zip(parts, offsets)]).astype(np.int64)
            whole.hist_bins = np.concatenate([p.hist_bins for p in parts])
            whole.hist_counts = np.concatenate([p.hist_counts for p in parts])
        return whole.added_up(u, v)[0]

    def added_up(self, u: np.ndarray, v: np.ndarray) -> tuple[EdgeStatistics, np.ndarray]:
        """The statistics of these edges renamed to ``(u[k], v[k])`` (e.g. the regions their
        fragments belong to): parallel edges become one with their sums, counts and histograms
        added up (as waterz adds those of edges whose regions merged); an edge whose two ends got
        one name is dropped. Returns the new statistics (sorted by ``(u, v)``) and, for each edge
        here, the index of the edge it went into (-1: dropped)."""
        u, v = np.asarray(u, np.uint64), np.asarray(v, np.uint64)
        lo, hi = np.minimum(u, v), np.maximum(u, v)
        kept = np.flatnonzero(lo != hi)
        pairs, into = np.unique(np.stack([lo[kept], hi[kept]], axis=1).reshape(-1, 2), axis=0,
                                return_inverse=True)
        into = into.reshape(-1)
        m = len(pairs)
        edge_of = np.full(len(self), -1, np.int64)
        edge_of[kept] = into
        sums = np.bincount(into, weights=self.affinity_sum[kept], minlength=m)
        counts = np.bincount(into, weights=self.count[kept], minlength=m).astype(np.int64)
        out = EdgeStatistics(pairs[:, 0], pairs[:, 1], sums, counts)
        if self.has_histograms:
            sizes = np.diff(self.hist_ptr)
            cell_edge = np.repeat(edge_of, sizes)
            keep = cell_edge >= 0
            cells, at = np.unique(cell_edge[keep] * BINS + self.hist_bins[keep], return_inverse=True)
            owner = cells // BINS
            out.hist_ptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=m))])
            out.hist_bins = (cells % BINS).astype(np.uint8)
            out.hist_counts = np.bincount(at.reshape(-1), weights=self.hist_counts[keep],
                                          minlength=len(cells)).astype(np.int64)
        return out, edge_of

    def histogram(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(bins, counts)`` of edge ``k``."""
        lo, hi = self.hist_ptr[k], self.hist_ptr[k + 1]
        return self.hist_bins[lo:hi], self.hist_counts[lo:hi]

    def histogram_texts(self) -> list[str]:
        """Each edge's histogram as text for the database: base64 of its bins (uint8) followed
        by their counts (uint32, little endian); empty when there are no histograms."""
        if not self.has_histograms:
            return [""] * len(self)
        bins = self.hist_bins.tobytes()
        counts = self.hist_counts.astype("<u4").tobytes()
        ptr = self.hist_ptr.tolist()
        return [base64.b64encode(bins[a:b] + counts[4 * a:4 * b]).decode("ascii")
                for a, b in pairwise(ptr)]

    @classmethod
    def from_texts(cls, u, v, affinity_sum, count, texts) -> EdgeStatistics:
        """The inverse of :meth:`histogram_texts` (``texts`` None or all empty: no histograms)."""
        if texts is None or not any(texts):
            return cls(u, v, affinity_sum, count)
        raw = [base64.b64decode(t) if t else b"" for t in texts]
        sizes = np.fromiter((len(r) // 5 for r in raw), dtype=np.int64, count=len(raw))
        ptr = np.concatenate([[0], np.cumsum(sizes)])
        bins = np.frombuffer(b"".join(r[:len(r) // 5] for r in raw), dtype=np.uint8)
        counts = np.frombuffer(b"".join(r[len(r) // 5:] for r in raw), dtype="<u4")
        return cls(u, v, affinity_sum, count, ptr, bins, counts.astype(np.int64))

    def initial_scores(self, scoring: str) -> np.ndarray:
        """float32 waterz score of every edge before any merge (vectorised)."""
        q = scoring_quantile(scoring)
        if q is None:
            return mean_score(self.affinity_sum, self.count)
        if not self.has_histograms:
            raise InputError(f"Scoring {scoring} needs edge histograms; these statistics have none.")
        starts, ends = self.hist_ptr[:-1], self.hist_ptr[1:]
        cumulative = np.cumsum(self.hist_counts)
        base = np.concatenate([[0], cumulative])
        totals = base[ends] - base[starts]
        found = totals > 0  # always, for edges of a region graph
        at = np.searchsorted(cumulative, base[starts] + q * totals // 100 + 1, side="left")
        bins = np.zeros(len(self), dtype=np.int64)
        bins[found] = self.hist_bins[at[found]]
        scores = quantile_score(bins)
        scores[~found] = 1.0  # no values: never merged (as mean_score)
        return scores


def mean_score(affinity_sum, count) -> np.ndarray:
    """``1 - mean affinity`` in float32, as waterz's ``mean`` (an edge without values: 1)."""
    count = np.asarray(count)
    mean = (np.asarray(affinity_sum, dtype=np.float64) / np.maximum(count, 1)).astype(np.float32)
    mean = np.where(count > 0, mean, np.float32(0))
    return (1.0 - mean.astype(np.float64)).astype(np.float32)


def quantile_score(bins) -> np.ndarray:
    """``1 - (bin + 0.5) / 256`` in float32 (waterz's ``undiscretize`` and ``OneMinus``)."""
    value = ((np.asarray(bins, dtype=np.float64) + 0.5) / BINS).astype(np.float32)
    return (1.0 - value.astype(np.float64)).astype(np.float32)


def boundary_values(affs: np.ndarray, fragments: np.ndarray,
                    region: tuple[slice, ...] | None = None):
    """Every voxel pair across a boundary between two non-zero fragments, as waterz counts them:
    ``(u, v, axis, affinity)`` with ``u < v`` the two ids and the affinity of the pair's second
    voxel along that axis. ``region`` (slices of ``fragments``) limits the pairs to those whose
    both voxels lie in it."""
    region = region or tuple(slice(0, s) for s in fragments.shape)
    frags = fragments[region]
    a = affs[(slice(None), *region)]
    us, vs, values = [], [], []
    for d in range(3):
        here = [slice(None)] * 3
        prev = [slice(None)] * 3
        here[d], prev[d] = slice(1, None), slice(0, -1)
        x = frags[tuple(here)]
        y = frags[tuple(prev)]
        keep = (x != y) & (x != 0) & (y != 0)
        xk, yk = x[keep], y[keep]
        us.append(np.minimum(xk, yk))
        vs.append(np.maximum(xk, yk))
        values.append(a[d][tuple(here)][keep])
    return (np.concatenate(us).astype(np.uint64), np.concatenate(vs).astype(np.uint64),
            np.concatenate(values).astype(np.float32))


def edge_statistics(affs: np.ndarray, fragments: np.ndarray, *, histograms: bool,
                    region: tuple[slice, ...] | None = None,
                    keep: Callable[[np.ndarray], np.ndarray] | None = None) -> EdgeStatistics:
    """Statistics of the edges among ``fragments`` (uint ids, 0 = background) from float32
    affinities ``(>=3, z, y, x)`` in [0, 1] (see :func:`segtrain.segment._waterz.as_waterz_affinities`).

    ``region``: only voxel pairs inside it; ``keep(u)``: only edges whose smaller id passes.
    """
    u, v, values = boundary_values(affs, fragments, region)
    if keep is not None:
        mask = keep(u)
        u, v, values = u[mask], v[mask], values[mask]
    ids = np.unique(np.concatenate([u, v]))
    n = np.uint64(len(ids))
    key = np.searchsorted(ids, u).astype(np.uint64) * n + np.searchsorted(ids, v).astype(np.uint64)
    edges, edge_of = np.unique(key, return_inverse=True)
    edge_of = edge_of.reshape(-1)
    m = len(edges)
    eu, ev = ids[(edges // max(n, 1)).astype(np.int64)], ids[(edges % max(n, 1)).astype(np.int64)]
    sums = np.bincount(edge_of, weights=values.astype(np.float64), minlength=m)
    counts = np.bincount(edge_of, minlength=m).astype(np.int64)
    if not histograms:
        return EdgeStatistics(eu, ev, sums, counts)
    cells, cell_counts = np.unique(edge_of.astype(np.int64) * BINS + discretize(values),
                                   return_counts=True)
    owner = cells // BINS
    ptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=m))])
    return EdgeStatistics(eu, ev, sums, counts, ptr, (cells % BINS).astype(np.uint8), cell_counts)
