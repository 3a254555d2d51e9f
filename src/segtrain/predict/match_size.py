"""Predict an image zoomed so that its objects have the size the model was tuned at.

A network trained on cells of one size segments much smaller or larger cells badly (measured on
cells2d-phase images zoomed to 0.6x: instance F1 0.42 against 0.86 at their own size), and no
post-processing setting repairs it. Cellpose answers with a cell diameter the image is rescaled
to; here the model's own size is known (``segment.object_size``, the median object of its
predictions on the images `segtrain tune` tuned it on), and each image's size is measured the same
way: predict, cut into instances with the run's settings (no smallest-object filter), take the
size of the object a foreground pixel typically belongs to, zoom the image by
``sqrt(object_size / size)`` and repeat until the factor settles (:data:`MAX_PASSES`; within
:data:`~segtrain.postprocess.masks.SIZE_TOLERANCE` nothing is zoomed, so images like the tuning
images predict exactly as before). The estimating passes run without test-time augmentation; the
last pass uses the requested one. Outputs are zoomed back onto the image's own grid, and
:func:`segtrain.postprocess.instances` scales the size settings to its objects.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from segtrain.config import Config
from segtrain.postprocess import OutputSpec
from segtrain.postprocess.masks import measured_object_size, size_ratio
from segtrain.tasks import task_of

MAX_PASSES = 3  # estimating passes (each a plain prediction) before the final one
FACTOR_RANGE = (0.25, 4.0)  # zoom factors allowed (diameter)


def matching_applies(config: Config, match: bool | None = None) -> bool:
    """Whether predictions of this model are size-matched: asked for (``match``, or the config's
    ``predict.match_object_size``), a 2D mask/instance model, and a known ``segment.object_size``."""
    wanted = config.predict.match_object_size if match is None else match
    return bool(wanted) and task_of(config).foreground and config.ndim == 2 \
        and config.segment.object_size is not None


def zoom_plane(array: np.ndarray, factor: float | tuple[float, float]) -> np.ndarray:
    """``array`` (``(..., y, x)``) resampled in-plane by ``factor`` (linear), or to a shape when
    ``factor`` is a ``(y, x)`` shape."""
    array = np.asarray(array, dtype=np.float32)
    plane = array.shape[-2:]
    if isinstance(factor, tuple):
        zooms = [t / s for t, s in zip(factor, plane)]
    else:
        zooms = [factor, factor]
    out = ndimage.zoom(array, [1] * (array.ndim - 2) + zooms, order=1, mode="nearest", grid_mode=True)
    if isinstance(factor, tuple):
        out = out[(..., slice(0, factor[0]), slice(0, factor[1]))]
    return out


def match_factor(predict: Callable[[float], dict], config: Config) -> tuple[float, dict[float, dict]]:
    """The zoom factor that gives this image's objects the model's size, and the plain predictions
    made on the way (by factor). ``predict(factor)`` returns the outputs of the image zoomed by
    ``factor``."""
    spec = OutputSpec.of(config)
    factor, seen = 1.0, {}
    for _ in range(MAX_PASSES):
        outputs = seen.setdefault(factor, predict(factor))
        measured = measured_object_size(outputs["probabilities"], config.segment, spec)
        ratio = size_ratio(measured, config.segment.object_size)
        if ratio == 1.0:
            break
        factor = float(np.clip(factor / np.sqrt(ratio), *FACTOR_RANGE))
        if factor in seen:
            break
    return factor, seen
