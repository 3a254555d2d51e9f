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


MALLOC_ARENAS = 2  # glibc's default: up to 8 per core


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Let the C allocator (glibc) keep at most ``arenas`` arenas; False where it is not glibc.

    Every thread that allocates gets an arena of its own while there are fewer than 8 per core,
    and the app's background work runs on Qt's pool threads, which come and go. What a finished
    run freed in an arena stays mapped around what is still in use there, even after
    ``malloc_trim``: a long day in the GUI (benchmarks/bench_gui_long_day.py) kept growing a few
    MB a round with no Python object left behind, and stayed flat with two arenas. Applies to
    arenas made after the call (call it before the heavy threads start): ``segtrain gui`` does,
    via :func:`open_viewer`; a plain napari with the plugin keeps its own allocator settings."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    m_arena_max = -8  # malloc.h
    return bool(mallopt(m_arena_max, int(arenas)))


def open_viewer(load_sample: bool = True, show: bool = True, paths: Sequence[str] = ()):
    """A napari Viewer with every segtrain dock widget and, optionally, the sample volume.

    Files in ``paths`` are opened with the segtrain reader. Does not start the event loop
    (call ``napari.run()``), so tests can use it under a virtual display. The process's C
    allocator keeps few arenas (:func:`limit_malloc_arenas`).
    """
    limit_malloc_arenas()
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
