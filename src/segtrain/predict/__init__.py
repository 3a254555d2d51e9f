"""Inference with trained models: tiled over arrays of any size, into memory or zarr."""

from segtrain.predict.infer import predict_array, predict_to_zarr, predict_volume
from segtrain.predict.model_io import LoadedModel, find_checkpoint, load_model
from segtrain.predict.tiling import Tile, computed_fraction, make_tiles

__all__ = [
    "LoadedModel",
    "Tile",
    "computed_fraction",
    "find_checkpoint",
    "load_model",
    "make_tiles",
    "predict_array",
    "predict_to_zarr",
    "predict_volume",
]
