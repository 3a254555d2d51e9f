"""Find and load trained models: a checkpoint file, a run folder, or a BioImage.IO package segtrain exported."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from segtrain.config import Config, config_from_dict
from segtrain.errors import ConfigError, SegtrainError
from segtrain.models import SegmentationModel, build_model
from segtrain.record import PredictionRecord
from segtrain.runs import RunFolder


@dataclass
class LoadedModel:
    """A trained network ready for inference, with the config it was trained with."""

    model: SegmentationModel
    config: Config
    checkpoint: Path
    step: int
    package: str | None = None  # the name of the BioImage.IO package it came from (``checkpoint`` is its file)

    @property
    def folder(self) -> RunFolder | None:
        """The run folder the checkpoint lies in, if any."""
        return RunFolder.of_checkpoint(self.checkpoint)

    @property
    def run_dir(self) -> Path | None:
        folder = self.folder
        return None if folder is None else folder.path

    def record(self, **more) -> PredictionRecord:
        """How a prediction of this model is made: task, model_ndim, the run's segment settings
        (the threshold its validation chose and `segtrain tune`'s settings included), run,
        checkpoint and step; ``more``: tta, object_scale (or other settings)."""
        folder = self.folder
        more = {"settings": copy.deepcopy(self.config.segment), **more}
        return PredictionRecord(task=self.config.task, model_ndim=self.config.ndim,
                                run=None if folder is None else str(folder.path),
                                checkpoint=str(self.checkpoint), step=self.step, **more)

    def describe(self) -> str:
        """``run my-run-..., final.ckpt (step 1500)``."""
        if self.package is not None:
            return f"BioImage.IO package {self.checkpoint.name} ({self.package}, step {self.step})"
        where = f"run {self.folder.name}, " if self.folder is not None else ""
        return f"{where}{self.checkpoint.name} (step {self.step})"


def find_checkpoint(path: str | Path, which: str = "newest") -> Path:
    """The checkpoint a path names: the file itself, or a run folder's checkpoint chosen by
    :meth:`RunFolder.model_checkpoint` (``newest`` readable by default, or ``best``, or a file name)."""
    path = Path(path)
    if not path.exists():
        raise SegtrainError(f"No checkpoint or run folder at {path}; check the path or train a model first.")
    if path.is_file():
        return path
    if RunFolder.of_checkpoints_dir(path) is not None:
        path = path.parent
    return RunFolder(path).model_checkpoint(which).path


def read_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated, not a torch file, ...
        raise SegtrainError(f"{path} is not a readable checkpoint ({type(error).__name__}); pick another file.") from None


def config_of_checkpoint(checkpoint: dict, path: Path) -> Config:
    values = (checkpoint.get("hyper_parameters") or {}).get("config")
    if not isinstance(values, dict):
        raise SegtrainError(f"{path} is not a segtrain checkpoint (it holds no segtrain config); pick a segtrain run.")
    try:
        return config_from_dict(values)
    except ConfigError as error:
        raise SegtrainError(f"{path} was made by an incompatible version of segtrain ({error})") from None


def load_model(path: str | Path, device: str | torch.device | None = None, which: str = "newest") -> LoadedModel:
    """Load a run folder's checkpoint (``which``: newest readable, ``best``, or a file name) or a
    checkpoint file for inference.

    The run's segment settings chosen on validation data are applied to the returned config: the
    merge threshold its validation chose at the checkpoint's step, and what `segtrain tune` stored
    (``postprocess.yaml``). A BioImage.IO package segtrain exported (``.zip``, ``rdf.yaml``) loads
    with the config and segment settings it was exported with (:func:`segtrain.predict.package.load_package`)."""
    from segtrain.predict.package import is_package

    if is_package(path):
        return load_package(path, device)
    ckpt_path = find_checkpoint(path, which)
    checkpoint = read_checkpoint(ckpt_path)
    config = config_of_checkpoint(checkpoint, ckpt_path)
    build_config = config.copy()
    build_config.model.encoder_weights = None  # the checkpoint holds the trained encoder
    model = build_model(build_config)
    state = {k.removeprefix("model."): v for k, v in checkpoint.get("state_dict", {}).items()
             if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise SegtrainError(
            f"Checkpoint {ckpt_path} does not fit the model its config describes "
            f"({config.model.architecture}, task {config.task}); it comes from an incompatible model or version."
        ) from None
    if device is None:
        device = default_device()
    model.to(device).eval()
    loaded = LoadedModel(model, config, ckpt_path, int(checkpoint.get("global_step", 0)))
    if loaded.folder is not None:  # the threshold validation chose at this step; `segtrain tune`'s settings
        loaded.folder.apply_postprocess(config, loaded.step)
    return loaded


def load_package(path, device=None):
    """A :class:`LoadedModel` of a package segtrain wrote: its run's config (segment settings as
    exported) and its ``pytorch_state_dict`` weights in :func:`segtrain.models.build_model`'s
    network, or its TorchScript where that is all it has."""
    import io

    from segtrain.config import divisor
    from segtrain.models import head_specs
    from segtrain.models.packaged import ScriptedModel, network_config
    from segtrain.predict.package import quiet_bioimageio, read_package, segtrain_record, short_text, weights_bytes

    path = Path(path)
    descr = read_package(path)
    record = segtrain_record(descr)
    if record is None:
        raise SegtrainError(f"{path} was not exported by segtrain; it runs through bioimageio.core (segtrain predict "
                            "--run and the Predict panel do that).")
    try:
        config = network_config(record["run_config"])
    except Exception as error:  # noqa: BLE001 - ConfigError of a newer/older segtrain
        raise SegtrainError(f"{path} was made by an incompatible version of segtrain ({short_text(error)}).") from None
    weights = descr.weights
    if weights.pytorch_state_dict is not None:
        state = torch.load(io.BytesIO(weights_bytes(weights.pytorch_state_dict)), map_location="cpu",
                           weights_only=True)
        model = build_model(config)
        try:
            model.load_state_dict(state)
        except RuntimeError:
            raise SegtrainError(f"The weights in {path} do not fit the network its config describes; the package is "
                                "damaged or from an incompatible version.") from None
    elif weights.torchscript is not None:
        with quiet_bioimageio():  # torch warns that TorchScript is deprecated, which the user cannot act on
            scripted = torch.jit.load(io.BytesIO(weights_bytes(weights.torchscript)), map_location="cpu")
        model = ScriptedModel(scripted, head_specs(config), divisor(config), config.data.in_channels)
    else:
        raise SegtrainError(f"{path} has no pytorch_state_dict or torchscript weights; segtrain runs only those.")
    model.to(device or default_device()).eval()
    return LoadedModel(model, config, path, int(record.get("step") or 0), package=str(descr.name))


def open_model(path, device=None):
    """A package as segtrain runs it: a :class:`LoadedModel` when segtrain wrote it, else a :class:`ZooModel`."""
    from segtrain.predict.package import open_zoo_model, read_package, segtrain_record

    descr = read_package(path)
    if segtrain_record(descr) is not None:
        return load_package(path, device)
    return open_zoo_model(path)


def default_device() -> str:
    """``cuda`` when a CUDA GPU is there, else ``mps`` on Apple silicon, else ``cpu``
    (:func:`segtrain.device.torch_device`)."""
    from segtrain.device import torch_device

    return torch_device()
