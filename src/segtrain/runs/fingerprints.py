"""The data a run saw: per source shapes, dtypes, content hashes and voxels per class."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HASH_FULL_BYTES = 64 * 2**20
"""Arrays up to this size are hashed whole; larger ones by a strided sample."""
HASH_SAMPLE_ELEMENTS = 2**20
"""About this many elements of a larger array are hashed (a regular grid, every s-th along each axis)."""


def _sample_slices(shape: Sequence[int], crop: Sequence[Sequence[int]] | None, limit: int):
    """``(slices, hashed)``: the region ``crop`` covers, every s-th voxel along each axis (s the
    smallest step giving at most ``limit`` elements), or whole (``hashed`` "full") when it fits."""
    crop = list(crop or [])
    bounds = [(int(crop[i][0]), int(crop[i][1])) if i < len(crop) else (0, int(n)) for i, n in enumerate(shape)]
    sizes = [max(0, b - a) for a, b in bounds]
    step = 1
    while math.prod(-(-n // step) for n in sizes) > limit:
        step += 1
    return tuple(slice(a, b, step) for a, b in bounds), "full" if step == 1 else f"strided sample (every {step}th)"


def array_fingerprint(array, crop: Sequence[Sequence[int]] | None = None) -> tuple[dict, np.ndarray]:
    """``({"shape", "dtype", "hash", "hashed"}, the values hashed)`` of an array (numpy, dask,
    zarr, HDF5), restricted to ``crop`` (``[start, stop]`` per leading axis). The hash is a
    BLAKE2b digest of the shape, dtype and values: of all values when the array (crop) is at most
    :data:`HASH_FULL_BYTES`, else of a strided sample of about :data:`HASH_SAMPLE_ELEMENTS`
    elements (a few milliseconds, and no full read of a large file; a change between the sampled
    voxels goes unnoticed)."""
    shape = tuple(int(n) for n in array.shape)
    dtype = np.dtype(array.dtype)
    crop = list(crop or [])
    full_shape = [int(crop[i][1]) - int(crop[i][0]) if i < len(crop) else n for i, n in enumerate(shape)]
    limit = max(1, HASH_FULL_BYTES // dtype.itemsize)
    if math.prod(full_shape) > limit:
        limit = HASH_SAMPLE_ELEMENTS
    index, hashed = _sample_slices(shape, crop, limit)
    values = np.ascontiguousarray(np.asarray(array[index]))
    digest = hashlib.blake2b(digest_size=8)
    digest.update(repr((full_shape, dtype.str, hashed)).encode())
    digest.update(values.tobytes())
    return {"shape": list(shape), "dtype": dtype.name, "hash": digest.hexdigest(), "hashed": hashed}, values


def source_record(source, n_classes: int | None = None) -> dict:
    """What :meth:`RunFolder.record_data` records of one training source."""
    record: dict[str, Any] = {"kind": type(source).__name__, "name": getattr(source, "name", None),
                              "weight": getattr(source, "weight", None)}
    crop = getattr(source, "crop", None)
    if crop is not None:
        record["crop"] = [[int(a), int(b)] for a, b in crop]
    raw, labels = getattr(source, "raw", None), getattr(source, "labels", None)
    for part, array in (("raw", raw), ("labels", labels)):
        if array is None or not hasattr(array, "shape"):
            continue
        entry: dict[str, Any] = {}
        path = getattr(source, f"{part}_path", None)
        if path:
            entry["path"] = str(Path(path).resolve())
            if getattr(source, f"{part}_dataset", None):
                entry["dataset"] = getattr(source, f"{part}_dataset")
        part_crop = crop
        if crop is not None and part == "raw" and labels is not None and array.ndim > labels.ndim:
            part_crop = [[0, array.shape[0]], *crop]  # channels first
        fingerprint, values = array_fingerprint(array, part_crop)
        entry.update(fingerprint)
        record[part] = entry
        if part == "labels" and (np.issubdtype(values.dtype, np.integer) or values.dtype == bool):
            classes = values.astype(np.int64).reshape(-1)
            classes = np.clip(classes, 0, n_classes - 1) if n_classes else (classes > 0).astype(np.int64)
            counts = np.bincount(classes, minlength=n_classes or 2)
            record["class_counts"] = {str(k): int(v) for k, v in enumerate(counts)}
            record["class_counts_of"] = fingerprint["hashed"]
    if getattr(source, "class_p", None):
        record["class_sampling"] = {str(k): round(v, 6) for k, v in source.class_p.items()}
    return record


def _safe_source_record(source, n_classes: int | None) -> dict:
    """:func:`source_record`, or what is known and the error (a record never stops a run)."""
    try:
        return source_record(source, n_classes)
    except Exception as error:  # noqa: BLE001 - unreadable data shows up in training itself
        return {"kind": type(source).__name__, "name": getattr(source, "name", None), "error": str(error)}
