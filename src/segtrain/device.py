"""Which hardware runs the network: the one place that asks torch what there is.

:func:`hardware` is the only function that queries torch (CUDA, Apple MPS); everything else —
training, prediction, the blockwise workers — goes through :func:`choose_device` (or
:func:`torch_device`), so the choice is the same everywhere: ``auto`` takes CUDA, then Apple MPS,
then the CPU. Tests fake the hardware by replacing :func:`hardware`.

On MPS, operations Metal lacks fall back to the CPU (``PYTORCH_ENABLE_MPS_FALLBACK=1``; torch
reads it when it is imported, so ``segtrain/__init__.py`` sets it on macOS, and
:func:`choose_device` sets it for the processes this one starts). MPS trains in ``32-true`` by
default (``16-mixed`` when asked); bf16 is never used there.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from segtrain.errors import ConfigError

MPS_FALLBACK = "PYTORCH_ENABLE_MPS_FALLBACK"


@dataclass(frozen=True)
class Hardware:
    """What torch sees: CUDA GPUs (count, first one's name, bf16 support) and Apple MPS."""

    cuda_count: int = 0
    cuda_name: str = ""
    cuda_bf16: bool = False
    mps: bool = False


@functools.lru_cache(maxsize=1)
def hardware() -> Hardware:
    """Ask torch which accelerators there are (the only place that does; once per process: the
    first CUDA query can take a second)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    name = torch.cuda.get_device_name(0) if count else ""
    bf16 = bool(count and torch.cuda.is_bf16_supported())
    mps = getattr(torch.backends, "mps", None)
    return Hardware(cuda_count=count, cuda_name=name, cuda_bf16=bf16,
                    mps=bool(mps is not None and mps.is_available()))


@dataclass(frozen=True)
class DeviceChoice:
    """The device and numeric precision a run uses.

    ``kind`` is ``cuda``, ``mps`` or ``cpu``; ``precision`` a Lightning precision; ``threads`` the
    torch CPU threads (what the CPU line reports)."""

    kind: str
    precision: str = "32-true"
    name: str = ""
    threads: int = 1
    count: int = 1

    @property
    def accelerator(self) -> str:
        """Lightning's name for the device kind."""
        return {"cuda": "gpu", "mps": "mps", "cpu": "cpu"}[self.kind]

    @property
    def torch_device(self) -> str:
        return self.kind

    @property
    def pin_memory(self) -> bool:
        """Pinned host memory speeds up copies to a CUDA GPU only."""
        return self.kind == "cuda"

    def describe(self) -> str:
        """``CUDA: NVIDIA H100 (bf16-mixed)``, ``Apple MPS (32-true)``, ``CPU, 2 threads``."""
        if self.kind == "cuda":
            return f"CUDA: {self.name or 'GPU'} ({self.precision})"
        if self.kind == "mps":
            return f"Apple MPS ({self.precision})"
        text = f"CPU, {self.threads} thread{'s' if self.threads != 1 else ''}"
        return text if self.precision in ("32-true", "32") else f"{text} ({self.precision})"


def _precision(kind: str, asked: str, bf16: bool) -> str:
    if kind == "cuda":
        if asked == "auto":
            return "bf16-mixed" if bf16 else "16-mixed"
        return "16-mixed" if asked.startswith("bf16") and not bf16 else asked
    if kind == "mps":  # Metal: float32, or float16 autocast when asked; bf16 is not used
        return "16-mixed" if asked == "16-mixed" else ("64-true" if asked == "64-true" else "32-true")
    if asked in ("auto", "16-mixed"):  # fp16 autocast is a GPU feature
        return "32-true"
    return asked


def choose_device(accelerator: str = "auto", precision: str = "auto", threads: int | None = None) -> DeviceChoice:
    """The device for ``train.accelerator`` (``auto``: CUDA, then MPS, then CPU; ``gpu``: CUDA or
    MPS, one sentence when there is neither; ``cpu``) and the precision it supports for
    ``train.precision`` (``auto``: bf16-mixed on CUDA GPUs that have it, else 16-mixed; 32-true on
    MPS and CPU)."""
    hw = hardware()
    if accelerator == "gpu" and not (hw.cuda_count or hw.mps):
        raise ConfigError("train.accelerator is gpu but there is no CUDA GPU or Apple MPS device; "
                          "set it to auto or cpu.")
    if accelerator != "cpu" and hw.cuda_count:
        kind = "cuda"
    elif accelerator != "cpu" and hw.mps:
        kind = "mps"
        os.environ.setdefault(MPS_FALLBACK, "1")  # for the processes started from here
    else:
        kind = "cpu"
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    return DeviceChoice(kind=kind, precision=_precision(kind, precision, hw.cuda_bf16),
                        name=hw.cuda_name if kind == "cuda" else "", threads=int(threads),
                        count=hw.cuda_count if kind == "cuda" else 1)


def torch_device(accelerator: str = "auto") -> str:
    """``cuda``, ``mps`` or ``cpu``, as :func:`choose_device` picks it (prediction)."""
    return choose_device(accelerator).torch_device


def describe_device(accelerator: str = "auto", precision: str = "auto", threads: int | None = None) -> str:
    """One line naming the device and precision (the Train panel, ``segtrain train``/``predict``)."""
    return choose_device(accelerator, precision, threads).describe()


def device_line(accelerator: str = "auto", precision: str = "auto", threads: int | None = None) -> str:
    """:func:`describe_device`, or the sentence saying why there is no such device."""
    try:
        return describe_device(accelerator, precision, threads)
    except ConfigError as error:
        return str(error)


def default_num_workers() -> int:
    """DataLoader workers for ``train.num_workers: auto``: min(4, usable cores - 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(0, min(4, cores - 1))
