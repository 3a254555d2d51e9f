"""Warm-up + cosine learning-rate schedule that keeps its plan in its own state, so a resume with a
different ``max_steps`` continues from the learning rate the run had reached."""

from __future__ import annotations

import math
from typing import Any

import torch

FLOOR = 0.02  # the schedule ends at this fraction of the base learning rate


class WarmupCosine(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up to the base LR over ``warmup`` steps, then a cosine from ``start_factor`` at
    step ``start`` down to ``floor`` at step ``total`` (and ``floor`` after it).

    A fresh schedule starts its cosine at ``start = warmup`` with ``start_factor = 1``. The plan
    (``warmup``, ``total``, ``start``, ``start_factor``, ``floor``) is part of :meth:`state_dict`,
    so it survives checkpoints. Loading a state whose ``total`` differs from the one this
    schedule was built with (a resume with another ``max_steps``) re-plans: the cosine restarts
    at the saved step from the factor reached there and anneals to the floor at the new
    ``total``; the LR never jumps up. With the same ``total`` the curve is that of an
    uninterrupted run.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup: int, total: int, floor: float = FLOOR,
                 last_epoch: int = -1):
        self.warmup = max(0, int(warmup))
        self.total = max(1, int(total))
        self.floor = float(floor)
        self.start = self.warmup
        self.start_factor = 1.0
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The LR multiplier applied after ``step`` optimizer steps."""
        if step < self.start and self.start == self.warmup:  # still warming up
            return (step + 1) / self.warmup
        progress = min(1.0, max(0.0, (step - self.start) / max(1, self.total - self.start)))
        return self.floor + (self.start_factor - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        planned_total = self.total
        state = {k: v for k, v in state_dict.items() if k != "lr_lambdas"}  # a LambdaLR's state too
        super().load_state_dict(state)
        if self.total != planned_total:
            self._replan(planned_total)

    def _replan(self, total: int) -> None:
        step = int(self.last_epoch)
        if step < self.warmup and self.start == self.warmup:
            self.total = total  # warm-up goes on; the cosine after it spans the new horizon
            return
        self.start_factor = self.factor(step)
        self.start = step
        self.total = max(total, step)
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr
