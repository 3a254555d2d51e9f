"""Where a prediction is written: a zarr group (format 2, written atomically) with one float32
array per output and the geometry attributes ``segtrain.io`` reads back; shared by
:func:`segtrain.predict.infer.predict_to_zarr` and :func:`segtrain.predict.package.predict_zoo_to_zarr`."""

from __future__ import annotations

import contextlib
from pathlib import Path

from segtrain.io import Volume, atomic_path
from segtrain.io.write import PREDICT_OUTPUT, own_output
from segtrain.io.zarr_io import zarr_attrs


@contextlib.contextmanager
def prediction_group(output: Path, overwrite: bool = False):
    """A new zarr group (format 2) for a prediction, written atomically at ``output``; with
    ``overwrite`` it replaces only a group `segtrain predict` wrote (``segtrain_output: predict``)."""
    import zarr

    with atomic_path(output, overwrite=overwrite, folder=True, replaceable=own_output(PREDICT_OUTPUT),
                     what="a `segtrain predict` output") as tmp:
        yield zarr.open_group(str(tmp), mode="w", zarr_format=2)


def output_array(group, name: str, shape: tuple[int, ...], voxel_size, offset, spatial_axes, chunks=None):
    """One float32 output array (channels first) in a prediction group, with the geometry
    attributes ``segtrain.io`` writes on zarr; chunks of one channel, at most 64 (3D) or 512 (2D)
    voxels along each spatial axis unless given."""
    chunk = chunks or (1, *[min(s, 64 if len(shape) == 4 else 512) for s in shape[1:]])
    stored = group.create_array(name, shape=shape, chunks=chunk, dtype="float32", fill_value=0.0)
    stored.attrs.update(zarr_attrs(Volume(
        data=stored, voxel_size=() if voxel_size is None else tuple(voxel_size),
        offset=() if offset is None else tuple(offset), axes=("c", *spatial_axes), name=name)))
    return stored
