"""Write a :class:`Volume` atomically, the format chosen by the path's extension, under the output
rule of :mod:`segtrain.io.atomic`: a new path, or with overwrite the same kind of thing (a zarr array
for a zarr array, a dataset inside an HDF5 file for that dataset, a TIFF file for a TIFF file);
a dataset named inside an existing container (``x.zarr/name``, ``x.h5/name``) is added beside the
others; an output that is also an input is refused (:func:`check_not_input`)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from segtrain.errors import InputError
from segtrain.io.atomic import atomic_path
from segtrain.io.hdf5_io import HDF5_SUFFIXES, hdf5_datasets, write_hdf5, write_hdf5_dataset
from segtrain.io.tiff_io import TIFF_SUFFIXES, write_tiff
from segtrain.io.volume import Volume, check_ndim, jsonable
from segtrain.io.zarr_io import write_zarr

WRITABLE = ".zarr (also x.zarr/name for an array in a group), .tif/.tiff, .h5/.hdf/.hdf5"
CONTAINER_SUFFIXES = (".zarr", ".n5", *HDF5_SUFFIXES)
#: attribute segtrain writes on a zarr group that is its own output, naming the writer
#: (``"predict"``); such a group is replaced whole with overwrite when it still holds only what that
#: writer wrote (see :func:`own_output`)
OUTPUT_MARKER = "segtrain_output"
#: the writer name of `segtrain predict`'s groups (a run's prediction or a zoo model's)
PREDICT_OUTPUT = "predict"


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
                 chunks=None, inputs: Iterable = ()) -> Path:
    """Write ``volume`` to ``path`` and return the path.

    By extension: ``.zarr`` (zarr format 2, blosc/zstd, attributes ``resolution``, ``offset``,
    ``axes``, ``layer_type`` plus ``volume.attrs``; ``x.zarr/name`` writes the array ``name``
    into the group ``x.zarr``, created if needed, beside what it holds), ``.tif``/``.tiff`` (zlib;
    geometry and attributes in the JSON description) or ``.h5`` (``x.h5/name`` writes the dataset
    ``name`` into the file, created if needed, beside what it holds; ``x.h5`` alone a new file with
    the dataset ``volume.name``). Atomic: written beside the target (or under a temporary name
    inside the HDF5 file), then moved into place in one step that never replaces what appeared
    meanwhile. A dask array is written block by block. ``inputs``: paths (or ``(path, dataset)``)
    the caller reads, refused as the output. Raises InputError if the target exists and
    ``overwrite`` is false, or is not the same kind of thing (a zarr group, a file holding other
    datasets, a folder).
    """
    path = Path(path).expanduser()
    check_ndim(volume.data.shape, volume.name)
    check_not_input(path, inputs, overwrite)
    if volume.attrs:
        volume = dataclasses.replace(volume, attrs=jsonable(volume.attrs))
    chunks = tuple(chunks) if chunks is not None else default_chunks(volume.data.shape, volume.axes)
    zarr_split = _split(path, (".zarr",))
    if zarr_split:
        return _write_zarr(path, zarr_split, volume, overwrite, chunks)
    h5_split = _split(path, HDF5_SUFFIXES)
    if h5_split:
        container, inner = h5_split
        if inner and os.path.lexists(container):
            write_hdf5_dataset(container, inner, volume, chunks, overwrite)
            return path
        name = inner or volume.name or "data"
        with atomic_path(container, overwrite=overwrite, fmt="hdf5", replaceable=_holds_only(name),
                         what=f"the dataset {name}") as tmp:
            write_hdf5(tmp, volume, name, chunks)
        return path
    if path.suffix.lower() in TIFF_SUFFIXES:
        with atomic_path(path, overwrite=overwrite, fmt="tiff") as tmp:
            write_tiff(tmp, volume)
        return path
    raise InputError(f"{path} has an extension segtrain cannot write ('{path.suffix}'); use "
                     f"{WRITABLE}.")


def _holds_only(name: str) -> Callable[[Path], bool]:
    """An HDF5 file replaced whole only when it holds nothing but the dataset ``name``."""
    def replaceable(path: Path) -> bool:
        try:
            return set(hdf5_datasets(path)) <= {name.strip("/")}
        except OSError:
            return False
    return replaceable


def _write_zarr(path: Path, split: tuple[Path, str], volume: Volume, overwrite: bool,
                chunks) -> Path:
    import zarr

    container, inner = split
    if not inner:
        with atomic_path(container, overwrite=overwrite, folder=True, replaceable=is_zarr_array,
                         what="a zarr array") as tmp:
            write_zarr(tmp, volume, None, chunks)
        return path
    if not os.path.lexists(container):
        with atomic_path(container, folder=True) as tmp:
            write_zarr(tmp, volume, inner, chunks)
        return path
    try:
        group = zarr.open_group(str(container), mode="r+")
    except Exception:
        raise InputError(f"{container} exists and is not a zarr group; cannot add '{inner}' to it.") from None
    if "/" in inner:
        try:
            group.require_group(inner.rsplit("/", 1)[0])
        except Exception:
            raise InputError(f"Cannot add '{inner}' to {container}: '{inner.rsplit('/', 1)[0]}' is an array there, "
                             "not a group; choose another name.") from None
    with atomic_path(container / inner, overwrite=overwrite, folder=True, replaceable=is_zarr_array,
                     what="a zarr array") as tmp:
        write_zarr(tmp, volume, None, chunks, zarr_format=group.metadata.zarr_format)
    return path


# --- what may be replaced ---------------------------------------------------------------------

_ZARR_ARRAY_ENTRY = re.compile(r"^(\d+([./]\d+)*|c|\.zarray|\.zattrs|zarr\.json)$")


def _zarr_node(path: Path) -> str | None:
    """"array", "group" or None for the folder ``path``."""
    import json

    if (path / ".zarray").is_file():
        return "array"
    if (path / ".zgroup").is_file():
        return "group"
    try:
        return json.loads((path / "zarr.json").read_text()).get("node_type")
    except (OSError, ValueError, AttributeError):
        return None


def is_zarr_array(path: Path) -> bool:
    """True for a folder that is one zarr array and holds nothing else (metadata and chunks): a
    dataset, which an array may replace."""
    if not path.is_dir() or path.is_symlink() or _zarr_node(path) != "array":
        return False
    return all(_ZARR_ARRAY_ENTRY.match(entry.name) for entry in os.scandir(path))


def _zarr_attributes(path: Path) -> dict | None:
    """The attributes of the zarr node in the folder ``path`` (format 2 or 3), None when unreadable."""
    import json

    try:
        if (path / ".zattrs").is_file():
            return json.loads((path / ".zattrs").read_text())
        return json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return None


def own_output(writer: str) -> Callable[[Path], bool]:
    """A test for a zarr group that ``writer`` (e.g. ``"predict"``) wrote and that still holds only
    what it wrote: the group attribute :data:`OUTPUT_MARKER` names the writer, and every member is
    an array whose attribute ``kind`` is its own name (as segtrain's writers set it)."""

    def replaceable(path: Path) -> bool:
        if not path.is_dir() or path.is_symlink() or _zarr_node(path) != "group":
            return False
        if (_zarr_attributes(path) or {}).get(OUTPUT_MARKER) != writer:
            return False
        for entry in os.scandir(path):
            if entry.name in (".zgroup", ".zattrs", "zarr.json"):
                continue
            member = Path(entry.path)
            if not is_zarr_array(member) or (_zarr_attributes(member) or {}).get("kind") != entry.name:
                return False
        return True

    return replaceable


# --- an output that is also an input -----------------------------------------------------------

def _location(path: str | os.PathLike, dataset: str | None = None) -> tuple[str, ...]:
    """The parts of ``path`` (and ``dataset`` inside it) with the container or file resolved
    (symlinks, ``..``): two names of the same data give the same parts."""
    path = Path(path).expanduser()
    split = _split(path, CONTAINER_SUFFIXES)
    container, inner = split if split else (path, "")
    inner = "/".join(p for p in f"{inner}/{dataset or ''}".split("/") if p)
    return (*Path(os.path.realpath(container)).parts, *(p for p in inner.split("/") if p))


def check_not_input(output: str | os.PathLike, inputs: Iterable, overwrite: bool = False) -> None:
    """Refuse, in one sentence, an ``output`` that is one of ``inputs`` or holds one (replacing it
    would destroy what is read), or, with ``overwrite``, one inside an input container (it would
    replace part of what is read). ``inputs``: paths, ``(path, dataset)`` pairs, or None."""
    out = _location(output)
    for item in inputs:
        if item is None:
            continue
        path, dataset = item if isinstance(item, tuple) else (item, None)
        if path is None:
            continue
        where = _location(path, dataset)
        inside_input = overwrite and out[:len(where)] == where
        if where[:len(out)] == out or inside_input:
            shown = f"{path}" + (f" (dataset {dataset})" if dataset else "")
            relation = "is" if where == out else ("holds" if where[:len(out)] == out else "is inside")
            raise InputError(f"The output {output} {relation} the input {shown}; writing it would destroy what "
                             "this command reads: choose another output.")
