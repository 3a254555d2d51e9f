"""Blockwise pipelines on dask (local threads by default, a dask.distributed scheduler by address)."""

from segtrain.scale.blockwise import (
    RegionGraph,
    agglomerate_graph,
    fragments_blockwise,
    region_graph,
    region_graph_blockwise,
)
from segtrain.scale.relabel import dense_lut, relabel_blockwise, relabel_lazy

__all__ = [
    "RegionGraph",
    "agglomerate_graph",
    "dense_lut",
    "fragments_blockwise",
    "region_graph",
    "region_graph_blockwise",
    "relabel_blockwise",
    "relabel_lazy",
]
