"""`segtrain gui`: napari with the six segtrain panels and the sample volume, fitting the window."""

from __future__ import annotations

import napari

from segtrain.plugin.launcher import ALL_PANELS, PLUGIN, open_viewer


def widget_names() -> list[str]:
    """Display names of the plugin's single panels, in manifest order (not "All panels")."""
    from npe2 import PluginManager

    manager = PluginManager.instance()
    try:
        manifest = manager.get_manifest(PLUGIN)
    except KeyError:  # not discovered yet (napari discovers on import)
        manager.discover()
        manifest = manager.get_manifest(PLUGIN)
    return [w.display_name for w in manifest.contributions.widgets or () if w.command != ALL_PANELS]


def test_open_viewer_has_docks_and_sample(qtbot, own_napari_app):
    from segtrain.plugin.widgets.dock import SegtrainDock

    viewer = open_viewer(load_sample=True, show=False)
    try:
        names = widget_names()
        assert names == ["Data", "Train", "Predict", "Segment", "Proofread", "Export", "Runs", "Batch", "Measurements"]
        docks = [w for w in viewer.window.dock_widgets.values() if isinstance(w, SegtrainDock)]
        assert len(docks) == 1 and len(viewer.window.dock_widgets) == 1, list(viewer.window.dock_widgets)
        assert list(docks[0].panels) == names
        assert [layer.name for layer in viewer.layers] == ["em raw", "em labels"]
        assert isinstance(viewer.layers["em labels"], napari.layers.Labels)
    finally:
        viewer.close()


def test_panels_fit_the_window_with_readable_tabs(qtbot, own_napari_app):
    """The dock leaves the canvas most of the width; every tab shows its whole (short) name."""
    from segtrain.plugin.widgets.dock import SegtrainDock

    viewer = open_viewer(load_sample=True, show=True)
    try:
        qtbot.wait(200)
        window = viewer.window._qt_window
        (dock,) = [w for w in viewer.window.dock_widgets.values() if isinstance(w, SegtrainDock)]
        dock_width = dock.parent().width()
        canvas = viewer.window._qt_viewer.canvas.native.width()
        assert dock_width <= 340 and canvas >= 1.5 * dock_width, (dock_width, canvas, window.width())
        bar = dock.tabs.tabBar()
        texts = [bar.tabText(i) for i in range(bar.count())]
        assert texts == ["Data", "Train", "Predict", "Segment", "Proofread", "Export", "Runs", "Batch", "Measurements"]
        metrics = bar.fontMetrics()
        for i, text in enumerate(texts):  # vertical tabs: the name runs along the height
            assert bar.tabRect(i).height() >= metrics.horizontalAdvance(text), text
            assert "&" not in text
    finally:
        viewer.close()


def test_gui_command_parses():
    import argparse

    from segtrain.commands import gui

    parser = argparse.ArgumentParser()
    gui.add_arguments(parser)
    args = parser.parse_args(["--no-sample", "a.zarr"])
    assert args.no_sample and args.paths == ["a.zarr"]


def test_segtrain_gui_keeps_few_malloc_arenas():
    """glibc gives each new thread an arena (up to 8 per core) and Qt's pool threads come and go:
    memory freed there stayed mapped, and a long day in the GUI grew a few MB a round."""
    import platform
    import sys

    from segtrain.plugin.launcher import limit_malloc_arenas

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        assert not limit_malloc_arenas() or sys.platform.startswith("linux")
        return
    assert limit_malloc_arenas()
