"""Runs dock widget: a sortable table of the training runs in a runs folder (the columns of
`segtrain runs`: settings, best and final validation metric, per-class metrics, parent, data seen,
size), to compare them side by side, plot chosen runs' validation curves together (Compare) and hand
a run to Predict, or export it as a BioImage.IO model package (tested with bioimageio.core before it
is written, in the background)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import QItemSelectionModel, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import Panel, file_dialog, mpl_canvas, status_label
from segtrain.plugin.workers import notify_error, notify_info, start_worker
from segtrain.runs.root import RUNS_ROOT_TIP, typed_runs_root
from segtrain.runs import RunFolder
from segtrain.runs import cell_text
from segtrain.runs import list_runs
from segtrain.runs import run_columns
from segtrain.runs import sort_value

SORT_ROLE = Qt.UserRole + 1


class _Item(QTableWidgetItem):
    """A table item shown as text and sorted by its value (:func:`segtrain.runs.sort_value`: numbers
    as numbers, metrics by quality so that ascending is best first), an empty cell after every
    value in both directions (as `segtrain runs --sort` orders them)."""

    def __lt__(self, other):
        a, b = self.data(SORT_ROLE), other.data(SORT_ROLE)
        if a is None or b is None:
            table = self.tableWidget()
            descending = table is not None and table.horizontalHeader().sortIndicatorOrder() == Qt.DescendingOrder
            if a is None and b is None:
                return False
            return (a is None) == descending  # missing: greatest ascending, least descending
        return a < b


def _item(value: Any, text: str) -> QTableWidgetItem:
    item = _Item(text)
    item.setData(SORT_ROLE, value)
    item.setFlags(item.flags() & ~Qt.ItemIsEditable)
    return item


class RunsWidget(Panel):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = L.session(napari_viewer)
        self.runs: list[Any] = []

        self.root_edit = QLineEdit(str(self.session.runs_root))
        self.root_edit.setToolTip(RUNS_ROOT_TIP)
        self.refresh_button = QPushButton("Refresh")
        self.table = QTableWidget(0, 0)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.ExtendedSelection)  # Ctrl/Shift-click: runs to compare
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.load_button = QPushButton("Use in Predict")
        self.export_button = QPushButton("Export BioImage.IO model...")
        self.export_button.setToolTip(
            "Write the selected run as a BioImage.IO model package (.zip) for ilastik, deepImageJ, bioimageio.core "
            "and the Model Zoo: weights (state_dict + TorchScript), normalisation, test tensors from its validation "
            "image, decoding settings; tested with bioimageio.core before it is written. Licence MIT.")
        self.export_dialog = None
        self.export_worker = None
        self.metric_combo = QComboBox()
        self.metric_combo.setToolTip("validation metric to compare (the runs' monitored one by default)")
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("plot the selected runs' validation curves (metric against step) together")
        self.canvas, self.figure = mpl_canvas(2.4)
        self.axes = self.figure.add_subplot(111)
        self.canvas.setVisible(False)  # until a comparison is drawn
        self.status = status_label()

        row = QHBoxLayout()
        row.addWidget(QLabel("Runs folder"))
        row.addWidget(self.root_edit, 1)
        row.addWidget(self.refresh_button)
        compare = QHBoxLayout()
        compare.addWidget(self.metric_combo, 1)
        compare.addWidget(self.compare_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.table, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.export_button)
        layout.addLayout(buttons)
        layout.addLayout(compare)
        layout.addWidget(self.canvas)
        layout.addWidget(self.status)

        # clicked(bool) must not reach a slot that takes an argument: a real click passes False
        self.refresh_button.clicked.connect(lambda: self.refresh())
        self.root_edit.returnPressed.connect(self.refresh)
        self.load_button.clicked.connect(lambda: self.load_selected())
        self.compare_button.clicked.connect(lambda: self.compare_selected())
        self.export_button.clicked.connect(lambda: self.choose_export())
        self.table.doubleClicked.connect(lambda *_: self.load_selected())
        self.session.changed.connect(self._session_changed)
        self.refresh()
        self.fit()

    def _session_changed(self, key: str) -> None:
        if key == "runs_root":
            self.root_edit.setText(str(self.session.runs_root))
            self.refresh()
        elif key == "run_dir":
            self.refresh()

    def refresh(self) -> None:
        """List the runs of the folder typed, keeping the rows selected and the order chosen."""

        root = typed_runs_root(self.root_edit.text(), self.session.runs_root)
        selected = {str(p) for p in self.selected_paths()}
        try:
            self.runs = list_runs(root) if root.exists() else []
        except Exception as error:  # noqa: BLE001
            notify_error(f"Could not list the runs in {root}: {error}", self.status)
            self.runs = []
        columns = run_columns(self.runs)
        header = self.table.horizontalHeader()
        sorted_by = (header.sortIndicatorSection(), header.sortIndicatorOrder())
        self.table.setSortingEnabled(False)
        self.table.clearContents()
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels([c.title for c in columns])
        self.table.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            for col, column in enumerate(columns):
                item = _item(sort_value(column, run), cell_text(column, run))
                if col == 0:
                    item.setData(Qt.UserRole, str(run.path))
                self.table.setItem(row, col, item)
        self.table.setSortingEnabled(True)
        if 0 <= sorted_by[0] < len(columns):
            self.table.sortItems(*sorted_by)
        self._select(selected)
        self._fill_metrics()
        self.status.setText(f"{len(self.runs)} run(s) in {root}")

    def _select(self, paths: set[str]) -> None:
        """Select the rows of these run folders again (after the table was filled anew)."""
        selection = self.table.selectionModel()
        selection.clearSelection()
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.UserRole) in paths:
                index = self.table.model().index(row, 0)
                selection.select(index, QItemSelectionModel.Select | QItemSelectionModel.Rows)

    def _fill_metrics(self) -> None:
        """Offer the validation metrics the runs recorded, their monitored one first."""
        current = self.metric_combo.currentText()
        monitors = [r.best_metric_name for r in self.runs if r.best_metric_name]
        names = sorted({k for r in self.runs for k in r.last_metrics})
        ordered = list(dict.fromkeys([*monitors, *names]))
        self.metric_combo.blockSignals(True)
        self.metric_combo.clear()
        self.metric_combo.addItems([n.removeprefix("val/") for n in ordered])
        if current and current in [n.removeprefix("val/") for n in ordered]:
            self.metric_combo.setCurrentText(current)
        self.metric_combo.blockSignals(False)

    def selected_paths(self) -> list[Path]:
        """The selected runs' folders, in table order."""
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        return [Path(self.table.item(r, 0).data(Qt.UserRole)) for r in rows]

    def compare_selected(self) -> None:
        """Plot the selected runs' validation curves (the chosen metric against step) together."""

        paths = self.selected_paths()
        if not paths:
            notify_error("Select the runs to compare in the table first (Ctrl-click for several).", self.status)
            return
        metric = self.metric_combo.currentText()
        if not metric:
            notify_error("These runs have no validation metrics yet; compare them after a validation.", self.status)
            return
        key = f"val/{metric}"
        self.axes.clear()
        plotted = []
        for path in paths:
            points = [(r["step"], r[key]) for r in RunFolder(path).history()
                      if "step" in r and isinstance(r.get(key), (int, float))]
            if points:
                steps, values = zip(*points)
                self.axes.plot(steps, values, marker="o", markersize=3, label=path.name)
                plotted.append(path.name)
        self.axes.set_xlabel("step")
        self.axes.set_ylabel(metric)
        if plotted:
            self.axes.legend(fontsize=7, loc="best")
        self.canvas.setVisible(True)
        self.canvas.draw_idle()
        missing = len(paths) - len(plotted)
        note = f"; {missing} without {metric}" if missing else ""
        notify_info(f"{metric} of {len(plotted)} run(s) against step{note}.", self.status)

    def selected_path(self) -> Path | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return Path(self.table.item(rows[0].row(), 0).data(Qt.UserRole))

    def load_selected(self) -> None:
        path = self.selected_path()
        if path is None:
            notify_error("Select a run in the table first, then load its checkpoint.", self.status)
            return
        self.session.set(run_dir=path, checkpoint=path)  # Predict takes the run folder
        notify_info(f"Run {path.name} is in Predict (its newest checkpoint).", self.status)

    def choose_export(self) -> None:
        """Ask where to write the selected run's package (a file dialog that does not block)."""
        path = self.selected_path()
        if path is None:
            notify_error("Select a run in the table first, then export it.", self.status)
            return
        if self.export_worker is not None:
            notify_error("An export is already running; wait for it to finish.", self.status)
            return
        self.export_dialog = file_dialog(self, f"Export {path.name} as a BioImage.IO model",
                                         str(path.parent / f"{path.name}.zip"), "BioImage.IO model (*.zip)", True,
                                         lambda output: self.export(path, output))

    def export(self, run: Path, output: str) -> None:
        """Export ``run`` to ``output`` in the background (a worker); one sentence on failure."""
        from segtrain.zoo import export_run

        self.export_dialog = None
        output = output if output.endswith(".zip") else f"{output}.zip"
        self.export_button.setEnabled(False)
        self.status.setText(f"Exporting {run.name} (testing the package with bioimageio.core) ...")

        def done(written) -> None:
            notify_info(f"Wrote {written}: {run.name} as a BioImage.IO model (bioimageio.core's test passed; licence "
                        "MIT, change it with `segtrain export-model --license`).", self.status)

        def finished() -> None:
            self.export_worker = None
            self.export_button.setEnabled(True)

        self.export_worker = start_worker(export_run, run, output, on_return=done, on_finish=finished,
                                          action="Exporting the model", status=self.status,
                                          progress={"desc": "Exporting BioImage.IO model"})
