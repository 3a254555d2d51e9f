"""Batch panel, by clicks: choose the plate folder, Start, the progress advances, Stop, Start again
resumes (the finished images are skipped), the table lists every image with its status and object
count; double-clicking a row shows that image and its labels."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.batch import plate_folder, tiny_cells_run
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from segtrain.batch import read_summary
from segtrain.io import read_volume
from segtrain.plugin import layers as L
from segtrain.plugin.widgets.batch import BatchWidget


@pytest.fixture
def cells_run(tmp_path_factory, cells_dir):
    from segtrain.plugin._compat import avoid_triton_llvm_clash

    avoid_triton_llvm_clash()  # beside the viewer's OpenGL, smp's import must not load triton
    return tiny_cells_run(tmp_path_factory.getbasetemp() / "cells-runs", cells_dir)


def double_click_row(table, row: int) -> None:
    rect = table.visualItemRect(table.item(row, 0))
    QTest.mouseClick(table.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())
    QTest.mouseDClick(table.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())


def test_batch_panel_start_stop_resume_table_and_open_by_clicks(cells_run, docked, gui, tmp_path, cells_dir,
                                                                error_messages):
    plate = plate_folder(tmp_path / "plate", cells_dir)
    viewer, dock = docked
    batch = BatchWidget(viewer)
    dock(batch)
    gui.type(batch.run_edit, str(cells_run))
    gui.type(batch.input_edit, str(plate))
    gui.click(batch.start_button)
    assert not batch.start_button.isEnabled() and batch.stop_button.isEnabled()
    gui.wait_until(lambda: batch.progress_bar.value() >= 2, timeout=180, what="two images")
    assert batch.progress_bar.maximum() == 12 and batch.table.rowCount() == 12
    assert batch.progress_bar.text() == f"{batch.progress_bar.value()} / 12 images"
    assert batch.time_label.text().startswith("about ") and batch.time_label.text().endswith(" left")
    gui.click(batch.stop_button)
    gui.wait_until(lambda: not batch.busy(), timeout=120, what="the stop")
    stopped_at = batch.progress_bar.value()
    assert 2 <= stopped_at < 12 and batch.status.text().startswith("Stopped:")
    statuses = [batch.table.item(r, 2).text() for r in range(12)]
    assert statuses[:stopped_at] == ["done"] * stopped_at and set(statuses[stopped_at:]) == {"pending"}
    assert batch.out == tmp_path / "plate-segmented"  # the default output folder, beside the images

    gui.click(batch.start_button)  # resumes
    gui.wait_until(lambda: not batch.busy(), timeout=180, what="the rest of the batch")
    assert batch.progress_bar.value() == 12
    statuses = [batch.table.item(r, 2).text() for r in range(12)]
    assert statuses == ["done (earlier)"] * stopped_at + ["done"] * (10 - stopped_at) + ["failed"] * 2
    assert "A11.tif is not a readable TIFF file" in batch.table.item(10, 2).toolTip()
    assert error_messages()[-1] == f"2 of 12 images failed (see their rows); the other 10 are in {batch.out}."
    rows = read_summary(batch.out)
    assert [batch.table.item(r, 3).text() for r in range(10)] == [row["objects"] for row in rows[:10]]
    assert [batch.table.item(r, 1).text() for r in range(10)] == [f"A{i:02d}" for i in range(1, 11)]

    double_click_row(batch.table, 3)
    gui.wait_until(lambda: "A04 segmentation" in viewer.layers, timeout=60, what="the image to open")
    labels = viewer.layers["A04 segmentation"]
    np.testing.assert_array_equal(labels.data, read_volume(batch.out / "A04_labels.tif").data)
    assert L.layer_info(labels).image == "A04" and L.layer_info(labels).run == str(cells_run)
    np.testing.assert_array_equal(viewer.layers["A04"].data, read_volume(plate / "A04.tif").data)


def _delete_largest(gui, viewer, proofread, layer):
    from scipy import ndimage

    seg = np.asarray(layer.data)
    ids, counts = np.unique(seg[seg > 0], return_counts=True)
    target = int(ids[np.argmax(counts)])
    depth = ndimage.distance_transform_edt(seg == target)
    point = np.unravel_index(np.argmax(depth), seg.shape)
    gui.click(proofread.tool_buttons["Delete"])
    gui.click_canvas(viewer, layer, point)
    gui.wait_until(lambda: not proofread.busy(), timeout=60, what="the delete")
    assert not (np.asarray(layer.data) == target).any()
    return target


def test_proofread_two_batch_images_by_clicks_then_fine_tune_on_both(cells_run, docked, gui, tmp_path, cells_dir):
    """Batch three images; in Proofread, Next image / Previous image step through them, each keeping
    its own edits and log; Use corrections as annotation collects both corrected images; Fine-tune
    trains on both, each with its own image."""
    import json

    import tifffile
    from helpers.batch import cells_crops

    from segtrain.plugin.widgets.proofread import ProofreadWidget
    from segtrain.plugin.widgets.train import TrainWidget
    from segtrain.runs import RunFolder, array_fingerprint

    plate = tmp_path / "plate"
    plate.mkdir()
    crops = cells_crops(cells_dir)[:3]
    for i, image in enumerate(crops, start=1):
        tifffile.imwrite(plate / f"A{i:02d}.tif", image)
    viewer, dock = docked
    batch, proofread, train = BatchWidget(viewer), ProofreadWidget(viewer), TrainWidget(viewer)
    dock(batch, proofread, train)
    assert not proofread.next_image_button.isVisible()  # no batch yet
    gui.type(batch.run_edit, str(cells_run))
    gui.type(batch.input_edit, str(plate))
    gui.click(batch.start_button)
    gui.wait_until(lambda: not batch.busy(), timeout=180, what="the batch")
    assert [batch.table.item(r, 2).text() for r in range(3)] == ["done"] * 3

    gui.click(proofread.next_image_button)  # the batch's first image
    gui.wait_until(lambda: "A01 segmentation" in viewer.layers and not proofread.busy(), timeout=60)
    first = viewer.layers["A01 segmentation"]
    assert proofread.seg_combo.layer() is first and proofread.batch_label.text().startswith("Batch image 1 of 3: A01")
    _delete_largest(gui, viewer, proofread, first)
    gui.click(proofread.next_image_button)
    gui.wait_until(lambda: "A02 segmentation" in viewer.layers and not proofread.busy(), timeout=60)
    second = viewer.layers["A02 segmentation"]
    assert proofread.seg_combo.layer() is second and not first.visible and second.visible
    assert proofread.log_list.count() == 0  # its own log
    _delete_largest(gui, viewer, proofread, second)
    _delete_largest(gui, viewer, proofread, second)
    assert proofread.log_list.count() == 2
    gui.click(proofread.prev_image_button)  # back to the first: its edit and log as they were
    gui.wait_until(lambda: proofread.seg_combo.layer() is first and not proofread.busy(), timeout=60)
    assert proofread.batch_label.text() == "Batch image 1 of 3: A01 (1 edits)"
    assert proofread.log_list.count() == 1 and "deleted" in proofread.log_list.item(0).text()
    assert [e.op for e in L.layer_info(second).proofreader.edits] == ["delete", "delete"]

    gui.click(proofread.annotate_button)  # from every corrected image of the batch
    gui.wait_until(lambda: not proofread.busy(), timeout=60, what="the corrections")
    assert L.session(viewer).batch_corrections == ["A01 corrections", "A02 corrections"]
    for name, image in (("A01 corrections", "A01"), ("A02 corrections", "A02")):
        layer = viewer.layers[name]
        assert L.layer_info(layer).image == image and (np.asarray(layer.data) > 0).any()
    assert "A03 corrections" not in viewer.layers  # not corrected: nothing to learn from

    L.session(viewer).set(run_dir=cells_run)  # the model to fine-tune (Runs: Use in Predict)
    gui.type(train.steps_spin, "1")
    gui.click(train.finetune_button)
    gui.wait_until(lambda: not train.is_running(), timeout=300, what="the fine-tuning run")
    child = train.run_dir
    assert child != cells_run and RunFolder(child).parent() == cells_run.resolve()
    records = json.loads((child / "run.json").read_text())["data"]["train"]
    trained = {r["raw"]["hash"] for r in records}
    expected = {array_fingerprint(viewer.layers[name].data, r.get("crop"))[0]["hash"]
                for name, r in zip(("A01", "A02"), records)}
    assert len(records) == 2 and trained == expected  # each image with its own corrections
    third = array_fingerprint(viewer.layers["A03"].data if "A03" in viewer.layers else crops[2])[0]["hash"]
    assert third not in trained

    # a layer of the user's holding a corrections layer's name keeps it; Fine-tune is pointed at the new one
    viewer.layers.remove("A02 corrections")
    mine = viewer.add_image(np.zeros((8, 8), np.float32), name="A02 corrections")
    gui.click(proofread.annotate_button)
    gui.wait_until(lambda: not proofread.busy(), timeout=60, what="the corrections")
    names = L.session(viewer).batch_corrections
    assert names == ["A01 corrections", "A02 corrections [1]"]
    assert L.layer_kind(viewer.layers[names[1]]) == "annotation" and L.layer_info(viewer.layers[names[1]]).image == "A02"
    assert viewer.layers["A02 corrections"] is mine and not np.asarray(mine.data).any()


def test_a_well_grid_typed_in_the_panel_writes_a_row_per_well(cells_run, docked, gui, tmp_path, cells_dir,
                                                              error_messages):
    import shutil

    from segtrain.measure import read_table

    plate = plate_folder(tmp_path / "plate", cells_dir)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(plate / "A01.tif", one / "A01.tif")
    viewer, dock = docked
    batch = BatchWidget(viewer)
    dock(batch)
    gui.type(batch.run_edit, str(cells_run))
    gui.type(batch.input_edit, str(one))
    gui.type(batch.grid_edit, "8by12")  # a typo: one sentence, nothing written
    gui.click(batch.start_button)
    gui.wait_until(lambda: not batch.busy(), timeout=120, what="the refusal")
    assert "is not ROWSxCOLUMNS" in batch.status.text() and any("is not ROWSxCOLUMNS" in m for m in error_messages())
    assert not (tmp_path / "one-segmented").exists()
    gui.type(batch.grid_edit, "2x2")
    gui.click(batch.start_button)
    gui.wait_until(lambda: not batch.busy(), timeout=180, what="the batch")
    wells, _ = read_table(tmp_path / "one-segmented" / "A01_wells.csv")
    objects, _ = read_table(tmp_path / "one-segmented" / "A01_objects.csv")
    assert list(wells.well) == ["A01", "A02", "B01", "B02"] and wells["count"].sum() == len(objects) > 0
