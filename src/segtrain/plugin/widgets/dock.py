"""All segtrain panels in one dock, as tabs (Plugins > segtrain > All panels).

Opened one by one from the Plugins menu, napari stacks the panels in one column: the window grew
to about 1400 x 2900 px on a 1000 px screen and the forms were squeezed into overlapping rows.
Here each panel is a tab and scrolls inside it, so the dock never asks for more than the screen;
panels opened one by one become tabs of one dock area
(:func:`segtrain.plugin.widgets._common.tabify_with_segtrain_docks`).
"""

from __future__ import annotations

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QFrame, QMainWindow, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from segtrain.plugin.widgets._common import tabify_with_segtrain_docks


NARROWEST = 230  # px of a panel's view before it scrolls sideways (a 1280 px screen keeps half for the canvas)


def panel_classes() -> list[tuple[str, type]]:
    """(tab name, panel class) in the order of the loop: data -> train -> ... -> runs."""
    from segtrain.plugin.widgets.batch import BatchWidget
    from segtrain.plugin.widgets.data import DataWidget
    from segtrain.plugin.widgets.export import ExportWidget
    from segtrain.plugin.widgets.measurements import MeasurementsWidget
    from segtrain.plugin.widgets.predict import PredictWidget
    from segtrain.plugin.widgets.proofread import ProofreadWidget
    from segtrain.plugin.widgets.runs import RunsWidget
    from segtrain.plugin.widgets.segment import SegmentWidget
    from segtrain.plugin.widgets.train import TrainWidget

    return [("Data", DataWidget), ("Train", TrainWidget), ("Predict", PredictWidget), ("Segment", SegmentWidget),
            ("Proofread", ProofreadWidget), ("Export", ExportWidget), ("Runs", RunsWidget),
            ("Batch", BatchWidget), ("Measurements", MeasurementsWidget)]


def scrolling(panel: QWidget) -> QScrollArea:
    """``panel`` in a vertical scroll area as wide as the panel needs (no horizontal scrolling)."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
    area.setWidget(panel)
    bar = area.verticalScrollBar().sizeHint().width()
    area.setMinimumWidth(min(panel.minimumSizeHint().width(), NARROWEST) + bar)
    return area


class SegtrainDock(QWidget):
    """The panels as tabs on the dock's edge; ``panels[name]`` is the panel of tab ``name``."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.tabs = QTabWidget()
        self.tabs.setTabPosition(QTabWidget.West)  # the names side by side would be cut to "Tr..."
        self.tabs.setDocumentMode(True)
        self.panels: dict[str, QWidget] = {}
        for name, cls in panel_classes():
            panel = cls(napari_viewer)
            self.panels[name] = panel
            self.tabs.addTab(scrolling(panel), name)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self._fitted = False

    def showEvent(self, event) -> None:  # noqa: N802 - Qt name
        """The first time it shows in napari's window: the window fits the screen, the canvas
        keeps most of the width (:func:`segtrain.plugin.launcher.fit_window`)."""
        super().showEvent(event)
        window = self.window()
        if not self._fitted and isinstance(window, QMainWindow):
            self._fitted = True
            from segtrain.plugin.launcher import fit_window

            fit_window(window)
            QTimer.singleShot(0, lambda: tabify_with_segtrain_docks(self))

    def panel(self, name: str) -> QWidget:
        """Show the tab ``name`` and return its panel."""
        self.tabs.setCurrentIndex(list(self.panels).index(name))
        return self.panels[name]
