"""Small Qt pieces the dock widgets share: layer combo boxes kept in sync with the viewer, a
status line, a foldable section and an embedded matplotlib canvas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QSize, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
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

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt name
        hint = super().sizeHint()
        return QSize(min(hint.width(), PANEL_WIDTH), hint.height())


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
        self.layer_changed.emit(self.layer())

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
