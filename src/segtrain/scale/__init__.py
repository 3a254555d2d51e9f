"""Blockwise work on volumes larger than memory.

- The pipeline on daisy (:mod:`segtrain.scale.pipeline`): predict -> fragments (pieces cut by
  block faces stitched back, :mod:`segtrain.scale.stitch`) -> region graph with per-edge
  statistics in a database (:mod:`segtrain.scale.edge_stats`) -> waterz's agglomeration of the
  whole graph (:mod:`segtrain.scale.agglomeration`) -> segments at any threshold, resumable,
  local or cluster workers; from a child process that can be stopped between blocks
  (:mod:`segtrain.scale.driver`).
- Relabelling a fragment volume with a lookup table, on dask (:mod:`segtrain.scale.relabel`;
  the Export panel and ``segtrain export`` use it).
- Mean-affinity fragments and region graphs on dask (:mod:`segtrain.scale.blockwise`).
"""

from segtrain.scale.agglomeration import global_merge_scores
from segtrain.scale.blockwise import (
    RegionGraph,
    agglomerate_graph,
    fragments_blockwise,
    region_graph,
    region_graph_blockwise,
)
from segtrain.scale.edge_stats import EdgeStatistics, edge_statistics
from segtrain.scale.graph import ScoredGraph, join_scores, touching_pairs
from segtrain.scale.graph_db import open_graph_db, read_graph
from segtrain.scale.job import ScaleJob
from segtrain.scale.pipeline import create_job, read_status, run_job, segment_job
from segtrain.scale.relabel import dense_lut, relabel_blockwise, relabel_lazy

__all__ = [
    "EdgeStatistics",
    "RegionGraph",
    "ScaleJob",
    "ScoredGraph",
    "agglomerate_graph",
    "create_job",
    "dense_lut",
    "edge_statistics",
    "fragments_blockwise",
    "global_merge_scores",
    "join_scores",
    "open_graph_db",
    "read_graph",
    "read_status",
    "region_graph",
    "region_graph_blockwise",
    "relabel_blockwise",
    "relabel_lazy",
    "run_job",
    "segment_job",
    "touching_pairs",
]
