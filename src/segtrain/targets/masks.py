"""Boundary, foreground and class masks from labels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

from segtrain.errors import InputError


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InputError(f"Labels must be 2D or 3D, not of shape {labels.shape}.")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise InputError(f"Labels must be integers, not {labels.dtype}.")
    return labels


def foreground(labels: np.ndarray) -> np.ndarray:
    """True where a voxel belongs to any object (label != 0)."""
    return _check_labels(labels) != 0


def boundaries(labels: np.ndarray, mode: str = "inner", width: int = 1) -> np.ndarray:
    """True on object voxels that touch a different label (including background).

    ``mode`` is passed to :func:`skimage.segmentation.find_boundaries` ("inner", "outer",
    "thick"); "inner" keeps boundaries inside the objects, so background stays False. With
    ``width`` > 1 ("inner" only) the boundary grows into each object by ``width - 1`` more
    face-neighbour steps, never across into another object: ``width`` voxels on each side of a
    contact.
    """
    labels = _check_labels(labels)
    edge = find_boundaries(labels, connectivity=1, mode=mode, background=0)
    if mode != "inner":
        return edge
    for _ in range(width - 1):
        grown = edge.copy()
        for axis in range(labels.ndim):
            for step in (1, -1):
                here = [slice(None)] * labels.ndim
                there = [slice(None)] * labels.ndim
                here[axis], there[axis] = (slice(1, None), slice(0, -1)) if step == 1 else (slice(0, -1), slice(1, None))
                here, there = tuple(here), tuple(there)
                grown[here] |= edge[there] & (labels[there] == labels[here])
        edge = grown & (labels != 0)
    return edge


def class_masks(class_labels: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """One-hot masks ``(n_classes, *spatial)`` bool of a class-label array (0 = background class)."""
    class_labels = _check_labels(class_labels)
    if class_labels.size and class_labels.min() < 0:
        raise InputError("Class labels must be non-negative.")
    if n_classes is None:
        n_classes = int(class_labels.max()) + 1 if class_labels.size else 1
    if class_labels.size and class_labels.max() >= n_classes:
        raise InputError(
            f"Class label {int(class_labels.max())} is out of range for {n_classes} classes."
        )
    return np.stack([class_labels == c for c in range(n_classes)])


def three_class(labels: np.ndarray) -> np.ndarray:
    """uint8 map: 0 background, 1 object interior, 2 object boundary (for instance-by-mask)."""
    labels = _check_labels(labels)
    out = (labels != 0).astype(np.uint8)
    out[boundaries(labels, mode="inner")] = 2
    return out


def instance_labels(labels: np.ndarray, kind: str) -> np.ndarray:
    """Instance ids of annotation given in form ``kind`` (:data:`segtrain.tasks.LABEL_KINDS`): as they are, or the
    connected components of a mask, slice by slice for a stack (:func:`labels_from_mask`)."""
    from segtrain.tasks import LABEL_KINDS

    if kind not in LABEL_KINDS:
        raise ValueError(f"unknown label form {kind!r}; one of {LABEL_KINDS}")
    return labels_from_mask(labels, per_slice=True) if kind == "mask" else labels


def labels_from_mask(mask: np.ndarray, per_slice: bool) -> np.ndarray:
    """Instance labels from a binary foreground mask (e.g. ISBI membranes: interior = 255): connected
    components, of each slice on its own with ``per_slice`` (ids unique across the stack)."""
    mask = np.asarray(mask) != 0
    if per_slice and mask.ndim == 3:
        out = np.zeros(mask.shape, np.int64)
        offset = 0
        for z in range(mask.shape[0]):
            lab, n = ndimage.label(mask[z])
            out[z] = np.where(lab > 0, lab + offset, 0)
            offset += n
        return out
    return ndimage.label(mask)[0].astype(np.int64)
