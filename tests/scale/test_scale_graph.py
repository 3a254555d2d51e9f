"""The waterz-scored region graph: cutting it equals the merge tree; it round-trips through SQLite."""

from __future__ import annotations

import numpy as np
import pytest

from segtrain.errors import InputError
from segtrain.scale import ScoredGraph, join_scores, open_graph_db, read_graph, region_graph, touching_pairs
from segtrain.scale.geometry import BlockGrid
from segtrain.scale.graph_db import open_graph_writer, write_edges, write_nodes
from segtrain.segment import MergeTree
from segtrain.targets import affinities


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label volumes split the voxels the same way (ids may differ)."""
    pairs = np.unique(np.stack([a.reshape(-1), b.reshape(-1)], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def noisy_tree(seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.repeat(rng.integers(1, 6, (10, 9, 9)), 5, 1), 5, 2)
    affs, _ = affinities(labels)
    affs = np.clip(affs + rng.normal(0, 0.3, affs.shape).astype(np.float32), 0, 1)
    return MergeTree.build(affs, None, scoring="hist_quant_50"), affs


def test_cutting_the_scored_graph_gives_the_merge_tree_segmentation_at_every_threshold():
    tree, affs = noisy_tree()
    frags = tree.fragments
    u, v = touching_pairs(frags)
    reference = region_graph(affs, frags)  # the dask module's in-memory graph: same edges
    np.testing.assert_array_equal(u, reference.u)
    np.testing.assert_array_equal(v, reference.v)
    scores = join_scores(tree.n_fragments, tree.merges_a, tree.merges_b, tree.running_max, u, v)
    assert scores.dtype == np.float32 and scores.min() >= 0 and scores.max() <= 1
    graph = ScoredGraph(np.unique(frags[frags > 0]), u, v, scores)
    changes = tree.thresholds_of_change()
    checked = [0.0, 1.0, *changes[:: max(1, len(changes) // 15)].tolist(),
               *(np.nextafter(changes[:: max(1, len(changes) // 15)], 1)).tolist()]
    for t in checked:
        t = float(min(max(t, 0.0), 1.0))
        seg = graph.relabel(frags, t)
        assert same_partition(seg, tree.segmentation(t)), t
        assert graph.n_segments(t) == tree.n_segments(t)
    with pytest.raises(InputError):
        graph.lookup(1.5)


def test_pairs_never_joined_score_one_and_block_ids_are_owned():
    # two merges: 1+2 at 0.2, then (1,2)+3 at 0.1 (running max 0.2); 4 never joins
    scores = join_scores(4, np.array([1, 1]), np.array([2, 3]), np.array([0.2, 0.2], np.float32),
                         np.array([1, 2, 1, 3]), np.array([2, 3, 4, 4]))
    np.testing.assert_array_equal(scores, np.array([0.2, 0.2, 1.0, 1.0], np.float32))
    grid = BlockGrid((10, 20, 20), (5, 8, 8))
    assert grid.grid == (2, 3, 3) and grid.n_blocks == 18
    first, last = grid.id_range(grid.index((5, 16, 8)))
    np.testing.assert_array_equal(grid.owner(np.array([first, last, last + 1])),
                                  [grid.index((5, 16, 8))] * 2 + [grid.index((5, 16, 8)) + 1])


def test_graph_round_trips_through_sqlite_and_a_crop_reads_its_part(tmp_path):
    rng = np.random.default_rng(2)
    n = 300
    ids = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(1000) + np.uint64(2**40)  # sparse, large
    positions = rng.random((n, 3)) * [50, 100, 100]
    sizes = rng.integers(1, 1000, n)
    u = ids[rng.integers(0, n // 2, 500)]
    v = ids[rng.integers(n // 2, n, 500)]
    keep = np.unique(np.stack([u, v], 1), axis=0)
    u, v = keep[:, 0], keep[:, 1]
    scores = rng.random(len(u)).astype(np.float32)
    db_path = tmp_path / "graph.sqlite"
    open_graph_db(db_path, mode="w").close()
    # the workers' writer (sqlite3) for half of the rows, funlib's for the other half
    half = n // 2
    writer = open_graph_writer(db_path)
    writer.write_nodes(ids[:half], positions[:half], sizes[:half])
    writer.write_edges(u[::2], v[::2], scores[::2])
    writer.write_edges(u[::2], v[::2], scores[::2])  # a retried block writes again: no duplicates
    writer.close()
    db = open_graph_db(db_path)
    write_nodes(db, ids[half:], positions[half:], sizes[half:])
    write_edges(db, u[1::2], v[1::2], scores[1::2])
    write_edges(db, u[1::2], v[1::2], scores[1::2])
    db.close()
    graph = read_graph(db_path)
    np.testing.assert_array_equal(graph.ids, ids)
    np.testing.assert_allclose(graph.positions, positions)
    np.testing.assert_array_equal(graph.sizes, sizes)
    order = np.lexsort((graph.v, graph.u))
    np.testing.assert_array_equal(graph.u[order], u)
    np.testing.assert_array_equal(graph.v[order], v)
    np.testing.assert_array_equal(graph.scores[order], scores)  # float32 survives exactly
    expected = ScoredGraph(ids, u, v, scores).lookup(0.3)
    for got, want in zip(graph.lookup(0.3), expected):
        np.testing.assert_array_equal(got, want)
    # a crop: the fragments whose centres lie in the ROI and every edge touching them
    crop = read_graph(db_path, roi=((0, 0, 0), (25, 100, 100)))
    inside = positions[:, 0] < 25
    np.testing.assert_array_equal(crop.ids, ids[inside])
    touching = np.isin(u, ids[inside]) | np.isin(v, ids[inside])
    assert crop.n_edges == int(touching.sum())
    with pytest.raises(InputError):
        read_graph(tmp_path / "missing.sqlite")
