"""Fragments cut at block faces are stitched back into the whole volume's fragments.

- the face rule: mutual majority on the planes either side of a face,
- statistics of pieces added up are the statistics of the whole fragments (what waterz's region
  graph of the whole fragments holds),
- a job whose blocks see the whole volume as context has, once its pieces are stitched, exactly
  the whole volume's fragments, and its segmentation is the in-memory merge tree's at every
  threshold where that changes (watershed and waterz fragments, mean scoring),
- with a quarter-block context on em3d-fibsem predicted-like affinities, stitching brings the
  fragments close to the whole volume's (see docs/scale.md for the figures).
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from test_scale_agglomeration import (
    continuous_affinities,
    cut_thresholds,
    same_partition,
    write_affinities,
)

from segtrain.scale import ScoredGraph, create_job, read_graph, run_job, segment_job
from segtrain.scale.agglomeration import global_merge_scores
from segtrain.scale.edge_stats import edge_statistics
from segtrain.scale.graph import STITCHED
from segtrain.scale.graph_db import read_stitched_pairs
from segtrain.scale.stitch import block_ids, face_views, same_basin_pairs
from segtrain.segment import MergeTree, make_fragments


def test_pieces_pair_by_mutual_majority_on_the_face():
    # voxels of both face planes: the lower block's label, the upper block's label
    lower = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 0, 5, 5])
    upper = np.array([7, 7, 7, 8, 9, 9, 0, 9, 9, 0, 0, 6, 4, 4])
    u, v = same_basin_pairs(lower, upper)
    # 1 -> 7 (3 of 4 either way); 2 and 3 share 9 (2 of 4 of 9's voxels each: no majority);
    # 5 -> 4; the 0 labels (no piece on that side) count against a pair, never for one
    assert list(zip(u.tolist(), v.tolist())) == [(1, 7), (5, 4)]
    assert same_basin_pairs(np.zeros(4), np.ones(4))[0].size == 0


def test_a_block_views_its_neighbours_first_planes_in_its_own_stored_ids():
    from segtrain.segment import relabel_consecutive

    rng = np.random.default_rng(0)
    labels = rng.choice([0, 3, 5, 9], size=(5, 6, 7))
    inner = (slice(1, 4), slice(2, 5), slice(0, 7))  # no room beyond x: no x views
    labels[0, 2:5, :3] = 4  # a basin only beyond the z- face: not this block's, 0 in the view
    ids = np.unique(labels[inner])
    ids = ids[ids != 0]
    views = face_views(labels, inner, ids, 1000)
    assert sorted(views) == ["y+", "y-", "z+", "z-"]
    # the ids the block stores (as the fragments step numbers them), on the neighbours' planes
    stored = relabel_consecutive(labels[inner])
    stored[stored != 0] += np.uint64(1000)
    np.testing.assert_array_equal(block_ids(labels[inner], ids, 1000), stored)
    expected = {1000 + k + 1: label for k, label in enumerate(ids.tolist())} | {0: 0}
    for key, plane in (("z-", labels[0, 2:5, :]), ("z+", labels[4, 2:5, :]),
                       ("y-", labels[1:4, 1, :]), ("y+", labels[1:4, 5, :])):
        back = np.vectorize(expected.get)(views[key])
        np.testing.assert_array_equal(back, np.where(plane == 4, 0, plane), err_msg=key)
    assert (views["z-"][:, :3] == 0).all()


@pytest.mark.parametrize("scoring", ["mean", "hist_quant_50"])
def test_added_up_statistics_of_pieces_are_those_of_the_whole_fragments(scoring):
    affs, frags = continuous_affinities()
    # cut every fragment at z = 5 and y = 20: pieces as blocks store them
    pieces = frags * 4 + (np.arange(10) >= 5)[:, None, None] + 2 * (np.arange(45) >= 20)[None, :, None]
    pieces[frags == 0] = 0
    histograms = scoring != "mean"
    whole = edge_statistics(affs, frags, histograms=histograms)
    cut = edge_statistics(affs, pieces.astype(np.uint64), histograms=histograms)
    added, edge_of = cut.added_up(cut.u // 4, cut.v // 4)
    np.testing.assert_array_equal(added.u, whole.u)
    np.testing.assert_array_equal(added.v, whole.v)
    np.testing.assert_allclose(added.affinity_sum, whole.affinity_sum, rtol=1e-12)
    np.testing.assert_array_equal(added.count, whole.count)
    np.testing.assert_array_equal(added.initial_scores(scoring), whole.initial_scores(scoring))
    assert (edge_of == -1).sum() == ((cut.u // 4) == (cut.v // 4)).sum() > 0  # inside a fragment


@pytest.mark.parametrize("method", ["watershed", "waterz"])
def test_blocks_with_the_whole_volume_as_context_give_the_whole_volume_fragments(tmp_path, method):
    """Every block computes the whole volume's basins, so the pieces of each basin cut by the
    faces find each other: stitched, they are the whole volume's fragments, and the segmentation
    is the in-memory merge tree's at every threshold where it changes."""
    affs, _ = continuous_affinities()
    block = (5, 24, 24)
    segment = {"fragments": method, "boundary_threshold": 0.5, "min_seed_distance": 2,
               "min_size": 5, "per_slice": False, "scoring": "mean"}
    job = create_job(tmp_path / "job", affinities=write_affinities(tmp_path / "a.zarr", affs, block),
                     block_shape=block, context=affs.shape[1:], segment=segment)
    assert all(r.ok for r in run_job(job, workers=2)) and job.grid.n_blocks == 8
    whole = make_fragments(affs, method, boundary_threshold=0.5, min_seed_distance=2, min_size=5)
    pieces = zarr.open_array(str(job.volumes), path="fragments", mode="r")[:]
    assert len(np.unique(pieces)) > len(np.unique(whole)) + 20  # many basins cross faces
    graph = read_graph(job.db)
    su, sv = read_stitched_pairs(job.db)
    assert len(su) > 20 and (job.grid.owner(su) != job.grid.owner(sv)).all()
    assert (graph.scores[np.isin(graph.u, su) & np.isin(graph.v, sv)] == STITCHED).any()
    stitched = graph.relabel(pieces, 0.0)  # only the pieces of one basin are joined at 0
    assert same_partition(stitched, whole)
    # the agglomeration of the whole volume's fragments, in memory: the same at every threshold
    stats = edge_statistics(affs, whole, histograms=False)
    in_memory = ScoredGraph(np.unique(whole[whole > 0]), stats.u, stats.v,
                            global_merge_scores(stats, "mean"))
    changes = in_memory.thresholds_of_change()  # each, or 100 of them spread over all
    changes = changes[np.linspace(0, len(changes) - 1, min(len(changes), 100)).astype(int)]
    for t in [0.0, *changes.tolist(), *np.nextafter(changes, 1).tolist(), 1.0]:
        assert same_partition(graph.relabel(pieces, t), in_memory.relabel(whole, t)), t
    tree = MergeTree.build(affs, whole, scoring="mean")
    if method == "watershed":  # and waterz's; its own 5,900 tiny fragments have near ties
        for t in cut_thresholds(tree, exact=False):
            assert same_partition(graph.relabel(pieces, t), tree.segmentation(t)), t
    t = float(np.median(tree.thresholds_of_change()))
    seg = segment_job(job, t, workers=2)
    assert seg.segments == tree.n_segments(t)
    assert same_partition(zarr.open_array(str(seg.path), mode="r")[:], tree.segmentation(t))
