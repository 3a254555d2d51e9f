"""Read and write volumes: zarr (formats 2 and 3, OME-Zarr), n5, HDF5, TIFF, PNG slice folders.

A :class:`Volume` is an array (numpy, or dask when large) with voxel size, offset (world units)
and axis names. Errors a user can cause raise :class:`~segtrain.errors.InputError` with one
sentence naming the file and the problem.
"""

from segtrain.errors import InputError
from segtrain.io.atomic import atomic_path
from segtrain.io.read import SUPPORTED, is_readable_path, read_volume, read_volumes
from segtrain.io.volume import LAZY_BYTES, Volume
from segtrain.io.write import default_chunks, write_volume

__all__ = [
    "LAZY_BYTES",
    "SUPPORTED",
    "InputError",
    "Volume",
    "atomic_path",
    "default_chunks",
    "is_readable_path",
    "read_volume",
    "read_volumes",
    "write_volume",
]
