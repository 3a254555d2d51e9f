"""One class per task (see :mod:`segtrain.tasks.base`); outside this package no code compares the
task's name: it asks ``task_of(config)``."""

from segtrain.tasks import builtin as _builtin  # noqa: F401  (registers the four tasks)
from segtrain.tasks.base import (REGISTRY, Task, default_task, find_task, register, task_names, task_of, task_of_head,
                                 unregister)
from segtrain.tasks.builtin import suggested_task

__all__ = ["REGISTRY", "Task", "default_task", "find_task", "register", "suggested_task", "task_names", "task_of",
           "task_of_head", "unregister"]
