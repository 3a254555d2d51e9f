"""The whole loop clicked through as a person does it, for each audience, on the real data in
../shared/data: open the files in `segtrain gui`, Data -> Train -> Predict -> Segment -> Export ->
reopen, checking what each panel shows (state, enabled buttons, chosen layers) as well as the data.

Used by the end-to-end tests (tests/plugin/test_clickthrough.py) and by
benchmarks/bench_gui_clickthrough.py, which measures the longest GUI-thread stall meanwhile.
Paths typed into the panels are relative to the working folder (run it in a fresh folder), so
screenshots show ``runs/...`` rather than temporary folders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QTabBar

from helpers.gui import GUI, displayed_slice

PLUGIN = "napari-segtrain"
PANELS = ["Data", "Train", "Predict", "Segment", "Proofread", "Export", "Runs", "Batch", "Measurements"]


class App:
    """``segtrain gui FILES`` under test: the viewer, its panels and tab switching."""

    def __init__(self, paths: list[str], gui: GUI, screenshots: Path | None = None):
        from segtrain.plugin.launcher import open_viewer

        self.gui = gui
        self.viewer = open_viewer(load_sample=False, show=True, paths=paths)
        from segtrain.plugin.widgets.dock import SegtrainDock

        self.dock = next(w for w in self.viewer.window.dock_widgets.values() if isinstance(w, SegtrainDock))
        self.panels = dict(self.dock.panels)
        assert list(self.panels) == PANELS
        self.screenshots = screenshots
        from segtrain.plugin.workers import warm_up_done

        # the app loads PyTorch in the background when it opens; a person looks at the window first
        gui.wait_until(warm_up_done, timeout=120, what="PyTorch to load")
        gui.wait(0.2)

    def __getattr__(self, name: str):
        if name.capitalize() in PANELS:
            return self.panels[name.capitalize()]
        raise AttributeError(name)

    def tab(self, name: str):
        """Click the panel's tab (the panels share one dock) and return the panel."""
        bars = [b for b in self.viewer.window._qt_window.findChildren(QTabBar)
                if [b.tabText(i) for i in range(b.count())] == PANELS]
        assert bars, "the panels' tabs are not there"
        bar = bars[0]
        from qtpy.QtCore import Qt
        from qtpy.QtTest import QTest

        QTest.mouseClick(bar, Qt.LeftButton, Qt.NoModifier, bar.tabRect(PANELS.index(name)).center())
        self.gui.process()
        panel = self.panels[name]
        assert panel.isVisible(), f"the {name} tab did not show its panel"
        return panel

    def screenshot(self, name: str) -> None:
        """The panel as it is docked now (docs/widget_<name>.png when screenshots are wanted)."""
        if self.screenshots is None:
            return
        self.screenshots.mkdir(parents=True, exist_ok=True)
        panel = self.panels[name.split("_")[0].capitalize()]
        self.gui.wait(0.3)
        assert panel.parent().parent().grab().save(str(self.screenshots / f"widget_{name}.png"))  # its scroll area

    def window_screenshot(self, name: str) -> None:
        if self.screenshots is not None:
            self.gui.wait(0.3)
            self.viewer.screenshot(str(self.screenshots / name), canvas_only=False)

    def close(self) -> None:
        from segtrain.plugin.workers import stop_all

        stop_all(wait_s=60)
        self.viewer.close()


def train_run(app: App, preset: str, steps: int, patch: str, batch: int | None = None) -> None:
    """Fill the Train form, click Start, check the states it passes through, wait for the end."""
    gui, train = app.gui, app.tab("Train")
    assert train.preset_combo.currentText() == preset, "the task should have chosen this preset"
    gui.type(train.steps_spin, str(steps))
    assert train.val_every_spin.value() == steps  # capped by the steps: a validation at the end
    if batch:
        gui.type(train.batch_spin, str(batch))
    gui.type(train.patch_edit, patch)
    gui.type(train.runs_root_edit, "runs")
    assert train.state_label.text() == "not started" and not train.resume_button.isEnabled()
    gui.click(train.start_button)
    assert train.state_label.text().startswith("preparing"), train.state_label.text()
    assert not train.start_button.isEnabled() and train.stop_button.isEnabled()
    gui.wait_until(lambda: train.state in ("training", "validating"), what="the first step")
    app.screenshot("train")
    gui.wait_until(lambda: not train.is_running(), what="the end of training")
    assert train.state_label.text() == f"finished at step {steps} / {steps}", train.state_label.text()
    assert train.start_button.isEnabled() and train.resume_button.isEnabled() and not train.stop_button.isEnabled()
    assert train.history["val loss"][-1][0] == steps and train.preview is not None
    third = train.preview.shape[1] // 3  # raw | target | prediction: the target shows objects
    assert train.preview[:, third:2 * third].std() > 0.05, "the preview's target is blank"
    assert train.run_dir.parent == Path("runs")


def predict_image(app: App, image: str, steps: int, tta: int | None = None) -> None:
    """Predict ``image`` with the run's newest checkpoint (``tta``: tick test-time augmentation,
    which then averages that many transforms)."""
    gui, predict = app.gui, app.tab("Predict")
    train = app.panels["Train"]
    assert Path(predict.checkpoint_edit.text()) == train.run_dir
    newest = f"newest: final.ckpt (step {steps})"
    gui.wait_until(lambda: predict.which_combo.itemText(0) == newest, timeout=60, what="the checkpoint list")
    assert predict.image_combo.currentText() == image
    if tta:
        gui.click(predict.tta_check)
    gui.click(predict.predict_button)
    assert not predict.predict_button.isEnabled()
    gui.wait_until(lambda: predict.worker is None, what="the prediction")
    model = f"model: run {train.run_dir.name}, final.ckpt (step {steps})"
    assert predict.model_label.text() == model + (f", test-time augmentation x{tta}" if tta else "")
    # a model trained for a few steps: the panel says its predictions are probably poor
    assert f"trained for only {steps} steps" in predict.status.text()
    for layer in predict.result_layers.values():
        assert layer.blending == "translucent" and layer.opacity < 1  # the image stays visible
        np.testing.assert_allclose(layer.scale, app.viewer.layers[image].scale)
    assert app.viewer.layers[image].visible
    app.screenshot("predict")


def export_and_reopen(app: App, fmt: str) -> None:
    """Export the segmentation Segment made, reopen the file and compare data and settings."""
    from segtrain.plugin import layers as L

    gui, export = app.gui, app.tab("Export")
    segment = app.panels["Segment"]
    assert export.seg_combo.currentText() == segment.seg_layer.name  # the newest segmentation
    gui.choose(export.format_combo, fmt)
    gui.type(export.folder_edit, "export")
    gui.click(export.export_button)
    gui.wait_until(lambda: export.worker is None, what="the export")
    assert export.written and export.status.text().startswith("Exported segmentation")
    app.screenshot("export")
    with gui.checking():  # the checks and File > Open (napari reads in its GUI thread)
        expected = np.asarray(segment.seg_layer.data)
        info = L.layer_info(segment.seg_layer)
        (back,) = app.viewer.open(str(export.written[0]), plugin=PLUGIN)
        np.testing.assert_array_equal(np.asarray(back.data), expected)
    back_info = L.layer_info(back)
    assert back_info.kind == "segmentation" and back_info.threshold == info.threshold
    assert back_info.settings == info.settings and back_info.run == info.run


def proofread_merge_and_delete(app: App) -> None:
    """In Proofread: merge the two largest segments of the displayed slice by clicking them, delete
    a third, undo the delete; the layer and the edit log show it."""
    from segtrain.plugin import layers as L

    gui, proofread = app.gui, app.tab("Proofread")
    layer = app.panels["Segment"].seg_layer
    assert proofread.seg_combo.currentText() == layer.name  # the plugin's viewer hands out proxies: names
    with gui.checking():
        z = app.viewer.dims.current_step[0]
        seg = np.asarray(layer.data)
        ids, counts = np.unique(seg[z][seg[z] > 0], return_counts=True)
        a, b, c = ids[np.argsort(counts)[::-1][:3]]
        points = [(z, *np.argwhere(seg[z] == s)[len(np.argwhere(seg[z] == s)) // 2]) for s in (a, b, c)]
    gui.click(proofread.tool_buttons["Merge"])
    for p in points[:2]:
        gui.click_canvas(app.viewer, layer, p)
    gui.wait_until(lambda: not proofread.busy(), what="the merge")
    gui.click(proofread.tool_buttons["Delete"])
    gui.click_canvas(app.viewer, layer, points[2])
    gui.wait_until(lambda: not proofread.busy(), what="the delete")
    gui.click(proofread.undo_button)
    gui.click(proofread.tool_buttons["Navigate"])
    with gui.checking():
        edited = np.asarray(layer.data)
        assert edited[points[0]] == edited[points[1]] != 0 and edited[points[2]] != 0
        assert [e.op for e in L.layer_info(layer).proofreader.edits] == ["merge"]
    assert proofread.log_list.count() == 1 and proofread.redo_button.isEnabled()
    app.screenshot("proofread")


def cells_clickthrough(cells_dir: Path, gui: GUI, screenshots: Path | None = None,
                       step: Callable[[str], None] = lambda _: None) -> App:
    """Light microscopy: a phase-contrast image with instance ground truth (set01), 2D instances."""
    app = App([str(cells_dir / "set01")], gui, screenshots)
    try:
        step("data")
        data = app.tab("Data")
        assert data.image_combo.currentText() == "raw" and data.gt_combo.currentText() == "instances_ids"
        assert data.task() == "instances"  # many ids: instances, not masks
        assert data.voxel_note.text().startswith("the file stores no voxel size")
        gui.click(data.create_button)
        assert data.annotation_combo.currentText() == "raw annotation"
        gui.choose(data.annotation_combo, "(none)")  # train on the ground truth itself
        app.screenshot("data")
        step("train")
        train_run(app, "wells2d_quick", steps=4, patch="128, 128", batch=1)
        step("predict")
        predict_image(app, "raw", steps=4)
        step("segment")
        segment = app.tab("Segment")
        assert segment.pred_combo.currentText() == "raw probabilities"
        assert segment.gt_combo.currentText() == "instances_ids"
        assert not segment.affinity_box.isVisible() and segment.build_button.text() == "Segment probabilities"
        gui.click(segment.build_button)
        for t in ("0.3", "0.6", "0.45"):
            gui.type(segment.threshold_spin, t)
        gui.wait_until(lambda: not segment.busy() and segment.scores_label.text().startswith("F1"),
                       timeout=120, what="the instances")
        assert segment.segments_label.text().startswith("objects: ")
        gui.click(segment.best_button)
        gui.wait_until(lambda: not segment.busy() and segment.best_button.isEnabled(), what="the tuning")
        assert "Tuned on the ground truth" in segment.status.text() or "F1 stays 0" in segment.status.text()
        app.screenshot("segment_cells")
        step("export")
        export_and_reopen(app, "TIFF")
        step("runs")
        runs = app.tab("Runs")
        gui.click(runs.refresh_button)
        titles = [runs.table.horizontalHeaderItem(c).text() for c in range(runs.table.columnCount())]
        row = {title: runs.table.item(0, c).text() for c, title in enumerate(titles)}
        assert runs.table.rowCount() == 1 and (row["steps"], row["planned"]) == ("4", "4")
        app.screenshot("runs")
        app.window_screenshot("screenshot_cells.png")
        return app
    except BaseException:
        app.close()
        raise


def em_clickthrough(em3d_dir: Path, gui: GUI, screenshots: Path | None = None,
                    step: Callable[[str], None] = lambda _: None) -> App:
    """Volume EM: the FIB-SEM volume with neuron ground truth, 3D affinities + LSDs, merge tree."""
    app = App([str(em3d_dir / "train-image.h5"), str(em3d_dir / "train-gt.lzf.h5")], gui, screenshots)
    try:
        step("data")
        data = app.tab("Data")
        assert data.image_combo.currentText() == "train-image" and data.gt_combo.currentText() == "train-gt"
        assert data.task() == "affinities"
        assert data.voxel_note.text().startswith("the file stores no voxel size")
        step("train")
        train_run(app, "em3d_quick", steps=4, patch="16, 48, 48")
        step("predict")
        predict_image(app, "train-image", steps=4)
        step("segment")
        segment = app.tab("Segment")
        assert segment.pred_combo.currentText() == "train-image affinities"
        assert segment.affinity_box.isVisible()
        config = app.panels["Train"].job.config
        assert segment.method_combo.currentText() == config.segment.fragments  # the run's settings
        gui.choose(segment.gt_combo, "train-gt")
        gui.click(segment.build_button)
        gui.wait_until(lambda: segment.tree is not None and segment.build_button.isEnabled(), what="the merge tree")
        if segment.sweep.best["n_segments"] <= 1:  # an untrained network: the panel must say so
            assert "one segment covering everything" in segment.status.text(), segment.status.text()
        else:
            assert segment.status.text().startswith("Merge tree built"), segment.status.text()
        tree, layer = segment.tree, segment.seg_layer
        for t in ("0.2", "0.6", "0.35"):
            gui.type(segment.threshold_spin, t)
            with gui.checking():
                z = app.viewer.dims.current_step[0]
                np.testing.assert_array_equal(displayed_slice(layer), tree.segmentation(float(t))[z])
            assert "VOI split" in segment.scores_label.text()
        gui.click(segment.best_button)
        best = segment.sweep.best
        assert abs(segment.threshold() - best["threshold"]) < 1e-3
        if best["n_segments"] <= 1:  # an untrained network: the panel must say so
            assert "one segment covering everything" in segment.status.text()
        app.screenshot("segment")
        step("proofread")
        gui.type(segment.threshold_spin, "0.1")  # many segments, even from a barely trained network
        proofread_merge_and_delete(app)
        step("export")
        export_and_reopen(app, "zarr")
        app.window_screenshot("screenshot_main.png")
        return app
    except BaseException:
        app.close()
        raise
