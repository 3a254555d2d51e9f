"""A task is one class in segtrain.tasks: registering one makes config validation, the output
spec and every question the code asks of a task answer for it, with no other module edited."""

from __future__ import annotations

import pytest

from segtrain.config import TASKS, Config, config_from_dict, monitor_metric, resolved_loss, validate_config
from segtrain.errors import ConfigError
from segtrain.postprocess import OutputSpec
from segtrain.tasks import Task, register, task_of, unregister


class Distances(Task):
    """A toy task: a signed distance to the nearest boundary, regressed with MSE."""

    name = "distances"
    head = "distances"
    target = "distances"
    losses = frozenset({"mse"})
    default_loss = "mse"
    monitor = ("val/loss", "min")

    def heads(self, n_offsets, lsds, ndim, n_classes):
        return [("distances", 1, "sigmoid")]


@pytest.fixture
def distances():
    register(Distances)
    yield task_of("distances")
    unregister("distances")


def test_a_registered_task_is_accepted_by_config_validation(distances):
    config = config_from_dict({"model": {"task": "distances"}})
    validate_config(config)
    assert config.task == "distances" and "distances" in TASKS
    assert task_of(config) is distances
    assert resolved_loss(config) == "mse" and monitor_metric(config) == ("val/loss", "min")
    assert OutputSpec.of(config).task == "distances"
    with pytest.raises(ConfigError, match="train.loss 'dice' does not fit task distances; use one of mse."):
        config_from_dict({"model": {"task": "distances"}, "train": {"loss": "dice"}})


def test_an_unregistered_task_is_refused_with_the_registered_names():
    with pytest.raises(ConfigError, match="model.task must be one of 'affinities', 'masks', 'instances', "
                                          "'classes', not 'distances'."):
        config_from_dict({"model": {"task": "distances"}})
    config = Config()
    with pytest.raises(ConfigError, match="model.task must be one of .* not 3."):
        config.model.task = 3


def test_a_prediction_without_a_record_and_an_image_without_labels_get_their_task_from_the_registry():
    """What `segtrain segment` reads a prediction without a task record as (by its output), and what
    the Data panel starts from for an image without labels (by its dimensions): asked of the tasks."""
    from segtrain.tasks import default_task, task_of_head

    assert task_of_head("affinities").name == "affinities"
    assert task_of_head("probabilities").name == "masks"
    assert task_of_head("lsds").name == "masks"  # no task's head: read as probabilities
    assert (default_task(3).name, default_task(2).name, default_task(4).name) == ("affinities", "masks", "masks")
