"""`segtrain gui`: napari with the six segtrain dock widgets and the sample volume."""

from __future__ import annotations

import napari

from segtrain.plugin.launcher import open_viewer, widget_names


def test_open_viewer_has_docks_and_sample(qtbot):
    viewer = open_viewer(load_sample=True, show=False)
    try:
        names = widget_names()
        assert names == ["Data & annotation", "Train", "Predict", "Segment", "Export", "Runs"]
        docks = viewer.window.dock_widgets
        for name in names:
            assert f"{name} (napari-segtrain)" in docks, sorted(docks)
        assert [layer.name for layer in viewer.layers] == ["em raw", "em labels"]
        assert isinstance(viewer.layers["em labels"], napari.layers.Labels)
    finally:
        viewer.close()


def test_gui_command_parses():
    import argparse

    from segtrain.commands import gui

    parser = argparse.ArgumentParser()
    gui.add_arguments(parser)
    args = parser.parse_args(["--no-sample", "a.zarr"])
    assert args.no_sample and args.paths == ["a.zarr"]
