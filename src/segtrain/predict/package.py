"""Run BioImage.IO model packages (``.zip`` or ``rdf.yaml``/``bioimageio.yaml``).

Packages segtrain wrote (``config.segtrain``) become a :class:`segtrain.predict.LoadedModel`, run
by segtrain's own prediction exactly as the run (:func:`segtrain.predict.model_io.load_package`,
called by :func:`segtrain.predict.load_model`). Other 2D/3D zoo models with ``pytorch_state_dict`` or
``torchscript`` weights run through bioimageio.core's prediction pipeline, with their own
pre/post-processing and tiling (:class:`ZooModel`); what cannot run here is one sentence
(:func:`unsupported_reason`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segtrain.errors import InputError

RUNNABLE_WEIGHTS = ("pytorch_state_dict", "torchscript")
SPACE = ("z", "y", "x")
MAX_BLOCK_VOXELS = 2**24  # largest block bioimageio.core predicts at once for a zoo model


_QUIET = [0]  # how many quiet_bioimageio blocks are open (in any thread)
_QUIET_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_bioimageio() -> Iterator[None]:
    """bioimageio's log lines (loguru, on stderr) and Python warnings kept from the user meanwhile:
    what matters comes back as a result or one sentence. Nested uses (an export that tests and saves
    its package) keep it quiet until the outermost ends: loguru's disable/enable do not count."""
    from loguru import logger

    from segtrain.warnings_log import warnings_logged

    with _QUIET_LOCK:
        _QUIET[0] += 1
        if _QUIET[0] == 1:
            logger.disable("")
    try:
        with warnings_logged():
            yield
    finally:
        with _QUIET_LOCK:
            _QUIET[0] -= 1
            if _QUIET[0] == 0:
                logger.enable("")


def is_package(path) -> bool:
    """Whether ``path`` names a BioImage.IO package: a ``.zip`` file or an ``rdf.yaml``/``*.bioimageio.yaml``."""
    path = Path(path)
    return path.is_file() and (path.suffix.lower() == ".zip" or path.name.endswith(("rdf.yaml", "bioimageio.yaml")))


def read_package(path):
    """The package's model description (spec 0.5; older ones updated); one sentence when it is none."""
    from bioimageio.spec import InvalidDescr, load_model_description

    path = Path(path)
    try:
        with quiet_bioimageio():
            descr = load_model_description(path, perform_io_checks=False, format_version="latest")
    except Exception as error:  # noqa: BLE001 - a file that is no model description
        raise InputError(f"{path} is not a BioImage.IO model package ({short_text(error)}); give a model .zip or its "
                         "rdf.yaml.") from None
    if isinstance(descr, InvalidDescr):
        summary = short_text(descr.validation_summary)
        raise InputError(f"{path} is not a valid BioImage.IO model description ({summary}); give a valid model package.")
    return descr


def short_text(what) -> str:
    text = " ".join(str(what).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def segtrain_record(descr) -> dict | None:
    """``config.segtrain`` of a package segtrain wrote (None for other packages)."""
    config = getattr(descr, "config", None)
    extra = getattr(config, "model_extra", None) or {}
    record = extra.get("segtrain")
    return record if isinstance(record, dict) and isinstance(record.get("run_config"), dict) else None


def weights_bytes(entry) -> bytes:
    return entry.get_reader().read()


# --- other zoo models ---------------------------------------------------------------------------
def unsupported_reason(descr) -> str | None:
    """Why a (non-segtrain) package cannot run here, as the end of a sentence; None when it can."""
    formats = [name for name in RUNNABLE_WEIGHTS if getattr(descr.weights, name, None) is not None]
    if not formats:
        present = [name for name, value in descr.weights if value is not None]
        return (f"its weights are {', '.join(present) or 'missing'}, and segtrain runs only pytorch_state_dict or "
                "torchscript weights")
    if len(descr.inputs) != 1:
        return f"it has {len(descr.inputs)} input tensors, and segtrain gives a model one image"
    axes = [str(a.type) for a in descr.inputs[0].axes]
    space = [str(a.id) for a in descr.inputs[0].axes if a.type == "space"]
    other = [t for t in axes if t not in ("batch", "channel", "space")]
    if other or len(space) not in (2, 3) or axes.count("channel") > 1:
        named = ", ".join(f"{a.id} ({a.type})" for a in descr.inputs[0].axes)
        return (f"its input axes [{named}] cannot be mapped to a 2D or 3D image "
                "(batch, channel, z/y/x only)")
    return None


@dataclass
class ZooModel:
    """A zoo model that bioimageio.core runs (not exported by segtrain)."""

    descr: object
    path: Path
    weight_format: str

    @property
    def input(self):
        return self.descr.inputs[0]

    @property
    def spatial_axes(self) -> list[str]:
        return [str(a.id) for a in self.input.axes if a.type == "space"]

    @property
    def ndim(self) -> int:
        return len(self.spatial_axes)

    @property
    def channels(self) -> int:
        for axis in self.input.axes:
            if axis.type == "channel":
                return len(axis.channel_names)
        return 1

    @property
    def output_names(self) -> list[str]:
        return [str(t.id) for t in self.descr.outputs]

    def block_shape(self, spatial: tuple[int, ...], most: int = MAX_BLOCK_VOXELS) -> dict[str, int]:
        """The block bioimageio.core predicts at once, per spatial axis: the largest size the model
        accepts (``min + n * step`` for parameterised sizes) that fits the image, shrunk on the
        largest axis while a block exceeds ``most`` voxels; bioimageio.core tiles larger images
        with the halo the model declares."""
        import math

        sizes = {str(a.id): a.size for a in self.input.axes if a.type == "space"}
        block = {}
        for axis, size in zip(self.spatial_axes, spatial):
            valid = sizes[axis]
            if hasattr(valid, "step"):
                block[axis] = valid.min + max(0, (size - valid.min) // valid.step) * valid.step
            elif isinstance(valid, int):
                block[axis] = valid
        while math.prod(block.values() or [1]) > most:
            axis = max((a for a in block if hasattr(sizes[a], "step") and block[a] > sizes[a].min),
                       key=lambda a: block[a], default=None)
            if axis is None:
                break
            block[axis] -= sizes[axis].step
        return block

    def describe(self) -> str:
        return f"BioImage.IO model {self.descr.name!r} ({self.path.name}, {self.weight_format} via bioimageio.core)"

    def predict(self, array, device: str | None = None) -> dict[str, np.ndarray]:
        """Every output over ``array`` (``(*spatial)`` or ``(C, *spatial)``) through bioimageio.core's
        pipeline (its pre/post-processing and tiling): ``{output id: (C, *spatial)}`` float32."""
        from bioimageio.core import AxisId, Tensor, create_prediction_pipeline, predict

        array = np.asarray(array)
        shape = tuple(array.shape)
        if array.ndim == self.ndim:
            array = array[None]
        if array.ndim != self.ndim + 1 or array.shape[0] != self.channels:
            raise InputError(f"The model {self.descr.name!r} expects a {self.ndim}D image with {self.channels} "
                             f"channel(s) (channels first) but got shape {shape}; give such an image.")
        channel_id = next((str(a.id) for a in self.input.axes if a.type == "channel"), None)
        batch_id = next((str(a.id) for a in self.input.axes if a.type == "batch"), None)
        dims = [channel_id, *self.spatial_axes]
        if channel_id is None:
            array, dims = array[0], dims[1:]
        if batch_id is not None:
            array, dims = array[None], [batch_id, *dims]
        tensor = Tensor.from_numpy(np.ascontiguousarray(array), dims=tuple(dims))
        devices = [device or "cpu"]
        try:
            with quiet_bioimageio():
                pipeline = create_prediction_pipeline(self.descr, weight_format=self.weight_format, devices=devices)
                sample = predict(model=pipeline, inputs={self.input.id: tensor},
                                 input_block_shape={self.input.id: {
                                     AxisId(a): n for a, n in self.block_shape(shape[-self.ndim:]).items()}})
        except InputError:
            raise
        except Exception as error:  # noqa: BLE001 - the model's own code failed on this image
            raise InputError(f"bioimageio.core could not run {self.descr.name!r} on an image of shape {shape} "
                             f"({short_text(error)}); check that the image fits the model.") from None
        outputs = {}
        for descr in self.descr.outputs:
            member = sample.members[descr.id]
            values = np.asarray(member.data)
            names = [str(d) for d in member.dims]
            batch = [n for n in names if n in ("batch", "b")]
            if batch:
                values = np.take(values, 0, axis=names.index(batch[0]))
                names.remove(batch[0])
            channel = [n for n in names if n in ("channel", "c")] or [n for n in names if n not in SPACE]
            if channel:
                values = np.moveaxis(values, names.index(channel[0]), 0)
            else:
                values = values[None]
            outputs[str(descr.id)] = values.astype(np.float32, copy=False)
        return outputs


def open_zoo_model(path) -> ZooModel:
    """A package segtrain did not write, ready for bioimageio.core; one sentence when it cannot run."""
    path = Path(path)
    descr = read_package(path)
    reason = unsupported_reason(descr)
    if reason is not None:
        raise InputError(f"segtrain cannot run {path.name}: {reason}.")
    weight_format = next(name for name in RUNNABLE_WEIGHTS if getattr(descr.weights, name, None) is not None)
    return ZooModel(descr, path, weight_format)



def predict_zoo_to_zarr(model: ZooModel, array, output, voxel_size=None, offset=None, axes=None,
                        overwrite: bool = False, device: str | None = None) -> Path:
    """Predict with a zoo model (in memory, bioimageio.core's tiling) into a zarr group: one float32
    array per output, with segtrain's geometry attributes; written atomically, replacing (with
    ``overwrite``) only a group `segtrain predict` wrote."""
    from segtrain.io.write import OUTPUT_MARKER, PREDICT_OUTPUT
    from segtrain.predict.store import output_array, prediction_group

    outputs = model.predict(array, device)
    for name, value in outputs.items():
        if value.size == 0 or not np.isfinite(value).all():
            raise InputError(f"The model's output {name!r} is empty or not finite (NaN); nothing was written.")
    spatial_axes = [a for a in (axes or SPACE[-model.ndim:]) if a != "c"][-model.ndim:]
    output = Path(output)
    with prediction_group(output, overwrite) as group:
        for name, value in outputs.items():
            stored = output_array(group, name, value.shape,
                                  None if voxel_size is None else tuple(voxel_size)[-model.ndim:],
                                  None if offset is None else tuple(offset)[-model.ndim:],
                                  spatial_axes[-(value.ndim - 1):])
            stored[...] = value
            stored.attrs.update({"kind": name, "bioimageio_model": str(model.descr.name)})
        group.attrs.update({OUTPUT_MARKER: PREDICT_OUTPUT, "bioimageio_model": str(model.descr.name),
                            "checkpoint": str(model.path)})
    return output
