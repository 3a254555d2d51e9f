"""Fixtures for the widget tests: small synthetic arrays, error notifications, cleanup."""

from __future__ import annotations

import numpy as np
import pytest


def blocks_labels(shape=(8, 48, 48), cell=12, seed=0) -> np.ndarray:
    """Box-shaped objects on a grid, 1-voxel background between them (uint64)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint64)
    z, y, x = shape
    next_id = 1
    for y0 in range(0, y, cell):
        for x0 in range(0, x, cell):
            h = cell - 1 - int(rng.integers(0, 2))
            labels[:, y0:y0 + h, x0:x0 + cell - 1] = next_id
            next_id += 1
    return labels


def noisy_affinities(labels: np.ndarray, noise=0.1, seed=0) -> np.ndarray:
    from segtrain.targets import affinities

    affs, _ = affinities(labels)
    rng = np.random.default_rng(seed)
    return np.clip(affs + rng.normal(0, noise, affs.shape), 0, 1).astype(np.float32)


@pytest.fixture
def synthetic():
    """Helpers that make small synthetic arrays."""
    return {"blocks_labels": blocks_labels, "noisy_affinities": noisy_affinities}


def _notifications(severity: str):
    """A function returning the napari notifications of ``severity`` shown since it was made."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    start = len(notification_manager.records)
    wanted = getattr(NotificationSeverity, severity)

    def messages() -> list[str]:
        return [str(r.message) for r in notification_manager.records[start:] if r.severity == wanted]

    return messages


@pytest.fixture
def error_messages():
    """The napari error notifications shown since the test started."""
    return _notifications("ERROR")


@pytest.fixture
def warning_messages():
    """The napari warning notifications shown since the test started."""
    return _notifications("WARNING")


@pytest.fixture(autouse=True)
def _stop_workers():
    yield
    from segtrain.plugin.workers import stop_all

    stop_all()


@pytest.fixture
def own_napari_app(mock_app_model):
    """A fresh napari application (actions, plugin menus) for a test that opens napari the way
    `segtrain gui` does (``open_viewer``), as ``make_napari_viewer`` gives its viewers: without it,
    a viewer made after a ``make_napari_viewer`` test registers napari's plugin actions a second
    time in the process's one application and fails."""
    from napari._qt._qapp_model.qactions import init_qactions
    from napari.plugins import _initialize_plugins

    _initialize_plugins.cache_clear()  # registered again, into this test's application
    init_qactions.cache_clear()
    return mock_app_model


@pytest.fixture
def gui():
    """Clicks, typing and list choices on real widgets (helpers.gui.GUI)."""
    from helpers.gui import GUI

    return GUI()


@pytest.fixture
def docked(make_napari_viewer):
    """A shown viewer and a function docking panels in it: ``viewer, dock = docked``; panels must
    be visible to be clicked."""
    from helpers.gui import dock

    from segtrain.plugin.workers import stop_all

    viewer = make_napari_viewer(show=True)
    yield viewer, lambda *widgets: dock(viewer, *widgets)
    stop_all(wait_s=60)  # before the viewer and its panels are deleted
