"""Measurements dock widget: per-object measurements of a labels layer (scikit-image regionprops,
:mod:`segtrain.measure`), attached to the layer as napari's own ``layer.features`` and shown in a
sortable table; clicking a row selects that object in the viewer and centres the view on it, and
clicking an object in the viewer (or picking its label) selects its row; a histogram of a chosen
measurement, one per image or well when the table has such a column.

Measuring runs in a worker (:mod:`segtrain.plugin.workers`); the panel measures again by itself
after each Proofread edit of the measured layer (``Session.edited``). A layer scale other than all
ones is taken as the voxel size (calibrated ``_cal`` columns).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import LayerCombo, Panel, compact, mpl_canvas, status_label
from segtrain.plugin.workers import notify_error, start_worker

#: columns that name the image or well a row belongs to: one histogram per value
GROUP_COLUMNS = ("well", "image")


class CellsModel(QAbstractTableModel):
    """The measurement table for a QTableView: the cells made in the worker, read by the view for
    the rows it shows only (a QTableWidget made an item per cell: 1 s of the GUI thread for 2,000
    objects)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.columns: list[str] = []
        self.cells: list[tuple] = []

    def set_cells(self, columns, cells) -> None:
        self.beginResetModel()
        self.columns, self.cells = [str(c) for c in columns], cells
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt name
        return 0 if parent.isValid() else len(self.cells)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt name
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index, role=Qt.DisplayRole):
        if role == Qt.DisplayRole and index.isValid():
            return self.cells[index.row()][index.column()]  # numbers stay numbers: they sort as such
        return None

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802 - Qt name
        if role != Qt.DisplayRole:
            return None
        return self.columns[section] if orientation == Qt.Horizontal else section + 1


def measure_layer(data, raw, voxel_size, model_ndim):
    """Worker body: the labels (and image) read whole here, off the GUI thread, then measured;
    ``(table, its cells as the table widget shows them)``."""
    from segtrain.measure import measure_objects

    labels = np.asarray(data)
    image = None if raw is None else np.asarray(raw)
    table = measure_objects(labels, image, voxel_size=voxel_size, model_ndim=model_ndim)
    return table, display_cells(table)


def save_table(table, path: str, header: dict) -> str:
    """Worker body: the table written (:func:`segtrain.measure.write_table`: a new .csv, never over
    an existing file); its path."""
    from pathlib import Path

    from segtrain.measure import write_table

    return str(write_table(table, Path(path).expanduser(), header))


def display_cells(table) -> list[tuple]:
    """The table's rows as the panel shows them: numbers as numbers (so that they sort as such),
    rounded to 3 decimals, flags as yes / no (made in the worker: 0.6 s of 2,000 rows)."""
    columns = []
    for name in table.columns:
        column = table[name]
        if column.dtype == bool:
            columns.append(["yes" if v else "no" for v in column])
        elif np.issubdtype(column.dtype, np.floating):
            columns.append(column.round(3).tolist())
        elif np.issubdtype(column.dtype, np.integer):
            columns.append(column.tolist())
        else:
            columns.append(column.astype(str).tolist())
    return list(zip(*columns))


def _raw_image(layer) -> bool:
    """Images no panel made (predictions and uncertainty maps are not what objects are measured in)."""
    return L.layer_info(layer) is None and not getattr(layer, "rgb", False)


class MeasurementsWidget(Panel):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = L.session(napari_viewer)
        self.worker = None
        self.layer = None  # the labels layer measured
        self.frame = None  # its table (a pandas DataFrame)
        self._rows: dict = {}  # (label, z or None) -> its row in the table
        self._selecting = False
        self._pending = False  # an edit arrived while measuring: measure again when done
        self._measured_image = None  # the image layer the intensities came from (for the saved header)

        self.labels_combo = LayerCombo(napari_viewer, ("Labels",), prefer=L.kind_is("segmentation"))
        self.image_combo = LayerCombo(napari_viewer, ("Image",), allow_none=True, predicate=_raw_image)
        self.image_combo.setToolTip("The image whose intensities are measured in each object (optional).")
        self.measure_button = QPushButton("Measure")
        self.follow_check = QCheckBox("Measure again after proofreading edits")
        self.follow_check.setChecked(True)
        self.model = CellsModel(self)
        self.proxy = QSortFilterProxyModel(self)  # sorting, in Qt
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.AscendingOrder)  # the measured order until a header is clicked
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setMinimumHeight(160)
        self.table.horizontalHeader().setResizeContentsPrecision(50)  # widths from 50 rows, not every cell
        self.column_combo = QComboBox()
        self.column_combo.setToolTip("The measurement the histogram shows (one per image or well).")
        self.canvas = self.figure = self.axes = None
        self.plot_box = QWidget()
        QVBoxLayout(self.plot_box).setContentsMargins(0, 0, 0, 0)
        self.plot_box.setVisible(False)
        self.save_edit = QLineEdit()
        self.save_edit.setPlaceholderText("measurements.csv")
        self.save_edit.setToolTip("A new .csv file (.parquet with pyarrow) for the table, with a header naming the "
                                  "labels, the image, the voxel size, units and how the labels were made.")
        self.save_button = QPushButton("Save table")
        self.status = status_label()

        form = compact(QFormLayout())
        form.addRow("Labels", self.labels_combo)
        form.addRow("Intensity of", self.image_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.measure_button)
        layout.addLayout(row)
        layout.addWidget(self.follow_check)
        layout.addWidget(self.table, 1)
        hform = compact(QFormLayout())
        hform.addRow("Histogram of", self.column_combo)
        layout.addLayout(hform)
        layout.addWidget(self.plot_box)
        row = QHBoxLayout()
        row.addWidget(self.save_edit, 1)
        row.addWidget(self.save_button)
        layout.addLayout(row)
        layout.addWidget(self.status)

        self.measure_button.clicked.connect(lambda: self.measure())
        self.save_button.clicked.connect(lambda: self.save())
        self.save_edit.returnPressed.connect(lambda: self.save())
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._row_chosen())
        self.table.clicked.connect(lambda *_: self._row_chosen())  # the selected row again: centre again
        self.table.horizontalHeader().sortIndicatorChanged.connect(lambda *_: self._label_picked())
        self.column_combo.currentTextChanged.connect(lambda _: self.plot())
        self.session.changed.connect(self._session_changed)
        napari_viewer.layers.events.removed.connect(self._layer_removed)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        self.destroyed.connect(lambda *_: self._disconnect(napari_viewer, self._on_mouse))
        self.fit()

    @staticmethod
    def _disconnect(viewer, callback) -> None:
        try:
            callbacks = viewer.mouse_drag_callbacks
        except (AttributeError, RuntimeError):  # the viewer is closing
            return
        if callback in callbacks:
            callbacks.remove(callback)

    def busy(self) -> bool:
        return self.worker is not None

    # --- measuring ---------------------------------------------------------------------------
    def measure(self, layer=None) -> None:
        """Measure the chosen labels layer (or ``layer``) in a worker."""
        layer = layer or self.labels_combo.layer()
        if layer is None:
            notify_error("No labels to measure: segment an image first, or open labels.", self.status)
            return
        if self.busy():
            self._pending = True
            return
        raw_layer = self.image_combo.layer()
        raw = None if raw_layer is None else raw_layer.data
        self._measured_image = None if raw_layer is None else f"napari layer '{raw_layer.name}'"
        scale = L.spatial_scale(layer)
        voxel_size = None if np.allclose(scale, 1.0) else scale
        info = L.layer_info(layer)
        model_ndim = None if info is None else info.model_ndim
        self.status.setText(f"Measuring the objects of '{layer.name}' ...")
        self.measure_button.setEnabled(False)
        self.worker = start_worker(measure_layer, layer.data, raw, voxel_size, model_ndim,
                                   on_return=lambda result: self._measured(layer, *result),
                                   on_finish=self._finished, action="Measuring", status=self.status)

    def save(self) -> None:
        """Write the table shown to the file typed (in a worker; an existing file is refused)."""
        from segtrain.measure import table_header

        path = self.save_edit.text().strip()
        if self.frame is None or self.layer is None:
            notify_error("No measurements to save: press Measure first.", self.status)
            return
        if not path:
            notify_error("Type the name of a new .csv file for the table first.", self.status)
            return
        if self.busy():
            return
        from pathlib import Path

        if Path(path).expanduser().exists():
            notify_error(f"{path} already exists; type a new file name (the panel never replaces a file).", self.status)
            return
        info = L.layer_info(self.layer)
        header = table_header(self.frame, source=f"napari layer '{self.layer.name}'", raw=self._measured_image,
                              made_with=None if info is None else info.to_attrs())
        self.measure_button.setEnabled(False)
        self.worker = start_worker(save_table, self.frame, path, header, on_return=self._saved,
                                   on_finish=self._finished, action="Saving the table", status=self.status)

    def _saved(self, path: str) -> None:
        from segtrain.plugin.workers import notify_info

        notify_info(f"Saved the measurements of {len(self.frame)} objects to {path}.", self.status)

    def _finished(self) -> None:
        self.worker = None
        self.measure_button.setEnabled(True)
        if self._pending and self.layer is not None and self.layer in self.viewer.layers:
            self._pending = False
            self.measure(self.layer)

    def _measured(self, layer, table, cells) -> None:
        if layer not in self.viewer.layers:
            return
        if table.empty:  # nothing measured: said, never shown as a table of nothing
            notify_error(f"'{layer.name}' holds no objects (every pixel is 0); segment the image first, or choose "
                         "the labels to measure.", self.status)
            return
        if self.layer is not None and self.layer is not layer:
            self._unfollow(self.layer)
        self.layer, self.frame = layer, table
        features = table.drop_duplicates("label")  # a stack's id on several slices: its first row
        layer.features = features.assign(index=features["label"])[["index", *features.columns]]
        layer.events.selected_label.connect(self._label_picked)
        self._fill_table(table, cells)
        self._fill_columns(table)
        self.plot()
        from segtrain.measure import summarise

        s = summarise(table)
        self.status.setText(f"{s['count']} objects in '{layer.name}', mean size {s['size_mean_px']:.1f} px, "
                            f"coverage {100 * s['coverage']:.1f} %.")

    def _unfollow(self, layer) -> None:
        try:
            layer.events.selected_label.disconnect(self._label_picked)
        except (RuntimeError, TypeError, ValueError):
            pass

    def _session_changed(self, key: str) -> None:
        if (key == "edited" and self.follow_check.isChecked() and self.layer is not None
                and self.session.edited == self.layer.name and self.layer in self.viewer.layers):
            self.measure(self.layer)

    def _layer_removed(self, event=None) -> None:
        if self.layer is not None and self.layer not in self.viewer.layers:
            self._unfollow(self.layer)
            self.layer, self.frame = None, None
            self.model.set_cells([], [])

    # --- the table -------------------------------------------------------------------------------
    def _fill_table(self, table, cells) -> None:
        self._selecting = True
        try:
            self.model.set_cells(table.columns, cells)
            self._rows = {(int(label), None if z is None else int(z)): n for n, (label, z) in
                          enumerate(zip(table["label"], table["z"] if "z" in table else [None] * len(table)))}
            self.table.resizeColumnsToContents()
        finally:
            self._selecting = False

    def source_row(self, row: int) -> int:
        """The DataFrame row of the table's ``row`` as shown (after sorting)."""
        return self.proxy.mapToSource(self.proxy.index(row, 0)).row()

    def row_of(self, label: int, z: int | None = None) -> int | None:
        """The table row (as shown, after sorting) of object ``label`` (on slice ``z`` for a stack;
        its first slice when ``z`` is None)."""
        if self.frame is None:
            return None
        stack = "z" in self.frame
        if stack and z is None:
            found = [n for (lab, _), n in self._rows.items() if lab == label]
            source = min(found) if found else None
        else:
            source = self._rows.get((label, z if stack else None))
        if source is None:
            return None
        return self.proxy.mapFromSource(self.model.index(source, 0)).row()

    def _row_chosen(self) -> None:
        """A row clicked: its object becomes the selected label and the view centres on it."""
        if self._selecting or self.layer is None or self.layer not in self.viewer.layers:
            return
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        entry = self.frame.iloc[self.source_row(rows[0].row())]
        axes = ("z", "y", "x")[-self.layer.ndim:]
        point = [float(entry["z"]) if axis == "z" and "z" in entry else float(entry[f"centroid_{axis}"])
                 for axis in axes]
        self._selecting = True
        try:
            self.layer.selected_label = int(entry["label"])
        finally:
            self._selecting = False
        world = self.layer.data_to_world(point)
        displayed = list(self.viewer.dims.displayed)
        for axis in range(len(world)):
            if axis not in displayed:
                self.viewer.dims.set_point(axis, world[axis])
        self.viewer.camera.center = tuple(world[a] for a in displayed)

    def _select_row(self, label: int, z: int | None = None) -> None:
        row = self.row_of(label, z)
        if row is None:
            return
        self._selecting = True
        try:
            self.table.selectRow(row)
            self.table.scrollTo(self.proxy.index(row, 0))
        finally:
            self._selecting = False

    def _label_picked(self, event=None) -> None:
        """napari's label picker (or anything else) chose a label of the measured layer."""
        if self._selecting or self.layer is None:
            return
        self._select_row(int(self.layer.selected_label))

    def _on_mouse(self, viewer, event):
        """A left click on an object of the measured layer (not painting it) selects the object and its row."""
        if event.button != 1 or self.layer is None or self.layer not in viewer.layers:
            return
        if str(self.layer.mode) not in ("pan_zoom", "pick", "transform"):
            return  # painting, filling, erasing: the click is the brush's
        value = self.layer.get_value(event.position, view_direction=event.view_direction,
                                     dims_displayed=event.dims_displayed, world=True)
        if value is None or not np.isscalar(value) or int(value) == 0:
            return
        z = None
        if self.frame is not None and "z" in self.frame:
            z = int(round(self.layer.world_to_data(event.position)[0]))
        self._selecting = True
        try:
            self.layer.selected_label = int(value)
        finally:
            self._selecting = False
        self._select_row(int(value), z)

    # --- the histogram -----------------------------------------------------------------------------
    def _fill_columns(self, table) -> None:
        from segtrain.measure import size_column

        numeric = [c for c in table.columns if c not in ("label", "z", "touches_border", *GROUP_COLUMNS)
                   and not c.startswith(("bbox_", "centroid_")) and np.issubdtype(table[c].dtype, np.number)]
        current = self.column_combo.currentText()
        self.column_combo.blockSignals(True)
        self.column_combo.clear()
        self.column_combo.addItems(numeric)
        wanted = current if current in numeric else size_column(table)
        if wanted in numeric:
            self.column_combo.setCurrentText(wanted)
        self.column_combo.blockSignals(False)

    def plot(self) -> None:
        """The histogram of the chosen measurement: one per image / well where the table names them."""
        column = self.column_combo.currentText()
        if self.frame is None or not column or column not in self.frame:
            return
        if self.canvas is None:
            self.canvas, self.figure = mpl_canvas(2.2)
            self.axes = self.figure.add_subplot(111)
            self.plot_box.layout().addWidget(self.canvas)
        self.plot_box.setVisible(True)
        axes = self.axes
        axes.clear()
        group = next((g for g in GROUP_COLUMNS if g in self.frame and self.frame[g].nunique() > 1), None)
        values = self.frame[column].to_numpy(float)
        values = values[np.isfinite(values)]
        if group is None:
            axes.hist(values, bins=30, color="tab:blue")
        else:
            bins = np.histogram_bin_edges(values, bins=30) if values.size else 10
            for name, part in self.frame.groupby(group):
                part_values = part[column].to_numpy(float)
                axes.hist(part_values[np.isfinite(part_values)], bins=bins, histtype="step", label=str(name))
            axes.legend(fontsize=7, loc="upper right")
        axes.set_xlabel(column)
        axes.set_ylabel("objects")
        self.canvas.draw_idle()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt name
        if self.layer is not None:
            self._unfollow(self.layer)
        super().closeEvent(event)

