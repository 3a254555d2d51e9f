"""TIFF files and stacks (tifffile): read lazily when large (memory map, or tifffile's zarr store
for compressed/tiled files); write with geometry and attributes in the JSON description."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.io.volume import (
    LAZY_BYTES,
    SUPPORTED_DIMS,
    Volume,
    as_dask,
    check_ndim,
    free_attrs,
    looks_like_labels,
    stem,
)

TIFF_SUFFIXES = (".tif", ".tiff")
# tifffile axis letters -> segtrain axis names (Q, I, T: unnamed page sequences = slices)
_TIFF_AXES = {"Y": "y", "X": "x", "Z": "z", "Q": "z", "I": "z", "T": "z", "C": "c", "S": "c"}


def _tiff_axes(letters: str, path: Path) -> tuple[str, ...]:
    axes = tuple(_TIFF_AXES.get(letter, "?") for letter in letters)
    if "?" in axes or len(set(axes)) != len(axes):
        raise InputError(
            f"{path} has axes '{letters}' in its TIFF metadata; segtrain reads {SUPPORTED_DIMS} "
            "images, so save one time point or position per file."
        )
    return axes


def read_tiff(path: Path, names: list[str] | None = None) -> Volume:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype, letters = tuple(series.shape), np.dtype(series.dtype), series.axes
            meta = (tif.shaped_metadata or ({},))[0] or {}
            imagej = tif.imagej_metadata or {}
            page = tif.pages[0]
            xres = page.tags.get("XResolution")
            yres = page.tags.get("YResolution")
            check_ndim(shape, str(path))
            small = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize < LAZY_BYTES
            data = series.asarray() if small else None
    except InputError:
        raise
    except Exception as error:
        raise InputError(f"{path} is not a readable TIFF file ({error}).") from None
    if data is None:
        data = _lazy(path)
    axes = tuple(meta.get("axes") or ()) if len(meta.get("axes") or ()) == len(shape) else None
    axes = axes or _tiff_axes(letters, path)
    voxel_size, offset = meta.get("resolution", ()), meta.get("offset", ())
    if not voxel_size and imagej:
        voxel_size = _imagej_voxel_size(imagej, xres, yres, axes)
    attrs = {k: v for k, v in meta.items() if k not in ("shape",)}
    return Volume(
        data=data,
        voxel_size=tuple(voxel_size),
        offset=tuple(offset),
        axes=axes,
        name=stem(path),
        is_labels=looks_like_labels(dtype, names or [stem(path)], attrs),
        attrs=free_attrs(attrs.get("attrs", {})) if isinstance(attrs.get("attrs"), dict) else {},
        source=str(path),
    )


def _imagej_voxel_size(imagej: dict, xres, yres, axes) -> tuple[float, ...]:
    def size(tag):
        try:
            num, den = tag.value
            return den / num if num else 1.0
        except (AttributeError, TypeError, ValueError):
            return 1.0

    sizes = {"z": float(imagej.get("spacing", 1.0)), "y": size(yres), "x": size(xres)}
    return tuple(sizes[a] for a in axes if a in sizes)


def _lazy(path: Path):
    """A lazy view of a large TIFF: a memory map when the file allows it, else a zarr store."""
    import tifffile

    try:
        return as_dask(tifffile.memmap(path, mode="r"))
    except (ValueError, OSError):
        import zarr

        store = tifffile.imread(path, aszarr=True)
        array = zarr.open(store, mode="r")
        if not hasattr(array, "shape"):  # a multi-resolution group: level 0
            array = array["0"]
        return as_dask(array, chunks=tuple(array.chunks))


def write_tiff(tmp: Path, volume: Volume) -> None:
    import tifffile

    data = volume.data
    meta = {
        "axes": list(volume.axes),
        "resolution": list(volume.voxel_size),
        "offset": list(volume.offset),
        "layer_type": "labels" if volume.is_labels else "image",
        "attrs": volume.attrs,
    }
    nbytes = int(np.prod(data.shape, dtype=np.int64)) * data.dtype.itemsize
    options = dict(metadata=meta, compression="zlib", photometric="minisblack",
                   bigtiff=nbytes > 2**31)
    if isinstance(data, np.ndarray) or data.ndim <= 2:
        tifffile.imwrite(tmp, np.asarray(data), **options)
        return

    def pages():  # blockwise: one 2D page at a time
        for index in np.ndindex(*data.shape[:-2]):
            yield np.asarray(data[index])

    tifffile.imwrite(tmp, pages(), shape=data.shape, dtype=data.dtype, **options)
