"""Zarr (formats 2 and 3) and OME-Zarr: reading arrays and groups, writing arrays.

Geometry comes from, in order: OME-Zarr ``coordinateTransformations`` (scale, translation) of the
highest-resolution level; else the array's attributes ``resolution``/``offset`` (funlib
convention: world units, one value per spatial axis, z, y, x order) or ``voxel_size``/``offset``.
Axis names come from OME-Zarr ``axes``, the attribute ``axes``/``axis_names``, zarr 3
``dimension_names`` or xarray's ``_ARRAY_DIMENSIONS``; else from the number of dimensions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.io.atomic import is_temporary_name
from segtrain.io.volume import (
    SUPPORTED_DIMS,
    Volume,
    as_dask,
    check_ndim,
    free_attrs,
    looks_like_labels,
    maybe_load,
    stem,
)

_AXIS_ALIASES = {"z": "z", "y": "y", "x": "x", "c": "c", "channel": "c", "channels": "c"}


def is_zarr(path: Path) -> bool:
    """True for a folder that is a zarr store (by suffix or by its metadata files)."""
    if not path.is_dir():
        return False
    if path.suffix.lower() == ".zarr":
        return True
    return any((path / name).exists() for name in (".zgroup", ".zarray", "zarr.json"))


def read_zarr(path: Path, dataset: str | None = None) -> list[Volume]:
    """All volumes in the zarr store at ``path`` (or the array/group ``dataset`` inside it)."""
    import zarr

    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as error:  # zarr raises many types for a broken or empty store
        if not any(path.iterdir()):
            raise InputError(f"{path} is an empty folder, not a zarr store with arrays.") from None
        raise InputError(f"{path} is not a readable zarr store ({error}).") from None
    prefix = ""
    if dataset:
        try:
            node = node[dataset] if isinstance(node, zarr.Group) else None
        except KeyError:
            node = None
        if node is None:
            raise InputError(f"{path} has no array or group named '{dataset}'.")
        prefix = dataset.strip("/")
    try:
        volumes = [_array_volume(node, path, prefix)] if isinstance(node, zarr.Array) else \
            list(_group_volumes(node, path, prefix))
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - a chunk that does not decode (codecs raise many types)
        raise InputError(f"{path} has a chunk that cannot be read ({type(error).__name__}): the store is corrupt or "
                         "was not written completely; write it again.") from None
    if not volumes:
        raise InputError(f"{path} is a zarr group that contains no arrays.")
    return volumes


def _group_volumes(group, path: Path, prefix: str) -> Iterator[Volume]:
    import zarr

    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)
    if "multiscales" in ome:
        yield _ome_volume(group, ome, path, prefix)
        labels = _member(group, "labels")
        if isinstance(labels, zarr.Group):
            label_attrs = dict(labels.attrs)
            names = label_attrs.get("ome", label_attrs).get("labels") or [
                n for n, m in labels.members() if isinstance(m, zarr.Group)
            ]
            for name in names:
                sub = _member(labels, name)
                if isinstance(sub, zarr.Group):
                    yield from _group_volumes(sub, path, _join(prefix, f"labels/{name}"))
        return
    for name, member in sorted(group.members(), key=lambda item: item[0]):
        if is_temporary_name(name):
            continue  # a writer's temporary beside the arrays (segtrain.io.atomic), not data
        if isinstance(member, zarr.Array):
            yield _array_volume(member, path, _join(prefix, name))
        elif isinstance(member, zarr.Group):
            yield from _group_volumes(member, path, _join(prefix, name))


def _member(group, name: str):
    try:
        return group[name]
    except KeyError:
        return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _lazy_or_loaded(array):
    nbytes = int(np.prod(array.shape, dtype=np.int64)) * np.dtype(array.dtype).itemsize
    return maybe_load(as_dask(array, chunks=tuple(array.chunks)), nbytes)


def _axis_names(names, ndim: int) -> tuple[str, ...] | None:
    if not isinstance(names, (list, tuple)) or len(names) != ndim:
        return None
    mapped = tuple(_AXIS_ALIASES.get(str(n).lower()) for n in names if n is not None)
    if len(mapped) != ndim or None in mapped or len(set(mapped)) != ndim:
        return None
    return mapped


def array_axes(attrs: dict, ndim: int, dimension_names=None) -> tuple[str, ...] | None:
    """Axis names from an array's attributes or zarr 3 dimension names, or None."""
    for candidate in (attrs.get("axes"), attrs.get("axis_names"), dimension_names,
                      attrs.get("_ARRAY_DIMENSIONS")):
        axes = _axis_names(candidate, ndim)
        if axes is not None:
            return axes
    return None


def _array_volume(array, path: Path, name: str) -> Volume:
    where = f"{path}/{name}" if name else str(path)
    check_ndim(array.shape, f"{where}")
    attrs = dict(array.attrs)
    axes = array_axes(attrs, array.ndim, getattr(array.metadata, "dimension_names", None))
    return Volume(
        data=_lazy_or_loaded(array),
        voxel_size=attrs.get("resolution", attrs.get("voxel_size", ())),
        offset=attrs.get("offset", ()),
        axes=axes or (),
        name=name.rsplit("/", 1)[-1] if name else stem(path),
        is_labels=looks_like_labels(array.dtype, [name, stem(path)], attrs),
        attrs=free_attrs(attrs),
        source=str(path),
        dataset=name or None,
    )


def _transforms(transforms) -> tuple[list | None, list | None]:
    scale = translation = None
    for t in transforms or ():
        if t.get("type") == "scale":
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation":
            translation = [float(v) for v in t["translation"]]
    return scale, translation


def _ome_volume(group, ome: dict, path: Path, prefix: str) -> Volume:
    """The highest-resolution level of the first multiscale image in an OME-Zarr group."""
    multiscale = ome["multiscales"][0]
    level = multiscale["datasets"][0]
    level_path = _join(prefix, level["path"])
    array = _member(group, level["path"])
    if array is None:
        raise InputError(f"{path} names level '{level_path}' in its multiscales but has no such array.")
    ndim = array.ndim
    axes_meta = multiscale.get("axes") or ["t", "c", "z", "y", "x"][-ndim:]
    names = [a["name"] if isinstance(a, dict) else a for a in axes_meta]
    types = [a.get("type", "") if isinstance(a, dict) else "" for a in axes_meta]
    scale, translation = _transforms(level.get("coordinateTransformations"))
    scale = scale or [1.0] * ndim
    translation = translation or [0.0] * ndim
    outer_scale, outer_translation = _transforms(multiscale.get("coordinateTransformations"))
    if outer_scale:
        translation = [s * t for s, t in zip(outer_scale, translation)]
        scale = [a * b for a, b in zip(scale, outer_scale)]
    if outer_translation:
        translation = [a + b for a, b in zip(translation, outer_translation)]

    data = as_dask(array, chunks=tuple(array.chunks))
    index, axes, voxel_size, offset = [], [], [], []
    for i, (name, kind) in enumerate(zip(names, types)):
        name = str(name).lower()
        if kind == "time" or name == "t":
            if array.shape[i] != 1:
                raise InputError(
                    f"{path} has a time axis of length {array.shape[i]}; segtrain reads "
                    f"{SUPPORTED_DIMS} images, so save one time point per file."
                )
            index.append(0)
        elif kind == "channel" or name in ("c", "channel"):
            if array.shape[i] == 1:
                index.append(0)
            else:
                index.append(slice(None))
                axes.append("c")
        else:
            index.append(slice(None))
            axes.append(name)
            voxel_size.append(scale[i])
            offset.append(translation[i])
    spatial = [a for a in axes if a != "c"]
    if not set(spatial) <= {"z", "y", "x"} or len(set(spatial)) != len(spatial):
        names_iter = iter(("z", "y", "x")[-len(spatial):] if spatial else ())
        axes = [a if a == "c" else next(names_iter) for a in axes]
    data = data[tuple(index)]
    check_ndim(data.shape, f"{path}/{level_path}")
    group_name = prefix.rsplit("/", 1)[-1] if prefix else stem(path)
    attrs = dict(group.attrs)
    ome_attrs = attrs.get("ome", attrs)
    is_labels = "image-label" in ome_attrs or looks_like_labels(
        array.dtype, [prefix, stem(path)], dict(array.attrs))
    return Volume(
        data=maybe_load(data),
        voxel_size=tuple(voxel_size),
        offset=tuple(offset),
        axes=tuple(axes),
        name=group_name if prefix else (multiscale.get("name") or group_name),
        is_labels=bool(is_labels) and np.dtype(array.dtype).kind in "iub",
        attrs=free_attrs({k: v for k, v in attrs.items() if k not in ("multiscales", "ome")}),
        source=str(path),
        dataset=level_path,
    )


def zarr_attrs(volume: Volume) -> dict:
    """The geometry attributes segtrain writes on a zarr array (funlib convention, read back by
    :func:`read_zarr`): ``resolution``, ``offset``, ``axes`` and ``layer_type``."""
    return {
        "resolution": list(volume.voxel_size),
        "offset": list(volume.offset),
        "axes": list(volume.axes),
        "layer_type": "labels" if volume.is_labels else "image",
    }


def write_zarr(tmp: Path, volume: Volume, array_path: str | None, chunks,
               zarr_format: int = 2) -> None:
    """Write ``volume`` into a new zarr store at ``tmp``: as the root array, or as ``array_path``
    inside a new group. Blosc/zstd compressed (format 2) or zstd (format 3)."""
    import numcodecs
    import zarr

    data = volume.data
    if zarr_format == 2:
        compressor = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
    else:
        compressor = zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")
    attrs = {**volume.attrs, **zarr_attrs(volume)}
    store = str(tmp)
    name = None
    if array_path:
        zarr.open_group(store, mode="w", zarr_format=zarr_format)
        name = array_path
    array = zarr.create_array(
        store=store,
        name=name,
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks,
        compressors=compressor,
        zarr_format=zarr_format,
        attributes=attrs,
        fill_value=0,
    )
    store_array(data, array)


def store_array(data, target) -> None:
    """Copy ``data`` (numpy or dask) into ``target`` (zarr array, h5py dataset), blockwise for dask."""
    if isinstance(data, np.ndarray):
        target[...] = data
        return
    import dask.array as da

    chunks = getattr(target, "chunks", None)
    if chunks:
        data = data.rechunk(tuple(chunks))
    da.store(data, target, lock=not hasattr(target, "store_path"))
