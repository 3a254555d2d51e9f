"""Open napari with the plugin's dock widgets and the sample EM volume (``segtrain gui``)."""

from __future__ import annotations

from collections.abc import Sequence

PLUGIN = "napari-segtrain"


def widget_names() -> list[str]:
    """Display names of the plugin's dock widgets, in manifest order."""
    from npe2 import PluginManager

    manager = PluginManager.instance()
    try:
        manifest = manager.get_manifest(PLUGIN)
    except KeyError:  # not discovered yet (napari discovers on import)
        manager.discover()
        manifest = manager.get_manifest(PLUGIN)
    return [w.display_name for w in manifest.contributions.widgets or ()]


def open_viewer(load_sample: bool = True, show: bool = True, paths: Sequence[str] = ()):
    """A napari Viewer with every segtrain dock widget and, optionally, the sample volume.

    Files in ``paths`` are opened with the segtrain reader. Does not start the event loop
    (call ``napari.run()``), so tests can use it under a virtual display.
    """
    import napari
    from napari.utils.notifications import show_error

    viewer = napari.Viewer(title="segtrain", show=show)
    if load_sample and not paths:
        viewer.open_sample(PLUGIN, "em_volume")
    for path in paths:
        viewer.open(path, plugin=PLUGIN)
    first = None
    for name in widget_names():
        try:
            dock, _ = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=first is not None)
        except Exception as error:  # noqa: BLE001 - one broken panel must not stop the app
            show_error(f"The segtrain panel '{name}' could not be opened: "
                       f"{type(error).__name__}: {error}")
            continue
        dock.setWindowTitle(name)  # the tab shows "Train", not "Train (napari-segtrain)"
        first = first or dock
    if first is not None:
        first.show()
        first.raise_()
        # six tabs side by side would be cut to "Tr..." in a narrow dock: put them on its edge
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QTabWidget

        viewer.window._qt_window.setTabPosition(Qt.RightDockWidgetArea, QTabWidget.East)
    _fit_screen(viewer)
    return viewer


def _fit_screen(viewer, width: int = 1400, height: int = 900) -> None:
    """Give the window a size that leaves the canvas most of the width (napari's first-time size
    is its layout's size hint, which squeezes the canvas beside the docks), within the screen."""
    window = viewer.window._qt_window
    screen = window.screen() if hasattr(window, "screen") else None
    if screen is not None:
        available = screen.availableGeometry()
        width, height = min(width, available.width()), min(height, available.height())
    window.resize(max(width, window.width()), max(height, window.height()))
