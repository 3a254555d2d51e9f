"""N5 containers, read with tensorstore.

N5 lists dimensions fastest-first (x, y, z), and so do the funlib attributes ``resolution`` and
``offset`` in N5 files; segtrain presents both in z, y, x order like every other format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.io.volume import Volume, as_dask, check_ndim, free_attrs, looks_like_labels, maybe_load, stem


def is_n5(path: Path) -> bool:
    if not path.is_dir():
        return False
    return path.suffix.lower() == ".n5" or _is_n5_dataset(path) or "n5" in _attributes(path)


def _attributes(folder: Path) -> dict:
    try:
        return json.loads((folder / "attributes.json").read_text())
    except (OSError, ValueError):
        return {}


def _is_n5_dataset(folder: Path) -> bool:
    attrs = _attributes(folder)
    return "dimensions" in attrs and "dataType" in attrs


class _TensorStoreArray:
    """numpy-style slicing over a tensorstore array (what dask.from_array needs)."""

    def __init__(self, store):
        self.store = store
        self.shape = tuple(store.shape)
        self.dtype = np.dtype(store.dtype.numpy_dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        return np.asarray(self.store[index].read().result())


def _open(folder: Path):
    import tensorstore as ts

    try:
        store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(folder)}},
                        read=True).result()
    except Exception as error:
        raise InputError(f"{folder} is not a readable N5 dataset ({error}).") from None
    return store.T  # N5 lists x first; present z, y, x


def read_n5(path: Path, dataset: str | None = None) -> list[Volume]:
    root = path
    if dataset:
        path = path / dataset
        if not _is_n5_dataset(path) and not path.is_dir():
            raise InputError(f"{root} has no dataset named '{dataset}'.")
    folders = [path] if _is_n5_dataset(path) else sorted(
        p.parent for p in path.rglob("attributes.json") if _is_n5_dataset(p.parent))
    if not folders:
        raise InputError(f"{path} is an N5 container that contains no datasets.")
    return [_volume(folder, root) for folder in folders]


def _volume(folder: Path, root: Path) -> Volume:
    attrs = _attributes(folder)
    name = folder.relative_to(root).as_posix() if folder != root else ""
    shape = tuple(attrs["dimensions"])[::-1]
    check_ndim(shape, str(folder))
    array = _TensorStoreArray(_open(folder))
    chunks = tuple(attrs.get("blockSize", shape))[::-1]
    data = maybe_load(as_dask(array, chunks=chunks))
    extra = {k: v for k, v in attrs.items()
             if k not in ("dimensions", "blockSize", "dataType", "compression", "n5")}
    return Volume(
        data=data,
        voxel_size=tuple(extra.get("resolution", ()))[::-1],
        offset=tuple(extra.get("offset", ()))[::-1],
        name=name.rsplit("/", 1)[-1] if name else stem(root),
        is_labels=looks_like_labels(array.dtype, [name, stem(root)], extra),
        attrs=free_attrs(extra),
        source=str(root),
        dataset=name or None,
    )
