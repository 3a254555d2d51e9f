"""One class per task (see :mod:`segtrain.tasks.base`); outside this package no code compares the
task's name: it asks ``task_of(config)``."""

from segtrain.tasks import builtin as _builtin  # noqa: F401  (registers the four tasks)
from segtrain.tasks.base import REGISTRY, Task, find_task, register, task_names, task_of, unregister

__all__ = ["REGISTRY", "Task", "find_task", "register", "task_names", "task_of", "unregister"]
