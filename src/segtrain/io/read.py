"""Open whatever a path holds: pick the format from the path, return :class:`Volume` s."""

from __future__ import annotations

import os
from pathlib import Path

from segtrain.errors import InputError
from segtrain.io.hdf5_io import HDF5_SUFFIXES, read_hdf5
from segtrain.io.n5_io import is_n5, read_n5
from segtrain.io.slices import SLICE_SUFFIXES, read_image, read_slices, slice_files
from segtrain.io.volume import Volume
from segtrain.io.zarr_io import is_zarr, read_zarr

SUPPORTED = ("zarr (formats 2 and 3, OME-Zarr), n5, HDF5 (.h5, .hdf, .hdf5), TIFF (.tif, .tiff), "
             "PNG/JPEG/BMP images and folders of numbered PNG/TIFF slices")


def _split_container(path: Path) -> tuple[Path, str] | None:
    """``x.zarr/a/b`` (not existing itself) -> (``x.zarr``, ``a/b``) when x.zarr is a container."""
    for parent in path.parents:
        if parent.exists():
            inner = path.relative_to(parent).as_posix()
            if parent.is_file() and parent.suffix.lower() in HDF5_SUFFIXES:
                return parent, inner
            if is_zarr(parent) or is_n5(parent):
                return parent, inner
            return None
    return None


def is_readable_path(path: str | os.PathLike) -> bool:
    """Cheap check, without reading data: does ``path`` look like something segtrain opens?"""
    path = Path(path)
    if not path.exists():
        return _split_container(path) is not None
    if path.is_dir():
        return is_zarr(path) or is_n5(path) or bool(slice_files(path)) or bool(_children(path))
    return path.suffix.lower() in HDF5_SUFFIXES + SLICE_SUFFIXES


def _children(folder: Path) -> list[Path]:
    """Readable entries of a plain folder (files, zarr/n5 stores, numbered slice folders)."""
    out = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_file() and child.suffix.lower() in HDF5_SUFFIXES + SLICE_SUFFIXES:
            out.append(child)
        elif child.is_dir() and (is_zarr(child) or is_n5(child) or slice_files(child)):
            out.append(child)
    return out


def read_volumes(path: str | os.PathLike, dataset: str | None = None) -> list[Volume]:
    """Every volume at ``path`` (see :func:`_read_volumes`); an unfinished blockwise output (a
    `segtrain scale` array not marked complete) is refused, naming the command that completes it."""
    volumes = _read_volumes(path, dataset)
    for volume in volumes:
        if volume.attrs.get("complete") is False:
            where = f"{path}" + (f" ({volume.dataset})" if volume.dataset else "")
            command = volume.attrs.get("complete_with") or "segtrain scale run JOB"
            raise InputError(f"{where} is an unfinished blockwise output (not every block was written, so unwritten "
                             f"blocks would read as 0); complete it with `{command}` first.")
    return volumes


def _read_volumes(path: str | os.PathLike, dataset: str | None = None) -> list[Volume]:
    """Every volume at ``path``: the arrays of a zarr/n5/HDF5 container (or just ``dataset``
    inside it), one TIFF or image file, a folder of numbered slices, or the readable files of a
    plain folder. Large arrays are dask arrays; small ones numpy.

    Raises :class:`InputError` naming the file and the problem when nothing can be read.
    """
    path = Path(path).expanduser()
    if not path.exists():
        split = _split_container(path)
        if split is None:
            raise InputError(f"{path} does not exist; check the path.")
        path, inner = split
        dataset = f"{inner}/{dataset}" if dataset else inner
    if path.is_dir():
        if is_zarr(path):
            return read_zarr(path, dataset)
        if is_n5(path):
            return read_n5(path, dataset)
        _no_dataset(path, dataset)
        files = slice_files(path)
        if files:
            return [read_slices(path, files)]
        children = _children(path)
        if not children:
            raise InputError(f"{path} is a folder with no readable images; segtrain reads {SUPPORTED}.")
        return [volume for child in children for volume in _read_volumes(child)]
    suffix = path.suffix.lower()
    if suffix not in HDF5_SUFFIXES + SLICE_SUFFIXES:
        raise InputError(
            f"{path} has an unsupported extension '{suffix or '(none)'}'; segtrain reads {SUPPORTED}."
        )
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes); it was probably not written completely.")
    if suffix in HDF5_SUFFIXES:
        return read_hdf5(path, dataset)
    _no_dataset(path, dataset)
    return [read_image(path)]


def _no_dataset(path: Path, dataset: str | None) -> None:
    if dataset:
        raise InputError(f"{path} is not a container format; it has no dataset '{dataset}'.")


def read_volume(path: str | os.PathLike, dataset: str | None = None) -> Volume:
    """The one volume at ``path`` (or ``dataset`` inside it); InputError if there are several."""
    volumes = read_volumes(path, dataset)
    if len(volumes) > 1:
        names = ", ".join(v.dataset or v.name for v in volumes)
        raise InputError(f"{path} holds {len(volumes)} arrays ({names}); name the one to use as "
                         "dataset (e.g. 'volumes/raw').")
    return volumes[0]


# --- values that would poison a result --------------------------------------------------------

class NonFiniteError(InputError):
    """An image holds NaN or infinite values (``where``: the part of it that does, when known)."""

    def __init__(self, name: str, where: str = ""):
        self.name, self.where = name, where
        super().__init__(f"There are NaN or infinite values in {name}{where}; replace them (e.g. with "
                         "numpy.nan_to_num) or crop them away, then run again.")

    def named(self, name: str) -> NonFiniteError:
        """The same error naming ``name`` (a file) instead."""
        return NonFiniteError(name, self.where)


def _span(index: tuple) -> str:
    parts = [f"{s.start}-{s.stop}" for s in index if isinstance(s, slice) and s.start is not None]
    return f" (in the part at {', '.join(parts)})" if parts else ""


def check_finite(array, name: str = "the image", index: tuple = ()) -> None:
    """Raise :class:`NonFiniteError` when a floating-point ``array`` (numpy, or read here from a
    dask/zarr/HDF5 array slab by slab along its first axis, so memory stays bounded) holds NaN or
    infinity; integer arrays cannot. ``index`` says which part of a larger image ``array`` is."""
    import numpy as np

    if not np.issubdtype(np.dtype(array.dtype), np.floating):
        return
    if isinstance(array, np.ndarray):
        if not np.isfinite(array).all():
            raise NonFiniteError(name, _span(index))
        return
    shape = tuple(array.shape)
    if not shape:
        return
    per_slab = max(1, int(np.prod(shape[1:])))
    step = max(1, 16_000_000 // per_slab)
    for start in range(0, shape[0], step):
        part = (slice(start, min(shape[0], start + step)),)
        block = array[part]
        block = np.asarray(block.compute() if hasattr(block, "compute") else block)
        if not np.isfinite(block).all():
            raise NonFiniteError(name, _span(part + tuple(slice(0, s) for s in shape[1:])))
