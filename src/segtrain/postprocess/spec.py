"""What a model's outputs are: the task, the model's spatial dimensions and the number of classes."""

from __future__ import annotations

from dataclasses import dataclass

from segtrain.config import TASKS, Config
from segtrain.errors import InputError


@dataclass(frozen=True)
class OutputSpec:
    """How to read a prediction: ``task`` (affinities, masks, instances, classes), ``ndim`` (the
    model's spatial dimensions: a 2D model's prediction of a ``(N, y, x)`` stack is a stack of 2D
    images) and ``n_classes`` (classes only)."""

    task: str
    ndim: int
    n_classes: int = 2

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InputError(f"Unknown task {self.task!r}; one of {', '.join(TASKS)}.")
        if self.ndim not in (2, 3):
            raise InputError(f"A model is 2D or 3D, not {self.ndim}D.")

    @classmethod
    def of(cls, config: Config) -> OutputSpec:
        return cls(config.task, config.ndim, config.model.n_classes)
