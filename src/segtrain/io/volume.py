"""The :class:`Volume` (an array with its voxel size, offset and axis names) and what every format
reader shares: axis defaults, the labels-or-image decision and the lazy-loading rule."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segtrain.errors import InputError

#: Arrays larger than this many bytes stay lazy (dask); smaller ones are read into memory.
LAZY_BYTES = 256 * 2**20

#: Axis names for arrays without their own axis metadata, by number of dimensions.
DEFAULT_AXES = {2: ("y", "x"), 3: ("z", "y", "x"), 4: ("c", "z", "y", "x")}
SPATIAL_AXES = ("z", "y", "x")
SUPPORTED_DIMS = "2D (y, x), 3D (z, y, x) or 4D (c, z, y, x)"

# Words in a dataset, file or folder name that say "this integer array holds labels".
_LABEL_WORDS = re.compile(r"^(labels?|labell?ed|seg|segs|segmentations?|gt|groundtruth|ids|"
                          r"masks?|instances?|annotations?|neuron_ids)$")
_LABEL_PREFIXES = ("label", "seg", "mask", "instance", "annotation", "groundtruth")
# Words that say "this is the image", so a label word in the file name does not count.
_IMAGE_WORDS = {"raw", "image", "images", "img", "em", "data", "intensity", "volume", "stack_raw"}


@dataclass
class Volume:
    """An image or label array with its geometry.

    ``voxel_size`` and ``offset`` are in world units (e.g. nm) and have one entry per spatial axis
    (``z``, ``y``, ``x`` among ``axes``), in the order of the array's axes.
    """

    data: Any  # np.ndarray | dask.array.Array
    voxel_size: tuple[float, ...] = ()
    offset: tuple[float, ...] = ()
    axes: tuple[str, ...] = ()
    name: str = "volume"
    is_labels: bool = False
    attrs: dict = field(default_factory=dict)
    source: str | None = None  # file or folder it came from
    dataset: str | None = None  # array path inside that file (HDF5 dataset, zarr/n5 array)
    voxel_size_given: bool = field(default=False, init=False)  # False: none was given, 1s assumed

    def __post_init__(self) -> None:
        if not self.axes:
            self.axes = default_axes(self.data.shape, self.source or self.name)
        self.axes = tuple(self.axes)
        if len(self.axes) != self.data.ndim:
            raise InputError(
                f"{self.name} has {self.data.ndim} dimensions but {len(self.axes)} axis names "
                f"{self.axes}; give one name per dimension."
            )
        n = self.ndim_spatial
        self.voxel_size_given = len(self.voxel_size or ()) > 0
        self.voxel_size = _fit(self.voxel_size, n, 1.0)
        self.offset = _fit(self.offset, n, 0.0)

    @property
    def ndim_spatial(self) -> int:
        """Number of spatial axes (z, y, x) of the array."""
        return sum(a in SPATIAL_AXES for a in self.axes)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(s for s, a in zip(self.data.shape, self.axes) if a in SPATIAL_AXES)

    @property
    def is_lazy(self) -> bool:
        return not isinstance(self.data, np.ndarray)


def _fit(values, n: int, default: float) -> tuple[float, ...]:
    """``values`` as a float tuple of length ``n``: the last ``n`` entries, or ``default``s."""
    values = [float(v) for v in (values if values is not None else ())]
    if len(values) >= n:
        return tuple(values[len(values) - n:])
    return tuple([default] * (n - len(values)) + values)


def default_axes(shape: tuple[int, ...], what: str = "array") -> tuple[str, ...]:
    """Axis names for an array without axis metadata; InputError for 1D or 5D+ arrays."""
    if len(shape) not in DEFAULT_AXES:
        raise InputError(
            f"{what} has {len(shape)} dimensions {tuple(shape)}; segtrain reads "
            f"{SUPPORTED_DIMS} arrays, so squeeze or split the extra dimensions first."
        )
    return DEFAULT_AXES[len(shape)]


def check_ndim(shape: tuple[int, ...], what: str) -> None:
    """Raise InputError unless ``shape`` has 2 to 4 dimensions."""
    default_axes(shape, what)


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+|(?<=[a-z])(?=[0-9])", name.lower()) if w]


def name_says_labels(name: str) -> bool:
    """True when a word of ``name`` (split at ``/ _ - .`` etc.) says labels (gt, seg, ids, ...)."""
    for word in _words(name):
        if word.startswith("segtrain"):
            continue
        if _LABEL_WORDS.match(word) or word.startswith(_LABEL_PREFIXES):
            return True
    return False


def name_says_image(name: str) -> bool:
    return any(word in _IMAGE_WORDS for word in _words(name))


def is_label_dtype(dtype) -> bool:
    dtype = np.dtype(dtype)
    return dtype.kind in "iub"


def looks_like_labels(dtype, names: list[str], attrs: dict | None = None) -> bool:
    """Decide labels vs image: an integer array whose own name (first of ``names``), or else the
    name of its file/folder (the rest, nearest first), says labels; or whose attributes say so.

    A dataset named like an image (``raw``, ``image``) is an image even inside ``gt.h5``.
    """
    if not is_label_dtype(dtype):
        return False
    attrs = attrs or {}
    if attrs.get("layer_type") in ("labels", "image"):
        return attrs["layer_type"] == "labels"
    if "image-label" in attrs:  # OME-Zarr label image
        return True
    for name in names:
        if not name:
            continue
        if name_says_labels(name):
            return True
        if name_says_image(name):
            return False
    return False


def stem(path: str | Path) -> str:
    """File or folder name without any suffixes: ``train-gt.lzf.h5`` -> ``train-gt``."""
    name = Path(path).name
    return name.split(".")[0] or name


def maybe_load(array, nbytes: int | None = None):
    """``array`` read into memory when it is small (< :data:`LAZY_BYTES`), else left as given."""
    if nbytes is None:
        nbytes = int(np.prod(array.shape, dtype=np.int64)) * np.dtype(array.dtype).itemsize
    if nbytes < LAZY_BYTES:
        return np.asarray(array[...]) if not hasattr(array, "compute") else array.compute()
    return array


def as_dask(array, chunks=None):
    """A dask array over ``array`` (anything with shape, dtype and numpy-style slicing)."""
    import dask.array as da

    if chunks is None:
        chunks = getattr(array, "chunks", None)
        if not (isinstance(chunks, tuple) and all(isinstance(c, int) for c in chunks)):
            chunks = "auto"
    return da.from_array(array, chunks=chunks, asarray=True, fancy=False)


def jsonable(value: Any) -> Any:
    """``value`` converted to JSON types (numpy scalars/arrays, tuples, paths); things that cannot
    be converted are dropped from dicts and lists."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            try:
                out[str(k)] = jsonable(v)
            except TypeError:
                continue
        return out
    if isinstance(value, (list, tuple)):
        out_list = []
        for v in value:
            try:
                out_list.append(jsonable(v))
            except TypeError:
                continue
        return out_list
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise TypeError(f"not JSON serialisable: {type(value).__name__}") from None
    return value


_GEOMETRY_KEYS = ("resolution", "offset", "axes", "layer_type")


def free_attrs(attrs: dict) -> dict:
    """Attributes other than those that became Volume fields (resolution, offset, axes)."""
    return {k: v for k, v in jsonable(dict(attrs)).items() if k not in _GEOMETRY_KEYS}
