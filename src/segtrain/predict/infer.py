"""Tiled inference over arrays of any size (numpy, dask, zarr), into memory or zarr."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from segtrain.config import divisor
from segtrain.errors import InputError, SegtrainError
from segtrain.io.normalize import intensity_range, normalize
from segtrain.io.read import NonFiniteError, check_finite
from segtrain.predict.model_io import LoadedModel, load_model
from segtrain.predict.tiling import Tile, make_tiles
from segtrain.predict.tta import TestTimeAugmentation, model_tta
from segtrain.predict.uncertainty import UNCERTAINTY
from segtrain.io import Volume
from segtrain.io import read_volume
from segtrain.io.atomic import check_output
from segtrain.io.write import OUTPUT_MARKER, PREDICT_OUTPUT
from segtrain.io.write import check_not_input
from segtrain.io.write import own_output
from segtrain.predict.match_size import match_factor
from segtrain.predict.match_size import matching_applies
from segtrain.predict.match_size import zoom_plane
from segtrain.predict.store import output_array, prediction_group

Progress = Callable[[int, int], None]


def as_loaded(model_or_path) -> LoadedModel:
    if isinstance(model_or_path, LoadedModel):
        return model_or_path
    return load_model(model_or_path)


def _layout(shape: tuple[int, ...], loaded: LoadedModel) -> tuple[bool, bool]:
    """``(has_channels, is_stack)`` of an input of ``shape`` for this model."""
    config = loaded.config
    ndim, channels = config.ndim, config.data.in_channels
    if channels > 1:
        if len(shape) == ndim + 1 and shape[0] == channels:
            return True, False
        if len(shape) == ndim + 1 or len(shape) == ndim:
            got = shape[0] if len(shape) == ndim + 1 else 1
            raise InputError(
                f"The model expects {channels} input channels (channels first) but the input of shape {shape} "
                f"has {got}; give a {channels}-channel image."
            )
    else:
        if len(shape) == ndim:
            return False, False
        if len(shape) == ndim + 1 and shape[0] == 1:
            return True, False
        if len(shape) == ndim + 1 and ndim == 2:
            return False, True  # a stack of 2D images
        if len(shape) == ndim + 1:
            raise InputError(
                f"The model expects 1 input channel but the input of shape {shape} has {shape[0]} "
                f"(or is {len(shape)}D for a {ndim}D model); give a single-channel {ndim}D image."
            )
    raise InputError(f"Input of shape {shape} does not fit a {ndim}D model; give a {ndim}D image"
                     f"{' or a stack of 2D images' if ndim == 2 else ''}.")


def _tiling(loaded: LoadedModel, spatial: tuple[int, ...], tile_shape, margin) -> list[Tile]:
    config = loaded.config
    div = divisor(config)
    ndim = config.ndim
    p = config.predict
    if tile_shape is None:
        tile_shape = p.tile_shape or [max(s, 1) for s in spatial]
    if margin is None:
        margin = p.margin or [max(d, t // 8) for t, d in zip(tile_shape, div)]
    tile_shape = [int(t) for t in tile_shape]
    margin = [int(m) for m in margin]
    if len(tile_shape) != ndim or len(margin) != ndim:
        raise InputError(f"tile_shape and margin need {ndim} entries for this {ndim}D model.")
    for t, m, d in zip(tile_shape, margin, div):
        if t <= 2 * math.ceil(m / d) * d + d:
            raise InputError(
                f"Tile shape {tuple(tile_shape)} is too small for a context margin of {tuple(margin)}; "
                "use larger tiles or a smaller margin."
            )
    return make_tiles(spatial, tile_shape, margin, div)


def _oom(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def _run_tiles(loaded: LoadedModel, array, tiles: list[Tile], has_channels: bool, low: float, high: float,
               write: Callable[[str, Tile, np.ndarray, int | None], None], leads: list[int | None],
               batch_size: int | None, progress: Progress | None,
               augment: TestTimeAugmentation | None = None) -> None:
    """Predict every tile of every stack slice in ``leads`` (``[None]``: a single image or volume)
    and hand each output crop to ``write(name, tile, value, lead)``; ``progress(done, total)``
    counts tiles over all slices; ``augment`` averages each batch over test-time transforms."""
    model = loaded.model
    batch_size = batch_size or loaded.config.predict.batch_size
    device = next(model.parameters()).device
    autocast = contextlib.nullcontext()
    if device.type == "cuda":  # the precision training would pick here (bf16 where the GPU has it)
        from segtrain.device import choose_device

        bf16 = choose_device().precision.startswith("bf16")
        autocast = torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16)
    groups: dict[tuple, list[Tile]] = {}
    for tile in tiles:
        groups.setdefault(tile.shape, []).append(tile)
    done, total = 0, len(tiles) * len(leads)
    for lead in leads:
        for shape, group in groups.items():
            for start in range(0, len(group), batch_size):
                batch = group[start:start + batch_size]
                _run_batch(model, device, autocast, array, batch, shape, has_channels, low, high, write, lead,
                           augment)
                done += len(batch)
                if progress is not None:
                    progress(done, total)


def _run_batch(model, device, autocast, array, batch: list[Tile], shape: tuple, has_channels: bool, low: float,
               high: float, write: Callable[[str, Tile, np.ndarray, int | None], None], lead: int | None,
               augment: TestTimeAugmentation | None = None) -> None:
    inputs = []
    for tile in batch:
        index = ((lead,) if lead is not None else ()) + ((slice(None),) if has_channels else ()) + tile.read
        data = np.asarray(array[index])
        if not isinstance(array, np.ndarray):  # in memory: _prepare checked it whole
            check_finite(data, "the image", index)  # one NaN would make the whole prediction NaN
        data = normalize(data, low, high)
        inputs.append(data if has_channels else data[None])
    x = torch.from_numpy(np.stack(inputs)).to(device)
    try:
        with torch.inference_mode(), autocast:
            out = (model.activate(model(x)) if augment is None
                   else augment(lambda batch: model.activate(model(batch)), x))
    except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
        if _oom(error):
            del x
            if device.type == "cuda":
                torch.cuda.empty_cache()
            smaller = tuple(max(8, s // 2) for s in shape)
            raise SegtrainError(
                f"Ran out of memory predicting tiles of shape {shape} (batch {len(batch)}); "
                f"use a smaller tile shape such as {smaller} or batch size 1."
            ) from None
        raise
    for name, value in out.items():
        value = value.float().cpu().numpy()
        for i, tile in enumerate(batch):
            write(name, tile, value[i][(slice(None), *tile.crop)], lead)


def _prepare(model_or_path, array, tile_shape, margin):
    loaded = as_loaded(model_or_path)
    shape = tuple(int(s) for s in array.shape)
    if np.dtype(array.dtype) == bool:
        raise InputError(f"The input of shape {shape} is boolean (a mask, not an image); predict on the raw image.")
    has_channels, is_stack = _layout(shape, loaded)
    spatial = shape[1:] if (has_channels or is_stack) else shape
    if 0 in spatial:
        raise InputError(f"The input of shape {shape} is empty.")
    tiles = _tiling(loaded, spatial, tile_shape, margin)
    if isinstance(array, np.ndarray):  # in memory: checked whole, before any output exists
        check_finite(array, "the image")
    low, high = intensity_range(array, loaded.config.data.normalize)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise NonFiniteError("the image")
    leads = list(range(shape[0])) if is_stack else [None]  # the stack slices, or one pass
    return loaded, has_channels, spatial, leads, tiles, low, high


def _out_shape(channels: int, spatial, leads: list[int | None]) -> tuple[int, ...]:
    return (channels, *spatial) if leads == [None] else (channels, len(leads), *spatial)


def _out_channels(loaded: LoadedModel, augment: TestTimeAugmentation) -> dict[str, int]:
    """Channels of every output: the model's heads, and ``uncertainty`` (1) when asked for."""
    channels = {h.name: h.channels for h in loaded.model.heads}
    if augment.uncertainty:
        channels[UNCERTAINTY] = 1
    return channels


def predict_array(model_or_path, array, voxel_size=None, tile_shape=None, progress: Progress | None = None,
                  margin=None, batch_size: int | None = None, tta: int | None = None,
                  uncertainty: bool = False, match_size: bool | None = None) -> dict[str, np.ndarray]:
    """Predict every output of a trained model over ``array``, tile by tile.

    Parameters
    ----------
    model_or_path
        A :class:`LoadedModel`, a checkpoint file or a run folder.
    array
        ``(*spatial)``, ``(C, *spatial)`` or, for 2D models, a stack ``(N, y, x)``; numpy, dask
        or zarr (read tile by tile).
    voxel_size
        The output has the input's voxel grid; only decides whether test-time augmentation may
        transpose y and x (equal voxel sizes; default the config's ``data.voxel_size``).
    tile_shape, margin
        Spatial tile size and context per inner side (default: the config's ``predict`` section,
        else the whole array in one tile).
    progress
        ``callable(done_tiles, total_tiles)``.
    tta
        Number of test-time transforms averaged (1 = off; None = the config's ``predict.tta``);
        see :mod:`segtrain.predict.tta`.
    uncertainty
        Also return ``uncertainty`` ``(1, *spatial)``: the disagreement between the test-time
        transforms' predictions, from the same pass (needs ``tta`` >= 2); see
        :mod:`segtrain.predict.uncertainty`.
    match_size
        Zoom each image so that its objects have the model's size (:mod:`segtrain.predict.match_size`;
        None = the config's ``predict.match_object_size``; only for 2D mask/instance models whose
        run knows its object size).

    Returns
    -------
    ``{"affinities": (C, *spatial), "lsds": ..., "probabilities": ...}`` float32 (a stack gives
    ``(C, N, y, x)``), plus ``"uncertainty"`` when asked for.
    """
    return predict_matched(model_or_path, array, voxel_size, tile_shape, progress, margin, batch_size, tta,
                           uncertainty, match_size)[0]


def predict_matched(model_or_path, array, voxel_size=None, tile_shape=None, progress: Progress | None = None,
                    margin=None, batch_size: int | None = None, tta: int | None = None,
                    uncertainty: bool = False, match_size: bool | None = None) -> tuple[dict[str, np.ndarray], list]:
    """:func:`predict_array` and the zoom factor of each image (one per stack slice; 1.0 where
    nothing was zoomed)."""

    loaded = as_loaded(model_or_path)
    kwargs = dict(voxel_size=voxel_size, tile_shape=tile_shape, margin=margin, batch_size=batch_size)
    if not matching_applies(loaded.config, match_size):
        outputs = _predict_plain(loaded, array, progress=progress, tta=tta, uncertainty=uncertainty, **kwargs)
        is_stack = _layout(tuple(int(n) for n in array.shape), loaded)[1]
        return outputs, [1.0] * (int(array.shape[0]) if is_stack else 1)
    _, has_channels, spatial, leads, _, _, _ = _prepare(loaded, array, tile_shape, margin)
    final_tta = loaded.config.predict.tta if tta is None else tta
    images = [np.asarray(array)] if leads == [None] else [np.asarray(array[i]) for i in leads]
    results, factors = [], []
    for image in images:
        def predict(factor, tta_=1, uncertainty_=False, progress_=None):
            zoomed = image if factor == 1.0 else zoom_plane(image, factor)
            return _predict_plain(loaded, zoomed, progress=progress_, tta=tta_, uncertainty=uncertainty_, **kwargs)

        factor, seen = match_factor(predict, loaded.config)
        if factor in seen and final_tta == 1 and not uncertainty:
            outputs = seen[factor]
        else:
            outputs = predict(factor, final_tta, uncertainty, progress)
        if factor != 1.0:
            outputs = {name: zoom_plane(value, tuple(spatial)) for name, value in outputs.items()}
        results.append(outputs)
        factors.append(factor)
    if leads == [None]:
        return results[0], factors
    return {name: np.stack([r[name] for r in results], axis=1) for name in results[0]}, factors


def _predict_plain(model_or_path, array, voxel_size=None, tile_shape=None, progress: Progress | None = None,
                   margin=None, batch_size: int | None = None, tta: int | None = None,
                   uncertainty: bool = False) -> dict[str, np.ndarray]:
    loaded, has_channels, spatial, leads, tiles, low, high = _prepare(model_or_path, array, tile_shape, margin)
    augment = model_tta(loaded.config, loaded.config.predict.tta if tta is None else tta, voxel_size, uncertainty)
    outputs = {name: np.zeros(_out_shape(channels, spatial, leads), np.float32)
               for name, channels in _out_channels(loaded, augment).items()}

    def write(name, tile, value, lead):
        target = outputs[name] if lead is None else outputs[name][:, lead]
        target[(slice(None), *tile.write)] = value

    _run_tiles(loaded, array, tiles, has_channels, low, high, write, leads, batch_size, progress, augment)
    return outputs


def predict_volume(model_or_path, volume, **kwargs) -> dict:
    """Predict a :class:`segtrain.io.Volume`; outputs are Volumes with its voxel size and offset
    (axes ``("c", *spatial axes)``)."""

    outputs = predict_array(model_or_path, volume.data, voxel_size=volume.voxel_size, **kwargs)
    spatial_axes = tuple(a for a in volume.axes if a != "c")
    return {name: Volume(data=value, voxel_size=tuple(volume.voxel_size), offset=tuple(volume.offset),
                         axes=("c", *spatial_axes[-(value.ndim - 1):]), name=name, is_labels=False,
                         attrs={"source": volume.name})
            for name, value in outputs.items()}


def check_prediction_output(output: str | Path, overwrite: bool, inputs=()) -> Path:
    """The checks of a prediction's output before any work: not an input (nor holding one), new,
    or with ``overwrite`` a group `segtrain predict` wrote that holds only what it wrote."""

    check_not_input(output, inputs, overwrite)
    return check_output(output, overwrite, folder=True, replaceable=own_output(PREDICT_OUTPUT),
                        what="a `segtrain predict` output")


def predict_to_zarr(model_or_path, array, output: str | Path, voxel_size=None, offset=None, tile_shape=None,
                    margin=None, progress: Progress | None = None, overwrite: bool = False,
                    batch_size: int | None = None, chunks=None, tta: int | None = None,
                    uncertainty: bool = False, match_size: bool | None = None) -> Path:
    """Predict tile by tile straight into a zarr group (one float32 array per output, zarr format 2,
    the geometry attributes ``segtrain.io`` writes on zarr: ``resolution``/``offset``/``axes``/``layer_type``),
    written atomically; for inputs too big for memory.

    ``array`` may be a path (read lazily with :func:`segtrain.io.read_volume`) or an array;
    ``tta``, ``uncertainty`` (an ``uncertainty`` array beside the others) and ``match_size`` as in
    :func:`predict_array`; a size-matched prediction (2D images, which fit memory) is made in memory
    and records its zoom factors (``object_scale``). The group carries ``segtrain_output: predict``;
    with ``overwrite`` only such a group, holding only what predict wrote, is replaced, and never
    the input (:func:`check_prediction_output`).
    """

    axes = None
    if isinstance(array, (str, Path)):  # the output check itself is atomic_path's, below
        check_not_input(output, [array], overwrite)
    if isinstance(array, (str, Path)):
        volume = read_volume(array)
        array, voxel_size, offset, axes = volume.data, volume.voxel_size, volume.offset, volume.axes
    loaded, has_channels, spatial, leads, tiles, low, high = _prepare(model_or_path, array, tile_shape, margin)
    augment = model_tta(loaded.config, loaded.config.predict.tta if tta is None else tta, voxel_size, uncertainty)
    ndim_out = len(spatial) + (leads != [None])
    spatial_axes = [a for a in (axes or ("z", "y", "x")[-ndim_out:]) if a != "c"]
    output = Path(output)
    with prediction_group(output, overwrite) as group:
        arrays = {name: output_array(group, name, _out_shape(channels, spatial, leads), voxel_size, offset,
                                     spatial_axes, chunks)
                  for name, channels in _out_channels(loaded, augment).items()}

        def write(name, tile, value, lead):
            index = (slice(None), *((lead,) if lead is not None else ()), *tile.write)
            arrays[name][index] = value

        factors = None
        if matching_applies(loaded.config, match_size):
            outputs, factors = predict_matched(loaded, array, voxel_size, tile_shape, progress, margin, batch_size,
                                               tta, uncertainty, match_size)
            for name, value in outputs.items():
                arrays[name][...] = value
        else:
            _run_tiles(loaded, array, tiles, has_channels, low, high, write, leads, batch_size, progress, augment)
        # how the prediction was made travels with it (segtrain segment uses the run's settings)
        record = loaded.record(object_scale=None if factors is None else [round(float(f), 4) for f in factors])
        for name, array in arrays.items():
            own = record.with_(tta=len(augment)) if name == UNCERTAINTY else record
            array.attrs.update({"kind": name, **own.to_attrs()})
        group.attrs.update({**record.to_attrs(), OUTPUT_MARKER: PREDICT_OUTPUT})
    return output
