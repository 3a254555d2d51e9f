"""Export panel, "Full volume, blockwise", driven by clicks and typing: the segmentation tuned in the
Segment panel applied to a multi-block zarr volume by the blockwise pipeline in worker processes,
with progress in the panel; the layer it adds equals what `segtrain scale run` writes for the same
inputs; bad input gives one sentence before anything runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from segtrain.plugin import layers as L
from segtrain.plugin.widgets.export import ExportWidget
from segtrain.plugin.widgets.segment import SegmentWidget


@pytest.fixture
def tuned(docked, gui, synthetic, tmp_path):
    """A merge-tree segmentation at 0.4 in the viewer, and its affinities as a zarr on disk."""
    viewer, dock = docked
    labels = synthetic["blocks_labels"]()  # (8, 48, 48)
    affs = synthetic["noisy_affinities"](labels)
    path = tmp_path / "affs.zarr"
    zarr.create_array(store=str(path), shape=affs.shape, chunks=(3, 4, 24, 24), dtype="float32",
                      zarr_format=2, attributes={"resolution": [4, 2, 2]})[:] = affs
    raw = viewer.add_image(labels.astype(np.float32), name="raw", scale=(4, 2, 2))
    info = L.LayerInfo("affinities", task="affinities", model_ndim=3,
                       settings=L.segment_config({"min_seed_distance": 3}))
    data, kwargs = L.prediction_layer_args(affs, raw, "raw affinities", "affinities", info=info)
    viewer.add_image(data, **kwargs)
    segment, export = SegmentWidget(viewer), ExportWidget(viewer)
    dock(segment, export)
    gui.click(segment.build_button)
    gui.wait_until(lambda: segment.tree is not None, timeout=60)
    gui.type(segment.threshold_spin, "0.4")
    gui.type(export.folder_edit, str(tmp_path / "out"))
    gui.click(export.blockwise_fold.button)  # unfold the section
    return viewer, segment, export, path


def test_full_volume_blockwise_equals_the_cli(tuned, gui, tmp_path, capsys):
    from segtrain.cli import main

    viewer, segment, export, path = tuned
    section = export.blockwise
    gui.type(section.source_edit, str(path))
    gui.type(section.block_edit, "4, 24, 24")  # 2 x 2 x 2 blocks
    gui.type(section.workers_spin, "2")
    gui.click(section.run_button)
    assert not section.run_button.isEnabled()
    gui.wait_until(lambda: section.worker is None, timeout=240)
    assert section.result is not None, section.progress_label.text()
    # progress showed every step's blocks, the last line says what was written
    assert section.steps == {"fragments": (8, 8, 0), "agglomerate": (8, 8, 0), "global": (1, 1, 0),
                             "segmentation": (8, 8, 0)}
    assert "Blockwise segmentation at 0.4" in section.progress_label.text()
    layer = viewer.layers[-1]
    assert layer.name == "segmentation_blockwise (blockwise, 0.4)"
    assert tuple(layer.scale) == (4, 2, 2)
    gui_labels = np.asarray(layer.data)
    # the command line, with the settings of the segmentation the panel used
    settings = L.layer_info(export.seg_combo.layer()).settings
    capsys.readouterr()  # the panel's notifications
    code = main(["scale", "run", str(tmp_path / "cli_job"), "--affinities", str(path),
                 "--block-shape", "4,24,24", "--workers", "2", "--threshold", "0.4",
                 "--out", str(tmp_path / "cli.zarr"), "--fragments-method", settings.fragments,
                 "--boundary-threshold", str(settings.boundary_threshold),
                 "--min-seed-distance", str(settings.min_seed_distance),
                 "--min-size", str(settings.min_size), "--scoring", settings.scoring])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out)
    assert summary["blocks"] == 8
    cli_labels = zarr.open_array(str(tmp_path / "cli.zarr"), mode="r")[:]
    np.testing.assert_array_equal(gui_labels, cli_labels)
    # and it is a segmentation of the same kind as the crop's (8 cells, 8 blocks: close to it)
    assert len(np.unique(gui_labels[gui_labels > 0])) == summary["segmentation"]["segments"]


def test_bad_input_gives_one_sentence_before_anything_runs(tuned, gui, tmp_path, error_messages):
    viewer, segment, export, path = tuned
    section = export.blockwise
    gui.click(section.run_button)
    assert section.worker is None and "Give the volume" in section.progress_label.text()
    gui.type(section.source_edit, str(tmp_path / "missing.zarr"))
    gui.click(section.run_button)
    assert "does not exist" in section.progress_label.text()
    gui.type(section.source_edit, str(path))
    gui.type(section.block_edit, "4, 24")
    gui.click(section.run_button)
    assert "block shape" in section.progress_label.text()
    gui.type(section.block_edit, "4, 24, 24")
    gui.choose(section.kind_combo, "raw image + model")
    gui.click(section.run_button)
    assert "needs a model" in section.progress_label.text()
    gui.choose(export.seg_combo, "(none)")
    gui.click(section.run_button)
    assert "merge-tree segmentation" in section.progress_label.text()
    assert section.worker is None and len(error_messages()) == 5
    assert all(m.count(". ") == 0 and "Traceback" not in m for m in error_messages())
