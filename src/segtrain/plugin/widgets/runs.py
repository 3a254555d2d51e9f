"""Runs dock widget: a sortable table of the training runs in a runs folder (steps reached, best
validation metric, size on disk), to compare them side by side and hand a run to Predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import Panel, status_label
from segtrain.plugin.workers import notify_error, notify_info

COLUMNS = ["name", "preset", "task", "steps", "best metric", "value", "size (MB)", "date"]


def _item(value: Any) -> QTableWidgetItem:
    """A table item that sorts numbers as numbers."""
    item = QTableWidgetItem()
    if isinstance(value, (int, float)) and value is not None:
        item.setData(Qt.DisplayRole, float(value) if isinstance(value, float) else int(value))
    else:
        item.setData(Qt.DisplayRole, "" if value is None else str(value))
    item.setFlags(item.flags() & ~Qt.ItemIsEditable)
    return item


class RunsWidget(Panel):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = L.session(napari_viewer)
        self.runs: list[Any] = []

        self.root_edit = QLineEdit(str(self.session.runs_root))
        self.refresh_button = QPushButton("Refresh")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.load_button = QPushButton("Use in Predict")
        self.status = status_label()

        row = QHBoxLayout()
        row.addWidget(self.root_edit, 1)
        row.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.load_button)
        layout.addWidget(self.status)

        # clicked(bool) must not reach a slot that takes an argument: a real click passes False
        self.refresh_button.clicked.connect(lambda: self.refresh())
        self.root_edit.returnPressed.connect(self.refresh)
        self.load_button.clicked.connect(lambda: self.load_selected())
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
        root = Path(self.root_edit.text().strip() or "runs")
        try:
            if root.exists():
                from segtrain.runs import list_runs

                self.runs = list_runs(root)
            else:
                self.runs = []
        except Exception as error:  # noqa: BLE001
            notify_error(f"Could not list the runs in {root}: {error}", self.status)
            self.runs = []
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            created = getattr(run, "created", None)
            steps = f"{run.steps} / {run.max_steps}" if run.max_steps else run.steps
            metric = (run.best_metric_name or "-").removeprefix("val/")
            values = [run.name, run.preset, run.task, steps, metric,
                      "-" if run.best_metric is None else round(run.best_metric, 4),
                      round(run.size / 1e6, 1), str(created)[:19] if created is not None else ""]
            for col, value in enumerate(values):
                item = _item(value)
                if col == 0:
                    item.setData(Qt.UserRole, str(run.path))
                self.table.setItem(row, col, item)
        self.table.setSortingEnabled(True)
        self.status.setText(f"{len(self.runs)} run(s) in {root}")

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
