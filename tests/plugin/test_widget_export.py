"""ExportWidget: blockwise relabelled segmentation with metadata; read-only folders notify."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from segtrain.plugin.widgets.export import ExportWidget
from segtrain.plugin.widgets.predict import prediction_layer_args
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
def segmented(make_napari_viewer, qtbot, synthetic):
    viewer = make_napari_viewer()
    labels = synthetic["blocks_labels"]()
    raw = viewer.add_image(labels.astype(np.float32), name="raw", scale=(4, 2, 2),
                           translate=(8, 0, 0))
    data, kwargs = prediction_layer_args(synthetic["noisy_affinities"](labels), raw,
                                         "raw affinities", "affinities")
    viewer.add_image(data, **kwargs)
    segment = SegmentWidget(viewer)
    qtbot.addWidget(segment)
    segment.seed_spin.setValue(3)
    segment.build()
    qtbot.waitUntil(lambda: segment.tree is not None, timeout=60000)
    segment.set_threshold(0.4)
    return viewer, segment


def test_export_segmentation_zarr(segmented, qtbot, tmp_path):
    from segtrain.io import read_volume

    viewer, segment = segmented
    widget = ExportWidget(viewer)
    qtbot.addWidget(widget)
    widget.seg_combo.set_layer(segment.seg_layer)
    widget.folder_edit.setText(str(tmp_path / "out"))
    widget.fragments_check.setChecked(True)
    widget.tree_check.setChecked(True)
    widget.export()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    assert widget.written, widget.status.text()
    volume = read_volume(tmp_path / "out" / "segmentation.zarr")
    np.testing.assert_array_equal(np.asarray(volume.data), segment.tree.segmentation(0.4))
    assert tuple(volume.voxel_size) == (4, 2, 2) and tuple(volume.offset) == (8, 0, 0)
    assert volume.attrs["threshold"] == pytest.approx(0.4)
    assert volume.attrs["settings"]["scoring"] == "hist_quant_50"
    assert volume.attrs["settings"]["min_seed_distance"] == 3
    assert (tmp_path / "out" / "segmentation_fragments.zarr").exists()
    assert (tmp_path / "out" / "segmentation_merge_tree.npz").exists()


def test_export_to_read_only_folder_notifies(segmented, qtbot, tmp_path, error_messages):
    viewer, segment = segmented
    widget = ExportWidget(viewer)
    qtbot.addWidget(widget)
    widget.folder_edit.setText(str(read_only_folder(tmp_path)))
    widget.export()
    assert widget.worker is None
    assert "read-only" in widget.status.text() or "permission" in widget.status.text()
    assert any("choose a writable folder" in m for m in error_messages())
