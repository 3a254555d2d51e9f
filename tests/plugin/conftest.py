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


@pytest.fixture
def error_messages():
    """A function returning the napari error notifications shown since the test started."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    start = len(notification_manager.records)

    def messages() -> list[str]:
        return [str(r.message) for r in notification_manager.records[start:]
                if r.severity == NotificationSeverity.ERROR]

    return messages


@pytest.fixture(autouse=True)
def _stop_workers():
    yield
    from segtrain.plugin.workers import stop_all

    stop_all()


@pytest.fixture
def training_api():
    """Skip until the training and prediction APIs exist in this checkout."""
    try:
        from segtrain.predict import predict_array  # noqa: F401
        from segtrain.train import TrainingRun  # noqa: F401
    except ImportError as error:
        pytest.skip(f"training/prediction API not available yet ({error})")


@pytest.fixture
def runs_api():
    """Skip until segtrain.runs exists in this checkout."""
    pytest.importorskip("segtrain.runs", reason="segtrain.runs not available yet")


@pytest.fixture
def screenshot():
    """A function saving a widget (napari's dark style, its preferred size, at least 420 px
    wide) as docs/widget_<name>.png."""
    from pathlib import Path

    from napari.qt import get_stylesheet

    docs = Path(__file__).resolve().parents[2] / "docs"

    def save(widget, name: str) -> Path:
        docs.mkdir(exist_ok=True)
        path = docs / f"widget_{name}.png"
        widget.setStyleSheet(get_stylesheet("dark"))
        hint = widget.sizeHint()
        widget.resize(max(hint.width(), 420), hint.height())
        assert widget.grab().save(str(path)), path
        assert path.stat().st_size > 1000
        return path

    return save
