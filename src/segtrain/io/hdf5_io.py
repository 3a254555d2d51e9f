"""HDF5 (.h5, .hdf, .hdf5): every image-like dataset in the file (2 to 4 dimensions, numeric),
e.g. ``stack``, ``volumes/raw``, ``volumes/labels/neuron_ids``; LZF or gzip compressed.

Geometry from dataset attributes ``resolution``/``offset`` (world units, z, y, x; CREMI and
funlib) or ``element_size_um`` (ilastik/Fiji, micrometres). Small datasets are read and the file
closed; large ones stay open and lazy (dask).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.io.volume import (
    LAZY_BYTES,
    Volume,
    as_dask,
    check_ndim,
    free_attrs,
    looks_like_labels,
    stem,
)
from segtrain.io.zarr_io import array_axes, store_array

HDF5_SUFFIXES = (".h5", ".hdf", ".hdf5", ".he5")


def _open(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError:
        raise InputError(f"{path} is not a readable HDF5 file (corrupt or truncated).") from None


def _datasets(handle) -> list[str]:
    import h5py

    found: list[str] = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 2 and obj.dtype.kind in "biuf":
            found.append(name)

    handle.visititems(visit)
    return found


def read_hdf5(path: Path, dataset: str | None = None) -> list[Volume]:
    handle = _open(path)
    try:
        if dataset:
            if dataset not in handle:
                names = ", ".join(_datasets(handle)) or "none"
                raise InputError(f"{path} has no dataset '{dataset}' (datasets: {names}).")
            names = [dataset.strip("/")]
        else:
            names = _datasets(handle)
        if not names:
            raise InputError(f"{path} contains no image or label datasets (2D to 4D arrays).")
        volumes = [_volume(handle, name, path, single=len(names) == 1) for name in names]
    except BaseException:
        handle.close()
        raise
    if not any(v.is_lazy for v in volumes):
        handle.close()
    return volumes


def _volume(handle, name: str, path: Path, single: bool) -> Volume:
    dset = handle[name]
    check_ndim(dset.shape, f"{path}:{name}")
    attrs = {k: _plain(v) for k, v in dset.attrs.items()}
    if dset.nbytes < LAZY_BYTES:
        try:
            data = dset[...]
        except OSError as error:
            raise InputError(f"{path}:{name} cannot be read (corrupt data: {error}).") from None
    else:
        data = as_dask(dset, chunks=dset.chunks or "auto")
    voxel_size = attrs.get("resolution", ())
    if not len(voxel_size) and "element_size_um" in attrs:
        voxel_size = attrs["element_size_um"]
    return Volume(
        data=data,
        voxel_size=tuple(voxel_size),
        offset=tuple(attrs.get("offset", ())),
        axes=array_axes(attrs, dset.ndim) or (),
        name=stem(path) if single else name,
        is_labels=looks_like_labels(dset.dtype, [name, stem(path)], attrs),
        attrs=free_attrs({k: v for k, v in attrs.items() if k != "element_size_um"}),
        source=str(path),
        dataset=name,
    )


def _plain(value):
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str) and value[:1] in "[{":  # written by write_hdf5 as JSON
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO":
        return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in value.tolist()]
    return value


def write_hdf5(tmp: Path, volume: Volume, dataset: str, chunks) -> None:
    import h5py

    # no chunk cache: every chunk is written once (dask is rechunked to the dataset's chunks), and
    # a failed write (a full disk) fails in the write itself, not later in a flush the library
    # cannot recover from (a segmentation fault at exit)
    handle = h5py.File(tmp, "w", rdcc_nbytes=0)
    try:
        dset = handle.create_dataset(
            dataset, shape=volume.data.shape, dtype=volume.data.dtype, chunks=chunks,
            compression="gzip", compression_opts=4,
        )
        for key, value in _hdf5_attrs(volume).items():
            dset.attrs[key] = value
        store_array(volume.data, dset)
        handle.close()
    except BaseException:
        _abandon(handle, tmp)
        raise


def _abandon(handle, tmp: Path) -> None:
    """Close a file whose writing failed (a full disk: HDF5's own close then fails too, and the
    library, still holding the file, crashes the interpreter at exit): empty it first, which frees
    the space its closing needs; the caller removes it."""
    try:
        os.truncate(tmp, 0)
    except OSError:
        pass
    try:
        handle.close()
    except Exception:  # noqa: BLE001 - the write's own error is the one to report
        pass


def _hdf5_attrs(volume: Volume) -> dict:
    attrs = {
        "resolution": np.asarray(volume.voxel_size, dtype=float),
        "offset": np.asarray(volume.offset, dtype=float),
        "axes": list(volume.axes),
        "layer_type": "labels" if volume.is_labels else "image",
    }
    for key, value in volume.attrs.items():
        attrs[key] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
    return attrs
