"""The Export panel's "Full volume, blockwise" section: the segmentation of a whole zarr/N5 volume
at the threshold (and with the segment settings) of the chosen merge-tree segmentation, computed by
the blockwise pipeline (:mod:`segtrain.scale`: daisy worker processes, a region graph in a
database, resumable) driven from a child process (:mod:`segtrain.scale.driver`) that a background
worker watches, with blocks done / total and failures shown in the panel. Stop ends the job at the
next block boundary (finished blocks are kept; Run blockwise resumes). The result is added as a
labels layer. It is what

    segtrain scale run JOB --affinities SOURCE --block-shape B --workers N --threshold T --out OUT

gives for the same inputs (with the segmentation's settings as flags)."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import compact, status_label
from segtrain.plugin.workers import Throttle, notify_error, notify_info, start_worker
from segtrain.plugin.reader import read_layers
from segtrain.plugin.widgets._common import Foldable
from segtrain.plugin.workers import lower_thread_priority
from segtrain.scale.driver import run_in_child
from segtrain.scale.job import JOB_FILE
from segtrain.scale.job import SEGMENT_KEYS
from segtrain.scale.volumes import read_attrs
from segtrain.tasks import AFFINITIES, is_affinities

SOURCES = {AFFINITIES: "affinities (C, z, y, x)", "raw": "raw image + model"}


@dataclasses.dataclass
class BlockwiseRequest:
    """Everything the worker needs (made in the GUI thread from the fields, checked there)."""

    job: Path
    source: str
    kind: str  # "affinities" or "raw"
    dataset: str | None
    model: str | None
    block_shape: tuple[int, int, int]
    workers: int
    threshold: float
    segment: dict
    out: Path


def driver_request(request: BlockwiseRequest) -> dict:
    """What :func:`segtrain.scale.driver.run_request` takes, from the panel's request."""
    r = request
    inputs = dict(affinities=r.source, affinities_dataset=r.dataset) if is_affinities(r.kind) \
        else dict(raw=r.source, raw_dataset=r.dataset, model=r.model)
    return dict(job=str(r.job), create=dict(block_shape=list(r.block_shape), segment=r.segment, **inputs),
                workers=r.workers, threshold=r.threshold, out=str(r.out), again="click Run blockwise again")


def run_blockwise(request: BlockwiseRequest, progress=None, stop: threading.Event | None = None) -> dict:
    """Worker body: create (or resume) the job, run its steps, write the segmentation at the
    threshold, in a child process; returns the result and the layer data of the output, or
    ``{"stopped": True, "done": N, "total": M}`` when ``stop`` was set. A step with failed blocks
    raises a one-sentence SegtrainError (the finished blocks are kept for a re-run)."""

    lower_thread_priority()  # the child process inherits it, and its workers too
    result = run_in_child(driver_request(request), progress=progress, stop=stop)
    if result.get("stopped"):
        return result
    return dict(result, layers=read_layers(result["path"]))


class _ProgressRelay(QObject):
    """``progress(step, done, total, failed)`` callable from the worker's thread (daisy calls it);
    the queued signal carries every step's latest counts to the GUI thread (so a throttle that
    keeps only the newest report loses no step)."""

    reported = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.steps: dict[str, tuple[int, int, int]] = {}

    def __call__(self, step: str, done: int, total: int, failed: int) -> None:
        self.steps[_step_name(step)] = (int(done), int(total), int(failed))
        self.reported.emit(dict(self.steps))


def _step_name(step: str) -> str:
    return "segmentation" if step.startswith("relabel-") else step


def unfinished_output(job: Path, out: Path) -> bool:
    """Whether ``out`` is the output a stopped run of ``job`` left unfinished (resumed, not
    overwritten)."""

    if not (job / JOB_FILE).exists():
        return False
    try:
        return not read_attrs(out).get("complete", False)
    except Exception:  # noqa: BLE001 - not an array this job writes: not resumable
        return False


def parse_block_shape(text: str) -> tuple[int, int, int] | None:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").replace("x", ",").split(",") if v)
    except ValueError:
        return None
    return values if len(values) == 3 and all(v > 0 for v in values) else None


class BlockwiseSection(QWidget):
    """Fields, a Run blockwise button and a progress line; ``export`` is the Export panel (its
    chosen segmentation, folder, name and overwrite tick are used)."""

    def __init__(self, export, parent=None):
        super().__init__(parent)
        self.export = export
        self.viewer = export.viewer
        self.worker = None
        self.result: dict | None = None
        self.steps: dict[str, tuple[int, int, int]] = {}

        self.kind_combo = QComboBox()
        self.kind_combo.addItems(list(SOURCES.values()))
        self.source_edit = QLineEdit()
        self.source_edit.setPlaceholderText("volume.zarr (or .n5) on disk")
        self.source_button = QPushButton("Browse...")
        self.dataset_edit = QLineEdit()
        self.dataset_edit.setPlaceholderText("(the array at the root)")
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("run folder or checkpoint")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("(export folder)/NAME_blockwise.zarr")
        self.job_edit = QLineEdit()
        self.job_edit.setPlaceholderText("(beside the output) NAME_blockwise_job")
        self.block_edit = QLineEdit("64, 256, 256")
        self.workers_spin = QSpinBox()
        self.workers_spin.setRange(1, max(1, os.cpu_count() or 1) * 4)
        self.workers_spin.setValue(min(2, os.cpu_count() or 1))
        self.run_button = QPushButton("Run blockwise")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("End the job after the blocks in progress; finished blocks are "
                                    "kept and Run blockwise resumes.")
        self.stop_event: threading.Event | None = None
        self.progress_label = status_label()

        source_row = QHBoxLayout()
        source_row.addWidget(self.source_edit, 1)
        source_row.addWidget(self.source_button)
        form = compact(QFormLayout())
        form.addRow("Source", self.kind_combo)
        form.addRow("Volume", source_row)
        form.addRow("Dataset", self.dataset_edit)
        form.addRow("Model", self.model_edit)
        form.addRow("Output", self.out_edit)
        form.addRow("Job folder", self.job_edit)
        form.addRow("Block (z, y, x)", self.block_edit)
        form.addRow("Workers", self.workers_spin)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 1)
        buttons.addWidget(self.stop_button)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_label)
        self.setToolTip("The chosen segmentation's threshold and segment settings, applied to the "
                        "whole volume block by block (segtrain scale); a re-run resumes.")

        self.relay = _ProgressRelay(self)
        self.throttle = Throttle(self._show_progress, parent=self)
        self.relay.reported.connect(self.throttle.push)
        self.kind_combo.currentIndexChanged.connect(lambda _: self._kind_changed())
        self.source_button.clicked.connect(lambda: self._browse())
        self.run_button.clicked.connect(lambda: self.start())
        self.stop_button.clicked.connect(lambda: self.stop())
        self._kind_changed()

    # --- fields -----------------------------------------------------------------------------

    def kind(self) -> str:
        return next(k for k, v in SOURCES.items() if v == self.kind_combo.currentText())

    def _kind_changed(self) -> None:
        raw = self.kind() == "raw"
        self.model_edit.setEnabled(raw)
        if raw and not self.model_edit.text().strip():
            info = L.layer_info(self.export.seg_combo.layer()) if self.export.seg_combo.layer() else None
            if info is not None and info.run:
                self.model_edit.setText(str(info.run))

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Volume (.zarr or .n5 folder)", self.source_edit.text())
        if path:
            self.source_edit.setText(path)

    def request(self) -> BlockwiseRequest | str:
        """The request made from the fields, or the one sentence saying what is wrong."""

        layer = self.export.seg_combo.layer()
        info = L.layer_info(layer) if layer is not None else None
        if info is None or info.kind != "segmentation" or info.threshold is None or info.settings is None:
            return ("Choose a merge-tree segmentation (made in the Segment panel) above: its threshold "
                    "and settings are what the full volume gets.")
        if not dataclasses.is_dataclass(info.settings) or not hasattr(info.settings, "scoring"):
            return "The chosen segmentation has no merge-tree settings; segment with the Segment panel first."
        source = self.source_edit.text().strip()
        if not source:
            return "Give the volume to segment (a .zarr or .n5 folder with the affinities or the raw image)."
        if not Path(source).expanduser().exists():
            return f"The volume {source} does not exist; give the path of a .zarr or .n5 folder."
        kind = self.kind()
        model = self.model_edit.text().strip() or None
        if kind == "raw" and model is None:
            return "Predicting from the raw image needs a model: give its run folder or checkpoint."
        block = parse_block_shape(self.block_edit.text())
        if block is None:
            return (f"Cannot read the block shape {self.block_edit.text()!r}; give three positive "
                    "numbers z, y, x such as 64, 256, 256.")
        folder = Path(self.export.folder_edit.text().strip() or ".").expanduser()
        base = self.export.name_edit.text().strip() or "segmentation"
        out = Path(self.out_edit.text().strip() or folder / f"{base}_blockwise.zarr").expanduser()
        if not any(p.endswith((".zarr", ".n5")) for p in out.parts):
            return f"The output {out} must be a .zarr or .n5 path (e.g. {base}_blockwise.zarr)."
        job = Path(self.job_edit.text().strip() or out.parent / f"{out.name.split('.')[0]}_job").expanduser()
        if out.exists() and not self.export.overwrite_check.isChecked() and not unfinished_output(job, out):
            return f"{out} already exists; choose another output or tick 'overwrite existing files'."
        if not job.parent.parent.exists():
            return f"The folder {job.parent} does not exist; create it or choose another job folder."
        settings = {k: v for k, v in dataclasses.asdict(info.settings).items() if k in SEGMENT_KEYS}
        return BlockwiseRequest(job, str(Path(source).expanduser()), kind,
                                self.dataset_edit.text().strip() or None, model, block,
                                int(self.workers_spin.value()), float(info.threshold), settings, out)

    # --- running ----------------------------------------------------------------------------

    def start(self) -> None:
        request = self.request()
        if isinstance(request, str):
            notify_error(request, self.progress_label)
            return
        request.job.parent.mkdir(exist_ok=True)  # the export folder, as Export makes it
        self.result = None
        self.steps = self.relay.steps = {}
        self.run_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.stop_event = threading.Event()
        self.progress_label.setText(f"Starting {request.workers} worker(s), threshold "
                                    f"{request.threshold:g} ...")
        self.worker = start_worker(
            run_blockwise, request, self.relay, self.stop_event, on_return=self._done,
            on_finish=self._finished, action="The blockwise segmentation", status=self.progress_label,
            throttle_ms=None, stop=self.stop_event,
        )

    def stop(self) -> None:
        """End the job at the next block boundary (the worker does the waiting)."""
        if self.stop_event is None or self.worker is None:
            return
        self.stop_event.set()
        self.stop_button.setEnabled(False)
        self.throttle.flush()
        self.progress_label.setText("Stopping after the blocks in progress ...")

    def _show_progress(self, steps: dict[str, tuple[int, int, int]]) -> None:
        self.steps = steps
        stopping = self.stop_event is not None and self.stop_event.is_set()
        self.progress_label.setText("; ".join(
            (f"{name}: {'done' if d else 'running'}" if name == "global" else
             f"{name}: {d} / {t} blocks" + (f", {f} failed" if f else ""))
            for name, (d, t, f) in self.steps.items())
            + (" (Stopping after the blocks in progress ...)" if stopping else ""))

    def _done(self, result: dict) -> None:
        self.throttle.flush()
        self.result = result
        if result.get("stopped"):
            notify_info(f"stopped: {result['done']} / {result['total']} blocks done; click Run "
                        "blockwise to resume", self.progress_label)
            return
        data, kwargs, layer_type = result["layers"][0]
        layer = self.export.seg_combo.layer()
        if layer is not None and not kwargs.get("metadata", {}).get("voxel_size_in_file", True):
            kwargs.update(scale=tuple(layer.scale), translate=tuple(layer.translate))
        kwargs["name"] = f"{Path(result['path']).name.split('.')[0]} (blockwise, {result['threshold']:g})"
        kwargs.pop("channel_axis", None)
        self.viewer.add_labels(data, **{k: v for k, v in kwargs.items() if k in
                                        ("name", "scale", "translate", "metadata")})
        notify_info(f"Blockwise segmentation at {result['threshold']:g}: {result['segments']} segments "
                    f"from {result['fragments']} fragments in {result['blocks']} blocks, written to "
                    f"{result['path']}.", self.progress_label)

    def _finished(self) -> None:
        self.worker = None
        self.stop_event = None
        self.run_button.setEnabled(True)
        self.stop_button.setEnabled(False)


def add_to(export, layout: Any) -> BlockwiseSection:
    """Add the section, folded, to the Export panel's layout; returns it."""

    section = BlockwiseSection(export)
    export.blockwise_fold = Foldable("Full volume, blockwise", section)
    layout.addWidget(export.blockwise_fold)
    return section
