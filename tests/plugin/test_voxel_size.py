"""Typing a voxel size in the Data panel: the view shows the image whole (it stayed zoomed 8x), and
a volume opened later whose file stores no voxel size gets the typed one, with a word in the
status line (with scale 1 it sat, 1/8 the size, in a corner of the world, invisible at the
current slice); one whose file has its own keeps it, and the status line says so."""

from __future__ import annotations

import numpy as np
import tifffile

from segtrain.plugin.widgets.data import DataWidget

PLUGIN = "napari-segtrain"


def _volume(path, seed):
    rng = np.random.default_rng(seed)
    tifffile.imwrite(path, rng.integers(1, 255, (16, 64, 64), dtype=np.uint8))
    return str(path)


def shows_whole(viewer, layer) -> None:
    """The camera is centred on the layer, the layer fills a good part of the canvas without
    running past it, and the current slice cuts through it."""
    extent = np.asarray(layer.extent.world)  # (min, max) per world axis
    displayed = list(viewer.dims.displayed)
    centre = np.asarray(viewer.camera.center)[-2:]
    middle = extent[:, displayed].mean(axis=0)
    size = extent[1, displayed] - extent[0, displayed]
    assert np.all(np.abs(centre - middle) <= 0.05 * size), (centre, middle)
    on_screen = size * viewer.camera.zoom  # canvas pixels the layer covers
    native = viewer.window._qt_viewer.canvas.native
    canvas = np.asarray([native.height(), native.width()], float)  # (y, x) as the displayed axes
    assert np.all(on_screen <= canvas * 1.01), (on_screen, canvas, "zoomed in past the layer")
    assert np.max(on_screen / canvas) >= 0.5, (on_screen, canvas, "the layer is a speck")
    for axis in range(layer.ndim):
        if axis not in displayed:
            assert extent[0, axis] <= viewer.dims.point[axis] <= extent[1, axis], (axis, viewer.dims.point, extent)


def test_typed_voxel_size_keeps_the_view_and_reaches_volumes_opened_later(docked, gui, tmp_path):
    viewer, dock = docked
    (raw,) = viewer.open(_volume(tmp_path / "first.tif", 0), plugin=PLUGIN)
    data = DataWidget(viewer)
    dock(data)
    gui.process()
    assert data.image_combo.currentText() == raw.name and data.voxel_edit.text() == "1, 1, 1"
    gui.type(data.voxel_edit, "8, 8, 8")  # typed, Enter applies
    assert tuple(raw.scale) == (8, 8, 8)
    gui.process()
    shows_whole(viewer, raw)
    assert data.voxel_note.text() == "set here" and "volumes opened later" in data.status.text()

    (later,) = viewer.open(_volume(tmp_path / "second.tif", 1), plugin=PLUGIN)
    gui.process()
    assert tuple(later.scale) == (8, 8, 8)
    assert "'second' stores no voxel size: it gets 8, 8, 8" in data.status.text(), data.status.text()
    shows_whole(viewer, later)

    # a volume whose file has its own voxel size keeps it, and the status line says so
    own = viewer.add_image(np.ones((16, 64, 64), np.uint8), name="own", scale=(4, 4, 4),
                           metadata={"voxel_size_in_file": True})
    assert tuple(own.scale) == (4, 4, 4)
    assert "'own' keeps its own voxel size 4, 4, 4 (typed here: 8, 8, 8)" in data.status.text()
