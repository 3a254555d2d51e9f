"""Find and load trained models: a checkpoint file or a run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from segtrain.config import Config, config_from_dict
from segtrain.errors import ConfigError, SegtrainError
from segtrain.models import SegmentationModel, build_model
from segtrain.predict.tune import apply_postprocess_file

CHECKPOINT_PREFERENCE = ("best.ckpt", "final.ckpt", "last.ckpt")


@dataclass
class LoadedModel:
    """A trained network ready for inference, with the config it was trained with."""

    model: SegmentationModel
    config: Config
    checkpoint: Path
    step: int

    @property
    def run_dir(self) -> Path | None:
        parent = self.checkpoint.parent
        return parent.parent if parent.name == "checkpoints" else None


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint a path names: the file itself, or the best (else final, else last, else
    newest) checkpoint of a run folder."""
    path = Path(path)
    if not path.exists():
        raise SegtrainError(f"No checkpoint or run folder at {path}; check the path or train a model first.")
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    for name in CHECKPOINT_PREFERENCE:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SegtrainError(f"Run folder {path} has no checkpoints (checkpoints/*.ckpt); train it first or pick another run.")
    return found[-1]


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


def load_model(path: str | Path, device: str | torch.device | None = None) -> LoadedModel:
    """Load a run folder (its best checkpoint) or a checkpoint file for inference.

    Segment settings that `segtrain tune` stored in the run folder (``postprocess.yaml``) are
    applied to the returned config."""
    ckpt_path = find_checkpoint(path)
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
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    loaded = LoadedModel(model, config, ckpt_path, int(checkpoint.get("global_step", 0)))
    apply_postprocess_file(config, loaded.run_dir)  # settings chosen by `segtrain tune`
    return loaded
