"""Blockwise pipelines on dask (local threads by default, a dask.distributed scheduler by address)."""

from segtrain.scale.relabel import dense_lut, relabel_blockwise, relabel_lazy

__all__ = ["dense_lut", "relabel_blockwise", "relabel_lazy"]
