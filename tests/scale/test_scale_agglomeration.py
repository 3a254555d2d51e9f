"""Edge statistics and the agglomeration of the global region graph against waterz.

- the statistics give waterz's own initial edge scores (its region graph at threshold 0),
- agglomerating them gives the in-memory merge tree's segmentation at every threshold where the
  result changes (``mean`` on continuous affinities; ``hist_quant_Q`` on affinities built so that
  no two edges ever tie, since waterz leaves ties to its heap and this code to edge order),
- they survive the database round trip, through both writers,
- a job (one block, or eight blocks with two worker processes) gives the merge tree built on its
  own fragments, at every threshold where the result changes.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from segtrain.errors import InputError
from segtrain.scale import (
    ScoredGraph,
    create_job,
    open_graph_db,
    read_graph,
    region_graph,
    run_job,
    segment_job,
)
from segtrain.scale.agglomeration import global_merge_scores
from segtrain.scale.edge_stats import BINS, EdgeStatistics, edge_statistics
from segtrain.scale.graph_db import (
    count_unscored_edges,
    open_graph_writer,
    read_edge_statistics,
    write_edges,
    write_merge_scores,
)
from segtrain.segment import MergeTree, make_fragments
from segtrain.segment._waterz import agglomerate
from segtrain.targets import affinities


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.reshape(-1), b.reshape(-1)], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def continuous_affinities(seed=0):
    """Affinities of random blocky cells with noise, squashed into (0, 1) without clipping (no
    two values equal, so no ties), and their watershed fragments."""
    from scipy.special import expit

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.repeat(rng.integers(1, 6, (10, 9, 9)), 5, 1), 5, 2)
    affs, _ = affinities(labels)
    affs = expit(3 * (2 * affs - 1) + rng.normal(0, 1.0, affs.shape)).astype(np.float32)
    frags = make_fragments(affs, "watershed", boundary_threshold=0.5, min_seed_distance=2, min_size=5)
    return affs, frags.astype(np.uint64)


def tie_free_histogram_volume(seed=1):
    """Cubic fragments whose every contact has all its affinities in one bin of its own (values
    jittered inside the bin): every histogram quantile is the bin of one original contact, so no
    two edges can ever score the same, however they merge."""
    rng = np.random.default_rng(seed)
    frags = np.arange(1, 4 * 4 * 4 + 1, dtype=np.uint64).reshape(4, 4, 4)
    frags = np.repeat(np.repeat(np.repeat(frags, 4, 0), 4, 1), 4, 2)
    affs = np.full((3, *frags.shape), 0.999, dtype=np.float32)
    pairs = {}
    for d in range(3):
        here = [slice(None)] * 3
        prev = [slice(None)] * 3
        here[d], prev[d] = slice(1, None), slice(0, -1)
        a, b = frags[tuple(here)], frags[tuple(prev)]
        for x, y in zip(a[a != b].tolist(), b[a != b].tolist()):
            pairs.setdefault((min(x, y), max(x, y)), None)
    edges = sorted(pairs)
    bins = rng.choice(np.arange(5, BINS - 5), size=len(edges), replace=False)
    bin_of = dict(zip(edges, bins.tolist()))
    for d in range(3):
        here = [slice(None)] * 3
        prev = [slice(None)] * 3
        here[d], prev[d] = slice(1, None), slice(0, -1)
        a, b = frags[tuple(here)], frags[tuple(prev)]
        boundary = a != b
        lo, hi = np.minimum(a, b)[boundary], np.maximum(a, b)[boundary]
        values = np.array([bin_of[(x, y)] for x, y in zip(lo.tolist(), hi.tolist())], np.float64)
        values = (values + rng.uniform(0.2, 0.8, len(values))) / BINS
        view = affs[d][tuple(here)]
        view[boundary] = values.astype(np.float32)
    return affs, frags


def waterz_initial_graph(affs, frags, scoring):
    """waterz's region graph before any merge: ``(u, v, score)`` sorted by ``(u, v)``."""
    for _, graph in agglomerate(affs, [0.0], fragments=frags.copy(), scoring=scoring,
                                return_region_graph=True):
        u = np.array([e["u"] for e in graph], np.uint64)
        v = np.array([e["v"] for e in graph], np.uint64)
        s = np.array([e["score"] for e in graph], np.float32)
    order = np.lexsort((v, u))
    return u[order], v[order], s[order]


@pytest.mark.parametrize("scoring", ["mean", "hist_quant_50", "hist_quant_75"])
def test_edge_statistics_give_waterz_initial_scores(scoring):
    affs, frags = continuous_affinities()
    stats = edge_statistics(affs, frags, histograms=scoring != "mean")
    u, v, scores = waterz_initial_graph(affs, frags, scoring)
    np.testing.assert_array_equal(stats.u, u)
    np.testing.assert_array_equal(stats.v, v)
    got = stats.initial_scores(scoring)
    assert got.dtype == np.float32
    if scoring == "mean":
        np.testing.assert_allclose(got, scores, atol=1e-6)  # waterz keeps a running float mean
        reference = region_graph(affs, frags)  # the dask module's sums, computed independently
        np.testing.assert_allclose(stats.affinity_sum, reference.affinity_sum)
        np.testing.assert_array_equal(stats.count, reference.count)
    else:
        np.testing.assert_array_equal(got, scores)
        assert stats.hist_counts.sum() == stats.count.sum()  # every voxel pair in one bin


def check_against_merge_tree(affs, frags, scoring):
    tree = MergeTree.build(affs, frags, scoring=scoring)
    stats = edge_statistics(affs, frags, histograms=scoring != "mean")
    shuffled = stats.take(np.random.default_rng(3).permutation(len(stats)))  # any edge order
    scores = global_merge_scores(shuffled, scoring)
    graph = ScoredGraph(np.unique(frags[frags > 0]), shuffled.u, shuffled.v, scores)
    changes = tree.thresholds_of_change()
    assert len(changes) > 20
    # between any two thresholds where the result changes (waterz's running float mean differs
    # from sum / count in the last bits), and for quantiles at them (those scores are exact)
    edges = np.concatenate([[0.0], changes, [1.0]])
    checked = [0.0, 1.0, *((edges[:-1] + edges[1:]) / 2).tolist()]
    if scoring != "mean":
        checked += [*changes.tolist(), *np.nextafter(changes, 1).tolist()]
    for t in checked:
        t = float(min(max(t, 0.0), 1.0))
        assert same_partition(graph.relabel(frags, t), tree.segmentation(t)), (scoring, t)
    return tree


def test_global_agglomeration_is_the_merge_tree_with_mean_scoring():
    affs, frags = continuous_affinities()
    tree = check_against_merge_tree(affs, frags, "mean")
    assert len(np.unique(tree.scores)) == len(tree.scores)  # continuous: no ties


@pytest.mark.parametrize("scoring", ["hist_quant_50", "hist_quant_10", "hist_quant_90"])
def test_global_agglomeration_is_the_merge_tree_with_histogram_quantiles(scoring):
    affs, frags = tie_free_histogram_volume()
    tree = check_against_merge_tree(affs, frags, scoring)
    assert len(tree.scores) == 63  # everything joins below 1: every merge was checked
    assert len(np.unique(tree.scores)) == len(tree.scores)


def test_statistics_and_scores_round_trip_through_sqlite(tmp_path):
    affs, frags = continuous_affinities()
    stats = edge_statistics(affs, frags, histograms=True)
    offset = np.uint64(2**40)  # large ids, as blocks far into a volume have
    stats = EdgeStatistics(stats.u + offset, stats.v + offset, stats.affinity_sum, stats.count,
                           stats.hist_ptr, stats.hist_bins, stats.hist_counts)
    block_scores = np.random.default_rng(0).random(len(stats)).astype(np.float32)
    db_path = tmp_path / "graph.sqlite"
    open_graph_db(db_path, mode="w").close()
    half = len(stats) // 2
    first, second = stats.take(np.arange(half)), stats.take(np.arange(half, len(stats)))
    writer = open_graph_writer(db_path)  # the workers' writer (sqlite3) ...
    for _ in range(2):  # ... a retried block writes its rows again: no duplicates
        writer.write_edges(first.u, first.v, block_scores=block_scores[:half], stats=first)
    writer.close()
    db = open_graph_db(db_path)  # ... and funlib's (what PostgreSQL goes through)
    write_edges(db, second.u, second.v, block_scores=block_scores[half:], stats=second)
    db.close()
    back = read_edge_statistics(db_path)
    np.testing.assert_array_equal(back.u, stats.u)
    np.testing.assert_array_equal(back.v, stats.v)
    np.testing.assert_array_equal(back.affinity_sum, stats.affinity_sum)  # float64 survives
    np.testing.assert_array_equal(back.count, stats.count)
    np.testing.assert_array_equal(back.hist_ptr, stats.hist_ptr)
    np.testing.assert_array_equal(back.hist_bins, stats.hist_bins)
    np.testing.assert_array_equal(back.hist_counts, stats.hist_counts)
    for scoring in ("mean", "hist_quant_50"):
        np.testing.assert_array_equal(back.initial_scores(scoring), stats.initial_scores(scoring))
    # no merge score before the global step: nothing may cut the graph yet
    assert count_unscored_edges(db_path) == len(stats)
    with pytest.raises(InputError, match="global step"):
        read_graph(db_path)
    scores = global_merge_scores(back, "hist_quant_50")
    write_merge_scores(db_path, back.u, back.v, scores)
    assert count_unscored_edges(db_path) == 0
    graph = read_graph(db_path)
    order = np.lexsort((graph.v, graph.u))
    np.testing.assert_array_equal(graph.scores[order], scores)
    assert len(np.unique(scores)) > 10  # scores of many different merges, not one value


# --- through the pipeline: per-block statistics, the database, the global step ------------------


def write_affinities(path, affs, block):
    zarr.create_array(store=str(path), shape=affs.shape, chunks=(3, *block), dtype="float32",
                      zarr_format=2)[:] = affs
    return str(path)


def cut_thresholds(tree: MergeTree, exact: bool) -> list[float]:
    """Between any two thresholds where the merge tree's result changes, and (``exact``) at them."""
    changes = tree.thresholds_of_change()
    bounds = np.concatenate([[0.0], changes, [1.0]])
    checked = [0.0, 1.0, *((bounds[:-1] + bounds[1:]) / 2).tolist()]
    if exact:
        checked += [*changes.tolist(), *np.minimum(np.nextafter(changes, 1), 1).tolist()]
    return checked


def assert_job_is_the_merge_tree(job, affs, scoring, exact):
    """The job's graph, cut at every threshold that matters, is waterz's merge tree on the job's
    own fragments (pieces stitched across block faces made one, what the graph gives at 0); and
    the segmentation written block by block is too."""
    pieces = zarr.open_array(str(job.volumes), path="fragments", mode="r")[:]
    graph = read_graph(job.db)
    frags = graph.relabel(pieces, 0.0)
    tree = MergeTree.build(affs, frags, scoring=scoring)
    checked = cut_thresholds(tree, exact)
    assert len(checked) > 40
    for t in checked:
        assert same_partition(graph.relabel(pieces, t), tree.segmentation(t)), t
    t = float(np.median(tree.thresholds_of_change()))
    seg = segment_job(job, t, workers=2)
    assert seg.step.ok and seg.segments == tree.n_segments(t)
    assert same_partition(zarr.open_array(str(seg.path), mode="r")[:], tree.segmentation(t))
    return tree


def test_eight_blocks_two_workers_give_the_merge_tree_of_their_fragments_with_mean(tmp_path):
    affs, _ = continuous_affinities()
    block = (5, 24, 24)
    segment = dict(fragments="watershed", boundary_threshold=0.5, min_seed_distance=2, min_size=5,
                   per_slice=False, scoring="mean")
    job = create_job(tmp_path / "job", affinities=write_affinities(tmp_path / "a.zarr", affs, block),
                     block_shape=block, context=(2, 6, 6), segment=segment)
    results = run_job(job, workers=2)
    assert [r.task_id for r in results] == ["fragments", "agglomerate", "global"]
    assert all(r.ok for r in results) and job.grid.n_blocks == 8
    tree = assert_job_is_the_merge_tree(job, affs, "mean", exact=False)
    assert len(np.unique(tree.scores)) == len(tree.scores)
    # edges across block faces are there (owned by one block each) and took part
    graph = read_graph(job.db)
    owners = job.grid.owner(graph.u), job.grid.owner(graph.v)
    assert (owners[0] != owners[1]).sum() > 20
    # a second run finds everything done, the global step included
    again = run_job(job, workers=2)
    assert [r.skipped for r in again] == [8, 8, 1]


def job_on_given_fragments(root, affs, frags, block, scoring):
    """A job whose fragments are ``frags`` (they must not cross blocks), renumbered per block as
    the fragments step does; then the agglomerate and global steps run on them."""
    from segtrain.scale.blocks import centres_and_sizes
    from segtrain.scale.geometry import roi_slices
    from segtrain.scale.volumes import open_array
    from segtrain.segment import relabel_consecutive

    segment = dict(fragments="watershed", boundary_threshold=0.5, min_seed_distance=2, min_size=0,
                   per_slice=False, scoring=scoring)
    job = create_job(root / "job", affinities=write_affinities(root / "a.zarr", affs, block),
                     block_shape=block, context=tuple(b // 4 for b in block), segment=segment)
    out = np.zeros(frags.shape, np.uint64)
    writer = open_graph_writer(job.db)
    for loc in np.ndindex(*job.grid.grid):
        begin = tuple(i * b for i, b in zip(loc, block))
        region = roi_slices(begin, block)
        local = relabel_consecutive(frags[region])
        n = int(local.max())
        offset = np.uint64(job.grid.id_offset(begin))
        out[region] = np.where(local > 0, local + offset, 0)
        writer.write_nodes(np.arange(1, n + 1, dtype=np.uint64) + offset,
                           *centres_and_sizes(local, n, begin))
    writer.close()
    open_array(job.fragments, write=True)[:] = out
    results = run_job(job, steps=["agglomerate", "global"], workers=2)
    assert [r.task_id for r in results] == ["agglomerate", "global"] and all(r.ok for r in results)
    return job


@pytest.mark.parametrize("block", [(16, 16, 16), (8, 8, 8)], ids=["one block", "eight blocks"])
def test_blocks_give_the_merge_tree_with_histogram_quantiles(tmp_path, block):
    affs, cubes = tie_free_histogram_volume()
    job = job_on_given_fragments(tmp_path, affs, cubes, block, "hist_quant_50")
    assert job.grid.n_blocks == (1 if block == (16, 16, 16) else 8)
    tree = assert_job_is_the_merge_tree(job, affs, "hist_quant_50", exact=True)
    assert len(tree.scores) == 63 and len(np.unique(tree.scores)) == 63  # no ties: all checked
