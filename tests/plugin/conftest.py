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
def screenshot(tmp_path):
    """A function saving a widget (napari's dark style, its preferred size, at least 420 px
    wide) as widget_<name>.png: into docs/ when SEGTRAIN_UPDATE_SCREENSHOTS=1, else into the
    test's temporary folder (so a test run leaves the checkout clean)."""
    import os
    from pathlib import Path

    from napari.qt import get_stylesheet

    docs = Path(__file__).resolve().parents[2] / "docs"
    if not os.environ.get("SEGTRAIN_UPDATE_SCREENSHOTS"):
        docs = tmp_path / "docs"

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


class WidgetLoop:
    """Steps of the workflow driven through the widgets themselves (shared by the workflow tests)."""

    def __init__(self, qtbot):
        self.qtbot = qtbot

    def train(self, widget, preset: str, steps: int, patch: str, runs_root, val_every=None,
              batch=None):
        widget.preset_combo.setCurrentText(preset)
        widget.steps_spin.setValue(steps)
        widget.val_every_spin.setValue(val_every or steps)
        if batch:
            widget.batch_spin.setValue(batch)
        widget.patch_edit.setText(patch)
        widget.preview_spin.setValue(1)
        widget.runs_root_edit.setText(str(runs_root))
        widget.start()
        assert widget.run is not None, widget.status.text()
        self.qtbot.waitUntil(lambda: not widget.is_running(), timeout=300000)
        report = widget.last_report
        assert report is not None and report.step == steps and report.done, widget.status.text()
        assert widget.history.get("train loss") and widget.history.get("val loss"), widget.history
        return report

    def predict(self, widget, image_name: str) -> dict:
        widget.image_combo.set_layer(image_name)
        widget.predict()
        self.qtbot.waitUntil(lambda: widget.worker is None, timeout=300000)
        assert widget.result_layers, widget.status.text()
        image = widget.viewer.layers[image_name]
        for layer in widget.result_layers.values():  # aligned with the input
            assert tuple(layer.scale) == tuple(image.scale)
            assert tuple(layer.translate) == tuple(image.translate)
        return widget.result_layers

    def build_tree(self, widget, predictions, gt_name: str | None):
        widget.pred_combo.set_layer(predictions)
        if gt_name:
            widget.gt_combo.set_layer(gt_name)
        widget.seed_spin.setValue(3)
        widget.size_spin.setValue(5)
        widget.build()
        self.qtbot.waitUntil(lambda: widget.tree is not None, timeout=300000)
        return widget.tree

    def slide(self, widget, thresholds=(0.2, 0.6, 0.35)) -> None:
        """Move the slider; the displayed slice must equal the tree's answer every time."""
        layer, tree, viewer = widget.seg_layer, widget.tree, widget.viewer
        for t in thresholds:
            widget.set_threshold(t)
            z = viewer.dims.current_step[0]
            np.testing.assert_array_equal(np.asarray(layer._slice.image.raw),
                                          tree.segmentation(widget.threshold())[z])

    def slide_instances(self, widget, prob_layer, thresholds=(0.3, 0.7, 0.5)) -> None:
        """Probability path: after each move the layer holds the core's instances for the run's
        settings (both channels for an instances model)."""
        from segtrain.predict.postprocess import instances_from_outputs
        from segtrain.plugin.widgets.segment import prediction_array

        widget.pred_combo.set_layer(prob_layer)
        widget.build()
        assert widget.seg_layer is not None and widget.probabilities is not None
        run_settings = prob_layer.metadata["segtrain"]["segment"]
        assert widget.threshold() == pytest.approx(run_settings["probability_threshold"])
        outputs = np.asarray(prediction_array(prob_layer))
        for t in thresholds:
            widget.set_threshold(t)
            self.qtbot.waitUntil(lambda: not widget._instances_timer.isActive(), timeout=5000)
            config = widget.instance_config.copy()
            config.segment.probability_threshold = t
            assert config.segment.seed_boundary_max == run_settings["seed_boundary_max"]
            np.testing.assert_array_equal(np.asarray(widget.seg_layer.data),
                                          instances_from_outputs(outputs, config))

    def export(self, widget, layer, folder, fmt: str = "zarr"):
        """Export ``layer`` and read the written file back as a Volume."""
        from segtrain.io import read_volume

        widget.seg_combo.set_layer(layer)
        widget.folder_edit.setText(str(folder))
        widget.format_combo.setCurrentText(fmt)
        widget.export()
        self.qtbot.waitUntil(lambda: widget.worker is None, timeout=300000)
        assert widget.written, widget.status.text()
        return read_volume(widget.written[0])


@pytest.fixture
def loop(qtbot):
    return WidgetLoop(qtbot)
