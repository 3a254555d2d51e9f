"""Export panel, driven by clicks and typing: the default source is the newest segmentation (never
the ground truth), the whole volume relabelled blockwise with its metadata, read-only folders
refused before anything runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from segtrain.plugin import layers as L
from segtrain.plugin.widgets.export import ExportWidget
from segtrain.plugin.widgets.segment import SegmentWidget


def read_only_folder(tmp_path: Path) -> Path:
    """A folder nobody may write to (root ignores permission bits, so use /sys there)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.fixture
def segmented(docked, gui, synthetic):
    viewer, dock = docked
    labels = synthetic["blocks_labels"]()
    raw = viewer.add_image(labels.astype(np.float32), name="raw", scale=(4, 2, 2), translate=(8, 0, 0))
    viewer.add_labels(labels, name="gt", scale=(4, 2, 2), translate=(8, 0, 0))  # before any segmentation
    info = L.LayerInfo("affinities", task="affinities", model_ndim=3, run="runs/blocks-1",
                       settings=L.segment_config({"min_seed_distance": 3}))
    data, kwargs = L.prediction_layer_args(synthetic["noisy_affinities"](labels), raw, "raw affinities",
                                         "affinities", info=info)
    viewer.add_image(data, **kwargs)
    segment, export = SegmentWidget(viewer), ExportWidget(viewer)
    dock(segment, export)
    assert export.seg_combo.currentText() == "(none)"  # the ground truth is never the default
    gui.click(segment.build_button)
    gui.wait_until(lambda: segment.tree is not None, timeout=60)
    gui.type(segment.threshold_spin, "0.4")
    return viewer, segment, export


def test_export_the_newest_segmentation_with_its_settings(segmented, gui, tmp_path):
    from segtrain.io import read_volume

    viewer, segment, export = segmented
    assert export.seg_combo.currentText() == "raw segmentation"  # chosen when it appeared
    gui.type(export.folder_edit, str(tmp_path / "out"))
    gui.click(export.fragments_check)
    gui.click(export.tree_check)
    gui.click(export.export_button)
    gui.wait_until(lambda: export.worker is None, timeout=60)
    assert export.written and export.status.text().startswith("Exported segmentation.zarr")
    volume = read_volume(tmp_path / "out" / "segmentation.zarr")
    np.testing.assert_array_equal(np.asarray(volume.data), segment.tree.segmentation(0.4))
    assert tuple(volume.voxel_size) == (4, 2, 2) and tuple(volume.offset) == (8, 0, 0)
    assert volume.attrs["threshold"] == pytest.approx(0.4) and volume.attrs["kind"] == "segmentation"
    assert volume.attrs["settings"]["scoring"] == "hist_quant_50"
    assert volume.attrs["settings"]["min_seed_distance"] == 3 and volume.attrs["run"] == "runs/blocks-1"
    assert (tmp_path / "out" / "segmentation_fragments.zarr").exists()
    assert (tmp_path / "out" / "segmentation_merge_tree.npz").exists()
    # a second export to the same name keeps the first unless overwriting is asked for
    gui.click(export.export_button)
    gui.wait_until(lambda: export.worker is None, timeout=60)
    assert "already exists" in export.status.text()
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "out" / "segmentation.zarr").data),
                                  segment.tree.segmentation(0.4))


def test_export_to_read_only_folder_notifies(segmented, gui, tmp_path, error_messages):
    viewer, segment, export = segmented
    gui.type(export.folder_edit, str(read_only_folder(tmp_path)))
    gui.click(export.export_button)
    assert export.worker is None
    assert "read-only" in export.status.text() or "permission" in export.status.text()
    assert any("choose a writable folder" in m for m in error_messages())


def test_export_without_a_segmentation_notifies(docked, gui, error_messages):
    viewer, dock = docked
    viewer.add_labels(np.ones((4, 4), np.uint32), name="gt")
    export = ExportWidget(viewer)
    dock(export)
    assert export.seg_combo.currentText() == "(none)"
    gui.click(export.export_button)
    assert error_messages() == ["No segmentation to export: segment first (or choose a labels layer)."]
