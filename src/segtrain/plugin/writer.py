"""napari writers (npe2 single-layer signature): Labels and Image layers to .zarr or .tif/.tiff.

Written atomically by :func:`segtrain.io.write_volume`, with attributes ``resolution`` (the
layer's scale), ``offset`` (its translate), ``axes``, ``layer_type`` and the layer's metadata
(the settings that produced it). An existing file or folder is never overwritten: the writer
raises an error naming it, so choose a new name (or delete the old one first).

Errors are raised as :class:`WriteError` (not a ValueError: napari would swallow a ValueError
from a writer and say only that no writer was found), so napari shows the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segtrain.errors import SegtrainError
from segtrain.io import Volume, write_volume
from segtrain.io.volume import DEFAULT_AXES, jsonable


class WriteError(SegtrainError, RuntimeError):
    """A layer could not be written (the message says why and what to do)."""


def _write(path: str, data: Any, meta: dict, is_labels: bool) -> list[str]:
    try:
        return [str(write_volume(path, _volume(data, meta, is_labels)))]
    except SegtrainError as error:
        raise WriteError(str(error)) from None


def _volume(data: Any, meta: dict, is_labels: bool) -> Volume:
    if meta.get("multiscale") and isinstance(data, (list, tuple)):
        data = data[0]  # highest resolution
    if not hasattr(data, "dtype"):
        data = np.asarray(data)
    if meta.get("rgb"):
        axes = ("y", "x", "c") if data.ndim == 3 else ("z", "y", "x", "c")
    else:
        axes = DEFAULT_AXES.get(data.ndim, ())
    return Volume(
        data=data,
        voxel_size=tuple(meta.get("scale") or ()),
        offset=tuple(meta.get("translate") or ()),
        axes=axes,
        name=str(meta.get("name") or ("labels" if is_labels else "image")),
        is_labels=is_labels,
        attrs=jsonable(dict(meta.get("metadata") or {})),
    )


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer; returns the written path."""
    return _write(path, data, meta, is_labels=True)


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write an Image layer; returns the written path."""
    return _write(path, data, meta, is_labels=False)
