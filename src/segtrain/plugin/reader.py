"""napari reader hook: everything :mod:`segtrain.io` opens, as Image and Labels layers.

The hook never raises: for paths it does not recognise it returns None (other readers may take
them); for a path it recognises but cannot read (corrupt, empty, 5D, ...) it shows the one-line
reason as a napari warning and returns None.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import numpy as np

from segtrain.io import Volume, is_readable_path, read_volumes
from segtrain.plugin.layers import (
    LayerInfo,
    prediction_layer_args,
    uncertainty_layer_args,
)
from segtrain.errors import SegtrainError
from segtrain.tasks import is_prediction

log = logging.getLogger(__name__)

LayerData = tuple  # (data, kwargs, layer_type)


def layer_data(volume: Volume, name: str | None = None) -> LayerData:
    """napari LayerData for a :class:`Volume`: scale/translate from voxel size/offset, the file's
    attributes as layer metadata; channel axes become one layer per channel (RGB stays RGB)."""
    data = volume.data
    # how a prediction (or a segmentation of one) was made, parsed once: a malformed record is refused
    info = LayerInfo.from_attrs(volume.attrs, " ".join(filter(None, [volume.source, volume.dataset])) or volume.name)
    kwargs = {
        "name": name or volume.name,
        "scale": tuple(volume.voxel_size),
        "translate": tuple(volume.offset),
        # the Data panel says whether the voxel size came from the file or is an assumed 1
        "metadata": {**volume.attrs, "voxel_size_in_file": bool(volume.voxel_size_given)},
    }
    if volume.is_labels:
        if data.dtype == bool:
            data = data.astype(np.uint8)
        return data, kwargs, "labels"
    if info is not None and is_prediction(info.kind) and not volume.is_lazy \
            and "c" in volume.axes and volume.axes.index("c") == 0:
        # a `segtrain predict` output: shown as the Predict panel shows it, the run's settings kept
        data, pkwargs = prediction_layer_args(np.asarray(data), None, kwargs["name"], info.kind, info=info)
        pkwargs.update(scale=kwargs["scale"], translate=kwargs["translate"])
        return data, pkwargs, "image"
    if info is not None and info.kind == "uncertainty" and not volume.is_lazy and volume.axes[:1] == ("c",):
        # `segtrain predict --uncertainty`: magma, added onto the image (shown: the file was asked for)
        data, pkwargs = uncertainty_layer_args(np.asarray(data), None, kwargs["name"], info=info)
        pkwargs.update(scale=kwargs["scale"], translate=kwargs["translate"], visible=True)
        return data, pkwargs, "image"
    if "c" in volume.axes:
        axis = volume.axes.index("c")
        if axis == data.ndim - 1 and data.shape[axis] in (3, 4):
            kwargs["rgb"] = True
        else:
            kwargs["channel_axis"] = axis
    return data, kwargs, "image"


def read_layers(path: str | os.PathLike | Sequence) -> list[LayerData]:
    """Layer data for one path or several, images before labels (so labels are drawn on top);
    raises SegtrainError for unreadable input."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    volumes = [v for p in paths for v in read_volumes(p)]
    return [layer_data(v) for v in sorted(volumes, key=lambda v: v.is_labels)]


def napari_get_reader(path) -> Callable | None:
    """Return a reader function for ``path`` (a file, folder, or list of them), or None."""
    try:
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if not paths or not all(is_readable_path(p) for p in paths):
            return None
    except Exception:  # noqa: BLE001 - a hook must never raise
        return None
    try:
        layers = read_layers(paths)
    except Exception as error:  # noqa: BLE001 - report, never raise
        _warn(error)
        return None

    def reader(_path=None) -> list[LayerData]:
        return layers

    return reader


def _warn(error: Exception) -> None:
    message = str(error) if isinstance(error, SegtrainError) else (
        f"segtrain could not read this file: {type(error).__name__}: {error}")
    log.warning(message)
    try:
        from napari.utils.notifications import show_warning

        show_warning(message)
    except Exception:  # noqa: BLE001 - no napari, or no notification manager
        pass
