"""A region graph whose edges carry merge scores, and how to cut it at a threshold.

An agglomeration's merge history gives every edge ``(u, v)`` between touching fragments the score
at which ``u`` and ``v`` were put into one region: the running maximum of the merge scores at the
merge that joined them (1.0 when they were never joined; :func:`join_scores`). Connected
components of the edges scoring below ``t`` are then exactly the regions the agglomeration
returns for ``t``. The blockwise pipeline computes these scores twice: per block from waterz on
the block plus its context (``block_score``, as the LSD pipeline's blockwise agglomeration does),
and from the agglomeration of the whole graph (``merge_score``, what it cuts; see
:mod:`segtrain.scale.agglomeration`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from segtrain.errors import InputError
from segtrain.io.atomic import atomic_path
from segtrain.scale.relabel import _apply_sparse
from segtrain.segment._waterz import check_threshold

#: Score of an edge whose fragments waterz never joined (no threshold <= 1 merges it).
UNMERGED = np.float32(1.0)
#: Score of an edge between two pieces of one fragment cut by a block face: joined below every
#: threshold, 0 included (:mod:`segtrain.scale.stitch`).
STITCHED = np.float32(-1.0)


def touching_pairs(fragments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique pairs ``u < v`` of non-zero ids that touch along z, y or x (face neighbours)."""
    us, vs = [], []
    for d in range(fragments.ndim):
        a = np.moveaxis(fragments, d, 0)[1:].reshape(-1)
        b = np.moveaxis(fragments, d, 0)[:-1].reshape(-1)
        keep = (a != b) & (a != 0) & (b != 0)
        us.append(np.minimum(a[keep], b[keep]))
        vs.append(np.maximum(a[keep], b[keep]))
    if not us:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    pairs = np.stack([np.concatenate(us), np.concatenate(vs)], axis=1).astype(np.uint64)
    if not len(pairs):
        return pairs[:, 0], pairs[:, 1]
    pairs = np.unique(pairs, axis=0)
    return pairs[:, 0], pairs[:, 1]


def _merge_forest(n: int, merges_a: np.ndarray, merges_b: np.ndarray) -> np.ndarray:
    """Parent pointers of the merge forest: leaves 1..n, merge ``m`` is node ``n + 1 + m``."""
    m_count = len(merges_a)
    parent = np.arange(n + 1 + m_count, dtype=np.int64)
    uf = list(range(n + 1))  # union-find over leaves
    top = list(range(n + 1))  # tree node of the region whose union-find root is the index

    def find(x: int) -> int:
        root = x
        while uf[root] != root:
            root = uf[root]
        while uf[x] != root:
            uf[x], x = root, uf[x]
        return root

    for m, (a, b) in enumerate(zip(merges_a.tolist(), merges_b.tolist())):
        ra, rb = find(a), find(b)
        if ra == rb:  # cannot happen with waterz; keep the forest a forest regardless
            continue
        node = n + 1 + m
        parent[top[ra]] = node
        parent[top[rb]] = node
        uf[rb] = ra
        top[ra] = node
    return parent


def join_scores(n: int, merges_a: np.ndarray, merges_b: np.ndarray, running_max: np.ndarray,
                u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """float32 score at which each pair ``(u[i], v[i])`` of local ids (1..n) was joined.

    The merges ``(merges_a[m], merges_b[m])`` are waterz's merge history in order and
    ``running_max`` the running maximum of its scores; pairs never joined get :data:`UNMERGED`.
    The lowest common ancestor in the merge forest is found by binary lifting (vectorised).
    """
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    out = np.full(len(u), UNMERGED, dtype=np.float32)
    if not len(u) or not len(merges_a):
        return out
    parent = _merge_forest(n, np.asarray(merges_a), np.asarray(merges_b))
    depth = np.zeros(len(parent), dtype=np.int64)
    for node in range(len(parent) - 1, -1, -1):  # parents have larger indices than children
        p = parent[node]
        if p != node:
            depth[node] = depth[p] + 1
    up = [parent]  # up[k][i]: the 2**k-th ancestor of node i (roots point to themselves)
    while True:
        nxt = up[-1][up[-1]]
        if np.array_equal(nxt, up[-1]):
            break
        up.append(nxt)
    x, y = u.copy(), v.copy()
    swap = depth[x] < depth[y]
    x[swap], y[swap] = v[swap], u[swap]
    diff = depth[x] - depth[y]
    for k, table in enumerate(up):
        bit = ((diff >> k) & 1) == 1
        x[bit] = table[x[bit]]
    for table in reversed(up):
        differ = table[x] != table[y]
        x[differ] = table[x[differ]]
        y[differ] = table[y[differ]]
    same = x == y
    joined = same | (parent[x] == parent[y])
    lca = np.where(same, x, parent[x])
    merge_index = lca - (n + 1)
    ok = joined & (merge_index >= 0)
    out[ok] = np.asarray(running_max, dtype=np.float32)[merge_index[ok]]
    return out


@dataclass
class ScoredGraph:
    """Fragments (nodes) and edges ``u < v`` with waterz merge scores (float32).

    Answers what the GUI's merge tree answers, for any part of the volume it was read for:
    :meth:`lookup` at a threshold, :meth:`relabel` of a fragment region, :meth:`n_segments`,
    :meth:`thresholds_of_change`.
    """

    ids: np.ndarray
    u: np.ndarray
    v: np.ndarray
    scores: np.ndarray
    positions: np.ndarray | None = None
    sizes: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.uint64)
        self.u = np.asarray(self.u, dtype=np.uint64)
        self.v = np.asarray(self.v, dtype=np.uint64)
        self.scores = np.asarray(self.scores, dtype=np.float32)
        if not (len(self.u) == len(self.v) == len(self.scores)):
            raise InputError("Edges need one u, one v and one score each.")

    @property
    def n_fragments(self) -> int:
        return int(len(self.ids))

    @property
    def n_edges(self) -> int:
        return int(len(self.u))

    def _check(self, threshold: float) -> np.float32:
        return np.float32(check_threshold(threshold))

    def lookup(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """``(fragment_ids, segment_ids)`` (sorted by fragment id): connected components of the
        edges scoring below ``threshold``; each segment is named by its smallest fragment id."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        t = self._check(threshold)
        ids = np.unique(np.concatenate([self.ids, self.u, self.v]))
        ids = ids[ids != 0]
        keep = self.scores < t
        ui = np.searchsorted(ids, self.u[keep])
        vi = np.searchsorted(ids, self.v[keep])
        n = len(ids)
        if n == 0:
            return ids, ids.copy()
        matrix = coo_matrix((np.ones(len(ui), dtype=np.int8), (ui, vi)), shape=(n, n))
        _, component = connected_components(matrix, directed=False)
        smallest = np.full(component.max() + 1, np.iinfo(np.uint64).max, dtype=np.uint64)
        np.minimum.at(smallest, component, ids)
        return ids, smallest[component]

    def relabel(self, fragments, threshold: float) -> np.ndarray:
        """Segment ids for a region of the fragments (e.g. the displayed slice of a crop)."""

        ids, segments = self.lookup(threshold)
        return _apply_sparse(np.asarray(fragments), ids, segments)

    def n_segments(self, threshold: float) -> int:
        _, segments = self.lookup(threshold)
        return int(len(np.unique(segments)))

    def thresholds_of_change(self) -> np.ndarray:
        """Distinct edge scores in [0, 1): the thresholds just above which the result changes
        (pieces of one fragment, :data:`STITCHED`, are joined at every threshold)."""
        s = np.unique(self.scores)
        return s[(s >= 0) & (s < UNMERGED)]

    def save(self, path, overwrite: bool = False):
        """Write the graph to an ``.npz`` file, atomically."""
        from pathlib import Path

        arrays = dict(ids=self.ids, u=self.u, v=self.v, scores=self.scores)
        if self.positions is not None:
            arrays["positions"] = np.asarray(self.positions)
        if self.sizes is not None:
            arrays["sizes"] = np.asarray(self.sizes)
        with atomic_path(Path(path), overwrite=overwrite) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        return Path(path)
