"""Open napari with the plugin's dock widgets and the sample EM volume (``segtrain gui``)."""

from __future__ import annotations

from collections.abc import Sequence

PLUGIN = "napari-segtrain"
ALL_PANELS = "napari-segtrain.all_panels"  # the panels as tabs in one dock (Plugins menu)
ALL_PANELS_NAME = "All panels"


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
    """A napari Viewer with the segtrain panels (one dock, a tab each: "All panels") and,
    optionally, the sample volume; the window fits the screen (:func:`fit_window`, which the dock
    calls when it first shows).

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
    try:
        viewer.window.add_plugin_dock_widget(PLUGIN, ALL_PANELS_NAME)  # it fits the window when shown
    except Exception as error:  # noqa: BLE001 - the viewer still opens, with the reason
        show_error(f"The segtrain panels could not be opened: {type(error).__name__}: {error}")
        fit_window(viewer.window._qt_window)
    return viewer


def fit_window(window, width: int = 1400, height: int = 900) -> None:
    """Give napari's main ``window`` about ``width`` x ``height`` pixels, never more than the
    screen's available area: the canvas keeps most of the width beside the docks (napari's
    first-time size squeezes it), and nothing lies off-screen (a window 3146 px tall on a 1000 px
    screen hid the image and the dims slider). A window already larger but within the screen keeps
    its size."""
    screen = window.screen() if hasattr(window, "screen") else None
    if screen is None:
        window.resize(max(width, window.width()), max(height, window.height()))
        return
    available = screen.availableGeometry()
    frame = window.frameGeometry().size() - window.geometry().size()  # title bar and borders
    max_w, max_h = available.width() - frame.width(), available.height() - frame.height()
    window.resize(min(max(width, window.width()), max_w), min(max(height, window.height()), max_h))
    _leave_canvas_half(window)
    geometry = window.frameGeometry()
    if not available.contains(geometry):  # on-screen, top left of the available area where needed
        window.move(max(available.left(), min(geometry.left(), available.right() - geometry.width() + 1)),
                    max(available.top(), min(geometry.top(), available.bottom() - geometry.height() + 1)))


def _leave_canvas_half(window, margin: int = 32) -> None:
    """Narrow the right-hand docks (down to their minimum) where they and napari's layer docks on
    the left would leave the canvas less than half the window's width (a 1280 px screen)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QDockWidget

    docks = [d for d in window.findChildren(QDockWidget) if d.isVisibleTo(window) and not d.isFloating()]
    left = [d for d in docks if window.dockWidgetArea(d) == Qt.LeftDockWidgetArea]
    right = [d for d in docks if window.dockWidgetArea(d) == Qt.RightDockWidgetArea]
    left_width = max((max(d.width(), d.minimumSizeHint().width()) for d in left), default=0)
    room = window.width() // 2 - left_width - margin
    wide = [d for d in right if max(d.width(), d.sizeHint().width()) > room]
    if wide:
        window.resizeDocks(wide, [max(room, d.minimumSizeHint().width()) for d in wide], Qt.Horizontal)
