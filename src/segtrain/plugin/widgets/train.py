"""Train dock widget: the config as a form, Start / Stop / Resume, progress, a live loss plot and a
preview prediction layer. The run is a ``segtrain.train.TrainingRun`` consumed in a background
worker through its ``reports()`` generator; Stop calls ``run.stop()``."""

from __future__ import annotations

import gc
import os
import shlex
from pathlib import Path
from typing import Any

import numpy as np
from napari.utils import progress
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import (
    Foldable,
    mpl_canvas,
    set_widget_value,
    status_label,
    widget_value,
)
from segtrain.plugin.workers import (
    Throttle,
    error_message,
    lower_thread_priority,
    notify_error,
    notify_info,
    release_gpu_memory,
    start_worker,
)

TASK_PRESET = {"affinities": "em3d_quick", "masks": "wells2d_quick", "instances": "wells2d_quick"}


def preset_names() -> list[str]:
    from segtrain.config import PRESETS

    return list(PRESETS)


def run_reports(run):
    """Worker body: every report of a training run; GPU memory released at the end.

    The worker thread lowers its own CPU priority first: the training thread and torch's
    threads it starts inherit it, so napari's GUI thread wins when the CPU is contended."""
    lower_thread_priority()
    try:
        yield from run.reports()
    finally:
        release_gpu_memory()


class TrainWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = L.session(napari_viewer)
        self.run = None
        self.worker = None
        self.progress = None
        self.history: dict[str, list[tuple[int, float]]] = {}
        self._failed = False
        self._last_metrics: dict[str, float] = {}
        self._monitor = "loss"
        self.last_report = None
        self._last_preview_step = -(10**9)
        self.config = None

        self.preset_combo = QComboBox()
        self.preset_combo.addItems(preset_names())
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("run name (default: preset + time)")
        self.runs_root_edit = QLineEdit(str(self.session.runs_root))
        self.steps_spin = QSpinBox(minimum=1, maximum=10**8)
        self.batch_spin = QSpinBox(minimum=1, maximum=1024)
        self.lr_spin = QDoubleSpinBox(decimals=6, minimum=1e-7, maximum=1.0, singleStep=1e-5)
        self.patch_edit = QLineEdit()
        self.val_every_spin = QSpinBox(minimum=1, maximum=10**8)
        self.preview_spin = QSpinBox(minimum=1, maximum=10**8)
        self.preview_spin.setValue(10)
        self.preview_spin.setToolTip("Refresh the preview layer at most every N steps.")

        # advanced (folded)
        self.fmaps_spin = QSpinBox(minimum=1, maximum=1024)
        self.lsds_check = QCheckBox("predict LSDs")
        self.lsd_sigma_spin = QDoubleSpinBox(decimals=2, minimum=0.1, maximum=1000.0)
        self.scheduler_combo = QComboBox()
        self.scheduler_combo.addItems(["none", "plateau", "cosine"])
        self.patience_spin = QSpinBox(minimum=0, maximum=10**6)
        self.patience_spin.setSpecialValueText("off")
        self.checkpoint_spin = QSpinBox(minimum=1, maximum=10**8)
        self.accelerator_combo = QComboBox()
        self.accelerator_combo.addItems(["auto", "cpu", "gpu"])
        self.seed_spin = QSpinBox(minimum=0, maximum=2**31 - 1)

        self.load_button = QPushButton("Load YAML...")
        self.save_button = QPushButton("Save YAML...")
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.resume_button = QPushButton("Resume")
        self.stop_button.setEnabled(False)
        self.resume_button.setEnabled(False)
        self.step_label = QLabel("not started")
        self.run_dir_label = QLabel("run folder: -")
        self.run_dir_label.setWordWrap(True)
        self.tensorboard_button = QPushButton("Copy TensorBoard command")
        self.tensorboard_button.setEnabled(False)
        self.canvas, self.figure = mpl_canvas(2.6)
        self.loss_axes = self.figure.add_subplot(111)
        self.metric_axes = self.loss_axes.twinx()
        self.status = status_label()

        advanced = QWidget()
        aform = QFormLayout(advanced)
        aform.setContentsMargins(0, 0, 0, 0)
        aform.addRow("Feature maps", self.fmaps_spin)
        aform.addRow(self.lsds_check)
        aform.addRow("LSD sigma (world units)", self.lsd_sigma_spin)
        aform.addRow("LR schedule", self.scheduler_combo)
        aform.addRow("Early-stopping patience", self.patience_spin)
        aform.addRow("Checkpoint every (steps)", self.checkpoint_spin)
        aform.addRow("Accelerator", self.accelerator_combo)
        aform.addRow("Seed", self.seed_spin)

        form = QFormLayout()
        form.addRow("Preset", self.preset_combo)
        form.addRow("Run name", self.name_edit)
        form.addRow("Runs folder", self.runs_root_edit)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Batch size", self.batch_spin)
        form.addRow("Learning rate", self.lr_spin)
        form.addRow("Patch shape", self.patch_edit)
        form.addRow("Validate every (steps)", self.val_every_spin)
        form.addRow("Preview every (steps)", self.preview_spin)
        form.addRow(Foldable("Advanced", advanced))
        yaml_row = QHBoxLayout()
        yaml_row.addWidget(self.load_button)
        yaml_row.addWidget(self.save_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.resume_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(yaml_row)
        layout.addLayout(buttons)
        layout.addWidget(self.step_label)
        layout.addWidget(self.canvas)
        layout.addWidget(self.run_dir_label)
        layout.addWidget(self.tensorboard_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.preset_combo.currentTextChanged.connect(self.load_preset)
        self.load_button.clicked.connect(self._load_yaml_dialog)
        self.save_button.clicked.connect(self._save_yaml_dialog)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        self.tensorboard_button.clicked.connect(self.copy_tensorboard_command)
        self.session.changed.connect(self._session_changed)

        preset = TASK_PRESET.get(self.session.task, self.preset_combo.currentText())
        if self.preset_combo.findText(preset) >= 0:
            self.preset_combo.setCurrentText(preset)
        self.load_preset(self.preset_combo.currentText())
        self._lines: dict = {}
        self._draw_throttle = Throttle(lambda _: self.canvas.draw_idle(), 1000, self)
        self._clear_plot()

    # --- config <-> form -----------------------------------------------------------------------
    def _session_changed(self, key: str) -> None:
        if key == "task" and not self.is_running():
            preset = TASK_PRESET.get(self.session.task)
            if preset and self.preset_combo.findText(preset) >= 0:
                self.preset_combo.setCurrentText(preset)

    def load_preset(self, name: str) -> None:
        from segtrain.config import preset

        try:
            self.set_config(preset(name))
        except Exception as error:  # noqa: BLE001
            notify_error(f"Preset '{name}' could not be loaded: {error}", self.status)

    def _fields(self) -> list[tuple[str, Any]]:
        """(config section.attribute, form widget) pairs: the form <-> Config mapping."""
        return [
            ("train.max_steps", self.steps_spin), ("train.batch_size", self.batch_spin),
            ("train.lr", self.lr_spin), ("data.patch_shape", self.patch_edit),
            ("train.val_every", self.val_every_spin), ("model.num_fmaps", self.fmaps_spin),
            ("model.lsds", self.lsds_check), ("model.lsd_sigma", self.lsd_sigma_spin),
            ("train.scheduler", self.scheduler_combo),
            ("train.early_stopping_patience", self.patience_spin),  # 0 shows "off" = None
            ("train.checkpoint_every", self.checkpoint_spin),
            ("train.accelerator", self.accelerator_combo), ("train.seed", self.seed_spin),
        ]

    def set_config(self, config) -> None:
        self.config = config
        for path, widget in self._fields():
            section, name = path.split(".")
            set_widget_value(widget, getattr(getattr(config, section), name))

    def current_config(self):
        """The form as a validated Config (raises ConfigError/ValueError with a readable message)."""
        config = self.config.copy()
        for path, widget in self._fields():
            section, name = path.split(".")
            setattr(getattr(config, section), name, widget_value(widget))
        t, m, d = config.train, config.model, config.data
        if t.threads is None and t.accelerator != "gpu":
            # leave one CPU core to the GUI: torch on every core starves napari's event loop
            t.threads = max(1, (os.cpu_count() or 2) - 1)
        if self.session.task in ("masks", "instances") and config.ndim == 2:
            m.task = self.session.task  # the task chosen in Data & annotation
        if self.session.voxel_size and len(self.session.voxel_size) == config.ndim:
            d.voxel_size = list(self.session.voxel_size)
        if self.name_edit.text().strip():
            config.name = self.name_edit.text().strip()
        return config.validate()

    def load_yaml(self, path: str | Path) -> None:
        from segtrain.config import load_config

        try:
            self.set_config(load_config(path))
        except Exception as error:  # noqa: BLE001
            notify_error(str(error) if "segtrain" in type(error).__module__ else
                         f"Could not load the config {path}: {error}", self.status)
            return
        self.status.setText(f"Loaded {path}")

    def save_yaml(self, path: str | Path) -> None:
        from segtrain.config import save_config

        try:
            save_config(self.current_config(), path)
        except Exception as error:  # noqa: BLE001
            notify_error(f"Could not save the config to {path}: {error}", self.status)
            return
        self.status.setText(f"Saved {path}")

    def _load_yaml_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load config", "", "YAML (*.yaml *.yml)")
        if path:
            self.load_yaml(path)

    def _save_yaml_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save config", "config.yaml", "YAML (*.yaml)")
        if path:
            self.save_yaml(path)

    # --- data from the layers ------------------------------------------------------------------
    def _layer(self, name: str | None):
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def training_sources(self):
        """(train_sources, val_sources) from the layers chosen in Data & annotation."""
        image = self._layer(self.session.image_layer)
        if image is None:
            raise ValueError("No image layer to train on: open an image and choose it in "
                             "Data & annotation, then start training.")
        annotation = self._layer(self.session.annotation_layer)
        gt = self._layer(self.session.gt_layer)
        raw = np.asarray(image.data)
        shape = L.spatial_shape(image)
        voxel_size = self.session.voxel_size or L.spatial_scale(image)
        for role, layer in (("annotation", annotation), ("ground-truth", gt)):
            if layer is not None and tuple(layer.data.shape) != shape:
                raise ValueError(f"The {role} layer '{layer.name}' has shape "
                                 f"{tuple(layer.data.shape)} but the image has shape {shape}; "
                                 "choose labels of the image's shape.")
        from segtrain.train import ArraySource

        val = None
        if annotation is not None:
            labels, known = L.training_arrays(np.asarray(annotation.data), self.session.sparse)
            if not known.any():
                raise ValueError(f"The annotation layer '{annotation.name}' is empty: paint some "
                                 "objects (and background) first, or choose a ground-truth layer.")
            train = [ArraySource(raw, labels, known=known, voxel_size=voxel_size)]
            if gt is not None:
                val = [ArraySource(raw, np.asarray(gt.data), voxel_size=voxel_size)]
        elif gt is not None:
            train = [ArraySource(raw, np.asarray(gt.data), voxel_size=voxel_size)]
        else:
            raise ValueError("No labels to train on: create and paint an annotation layer (or "
                             "choose a ground-truth layer) in Data & annotation.")
        return train, val

    # --- run control ---------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.worker is not None

    def start(self, resume: str | Path | None = None) -> None:
        if self.is_running():
            notify_error("A training run is already going: stop it before starting another.",
                         self.status)
            return
        try:
            config = self.current_config()
            train, val = self.training_sources()
            from segtrain.train import TrainingRun

            root = Path(self.runs_root_edit.text().strip() or "runs")
            self.run = TrainingRun(config, train, val_sources=val, runs_root=root,
                                   name=config.name if self.name_edit.text().strip() else None,
                                   resume=resume)
        except Exception as error:  # noqa: BLE001 - any problem before the run is a message
            message = str(error) if isinstance(error, ValueError) else error_message(
                error, "Starting training")
            notify_error(message, self.status)
            return
        self.session.set(runs_root=root, run_dir=Path(self.run.run_dir))
        self.history = {}
        self._last_metrics = {}
        from segtrain.config import monitor_metric

        self._monitor = monitor_metric(config)[0].removeprefix("val/")
        self._clear_plot()
        self.last_report = None
        self._last_preview_step = -(10**9)
        self.run_dir_label.setText(f"run folder: {self.run.run_dir}")
        self.tensorboard_button.setEnabled(True)
        self._set_running(True)
        self.progress = progress(total=int(config.train.max_steps), desc="Training")
        self.show_preview(np.zeros((8, 24), np.float32))  # placeholder until the first preview
        self.status.setText("Training ...")
        self._failed = False
        # Python's full garbage collections scan every object (napari's, torch's: seconds of
        # them on a small machine) and stall the GUI whichever thread triggers them. Collect
        # once now, on the click, and freeze what exists so later collections scan new objects
        # (unfrozen when the run ends).
        gc.collect()
        gc.freeze()
        self.worker = start_worker(
            run_reports, self.run, on_yield=self.on_report, on_finish=self._finished,
            on_error=self._on_error,
            action="Training", status=self.status, throttle_ms=200,
        )

    def stop(self) -> None:
        if self.run is not None:
            self.status.setText("Stopping (writing a checkpoint) ...")
            self.run.stop()

    def resume(self) -> None:
        run_dir = self.session.run_dir
        if run_dir is None:
            notify_error("No run to resume: start a run first or load one in Runs.", self.status)
            return
        self.start(resume=run_dir)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.resume_button.setEnabled(not running and self.session.run_dir is not None)
        self.stop_button.setEnabled(running)

    def _finished(self) -> None:
        self.worker = None
        gc.unfreeze()  # what was frozen at Start is collectable again
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        report = self.last_report
        if report is not None and getattr(report, "checkpoint", None):
            self.session.set(checkpoint=Path(report.checkpoint))
        self._set_running(False)
        if report is not None and not self._failed:
            notify_info(f"Training ended at step {report.step} of {report.max_steps}; "
                        f"run folder {self.run.run_dir}.", self.status)

    def _on_error(self, message: str) -> None:
        self._failed = True

    def on_report(self, report) -> None:
        """Update progress, the loss plot and the preview (GUI thread, throttled)."""
        self.last_report = report
        step = int(report.step)
        if self.progress is not None:
            self.progress.total = int(report.max_steps)
            self.progress.update(max(0, step - self.progress.n))
        text = f"step {step} / {report.max_steps}"
        if "loss" in report.losses:
            self._record("train loss", step, report.losses["loss"])
            text += f"  loss {report.losses['loss']:.4g}"
        metrics = dict(report.metrics)
        if metrics and metrics != self._last_metrics:  # a new validation round
            self._last_metrics = metrics
            if "loss" in metrics:
                self._record("val loss", step, metrics["loss"])
            if self._monitor in metrics:
                self._record(f"val {self._monitor}", step, metrics[self._monitor])
        if self._monitor in self._last_metrics:
            text += f"  val {self._monitor} {self._last_metrics[self._monitor]:.4g}"
        self.step_label.setText(text)
        if getattr(report, "checkpoint", None):
            self.session.set(checkpoint=Path(report.checkpoint))
        if report.preview is not None and (step - self._last_preview_step >= self.preview_spin.value()
                                           or report.done):
            self._last_preview_step = step
            self.show_preview(np.asarray(report.preview))
        self.plot()

    def _record(self, key: str, step: int, value: float) -> None:
        points = self.history.setdefault(key, [])
        if points and points[-1][0] == step:
            points[-1] = (step, float(value))
        else:
            points.append((step, float(value)))

    PREVIEW_NAME = "training preview (raw | target | prediction)"

    def show_preview(self, preview: np.ndarray) -> None:
        """The run's preview (a 2D ``raw | target | prediction`` strip) as an image layer placed
        beside the training image, updated in place (the layer is made when the run starts, so
        a preview arriving mid-run costs a data update, not a new layer)."""
        kwargs: dict = {"name": self.PREVIEW_NAME, "colormap": "gray",
                        "contrast_limits": (0.0, 1.0), "metadata": {L.META: {"kind": "preview"}}}
        image = self._layer(self.session.image_layer)
        if image is not None and preview.ndim == 2:
            scale = L.spatial_scale(image)[-2:]
            right = image.translate[-1] + scale[-1] * L.spatial_shape(image)[-1]
            kwargs.update(scale=scale, translate=(image.translate[-2], right + 10 * scale[-1]))
        L.upsert_layer(self.viewer, "image", preview, **kwargs)

    def plot(self) -> None:
        """Update the loss plot's lines in place; the canvas redraws at most once a second."""
        ax, mx = self.loss_axes, self.metric_axes
        new_line = False
        for key, points in self.history.items():
            steps, values = zip(*points)
            line = self._lines.get(key)
            if line is None:
                if "loss" in key:
                    val = key.startswith("val")
                    (line,) = ax.plot([], [], label=key, linestyle="--" if val else "-",
                                      marker="o" if val else None)
                elif key.startswith("val"):
                    (line,) = mx.plot([], [], label=key, color="tab:red", marker="o")
                else:
                    continue
                self._lines[key] = line
                new_line = True
            line.set_data(steps, values)
        for axes in (ax, mx):
            axes.relim()
            axes.autoscale_view()
        if new_line:
            handles = [*ax.get_legend_handles_labels()[0], *mx.get_legend_handles_labels()[0]]
            ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="upper right")
        self._draw_throttle.push(None)

    def _clear_plot(self) -> None:
        for line in self._lines.values():
            line.remove()
        self._lines = {}
        legend = self.loss_axes.get_legend()
        if legend is not None:
            legend.remove()
        self.loss_axes.set_xlabel("step")
        self.loss_axes.set_ylabel("loss")
        self.metric_axes.set_ylabel("validation metric")
        self.canvas.draw_idle()

    def tensorboard_command(self) -> str:
        run_dir = self.session.run_dir or Path(self.runs_root_edit.text() or "runs")
        return f"tensorboard --logdir {shlex.quote(str(Path(run_dir).resolve()))}"

    def copy_tensorboard_command(self) -> None:
        command = self.tensorboard_command()
        QApplication.clipboard().setText(command)
        self.status.setText(f"Copied: {command}")

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt name
        self.stop()
        super().closeEvent(event)
