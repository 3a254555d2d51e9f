"""Find and load trained models: a checkpoint file or a run folder."""

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
    (``postprocess.yaml``)."""
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


def default_device() -> str:
    """``cuda`` when a CUDA GPU is there, else ``mps`` on Apple silicon, else ``cpu``."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"
