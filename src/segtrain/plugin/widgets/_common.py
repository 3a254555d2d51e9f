"""Small Qt pieces the dock widgets share: layer combo boxes kept in sync with the viewer, a
status line, a foldable section and an embedded matplotlib canvas."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QSize, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

NONE_TEXT = "(none)"
PANEL_WIDTH = 300  # px a panel asks for: napari's default window keeps most of its width for the canvas


class Panel(QWidget):
    """Base of the dock panels: narrow enough for napari's default window. Call :meth:`fit` at the
    end of ``__init__``: lists shrink to a few characters (their entries stay readable when
    opened), long texts wrap, and the panel asks for :data:`PANEL_WIDTH` pixels."""

    def fit(self) -> None:
        for combo in self.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(min(combo.minimumContentsLength() or 10, 10))
        for label in self.findChildren(QLabel):
            label.setWordWrap(True)
        for edit in self.findChildren(QLineEdit):
            edit.setMinimumWidth(60)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt name
        """The first time it shows in a dock napari made from the Plugins menu: a tab beside the
        other segtrain docks (:func:`tabify_with_segtrain_docks`)."""
        super().showEvent(event)
        if not getattr(self, "_shown_once", False):
            self._shown_once = True
            QTimer.singleShot(0, lambda: tabify_with_segtrain_docks(self))

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt name
        hint = super().sizeHint()
        return QSize(min(hint.width(), PANEL_WIDTH), hint.height())


#: napari titles a plugin's dock "Train (segtrain)" (from the Plugins menu: the display name) or
#: "Train (napari-segtrain)" (``add_plugin_dock_widget`` with the package name)
PLUGIN_DOCK_SUFFIXES = (" (segtrain)", " (napari-segtrain)")


def tabify_with_segtrain_docks(widget: QWidget) -> None:
    """Make the napari dock of ``widget`` (a panel or the tabbed dock opened from the Plugins menu)
    a tab beside the segtrain docks already in its dock area, show it, and fit the window to the
    screen again: napari stacks plugin docks in one column, which grew the window beyond the screen.
    Docks that are not the plugin's (a panel a script docked itself) are left as they are."""
    try:
        dock = widget.parentWidget()
    except RuntimeError:  # closed before this ran
        return
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    window = dock.parentWidget() if dock is not None else None
    if not isinstance(window, QMainWindow) or not dock.windowTitle().endswith(PLUGIN_DOCK_SUFFIXES):
        return
    area = window.dockWidgetArea(dock)
    others = [d for d in window.findChildren(QDockWidget)
              if d is not dock and d.windowTitle().endswith(PLUGIN_DOCK_SUFFIXES) and not d.isFloating()
              and d.isVisibleTo(window) and window.dockWidgetArea(d) == area]
    if not others or dock in window.tabifiedDockWidgets(others[-1]):
        return
    window.tabifyDockWidget(others[-1], dock)
    dock.show()
    dock.raise_()
    from segtrain.plugin.launcher import fit_window

    def fit() -> None:  # once the window's layout knows the docks are tabs
        try:
            fit_window(window)
        except RuntimeError:  # the window was closed meanwhile
            pass

    QTimer.singleShot(0, fit)


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of some types, kept in sync with ``viewer.layers``.

    ``layer_changed`` is emitted with the chosen layer (or None) whenever the choice changes.
    With ``prefer``, the newest layer it accepts is chosen when nothing is, and a newly added one
    it accepts is chosen at once (e.g. the newest segmentation, never the ground truth).
    """

    layer_changed = Signal(object)

    def __init__(
        self,
        viewer: Any,
        types: tuple[str, ...] = ("Image",),
        allow_none: bool = False,
        predicate: Callable[[Any], bool] | None = None,
        parent: QWidget | None = None,
        prefer: Callable[[Any], bool] | None = None,
    ):
        super().__init__(parent)
        self.viewer = viewer
        self.types = types
        self.allow_none = allow_none
        self.predicate = predicate
        self.prefer = prefer
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        self._last: str | None = None
        self._chosen: weakref.ref | None = None  # the chosen layer itself: its name may change
        events = viewer.layers.events
        events.inserted.connect(self._on_inserted)
        events.removed.connect(self.refresh)
        events.reordered.connect(self.refresh)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.currentIndexChanged.connect(self._emit)
        self.refresh()

    def _on_inserted(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if layer is not None:
            layer.events.name.connect(self.refresh)
        self.refresh()
        if layer is not None and self.prefer is not None and self.accepts(layer) and self.prefer(layer):
            self.setCurrentText(layer.name)

    def accepts(self, layer: Any) -> bool:
        if layer.__class__.__name__ not in self.types:
            return False
        return self.predicate is None or bool(self.predicate(layer))

    def refresh(self, *_: Any) -> None:
        current = self.currentText() or self._last
        chosen = self._chosen() if self._chosen is not None else None
        if chosen is not None and chosen in self.viewer.layers:
            current = chosen.name  # a renamed layer stays chosen under its new name
        names = [layer.name for layer in self.viewer.layers if self.accepts(layer)]
        if self.allow_none:
            names = [NONE_TEXT, *names]
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        preferred = [layer.name for layer in self.viewer.layers
                     if self.prefer is not None and self.accepts(layer) and self.prefer(layer)]
        if current in names and not (current == NONE_TEXT and preferred):
            self.setCurrentText(current)
        elif preferred:
            self.setCurrentText(preferred[-1])  # the newest preferred layer
        elif names and not self.allow_none:
            self.setCurrentIndex(len(names) - 1)  # the newest matching layer
        self.blockSignals(False)
        if self.currentText() != self._last:
            self._emit()

    def _emit(self, *_: Any) -> None:
        self._last = self.currentText()
        layer = self.layer()
        self._chosen = None if layer is None else weakref.ref(layer)
        self.layer_changed.emit(layer)

    def layer(self) -> Any | None:
        name = self.currentText()
        if not name or name == NONE_TEXT or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def set_layer(self, layer_or_name: Any) -> None:
        name = getattr(layer_or_name, "name", layer_or_name)
        self.refresh()
        index = self.findText(name)
        if index >= 0:
            self.setCurrentIndex(index)


def compact(form: QFormLayout) -> QFormLayout:
    """A form that fits a narrow dock: fields grow, a row too long for the width wraps its field
    under its label."""
    form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
    form.setRowWrapPolicy(QFormLayout.WrapLongRows)
    return form


def status_label() -> QLabel:
    label = QLabel("")
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    label.setObjectName("status")
    return label


class Foldable(QWidget):
    """A section with a header button that shows/hides its content (folded by default)."""

    def __init__(self, title: str, content: QWidget, folded: bool = True, parent=None):
        super().__init__(parent)
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setChecked(not folded)
        self.button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.button.setArrowType(Qt.DownArrow if not folded else Qt.RightArrow)
        self.button.setStyleSheet("QToolButton { border: none; }")
        self.content = content
        content.setVisible(not folded)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(content)
        self.button.toggled.connect(self._toggle)

    def _toggle(self, on: bool) -> None:
        self.button.setArrowType(Qt.DownArrow if on else Qt.RightArrow)
        self.content.setVisible(on)


def mpl_canvas(height: float = 2.4):
    """A matplotlib FigureCanvasQTAgg (figure, axes) sized for a dock widget."""
    from segtrain.plugin.workers import MATPLOTLIB_IMPORT

    with MATPLOTLIB_IMPORT:  # not beside the warm-up thread's import of it
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

    # fixed margins: constrained layout re-measures every tick label on each draw (slow while a
    # training thread competes for the GIL)
    figure = Figure(figsize=(4, height), dpi=80)
    figure.subplots_adjust(left=0.16, right=0.86, bottom=0.17, top=0.96)
    canvas = FigureCanvasQTAgg(figure)
    canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
    canvas.setMinimumHeight(int(height * 70))
    return canvas, figure


def widget_value(widget: QWidget) -> Any:
    """The value a form widget holds: spin boxes (0 with a special text = None), check boxes,
    combo boxes (text) and line edits of numbers (a list of ints, e.g. a patch shape)."""
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        value = widget.value()
        return None if widget.specialValueText() and value == widget.minimum() else value
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, QLineEdit):
        return [int(round(v)) for v in parse_floats(widget.text())]
    raise TypeError(f"no value for {type(widget).__name__}")


def bounded(widget: QWidget, section: type, name: str, least: float | None = None,
            most: float | None = None) -> QWidget:
    """``widget`` (a spin box or combo box) offering what the config field ``section.name`` accepts:
    its declared bounds (:func:`segtrain.config.field_bounds`; an excluded bound moves by one step),
    ``least``/``most`` where the field is unbounded, a null field's "off" one step below its minimum,
    and a Literal's choices."""
    from segtrain.config import field_bounds

    bounds = field_bounds(section, name)
    if isinstance(widget, QComboBox):
        widget.clear()
        widget.addItems([str(c) for c in bounds.choices])
        return widget
    step = 1 if isinstance(widget, QSpinBox) else 10.0 ** -widget.decimals()
    low = least if bounds.low is None else bounds.low + (step if bounds.low_open else 0)
    high = most if bounds.high is None else bounds.high - (step if bounds.high_open else 0)
    if bounds.optional and low is not None:
        low -= step
        widget.setSpecialValueText(widget.specialValueText() or "off")
    widget.setRange(low, high)
    return widget


def set_widget_value(widget: QWidget, value: Any) -> None:
    """Show ``value`` in a form widget (the inverse of :func:`widget_value`)."""
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        widget.setValue(widget.minimum() if value is None else value)
    elif isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    elif isinstance(widget, QComboBox):
        widget.setCurrentText(str(value))
    elif isinstance(widget, QLineEdit):
        widget.setText(", ".join(str(int(v)) for v in value))
    else:
        raise TypeError(f"cannot show a value in {type(widget).__name__}")


def parse_floats(text: str) -> tuple[float, ...]:
    """'4, 4, 40' or '4 4 40' -> (4.0, 4.0, 40.0); raises ValueError with a readable message."""
    parts = [p for p in text.replace(",", " ").replace("x", " ").split() if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"'{text}' is not a list of numbers (e.g. 40, 4, 4).") from None
    if any(v <= 0 for v in values):
        raise ValueError(f"voxel sizes must be positive, got '{text}'")
    return values


def file_dialog(parent: QWidget, title: str, directory: str, name_filter: str, save: bool, on_chosen) -> QWidget:
    """A Qt (not the system's) file dialog, opened without blocking: ``on_chosen(path)`` when a file
    is chosen (typed or picked, then Enter or the button). Returned so that it stays alive."""
    from qtpy.QtWidgets import QFileDialog

    dialog = QFileDialog(parent, title, directory, name_filter)
    dialog.setOption(QFileDialog.DontUseNativeDialog, True)
    dialog.setAcceptMode(QFileDialog.AcceptSave if save else QFileDialog.AcceptOpen)
    dialog.setFileMode(QFileDialog.AnyFile if save else QFileDialog.ExistingFile)
    dialog.fileSelected.connect(lambda path: on_chosen(path))
    dialog.open()
    return dialog
