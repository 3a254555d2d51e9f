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
from segtrain.io.atomic import is_temporary_name
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
from segtrain.io.atomic import dead_leftovers
from segtrain.io.atomic import temporary_name

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
        leaf = name.rsplit("/", 1)[-1]
        if is_temporary_name(leaf):
            return  # a writer's temporary (see write_hdf5_dataset), not data
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
    """Write ``volume`` as ``dataset`` into a new HDF5 file ``tmp``."""
    import h5py

    # no chunk cache: every chunk is written once (dask is rechunked to the dataset's chunks), and
    # a failed write (a full disk) fails in the write itself, not later in a flush the library
    # cannot recover from (a segmentation fault at exit)
    handle = h5py.File(tmp, "w", rdcc_nbytes=0)
    try:
        _create(handle, dataset, volume, chunks)
        handle.close()
    except BaseException:
        _abandon(handle, tmp)
        raise


def _create(handle, dataset: str, volume: Volume, chunks) -> None:
    dset = handle.create_dataset(
        dataset, shape=volume.data.shape, dtype=volume.data.dtype, chunks=chunks,
        compression="gzip", compression_opts=4,
    )
    for key, value in _hdf5_attrs(volume).items():
        dset.attrs[key] = value
    store_array(volume.data, dset)


def hdf5_datasets(path: Path) -> list[str]:
    """Names of every dataset in the HDF5 file ``path`` (any shape or type)."""
    import h5py

    found: list[str] = []
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def write_hdf5_dataset(container: Path, dataset: str, volume: Volume, chunks, overwrite: bool) -> None:
    """Write ``volume`` as ``dataset`` into the existing HDF5 file ``container``, beside the datasets
    it holds: first under the temporary name ``.<name>.tmp-<pid>-<random>``, then moved to its name
    (with ``overwrite`` the old dataset is moved aside first and put back if the move fails), so a
    failed write never leaves a half dataset under the final name. The file stays locked (HDF5 file
    locking) while writing: a concurrent writer gets one sentence. Leftovers of killed writers of
    this dataset are removed first."""
    import h5py

    if container.is_dir() or not h5py.is_hdf5(container):
        raise InputError(f"{container} exists and is not an HDF5 file; cannot add '{dataset}' to it: choose "
                         "another file.")
    busy = (f"Cannot open {container} to add '{dataset}': another program (or another segtrain command) has it "
            "open for writing, or it is not writable; wait for it to finish or choose another file.")
    try:
        with h5py.File(container, "r") as handle:  # refusals before the file is opened for writing (and touched)
            _check_dataset(handle, container, dataset, overwrite)
        handle = h5py.File(container, "a")
    except OSError:
        raise InputError(busy) from None
    with handle:
        parent, leaf = _check_dataset(handle, container, dataset, overwrite)
        _remove_dead(parent, leaf)
        tmp, old = temporary_name(leaf), None
        try:
            _create(parent, tmp, volume, chunks)
            if leaf in parent:
                old = temporary_name(leaf, "old")
                parent.move(leaf, old)
            try:
                parent.move(tmp, leaf)
            except BaseException:
                if old is not None:
                    parent.move(old, leaf)
                    old = None
                raise
            if old is not None:
                del parent[old]
        finally:
            if tmp in parent:
                del parent[tmp]
            handle.flush()


def _check_dataset(handle, container: Path, dataset: str, overwrite: bool):
    """(parent group, leaf name) of ``dataset`` in the open file, or InputError when it may not be
    written: its parent is a dataset, it is a group, or it exists without ``overwrite``."""
    import h5py

    parent_name, _, leaf = dataset.strip("/").rpartition("/")
    parent = handle.get(parent_name) if parent_name else handle
    if parent is not None and not isinstance(parent, h5py.Group):
        raise InputError(f"Cannot add '{dataset}' to {container}: '{parent_name}' is a dataset there, not a group; "
                         "choose another name.")
    if parent is None:
        if handle.mode == "r":
            return None, leaf
        parent = handle.require_group(parent_name)
    # an old copy a killed writer moved aside is the dataset, put back first
    present = leaf in parent or any(kind == "old" for _, kind in dead_leftovers(parent.keys(), leaf))
    if present and leaf in parent and not isinstance(parent[leaf], h5py.Dataset):
        raise InputError(f"{container}/{dataset} is a group holding other datasets; segtrain never replaces it: "
                         "choose another name.")
    if present and not overwrite:
        raise InputError(f"{container}/{dataset} already exists; choose another name or allow overwriting "
                         "(--overwrite).")
    return parent, leaf


def _remove_dead(group, leaf: str) -> None:
    """Temporaries of ``leaf`` that a killed writer left in ``group``; an old copy of a missing
    ``leaf`` is moved back."""

    for name, kind in dead_leftovers(group.keys(), leaf):
        if kind == "old" and leaf not in group:
            group.move(name, leaf)
        else:
            del group[name]


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
