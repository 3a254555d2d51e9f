"""Train panel, by clicks: Resume shows no library warnings as notifications (Lightning's
"Checkpoint directory ... exists and is not empty", PyTorch deprecations; they go to the log),
and the preview strip (raw | target | prediction) is visible after the first validation (its label
stayed 0 px high)."""

from __future__ import annotations

import numpy as np

from segtrain.plugin.widgets.dock import SegtrainDock


def _tiny_well_run(docked, gui, tmp_path, steps: int):
    """A well image with ground truth in the tabbed dock, a small run typed into the Train tab."""
    from segtrain.synthetic import make_well_image

    viewer, dock = docked
    image, labels = make_well_image(shape=(96, 96), n_spheroids=4, seed=2)
    viewer.add_image(image, name="well")
    viewer.add_labels(labels.astype(np.uint32), name="gt")
    panels = SegtrainDock(viewer)
    dock(panels)
    gui.choose(panels.panels["Data"].gt_combo, "gt")
    bar = panels.tabs.tabBar()
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    QTest.mouseClick(bar, Qt.LeftButton, Qt.NoModifier, bar.tabRect(1).center())  # the Train tab
    train = panels.panels["Train"]
    assert train.isVisible()
    gui.type(train.steps_spin, str(steps))
    gui.type(train.batch_spin, "1")
    gui.type(train.patch_edit, "64, 64")
    gui.type(train.runs_root_edit, str(tmp_path / "runs"))
    return viewer, train


def test_resume_shows_no_library_warning(docked, gui, tmp_path, warning_messages, error_messages, monkeypatch):
    import warnings

    from napari.utils.notifications import notification_manager

    # napari shows every Python warning as a notification (its app installs this hook; pytest's
    # warning capture would otherwise swallow them before napari sees them)
    monkeypatch.setattr(warnings, "showwarning", notification_manager.receive_warning)
    viewer, train = _tiny_well_run(docked, gui, tmp_path, steps=2)
    gui.click(train.start_button)
    gui.wait_until(lambda: not train.is_running(), what="the run")
    assert train.state_label.text() == "finished at step 2 / 2"
    gui.type(train.steps_spin, "4")
    gui.click(train.resume_button)
    gui.wait_until(lambda: not train.is_running(), what="the resumed run")
    assert train.state_label.text() == "finished at step 4 / 4", train.state_label.text()
    assert warning_messages() == [] and error_messages() == []


def test_the_preview_strip_shows_after_the_first_validation(docked, gui, tmp_path):
    viewer, train = _tiny_well_run(docked, gui, tmp_path, steps=6)
    gui.type(train.val_every_spin, "2")
    assert train.preview_label.pixmap() is None or train.preview_label.pixmap().isNull()
    gui.click(train.start_button)
    gui.wait_until(lambda: train.preview is not None, what="the first validation")
    gui.wait(0.3)  # the layout settles
    label = train.preview_label
    assert label.isVisible() and label.height() > 50, (label.height(), label.sizeHint())
    assert label.width() > 100
    gui.wait_until(lambda: not train.is_running(), what="the run")
    assert label.isVisible() and label.height() > 50, label.height()
