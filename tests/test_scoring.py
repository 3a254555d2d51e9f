"""The one scoring table: the config, the merge tree (waterz) and the blockwise agglomeration all
take their scoring functions from ``segtrain.scoring.SCORING_TABLE``; adding one is one entry."""

from __future__ import annotations

import numpy as np
import pytest

from segtrain.config import ConfigError, SegmentConfig
from segtrain.errors import InputError
from segtrain.scale import ScoredGraph
from segtrain.scale.agglomeration import global_merge_scores
from segtrain.scale.edge_stats import edge_statistics, scoring_quantile
from segtrain.scoring import SCORING_TABLE, ScoringFunction, scoring_function
from segtrain.segment import MergeTree, make_fragments
from segtrain.segment._waterz import SCORING_FUNCTIONS, scoring_type
from segtrain.targets import affinities


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.reshape(-1), b.reshape(-1)], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def blocky_affinities(seed=0):
    from scipy.special import expit

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.repeat(rng.integers(1, 6, (6, 6, 6)), 4, 1), 4, 2)
    affs, _ = affinities(labels)
    affs = expit(3 * (2 * affs - 1) + rng.normal(0, 1.0, affs.shape)).astype(np.float32)
    frags = make_fragments(affs, "watershed", boundary_threshold=0.5, min_seed_distance=2, min_size=5)
    return affs, frags.astype(np.uint64)


def test_config_merge_tree_and_blockwise_accept_exactly_the_table():
    for name, function in SCORING_TABLE.items():
        assert SegmentConfig(scoring=name).scoring == name
        assert scoring_type(name) == function.waterz == SCORING_FUNCTIONS[name]
        assert scoring_quantile(name) == function.quantile  # the blockwise statistic
    assert list(SCORING_FUNCTIONS) == list(SCORING_TABLE)
    for bad in ("hist_quant_33", "median", 3):
        with pytest.raises(ConfigError, match="segment.scoring must be one of the valid names"):
            SegmentConfig(scoring=bad)
        with pytest.raises(InputError, match="Unknown scoring function"):
            scoring_quantile(bad)


def test_a_scoring_function_registered_in_the_table_works_in_both_paths(monkeypatch):
    """A new entry (here a second name for waterz's precompiled median, so that waterz needs no
    compiler) is accepted by the config and gives the same segmentations from the merge tree
    (waterz) and from the blockwise agglomeration of edge statistics."""
    median = ScoringFunction(SCORING_TABLE["hist_quant_50"].waterz, quantile=50)
    with pytest.raises(ConfigError):
        SegmentConfig(scoring="median")
    monkeypatch.setitem(SCORING_TABLE, "median", median)
    settings = SegmentConfig(scoring="median")
    assert scoring_function(settings.scoring) is median
    affs, frags = blocky_affinities()
    tree = MergeTree.build(affs, frags, scoring=settings.scoring)
    stats = edge_statistics(affs, frags, histograms=median.histograms)
    graph = ScoredGraph(np.unique(frags[frags > 0]), stats.u, stats.v, global_merge_scores(stats, "median"))
    changes = tree.thresholds_of_change()
    assert len(changes) > 5
    for t in [0.0, 1.0, *np.linspace(0, 1, 21).tolist()]:
        # the partitions agree away from ties (waterz leaves ties to its heap, this code to edge order)
        if np.min(np.abs(changes - t)) > 1e-6:
            assert same_partition(graph.relabel(frags, t), tree.segmentation(t)), t
