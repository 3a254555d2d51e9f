"""waterz's agglomeration on a region graph given by per-edge statistics, not by a volume.

The same procedure as waterz's ``IterativeRegionMerging`` (``mergeUntil``): a priority queue of
edges by score; pop the cheapest; a deleted edge is skipped; a stale one (its statistics grew
since it was scored) is scored again and pushed back; otherwise its two regions merge. On a
merge, every edge of the absorbed region moves to the other one; where both had an edge to the
same neighbour, the two edges become one: the statistics of the more expensive one (by the
scores last computed) are added to the cheaper one, which is marked stale, and the other is
deleted. Merging stops at the first edge scoring ``>= max_threshold``.

Scores are float32 and computed as waterz computes them (:mod:`segtrain.scale.edge_stats`).
Ties are broken by edge index (edges sorted by ``(u, v)``), where waterz's queue leaves them to
its heap; on a graph without ties the merge order, and so every segmentation, is waterz's.

What comes out is a merge history like waterz's; :func:`join_scores` turns it into the score at
which each edge's two fragments joined (running maximum), which is what the blockwise pipeline
stores and cuts (:func:`global_merge_scores`).
"""

from __future__ import annotations

import heapq
import struct
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from segtrain.scale.edge_stats import BINS, EdgeStatistics, scoring_quantile
from segtrain.scale.graph import STITCHED, join_scores


class _MeanScores:
    """``1 - sum / count`` per edge; merging adds sums and counts."""

    def __init__(self, stats: EdgeStatistics):
        self.sums = stats.affinity_sum.tolist()
        self.counts = stats.count.tolist()

    def score(self, e: int) -> float:  # as mean_score, for one edge
        mean = float(np.float32(self.sums[e] / self.counts[e])) if self.counts[e] else 0.0
        return float(np.float32(1.0 - mean))

    def merge(self, source: int, target: int) -> None:
        self.sums[target] += self.sums[source]
        self.counts[target] += self.counts[source]


class _QuantileScores:
    """``1 - quantile`` of a 256-bin histogram per edge; merging adds histograms.

    Histograms are Python lists of (ascending) bins and counts: most have a few bins, where
    plain Python beats numpy's per-call cost. Merged histograms are added up only when the edge
    is scored again (most merged edges are merged or deleted again before that): a merge only
    notes which edges' counts are to be added.
    """

    def __init__(self, stats: EdgeStatistics, q: int):
        self.q = q
        ptr = stats.hist_ptr.tolist()
        bins, counts = stats.hist_bins.tolist(), stats.hist_counts.tolist()
        self.bins = [bins[a:b] for a, b in pairwise(ptr)]
        self.counts = [counts[a:b] for a, b in pairwise(ptr)]
        self.pending: list[list[int] | None] = [None] * len(stats)  # edges whose counts to add

    def score(self, e: int) -> float:
        pending = self.pending[e]
        if pending:
            total: dict[int, int] = dict(zip(self.bins[e], self.counts[e]))
            for k in pending:
                for b, c in zip(self.bins[k], self.counts[k]):
                    total[b] = total.get(b, 0) + c
                self.bins[k] = self.counts[k] = None
            self.pending[e] = None
            self.bins[e] = sorted(total)
            self.counts[e] = [total[b] for b in self.bins[e]]
        counts = self.counts[e]
        pivot = self.q * sum(counts) // 100 + 1
        running = 0
        for b, c in zip(self.bins[e], counts):
            running += c
            if running >= pivot:
                return 1.0 - (b + 0.5) / BINS  # exact in float32, as quantile_score
        return 1.0  # no values (never in a region graph): never merged, as initial_scores

    def merge(self, source: int, target: int) -> None:
        mine, theirs = self.pending[target] or [], self.pending[source] or []
        if len(mine) < len(theirs):
            mine, theirs = theirs, mine
        mine.append(source)
        mine.extend(theirs)
        self.pending[target] = mine
        self.pending[source] = None


@dataclass
class MergeHistory:
    """Merges in order: merge ``i`` joined the regions holding nodes ``a[i]`` and ``b[i]`` (node
    indices 1..n) at ``scores[i]``."""

    a: np.ndarray
    b: np.ndarray
    scores: np.ndarray

    @property
    def running_max(self) -> np.ndarray:
        return np.maximum.accumulate(self.scores) if len(self.scores) else self.scores.copy()


def _keys(scores: np.ndarray) -> list[int]:
    """Queue keys of edges ``0..m-1`` with float32 ``scores >= 0``: the score's bits, then the
    edge index. Integers order as ``(score, edge)`` tuples do, and compare faster."""
    bits = np.asarray(scores, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits << np.uint64(32)) | np.arange(len(bits), dtype=np.uint64)).tolist()


_FLOAT32 = struct.Struct("<f")
_UINT32 = struct.Struct("<I")


def merge_history(n: int, u: np.ndarray, v: np.ndarray, stats: EdgeStatistics, scoring: str,
                  max_threshold: float = 1.0) -> MergeHistory:
    """Agglomerate nodes 1..n joined by edges ``(u[k], v[k])`` (node indices, one edge per pair,
    in ``stats``' order) with ``scoring`` (``mean`` or ``hist_quant_Q``) up to ``max_threshold``."""
    if len(stats) >= 2**32:
        raise ValueError("more than 2**32 edges")
    q = scoring_quantile(scoring)
    scorer = _MeanScores(stats) if q is None else _QuantileScores(stats, q)
    # each edge's key in the queue: the score it was last given, then its index (the tie-break)
    recorded = _keys(stats.initial_scores(scoring))
    limit = _keys(np.array([max_threshold], np.float32))[0]  # scores below it merge
    ends = [np.asarray(u, np.int64).tolist(), np.asarray(v, np.int64).tolist()]
    adjacency: list[dict[int, int] | None] = [{} for _ in range(n + 1)]
    for e, (x, y) in enumerate(zip(*ends)):
        adjacency[x][y] = e
        adjacency[y][x] = e
    queue = list(recorded)
    heapq.heapify(queue)
    stale = bytearray(len(recorded))
    deleted = bytearray(len(recorded))
    low = 2**32 - 1
    merged_a, merged_b, merged_keys = [], [], []
    while queue and queue[0] < limit:
        key = heapq.heappop(queue)
        e = key & low
        if deleted[e]:
            continue
        if stale[e]:
            stale[e] = 0
            bits = _UINT32.unpack(_FLOAT32.pack(scorer.score(e)))[0]
            recorded[e] = (bits << 32) | e
            heapq.heappush(queue, recorded[e])
            continue
        keep, gone = ends[0][e], ends[1][e]
        if len(adjacency[keep]) < len(adjacency[gone]):  # move the smaller neighbourhood
            keep, gone = gone, keep
        merged_a.append(keep)
        merged_b.append(gone)
        merged_keys.append(key)
        near = adjacency[keep]
        del near[gone]
        for neighbour, f in adjacency[gone].items():
            if neighbour == keep:
                continue
            theirs = adjacency[neighbour]
            del theirs[gone]
            g = near.get(neighbour)
            if g is not None:  # parallel edges: the cheaper one stays, with both statistics
                if recorded[g] < recorded[f]:
                    f, g = g, f
                scorer.merge(g, f)
                deleted[g] = 1
                stale[f] = 1
            near[neighbour] = f
            theirs[keep] = f
            ends[0][f], ends[1][f] = keep, neighbour
        adjacency[gone] = None
    scores = (np.array(merged_keys, dtype=np.uint64) >> np.uint64(32)).astype(np.uint32).view(np.float32)
    return MergeHistory(np.asarray(merged_a, np.int64), np.asarray(merged_b, np.int64), scores)


def global_merge_scores(stats: EdgeStatistics, scoring: str, max_threshold: float = 1.0,
                        stitched: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """float32 score at which each edge's two fragments join when the whole graph is
    agglomerated (1.0 when they never join below ``max_threshold``): connected components of the
    edges scoring below ``t`` are the regions waterz returns at ``t``.

    ``stitched`` pairs ``(u, v)`` are pieces of one fragment (cut by block faces): they are one
    node before agglomerating (their edges to a neighbour added up into one, as waterz's region
    graph of the whole fragment has it), and every edge inside such a fragment scores
    :data:`~segtrain.scale.graph.STITCHED`."""
    if stitched is not None and len(stitched[0]):
        return _stitched_merge_scores(stats, scoring, max_threshold, *stitched)
    order = np.lexsort((stats.v, stats.u))
    stats = stats.take(order)
    ids = np.unique(np.concatenate([stats.u, stats.v]))
    u = np.searchsorted(ids, stats.u) + 1
    v = np.searchsorted(ids, stats.v) + 1
    history = merge_history(len(ids), u, v, stats, scoring, max_threshold)
    scores = np.empty(len(order), np.float32)
    scores[order] = join_scores(len(ids), history.a, history.b, history.running_max, u, v)
    return scores


def fragment_of(ids: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """For each of ``ids`` (sorted, unique), the smallest id of the pieces it is joined with by
    the pairs ``(u, v)`` (connected components)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(ids)
    matrix = coo_matrix((np.ones(len(u), np.int8), (np.searchsorted(ids, u), np.searchsorted(ids, v))),
                        shape=(n, n))
    _, component = connected_components(matrix, directed=False)
    smallest = np.full(component.max() + 1 if n else 0, np.iinfo(np.uint64).max, np.uint64)
    np.minimum.at(smallest, component, ids)
    return smallest[component]


def _stitched_merge_scores(stats: EdgeStatistics, scoring: str, max_threshold: float,
                           su: np.ndarray, sv: np.ndarray) -> np.ndarray:
    ids = np.unique(np.concatenate([stats.u, stats.v, su, sv]))
    whole = fragment_of(ids, np.asarray(su, np.uint64), np.asarray(sv, np.uint64))
    contracted, edge_of = stats.added_up(whole[np.searchsorted(ids, stats.u)],
                                         whole[np.searchsorted(ids, stats.v)])
    scores = np.full(len(stats), STITCHED, np.float32)
    kept = edge_of >= 0
    scores[kept] = global_merge_scores(contracted, scoring, max_threshold)[edge_of[kept]]
    return scores
