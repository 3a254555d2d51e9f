"""Checkpoint files: their step and whether they hold the training state, read without PyTorch,
and the rewrite to weights only."""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

from segtrain.io.atomic import atomic_path


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint file of a run: its step (None when it cannot be read), size and whether it
    holds the full training state (optimizer, schedulers, callbacks: a run can resume from it) or
    the weights only (prediction, fine-tuning)."""

    path: Path
    step: int | None
    size: int
    full: bool = False

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def readable(self) -> bool:
        return self.step is not None

    def describe(self) -> str:
        """``final.ckpt (step 15)``."""
        return f"{self.name} (step {self.step})" if self.readable else f"{self.name} (unreadable)"


class _Anything:
    """Stands in for every object a checkpoint's pickle names outside the standard library
    (tensors, numpy arrays, Lightning's enums): called, indexed or given state, it stays itself."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return self

    def __setstate__(self, state):
        pass


class _StepUnpickler(pickle.Unpickler):
    SAFE = ("builtins", "collections", "datetime", "pathlib", "copyreg", "_codecs")

    def find_class(self, module: str, name: str):
        if module.split(".")[0] in self.SAFE:
            return super().find_class(module, name)
        return _Anything

    def persistent_load(self, pid):  # tensor storages: not read
        return _Anything()


def _checkpoint_header(path: str | Path, verify: bool = True) -> tuple[int, bool] | None:
    """``(global step, holds optimizer state)`` of a checkpoint, or None when it cannot be read
    (``verify``: also checks every member's checksum, which reads the whole file)."""
    try:
        with zipfile.ZipFile(Path(path)) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            with archive.open(name) as f:
                checkpoint = _StepUnpickler(f).load()
            if verify and archive.testzip() is not None:  # a damaged member (e.g. overwritten bytes)
                return None
        return int(checkpoint.get("global_step", 0)), bool(checkpoint.get("optimizer_states"))
    except Exception:  # noqa: BLE001 - any unreadable file is "not good"
        return None


def checkpoint_step(path: str | Path) -> int | None:
    """The training step a checkpoint was saved at, or None when it cannot be read (truncated,
    not a checkpoint). Reads only the checkpoint's small pickle (``data.pkl`` of torch's zip
    format), never its tensors and without PyTorch: milliseconds, in any thread."""
    header = _checkpoint_header(path)
    return None if header is None else header[0]


def checkpoint_is_full(path: str | Path) -> bool:
    """Whether a checkpoint holds the optimizer state (a run can resume from it)."""
    header = _checkpoint_header(path)
    return header is not None and header[1]


TRAINING_STATE = ("optimizer_states", "lr_schedulers", "callbacks", "loops", "MixedPrecision", "native_amp_scaling_state",
                  "current_model_state", "averaging_state")  # the last two: training with a weight average
"""What a checkpoint holds beyond the weights: needed to resume, not to predict or fine-tune."""


def weights_only(path: str | Path) -> None:
    """Rewrite a full checkpoint as a weights-only one (what Lightning's ``save_weights_only``
    writes: step, epoch, weights, hyper-parameters), atomically; about a third of the size with
    Adam's state gone."""
    import torch

    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=False)
    slim = {k: v for k, v in checkpoint.items() if k not in TRAINING_STATE}
    buffer = io.BytesIO()
    torch.save(slim, buffer)
    with atomic_path(Path(path), overwrite=True) as tmp:
        tmp.write_bytes(buffer.getvalue())
