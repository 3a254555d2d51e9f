"""One class per task (see :mod:`segtrain.tasks.base`) and the names of the heads they predict (see
:mod:`segtrain.tasks.heads`); outside this package no code compares a task's or a head's name: it
asks ``task_of(config)``, ``task_of_head(kind)``, ``is_affinities(kind)`` and the like."""

from segtrain.tasks import builtin as _builtin  # noqa: F401  (registers the four tasks)
from segtrain.tasks.base import (LABEL_KINDS, REGISTRY, Task, default_task, find_task, register, task_names, task_of,
                                 task_of_head, unregister)
from segtrain.tasks.builtin import suggested_task
from segtrain.tasks.heads import (AFFINITIES, HEAD_KINDS, LSDS, PROBABILITIES, is_affinities, is_auxiliary, is_lsds,
                                  is_prediction, is_probabilities, is_segmentable)

__all__ = ["AFFINITIES", "HEAD_KINDS", "LABEL_KINDS", "LSDS", "PROBABILITIES", "REGISTRY", "Task", "default_task",
           "find_task", "is_affinities", "is_auxiliary", "is_lsds", "is_prediction", "is_probabilities",
           "is_segmentable", "register", "suggested_task", "task_names", "task_of", "task_of_head", "unregister"]
