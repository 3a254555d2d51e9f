"""Blockwise work on volumes larger than memory.

- The pipeline on daisy (:mod:`segtrain.scale.pipeline`): predict -> fragments -> waterz-scored
  region graph in a database -> segments at any threshold, resumable, local or cluster workers.
- Relabelling a fragment volume with a lookup table, on dask (:mod:`segtrain.scale.relabel`;
  the Export panel and ``segtrain export`` use it).
- Mean-affinity fragments and region graphs on dask (:mod:`segtrain.scale.blockwise`).
"""

from segtrain.scale.blockwise import (
    RegionGraph,
    agglomerate_graph,
    fragments_blockwise,
    region_graph,
    region_graph_blockwise,
)
from segtrain.scale.graph import ScoredGraph, join_scores, touching_pairs
from segtrain.scale.graph_db import open_graph_db, read_graph
from segtrain.scale.job import ScaleJob
from segtrain.scale.pipeline import create_job, read_status, run_job, segment_job
from segtrain.scale.relabel import dense_lut, relabel_blockwise, relabel_lazy

__all__ = [
    "RegionGraph",
    "ScaleJob",
    "ScoredGraph",
    "agglomerate_graph",
    "create_job",
    "dense_lut",
    "fragments_blockwise",
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
