"""Arrays a blockwise job reads and writes, opened by each worker for one block at a time.

Inputs: zarr (v2, v3), OME-Zarr (highest resolution), N5 (tensorstore); anything else segtrain
reads (HDF5, TIFF) works too but is read through :func:`segtrain.io.read_volume`, which may hold
a small file whole. Outputs are zarr arrays (format 2, the geometry attributes segtrain writes,
chunks = blocks, so no two blocks write one chunk) or N5 datasets (tensorstore).
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.io.write import OUTPUT_MARKER
from segtrain.io import Volume
from segtrain.io import read_volume
from segtrain.io.n5_io import is_n5
from segtrain.io.zarr_io import is_zarr
from segtrain.io.zarr_io import zarr_attrs


@dataclass(frozen=True)
class ArraySpec:
    """Where an array lives and how to open it without reading it.

    ``kind``: "zarr", "n5" or "other"; ``squeeze``: leading length-1 axes to drop (OME-Zarr t/c);
    ``channel_axis``: position of the channel axis in the opened array, or None.
    """

    path: str
    dataset: str | None
    kind: str
    squeeze: int = 0
    channel_axis: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _kind(source: Path) -> str:
    if is_n5(source):
        return "n5"
    if is_zarr(source):
        return "zarr"
    return "other"


def describe_input(path: str | Path, dataset: str | None = None):
    """``(ArraySpec, Volume)`` of an input; the Volume gives shape, axes, voxel size, offset."""

    volume = read_volume(path, dataset)
    source = Path(volume.source or path)
    kind = _kind(source)
    squeeze = 0
    if kind == "zarr":
        import zarr

        array = zarr.open_array(store=str(source), path=volume.dataset or "", mode="r")
        squeeze = array.ndim - volume.data.ndim
        if squeeze < 0 or any(s != 1 for s in array.shape[:squeeze]):
            kind = "other"  # axes dropped in the middle: let segtrain.io do it
            squeeze = 0
    channel_axis = volume.axes.index("c") if "c" in volume.axes else None
    spec = ArraySpec(str(source), volume.dataset if kind != "other" else dataset, kind, squeeze,
                     channel_axis)
    return spec, volume


class _TransposedN5:
    """Read/write an N5 dataset (x fastest on disk) in z, y, x order."""

    def __init__(self, store):
        self.store = store.T
        self.shape = tuple(self.store.shape)
        self.dtype = np.dtype(self.store.dtype.numpy_dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        return np.asarray(self.store[index].read().result())

    def __setitem__(self, index, value):
        self.store[index].write(np.asarray(value)).result()


def _open_n5(path: Path):
    import tensorstore as ts

    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(path)}},
                    read=True, write=True).result()
    return _TransposedN5(store)


@functools.lru_cache(maxsize=8)
def open_array(spec: ArraySpec, write: bool = False):
    """An object with numpy slicing over the array (cached per process)."""
    if spec.kind == "zarr":
        import zarr

        array = zarr.open_array(store=spec.path, path=spec.dataset or "", mode="r+" if write else "r")
        return _Squeezed(array, spec.squeeze) if spec.squeeze else array
    if spec.kind == "n5":
        return _open_n5(Path(spec.path) / (spec.dataset or ""))
    if write:
        raise InputError(f"{spec.path} cannot be written block by block; write .zarr or .n5.")

    return read_volume(spec.path, spec.dataset).data


class _Squeezed:
    """A view of an array without its first ``n`` (length 1) axes."""

    def __init__(self, array, n: int):
        self.array, self.n = array, n
        self.shape = tuple(array.shape[n:])
        self.dtype = array.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        return np.asarray(self.array[(0,) * self.n + index])


def read_spatial(spec: ArraySpec, region: tuple[slice, ...], channels: slice = slice(None)) -> np.ndarray:
    """The region (z, y, x slices) of an input, channels first when it has channels (only
    ``channels`` of them: e.g. the 3 nearest-neighbour affinities of a long-range output)."""
    array = open_array(spec)
    if spec.channel_axis is None:
        return np.asarray(array[region])
    index = list(region)
    index.insert(spec.channel_axis, channels)
    data = np.asarray(array[tuple(index)])
    data = data.compute() if hasattr(data, "compute") else data
    return np.moveaxis(data, spec.channel_axis, 0) if spec.channel_axis else data


#: the marker (:data:`~segtrain.io.write.OUTPUT_MARKER`) on arrays that blockwise steps create and may resume into
BLOCKWISE_OUTPUT = "blockwise"


def create_output(path: Path, shape: tuple[int, ...], dtype, chunks: tuple[int, ...],
                  voxel_size, offset, axes: tuple[str, ...], is_labels: bool,
                  attrs: dict | None = None, complete_with: str | None = None) -> ArraySpec:
    """Create an empty output array (zarr by default, N5 for ``*.n5`` paths); its spec.

    ``path`` may be ``x.zarr`` (the array at the root), ``x.zarr/name`` (in a group, created
    if needed) or ``x.n5/name``. An existing array that a blockwise step created (attribute
    ``segtrain_output: blockwise``) with the same shape, dtype and chunks is kept (a resumed job
    writes into it); any other existing array is an InputError (never written into).

    With ``complete_with`` (the command that finishes it), a new array is marked ``complete:
    false`` until :func:`set_attrs` marks it complete: every reader (:func:`segtrain.io.read_volumes`)
    refuses it until then, naming that command.
    """
    attrs = {**(attrs or {}), OUTPUT_MARKER: BLOCKWISE_OUTPUT}
    path = Path(path)
    if complete_with is not None:
        attrs = {**(attrs or {}), "complete": False, "complete_with": complete_with}
    container, inner = _split_output(path)
    if container.suffix == ".n5":
        return _create_n5(container, inner or "data", shape, dtype, chunks, voxel_size, offset, attrs)
    return _create_zarr(container, inner, shape, dtype, chunks, voxel_size, offset, axes,
                        is_labels, attrs)


def _create_zarr(container: Path, inner: str | None, shape, dtype, chunks, voxel_size, offset,
                 axes, is_labels, attrs) -> ArraySpec:
    import numcodecs
    import zarr

    meta = zarr_attrs(Volume(data=np.zeros((1,) * len(shape), dtype=np.uint8), voxel_size=voxel_size,
                             offset=offset, axes=axes, is_labels=is_labels))
    meta.update(attrs or {})
    if inner:
        group = zarr.open_group(str(container), mode="a", zarr_format=2)
        if "/" in inner:
            group.require_group(inner.rsplit("/", 1)[0])
    existing = _existing_zarr(container, inner)
    if existing is not None:
        _check_own(existing.attrs, f"{container}/{inner or ''}")
        if tuple(existing.shape) != tuple(shape) or existing.dtype != np.dtype(dtype) \
                or tuple(existing.chunks) != tuple(chunks):
            raise InputError(f"{container}/{inner or ''} exists with another shape, type or chunking; "
                             "use another job folder.")
        return ArraySpec(str(container), inner, "zarr")
    zarr.create_array(
        store=str(container), name=inner, shape=shape, dtype=dtype, chunks=chunks, fill_value=0,
        compressors=numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE),
        zarr_format=2, attributes=json.loads(json.dumps(meta, default=float)),
    )
    return ArraySpec(str(container), inner, "zarr")


def check_reusable(path: Path) -> None:
    """Refuse, before any work, an existing output array ``path`` that no blockwise step made."""
    container, inner = _split_output(Path(path))
    if container.suffix == ".n5":
        attributes = container / (inner or "data") / "attributes.json"
        if attributes.exists():
            _check_own(json.loads(attributes.read_text()), str(attributes.parent))
        return
    existing = _existing_zarr(container, inner)
    if existing is not None:
        _check_own(existing.attrs, f"{container}/{inner or ''}")


def _check_own(attrs, where: str) -> None:
    """Refuse an existing array whose attributes ``attrs`` lack the blockwise steps' marker."""
    if attrs.get(OUTPUT_MARKER) != BLOCKWISE_OUTPUT:
        raise InputError(f"{where} exists and was not made by a blockwise step (no '{OUTPUT_MARKER}: "
                         f"{BLOCKWISE_OUTPUT}' attribute); segtrain never writes into it: choose another output or job "
                         "folder.")


def _existing_zarr(container: Path, inner: str | None):
    import zarr

    if not container.exists():
        return None
    try:
        return zarr.open_array(store=str(container), path=inner or "", mode="r")
    except Exception:  # noqa: BLE001 - absent or not an array
        return None


def _create_n5(container: Path, inner: str, shape, dtype, chunks, voxel_size, offset,
               attrs) -> ArraySpec:
    import tensorstore as ts

    folder = container / inner
    container.mkdir(parents=True, exist_ok=True)
    root_attrs = container / "attributes.json"
    if not root_attrs.exists():
        root_attrs.write_text(json.dumps({"n5": "2.0.0"}))
    if (folder / "attributes.json").exists():
        _check_own(json.loads((folder / "attributes.json").read_text()), str(folder))
        existing = _open_n5(folder)
        if existing.shape != tuple(shape) or existing.dtype != np.dtype(dtype):
            raise InputError(f"{folder} exists with another shape or type; use another job folder.")
        return ArraySpec(str(container), inner, "n5")
    ts.open({
        "driver": "n5", "kvstore": {"driver": "file", "path": str(folder)},
        "metadata": {"dimensions": list(shape)[::-1], "blockSize": list(chunks)[::-1],
                     "dataType": np.dtype(dtype).name, "compression": {"type": "gzip"}},
        "create": True,
    }).result()
    meta = json.loads((folder / "attributes.json").read_text())
    meta.update({"resolution": list(voxel_size)[::-1], "offset": list(offset)[::-1]})
    meta.update(json.loads(json.dumps(attrs or {}, default=float)))
    (folder / "attributes.json").write_text(json.dumps(meta))
    return ArraySpec(str(container), inner, "n5")


def set_attrs(spec: ArraySpec, attrs: dict) -> None:
    """Add attributes to an output array (e.g. ``complete: true`` once every block is done)."""
    if spec.kind == "zarr":
        import zarr

        zarr.open_array(store=spec.path, path=spec.dataset or "", mode="r+").attrs.update(attrs)
    elif spec.kind == "n5":
        file = Path(spec.path) / (spec.dataset or "") / "attributes.json"
        meta = json.loads(file.read_text())
        meta.update(attrs)
        file.write_text(json.dumps(meta))


def _split_output(path: Path) -> tuple[Path, str | None]:
    """``(container, path inside it or None)`` of an output path such as ``x.zarr/name``."""
    parts = path.parts
    container_i = next((i for i, p in enumerate(parts) if p.endswith((".zarr", ".n5"))), None)
    if container_i is None:
        raise InputError(f"{path}: blockwise outputs are .zarr or .n5 (e.g. out.zarr/segmentation).")
    return Path(*parts[: container_i + 1]), "/".join(parts[container_i + 1:]) or None


def read_attrs(path: str | Path) -> dict:
    """The attributes of an output array at ``path`` (as :func:`create_output` takes it);
    ``complete`` is true once every block was written."""
    container, inner = _split_output(Path(path))
    if container.suffix == ".n5":
        return json.loads((container / (inner or "data") / "attributes.json").read_text())
    import zarr

    return dict(zarr.open_array(store=str(container), path=inner or "", mode="r").attrs)
