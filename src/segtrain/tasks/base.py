"""What a task is: the one class every part of segtrain asks about a task (its targets, heads,
losses, validation metric, how its outputs become a segmentation and are scored, its pixel classes
for self-training, its boundary map) instead of comparing the task's name. Tasks register by name;
``task_of`` finds a task from its name or from anything that has a ``task`` (a Config, a
ModelConfig, an OutputSpec, a layer's info).

This module imports nothing of segtrain but its errors and the head names (:mod:`.heads`), so the
config can take its task names from the registry; code that needs a higher layer (training,
segmentation) stays where it is and asks the task for a flag."""

from __future__ import annotations

from typing import Any, ClassVar

from segtrain.errors import InputError
from segtrain.tasks.heads import PROBABILITIES

#: name -> task, in registration order (config.TASKS is a live view of its names)
REGISTRY: dict[str, Task] = {}


#: the forms annotation comes in (``labels_kind`` of a training source, ``--gt-kind`` of the commands
#: that score; :func:`segtrain.targets.masks.instance_labels`): instance ids, or a binary mask whose
#: connected components are the objects
LABEL_KINDS = ("instances", "mask")


class Task:
    """One task. Subclasses set the class attributes and register with :func:`register`."""

    #: the name in configs, run folders and layer metadata
    name: ClassVar[str] = ""
    #: the text the Data panel offers it under, or None when the panel does not offer it
    label: ClassVar[str | None] = None
    #: the model output that holds its prediction (and the kind of the layer that shows it)
    head: ClassVar[str] = PROBABILITIES
    #: the batch entry its training target is stored under (and its loss's name)
    target: ClassVar[str] = "probabilities"
    #: losses that fit it (train.loss), and the one "auto" picks
    losses: ClassVar[frozenset[str]] = frozenset()
    default_loss: ClassVar[str] = ""
    #: the validation metric that picks the best checkpoint, and whether it is minimised ("min") or maximised
    monitor: ClassVar[tuple[str, str]] = ("val/loss", "min")
    #: segmented by fragments + agglomeration (merge tree, threshold slider), scored by VOI / ARAND
    agglomerates: ClassVar[bool] = False
    #: a foreground probability (channel 0) that becomes instances, scored by Dice and instance F1;
    #: its segment settings are tuned with tune_postprocessing and its objects can be size-matched
    foreground: ClassVar[bool] = False
    #: channel 1 of its probabilities is an object boundary (seeded watershed)
    boundary_channel: ClassVar[bool] = False
    #: its labels are class ids (softmax over model.n_classes classes), not instance ids
    semantic: ClassVar[bool] = False
    #: the images its segment settings are tuned on when the user says "auto"
    tune_split: ClassVar[str] = "train"
    #: the Train panel's starting preset by spatial dimensions of the image
    presets: ClassVar[dict[int, str]] = {}
    #: the spatial dimensions of images for which the Data panel starts from this task when their
    #: labels say nothing (the first registered task that lists them)
    default_for: ClassVar[tuple[int, ...]] = ()

    # ------------------------------------------------------------------------------------------
    # what a config of this task trains and predicts

    def n_pixel_classes(self, n_classes: int) -> int:
        """Classes of its pixels (self-training thresholds, class weights): ``n_classes`` for a
        semantic task, else 2 (background / foreground, or boundary / object for affinities)."""
        return n_classes if self.semantic else 2

    def class_count(self, n_classes: int) -> int | None:
        """The model's class count where its labels are class ids, else None."""
        return n_classes if self.semantic else None

    def heads(self, n_offsets: int, lsds: bool, ndim: int, n_classes: int) -> list[tuple[str, int, str]]:
        """``(name, channels, activation)`` of each output of a model of this task, in order."""
        raise NotImplementedError

    def segment_as(self) -> Task:
        """The task whose segmentation the Segment panel makes of this task's prediction."""
        return self

    def probability_layers(self, channels: int) -> list[tuple[str, int]]:
        """(layer suffix, channel) for each probability channel worth its own image layer."""
        return [("probabilities", 0)]

    def preset(self, ndim: int) -> str | None:
        return self.presets.get(ndim)

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    def __eq__(self, other: object) -> bool:  # one instance per name; a copy compares equal
        return isinstance(other, Task) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` known by its name (config validation accepts it from then on)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name.")
    REGISTRY[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def task_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def task_of(what: Any) -> Task:
    """The task named ``what``, or the task of ``what.task`` (a Config, ModelConfig, OutputSpec,
    layer info), or ``what["task"]`` of a mapping (a run's raw config's model section, attributes)."""
    if isinstance(what, Task):
        return what
    if isinstance(what, dict):
        what = what.get("task")
    elif not isinstance(what, str):
        what = getattr(what, "task", None)
        if isinstance(what, Task):
            return what
    task = REGISTRY.get(what) if isinstance(what, str) else None
    if task is None:
        raise InputError(f"Unknown task {what!r}; one of {', '.join(REGISTRY)}.")
    return task


def task_of_head(head: str) -> Task:
    """The task a prediction without a record of its task is read as, from the output (layer kind)
    it holds: the first registered task with that head, else the first with the default head."""
    return next((t for t in REGISTRY.values() if t.head == head),
                next(t for t in REGISTRY.values() if t.head == Task.head))


def default_task(ndim: int) -> Task:
    """The task the Data panel starts from for an image of ``ndim`` spatial dimensions (of other
    dimensions than any task lists, e.g. a 4D array taken for an image: the 2D default)."""
    listed = [t for t in REGISTRY.values() if ndim in t.default_for]
    return listed[0] if listed else default_task(2)


def find_task(what: Any) -> Task | None:
    """:func:`task_of`, or None where ``what`` names no task (a layer without a task, old attributes)."""
    try:
        return task_of(what)
    except InputError:
        return None
