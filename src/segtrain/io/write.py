"""Write a :class:`Volume` atomically, the format chosen by the path's extension."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from segtrain.errors import InputError
from segtrain.io.atomic import atomic_path
from segtrain.io.hdf5_io import HDF5_SUFFIXES, write_hdf5
from segtrain.io.tiff_io import TIFF_SUFFIXES, write_tiff
from segtrain.io.volume import Volume, check_ndim, jsonable
from segtrain.io.zarr_io import write_zarr

WRITABLE = ".zarr (also x.zarr/name for an array in a group), .tif/.tiff, .h5/.hdf/.hdf5"


def default_chunks(shape: tuple[int, ...], axes: tuple[str, ...]) -> tuple[int, ...]:
    """Chunks of a few MB: 32 x 128 x 128 in 3D, 512 x 512 in 2D, whole channel axes."""
    n_spatial = sum(a in "zyx" for a in axes)
    limits = {"z": 32, "y": 128, "x": 128} if n_spatial == 3 else {"y": 512, "x": 512}
    return tuple(min(s, limits.get(a, s)) for s, a in zip(shape, axes))


def _split(path: Path, suffixes: tuple[str, ...]) -> tuple[Path, str] | None:
    """(container, inner path) when a component of ``path`` has one of ``suffixes``."""
    parts = path.parts
    for i, part in enumerate(parts):
        if Path(part).suffix.lower() in suffixes:
            return Path(*parts[: i + 1]), "/".join(parts[i + 1:])
    return None


def write_volume(path: str | os.PathLike, volume: Volume, overwrite: bool = False,
                 chunks=None) -> Path:
    """Write ``volume`` to ``path`` and return the path.

    By extension: ``.zarr`` (zarr format 2, blosc/zstd, attributes ``resolution``, ``offset``,
    ``axes``, ``layer_type`` plus ``volume.attrs``; ``x.zarr/name`` writes the array ``name``
    into the group ``x.zarr``, created if needed), ``.tif``/``.tiff`` (zlib; geometry and
    attributes in the JSON description) or ``.h5`` (dataset ``name`` from ``x.h5/name`` or
    ``volume.name``). Atomic: written beside the target, then renamed. A dask array is written
    block by block. Raises InputError if the target exists and ``overwrite`` is false.
    """
    path = Path(path).expanduser()
    check_ndim(volume.data.shape, volume.name)
    if volume.attrs:
        volume = dataclasses.replace(volume, attrs=jsonable(volume.attrs))
    chunks = tuple(chunks) if chunks is not None else default_chunks(volume.data.shape, volume.axes)
    zarr_split = _split(path, (".zarr",))
    if zarr_split:
        return _write_zarr(path, zarr_split, volume, overwrite, chunks)
    h5_split = _split(path, HDF5_SUFFIXES)
    if h5_split:
        container, inner = h5_split
        with atomic_path(container, overwrite=overwrite) as tmp:
            write_hdf5(tmp, volume, inner or volume.name or "data", chunks)
        return path
    if path.suffix.lower() in TIFF_SUFFIXES:
        with atomic_path(path, overwrite=overwrite) as tmp:
            write_tiff(tmp, volume)
        return path
    raise InputError(f"{path} has an extension segtrain cannot write ('{path.suffix}'); use "
                     f"{WRITABLE}.")


def _write_zarr(path: Path, split: tuple[Path, str], volume: Volume, overwrite: bool,
                chunks) -> Path:
    import zarr

    container, inner = split
    if not inner or not container.exists():
        with atomic_path(container, overwrite=overwrite and not inner) as tmp:
            write_zarr(tmp, volume, inner or None, chunks)
        return path
    try:
        group = zarr.open_group(str(container), mode="r+")
    except Exception:
        raise InputError(f"{container} exists and is not a zarr group; cannot add '{inner}' to it.") from None
    if "/" in inner:
        group.require_group(inner.rsplit("/", 1)[0])
    with atomic_path(container / inner, overwrite=overwrite) as tmp:
        write_zarr(tmp, volume, None, chunks, zarr_format=group.metadata.zarr_format)
    return path
