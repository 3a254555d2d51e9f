"""napari writers (npe2 single-layer signature): Labels and Image layers to .zarr or .tif/.tiff.

Written atomically by :func:`segtrain.io.write_volume`, with attributes ``resolution`` (the
layer's scale), ``offset`` (its translate), ``axes``, ``layer_type`` and the layer's JSON-able metadata
(the settings that produced it), made by :func:`segtrain.plugin.layers.volume_from_layer_data`
as the Export panel does. An existing file or folder is never overwritten: the writer
raises an error naming it, so choose a new name (or delete the old one first).

Errors are raised as :class:`WriteError` (not a ValueError: napari would swallow a ValueError
from a writer and say only that no writer was found), so napari shows the reason.
"""

from __future__ import annotations

from typing import Any

from segtrain.errors import SegtrainError
from segtrain.io import write_volume
from segtrain.plugin.layers import volume_from_layer_data


class WriteError(SegtrainError, RuntimeError):
    """A layer could not be written (the message says why and what to do)."""


def _write(path: str, data: Any, meta: dict, layer_type: str) -> list[str]:
    try:
        return [str(write_volume(path, volume_from_layer_data(data, meta, layer_type)))]
    except SegtrainError as error:
        raise WriteError(str(error)) from None


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer; returns the written path."""
    return _write(path, data, meta, "labels")


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write an Image layer; returns the written path."""
    return _write(path, data, meta, "image")
