"""Batch dock widget: segment a folder (or glob) of images with the current run, in the background.

Pick the folder, Start: every image is predicted and segmented with the run's settings (the work
is :func:`segtrain.batch.segment_batch`, the same as `segtrain segment-batch`) into the output
folder; the progress bar counts images done / total with the time left, and the table lists each
image with its well, status and object count. Stop ends the batch between images; Start again
resumes it (finished images are skipped, their files untouched). Double-click a row (or select it
and press Open) to show that image and its labels; Proofread's Previous / Next step through the
batch's finished images the same way.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import Panel, compact, status_label
from segtrain.plugin.workers import notify_error, notify_info, start_worker, stop_worker

COLUMNS = ("Image", "Well", "Status", "Objects")
TTA_CHOICES = {"the run's": None, "off": 1, "2 flips": 2, "4 flips": 4, "8 flips": 8}
#: layer metadata key of the layers a batch image was opened into: {"out": folder, "key": image key}
BATCH_META = "segtrain_batch"


# --- worker bodies (core calls only) -------------------------------------------------------------
def batch_reports(run: str, inputs: list[str], out: str, tta: int | None, stop: threading.Event,
                  well_grid: str = ""):
    """Load the run, list the images (yielded as a list), then yield each image's result."""
    from segtrain.batch import batch_images, segment_batch
    from segtrain.batch.run import check_model, check_output_folder
    from segtrain.measure import parse_grid
    from segtrain.predict import load_model

    grid = parse_grid(well_grid) if well_grid.strip() else None  # a typo: one sentence before any work
    loaded = load_model(run)
    check_model(loaded)
    images = batch_images(inputs, loaded.config.ndim)
    check_output_folder(out, images)
    yield images
    yield from segment_batch(loaded, images, out, tta=tta, stop=stop, well_grid=grid)


def batch_entries(out: str | Path) -> list[dict]:
    """The finished images of the batch in ``out`` (rows of its summary.csv with status done)."""
    from segtrain.batch import read_summary

    return [row for row in read_summary(out) if row["status"] == "done"]


def read_batch_image(row: dict, out: str | Path) -> tuple[np.ndarray, np.ndarray, tuple, dict]:
    """``(image, labels, voxel size, how the labels were made)`` of one finished batch image."""
    from segtrain.batch import BatchImage
    from segtrain.batch.run import read_image
    from segtrain.io import read_volume

    position = int(row["position"]) if str(row.get("position", "")).strip() else None
    image = BatchImage(Path(row["file"]), position, row["key"], row.get("well") or None)
    raw, voxel_size = read_image(image)
    labels = read_volume(Path(out) / row["labels"])
    return raw, np.asarray(labels.data), tuple(voxel_size), dict(labels.attrs)


def show_batch_image(viewer: Any, out: str | Path, key: str, raw: np.ndarray, labels: np.ndarray, voxel_size,
                     attrs: dict):
    """Show a batch image and its labels (layers named after the image, reused when open, so
    edits made on them stay); the other batch images' layers are hidden. Returns the labels layer."""
    from segtrain.record import PredictionRecord

    mine = {"out": str(Path(out).resolve()), "key": key}
    found = {layer.metadata.get(BATCH_META, {}).get("role"): layer for layer in viewer.layers
             if {k: v for k, v in layer.metadata.get(BATCH_META, {}).items() if k != "role"} == mine}
    for layer in viewer.layers:
        if BATCH_META in layer.metadata:
            layer.visible = False
    image = found.get("image")
    if image is None:
        image = viewer.add_image(raw, name=L.unique_name(viewer, key), scale=voxel_size,
                                 metadata={BATCH_META: {**mine, "role": "image"}})
    seg = found.get("labels")
    if seg is None:
        record = PredictionRecord.from_attrs(attrs, f"the labels of {key}")
        info = L.LayerInfo.of_record("segmentation", record, image=image.name, source=image.name)
        seg = viewer.add_labels(labels, name=L.unique_name(viewer, f"{key} segmentation"), scale=voxel_size,
                                metadata={L.META: info, BATCH_META: {**mine, "role": "labels"}})
    image.visible = seg.visible = True
    viewer.layers.selection.active = seg
    return seg


class BatchWidget(Panel):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = L.session(napari_viewer)
        self.worker = None
        self.stop_event: threading.Event | None = None
        self.images: list = []
        self.results: dict[str, Any] = {}  # image key -> ImageResult
        self.out: Path | None = None

        self.run_edit = QLineEdit()
        self.run_edit.setPlaceholderText("run folder or checkpoint (default: the model Predict uses)")
        self.input_edit = QLineEdit()
        self.input_edit.setPlaceholderText("folder of images, or a glob such as plate/*.tif")
        self.browse_button = QPushButton("Browse...")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("output folder (default: <folder>-segmented beside it)")
        self.tta_combo = QComboBox()
        self.tta_combo.addItems(list(TTA_CHOICES))
        self.tta_combo.setToolTip("Test-time augmentation: average flipped predictions (slower, often better).")
        self.grid_edit = QLineEdit()
        self.grid_edit.setPlaceholderText("optional: rows x columns, e.g. 8x12")
        self.grid_edit.setToolTip("Each image holds a grid of wells: every object gets the well its centre lies in, "
                                  "and <image>_wells.csv one row per well (count, sizes, coverage).")
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v / %m images")
        self.progress_bar.setValue(0)
        self.time_label = QLabel("")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setSelectionMode(QTableWidget.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(160)
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Show the selected image and its labels (or double-click its row).")
        self.status = status_label()

        form = compact(QFormLayout())
        form.addRow("Run", self.run_edit)
        row = QHBoxLayout()
        row.addWidget(self.input_edit, 1)
        row.addWidget(self.browse_button)
        form.addRow("Images", row)
        form.addRow("Output", self.out_edit)
        form.addRow("Test-time aug.", self.tta_combo)
        form.addRow("Well grid", self.grid_edit)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.start_button)
        row.addWidget(self.stop_button)
        layout.addLayout(row)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.time_label)
        layout.addWidget(self.table)
        layout.addWidget(self.open_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.browse_button.clicked.connect(lambda: self._browse())
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button.clicked.connect(lambda: self.stop())
        self.open_button.clicked.connect(lambda: self.open_row(self.table.currentRow()))
        self.table.cellDoubleClicked.connect(lambda row, _column: self.open_row(row))
        self.fit()

    # --- choosing ------------------------------------------------------------------------------
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images")
        if folder:
            self.input_edit.setText(folder)

    def _run(self) -> str | None:
        text = self.run_edit.text().strip()
        if text:
            return text
        model = self.session.checkpoint or self.session.run_dir
        return None if model is None else str(model)

    def _out(self, inputs: str) -> Path:
        text = self.out_edit.text().strip()
        if text:
            return Path(text).expanduser()
        given = Path(inputs).expanduser()
        folder = given if given.is_dir() else given.parent
        return folder.parent / f"{folder.name}-segmented"

    # --- the run -------------------------------------------------------------------------------
    def busy(self) -> bool:
        return self.worker is not None

    def start(self) -> None:
        if self.busy():
            return
        run, inputs = self._run(), self.input_edit.text().strip()
        if run is None:
            notify_error("No model for the batch: type a run folder or checkpoint under Run (or pick a run in Runs).",
                         self.status)
            return
        if not inputs:
            notify_error("No images: type or browse to a folder of images (or a glob such as plate/*.tif).",
                         self.status)
            return
        self.out = self._out(inputs)
        self.stop_event = threading.Event()
        self.results = {}
        self.status.setText(f"Loading the model and listing the images; results go to {self.out} ...")
        self.time_label.setText("")
        self.worker = start_worker(
            batch_reports, run, [inputs], str(self.out), TTA_CHOICES[self.tta_combo.currentText()], self.stop_event,
            self.grid_edit.text(), stop=self.stop_event, on_yield=self._report, on_finish=self._finished, action="The batch",
            status=self.status, throttle_ms=None)
        self._buttons()

    def stop(self) -> None:
        if self.busy():
            stop_worker(self.worker)
            self.status.setText("Stopping after the current image ...")
            self.stop_button.setEnabled(False)

    def _buttons(self) -> None:
        self.start_button.setEnabled(not self.busy())
        self.stop_button.setEnabled(self.busy())

    def _report(self, report) -> None:
        if isinstance(report, list):
            self.images = report
            self._fill_table()
            self.progress_bar.setRange(0, len(report))
            self.progress_bar.setValue(0)
            self.session.set(batch_out=self.out)
            return
        self.results[report.image.key] = report
        self._show_row(self.images.index(report.image), report)
        self.progress_bar.setValue(report.done)
        left = report.seconds_left
        self.time_label.setText("" if left is None else f"about {_duration(left)} left")
        if report.status == "failed":
            self.status.setText(report.message)

    def _fill_table(self) -> None:
        self.table.setRowCount(len(self.images))
        for row, image in enumerate(self.images):
            name = image.path.name if image.position is None else f"{image.path.name} [{image.position}]"
            for column, text in enumerate((name, image.well or "", "pending", "")):
                self.table.setItem(row, column, QTableWidgetItem(text))

    def _show_row(self, row: int, result) -> None:
        status = {"done": "done", "finished": "done (earlier)", "failed": "failed"}[result.status]
        objects = result.row.get("objects", "")
        self.table.item(row, 2).setText(status)
        self.table.item(row, 2).setToolTip(result.message)
        self.table.item(row, 3).setText(str(objects))

    def _finished(self) -> None:
        self.worker = None
        self._buttons()
        if not self.images:
            return
        counts = [r.status for r in self.results.values()]
        failed = counts.count("failed")
        done = len(self.images) - failed - (len(self.images) - len(counts))
        if len(counts) < len(self.images):
            self.status.setText(f"Stopped: {done} of {len(self.images)} images done; Start resumes the batch.")
        elif failed:
            notify_error(f"{failed} of {len(self.images)} images failed (see their rows); the other {done} are in "
                         f"{self.out}.", self.status)
        else:
            notify_info(f"All {done} images segmented; labels and summary.csv in {self.out}.", self.status)
        self.time_label.setText("")

    # --- looking at one image ------------------------------------------------------------------
    def open_row(self, row: int) -> None:
        if not 0 <= row < len(self.images):
            notify_error("Select an image of the batch first.", self.status)
            return
        image = self.images[row]
        result = self.results.get(image.key)
        if result is None or not result.ok:
            notify_error(f"{image.path.name} has no labels yet ({'pending' if result is None else 'failed'}).",
                         self.status)
            return
        out = self.out
        start_worker(read_batch_image, result.row, out, action="Opening the image", status=self.status,
                     on_return=lambda r: self._opened(out, image.key, *r))

    def _opened(self, out, key, raw, labels, voxel_size, attrs) -> None:
        show_batch_image(self.viewer, out, key, raw, labels, voxel_size, attrs)
        self.status.setText(f"Showing {key} and its labels.")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
