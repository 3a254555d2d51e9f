"""Drive the panels the way a person does: mouse clicks on buttons, typing into fields, picking
entries from lists, never calling a panel's slots. Built on QTest (no pytest needed), so the
benchmarks drive the GUI with the same code as the tests."""

from __future__ import annotations

import contextlib
import time

import numpy as np
from qtpy.QtCore import QCoreApplication, QEvent, QObject, Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QWidget,
)


class EnabledChanges(QObject):
    """Every change of a widget's enabled state, in order (``states``), seen by a Qt event filter:
    "the button was disabled while the job ran" holds even when a fast job has re-enabled it by
    the time the click returns."""

    def __init__(self, widget: QWidget):
        super().__init__()
        self.states: list[bool] = []
        widget.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.EnabledChange:
            self.states.append(watched.isEnabled())
        return False


class GUI:
    """Clicks, typing and waiting on real widgets (they must be shown: docked in a shown viewer).

    ``observer`` (optional) is told when the driver checks results itself (``with gui.checking():``),
    so that a GUI-responsiveness probe leaves the driver's own work out."""

    def __init__(self, observer=None):
        self.observer = observer

    @contextlib.contextmanager
    def checking(self):
        if self.observer is not None:
            self.observer.pause()
        try:
            yield
        finally:
            if self.observer is not None:
                self.observer.resume()

    def click(self, button: QAbstractButton) -> None:
        """A left click in the middle of ``button``, which must be visible and enabled."""
        assert button.isVisible(), f"the button '{button.text()}' is not visible"
        assert button.isEnabled(), f"the button '{button.text()}' is disabled"
        QTest.mouseClick(button, Qt.LeftButton, Qt.NoModifier, button.rect().center())
        self.process()

    def type(self, widget: QWidget, text: str, enter: bool = True) -> None:
        """Select what ``widget`` (a line edit or spin box) holds, type ``text`` and press Enter."""
        assert widget.isVisible() and widget.isEnabled(), f"{widget!r} cannot take typing"
        widget.setFocus()
        if isinstance(widget, (QLineEdit, QAbstractSpinBox)):
            widget.selectAll()
        QTest.keyClicks(widget, text)
        if enter:
            QTest.keyClick(widget, Qt.Key_Return)
        if isinstance(widget, QAbstractSpinBox):
            widget.clearFocus()  # leaving the field commits it, as a tab or click elsewhere does
        self.process()

    def choose(self, combo: QComboBox, text: str) -> None:
        """Pick the entry ``text`` from a drop-down (which must offer it)."""
        assert combo.isVisible() and combo.isEnabled(), f"the list with '{combo.currentText()}' cannot be used"
        options = [combo.itemText(i) for i in range(combo.count())]
        assert text in options, f"'{text}' is not offered; the list has {options}"
        combo.setCurrentIndex(options.index(text))
        self.process()

    def click_canvas(self, viewer, layer, point, button=Qt.LeftButton) -> None:
        """A mouse click on the viewer's canvas where ``layer`` shows the data point ``point``
        (its slice is displayed first, as moving the dims slider would)."""
        from qtpy.QtCore import QPoint

        point = [float(c) for c in point]
        world = layer.data_to_world(point)
        displayed = list(viewer.dims.displayed)
        for axis in range(len(world)):
            if axis not in displayed:
                viewer.dims.set_point(axis, world[axis])
        self.process()
        canvas = viewer.window._qt_viewer.canvas
        node = canvas.layer_to_visual[layer].node
        data_xy = [point[d] + 0.5 for d in reversed(displayed[-2:])]  # vispy: x (columns) first; pixel centres
        x, y = node.get_transform(map_from="visual", map_to="canvas").map(data_xy)[:2]
        QTest.mouseClick(canvas.native, button, Qt.NoModifier, QPoint(round(x), round(y)))
        self.process()

    def close_layers(self, viewer, names) -> None:
        """Close layers as a person does: click them in the layer list (Ctrl+click adds one to the
        selection), then the list's delete button."""
        view = viewer.window._qt_viewer.layers
        model = view.model()  # the list shows the newest layer on top: rows are not list indices
        rows = {model.data(model.index(r, 0), Qt.DisplayRole): r for r in range(model.rowCount())}
        for n, name in enumerate(names):
            index = model.index(rows[name], 0)
            view.scrollTo(index)
            modifier = Qt.ControlModifier if n else Qt.NoModifier
            QTest.mouseClick(view.viewport(), Qt.LeftButton, modifier, view.visualRect(index).center())
        self.process()
        chosen = sorted(layer.name for layer in viewer.layers.selection)
        assert chosen == sorted(names), f"clicking {names} in the layer list selected {chosen}"
        self.click(viewer.window._qt_viewer.layerButtons.deleteButton)

    def rename_layer(self, viewer, name: str, new_name: str) -> None:
        """Rename a layer as a person does: double-click its name in the layer list, type the new
        name, press Enter."""
        view = viewer.window._qt_viewer.layers
        model = view.model()
        rows = {model.data(model.index(r, 0), Qt.DisplayRole): r for r in range(model.rowCount())}
        index = model.index(rows[name], 0)
        view.scrollTo(index)
        QTest.mouseClick(view.viewport(), Qt.LeftButton, Qt.NoModifier, view.visualRect(index).center())
        QTest.mouseDClick(view.viewport(), Qt.LeftButton, Qt.NoModifier, view.visualRect(index).center())
        self.process()
        editors = [e for e in view.findChildren(QLineEdit) if e.isVisible()]  # the name field opened
        assert len(editors) == 1, f"double-clicking '{name}' opened {len(editors)} name fields"
        editor = editors[0]
        editor.selectAll()
        QTest.keyClicks(editor, new_name)
        QTest.keyClick(editor, Qt.Key_Return)
        self.process()
        assert new_name in viewer.layers, f"'{name}' was not renamed to '{new_name}'"

    @staticmethod
    def process() -> None:
        app = QCoreApplication.instance()
        if app is not None:
            app.processEvents()

    def wait_until(self, condition, timeout: float = 300.0, what: str = "") -> None:
        """Process events until ``condition()`` holds; fail after ``timeout`` seconds."""
        end = time.perf_counter() + timeout
        while not condition():
            if time.perf_counter() > end:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or condition}")
            self.process()
            time.sleep(0.005)

    def wait(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.process()
            time.sleep(0.005)


def displayed_slice(layer) -> np.ndarray:
    """What napari shows of a layer now (the data of its current slice)."""
    return np.asarray(layer._slice.image.raw)


def dock(viewer, *widgets) -> None:
    """Dock each panel in the viewer (one dock each, all visible), as Plugins > segtrain does."""
    for widget in widgets:
        viewer.window.add_dock_widget(widget, area="right", name=type(widget).__name__)
    GUI.process()
