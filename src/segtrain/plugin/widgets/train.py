"""Train dock widget: the config as a form, Start / Stop / Resume with visible states, a live loss
plot that keeps its history across Resume, and a preview strip (raw | target | prediction).

Start only reads the form and the layers in the GUI thread; importing PyTorch, building the run and
training happen in a background worker (:func:`training_reports`) whose reports the panel draws.
States: ``not started`` -> ``preparing: ...`` -> ``step N / M`` (``validating at step N``) ->
``stopping ...`` -> ``finished at step M`` / ``stopped at step N`` / ``failed: ...``.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import numpy as np
from napari.utils import progress
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
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

from segtrain.config import ModelConfig, SelfTrainConfig, TrainConfig
from segtrain.plugin import collector
from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import (
    Foldable,
    Panel,
    bounded,
    compact,
    mpl_canvas,
    set_widget_value,
    status_label,
    widget_value,
)
from segtrain.plugin.workers import (
    Throttle,
    lower_thread_priority,
    notify_error,
    notify_info,
    release_gpu_memory,
    start_worker,
    warm_up_done,
    warm_up_imports,
)
from segtrain.runs.root import RUNS_ROOT_TIP, typed_runs_root
from segtrain.tasks import find_task, task_of
from segtrain.workflows.training import TrainingJob, fine_tune_config, set_max_steps
from segtrain.workflows.training import training_reports as run_reports
from segtrain.config import PRESETS
from segtrain.config import load_config
from segtrain.config import monitor_metric
from segtrain.config import preset
from segtrain.config import save_config
from segtrain.errors import InputError
from segtrain.runs import RunFolder
from segtrain.runs import fine_tune_note



def preset_names() -> list[str]:
    return list(PRESETS)


def training_reports(job: TrainingJob):
    """Worker body: the workflow's run of ``job`` (:func:`segtrain.workflows.training.training_reports`);
    GPU memory is released at the end.

    The worker thread lowers its own CPU priority first: the training thread and torch's threads
    it starts inherit it, so napari's GUI thread wins when the CPU is contended."""
    lower_thread_priority()
    try:
        yield from run_reports(job)
    finally:
        release_gpu_memory()


def array_to_pixmap(image: np.ndarray, height: int) -> QPixmap:
    """A grey QPixmap of a 2D float array in [0, 1], scaled to ``height`` pixels."""
    data = np.ascontiguousarray(np.clip(np.asarray(image, np.float32), 0, 1) * 255, dtype=np.uint8)
    qimage = QImage(data.data, data.shape[1], data.shape[0], data.strides[0], QImage.Format_Grayscale8)
    return QPixmap.fromImage(qimage.copy()).scaledToHeight(height, Qt.SmoothTransformation)


def _device_line(accelerator: str, precision: str, threads: int | None) -> str:
    """Worker body: the device line, once the background import of PyTorch has finished (two threads
    importing it at once can see a half-initialised module)."""
    import time

    from segtrain.device import device_line

    while not warm_up_done():
        time.sleep(0.1)
    return device_line(accelerator, precision, threads)


class TrainWidget(Panel):
    PREVIEW_HEIGHT = 96

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = L.session(napari_viewer)
        self.job: TrainingJob | None = None
        self.worker = None
        self.progress = None
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.state = "not started"
        self.run_dir: Path | None = None
        self._last_metrics: dict[str, float] = {}
        self._monitor = "loss"
        self.last_report = None
        self.preview: np.ndarray | None = None
        self.config = None
        self._iteration_text = ""  # the newest self-training iteration's result

        self.preset_combo = QComboBox()
        self.preset_combo.addItems(preset_names())
        self.task_label = QLabel("")
        self.pair_label = QLabel("")  # which image and which labels a run trains on
        self.pair_label.setObjectName("pair")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("default: preset + time")
        self.runs_root_edit = QLineEdit(str(self.session.runs_root))
        self.runs_root_edit.setToolTip(RUNS_ROOT_TIP)
        self.steps_spin = bounded(QSpinBox(), TrainConfig, "max_steps", most=10**8)
        self.steps_spin.setKeyboardTracking(False)  # "15" typed is 15, not 1 then 15
        self.batch_spin = bounded(QSpinBox(), TrainConfig, "batch_size", most=1024)
        self.lr_spin = bounded(QDoubleSpinBox(decimals=6, singleStep=1e-5), TrainConfig, "lr", most=1.0)
        self.patch_edit = QLineEdit()
        self.val_every_spin = bounded(QSpinBox(), TrainConfig, "val_every", most=10**8)
        self.val_every_spin.setToolTip("Validate every N steps (and always at the last step).")

        # advanced (folded)
        self.fmaps_spin = bounded(QSpinBox(), ModelConfig, "num_fmaps", most=1024)
        self.ensemble_spin = bounded(QSpinBox(), ModelConfig, "ensemble", most=8)
        self.ensemble_spin.setToolTip("Networks trained side by side, each on its own patches; predictions are their "
                                      "mean. Costs that many times the training time and memory; on far-apart "
                                      "data 2 scored better than 1 (docs/training.md, Ensembles).")
        self.lsds_check = QCheckBox("predict LSDs")
        self.lsd_sigma_spin = bounded(QDoubleSpinBox(decimals=2), ModelConfig, "lsd_sigma", most=1000.0)
        self.scheduler_combo = bounded(QComboBox(), TrainConfig, "scheduler")
        self.patience_spin = bounded(QSpinBox(), TrainConfig, "early_stopping_patience", most=10**6)  # 0: "off"
        self.checkpoint_spin = bounded(QSpinBox(), TrainConfig, "checkpoint_every", most=10**8)
        self.keep_spin = bounded(QSpinBox(), TrainConfig, "keep_checkpoints", most=1000)
        self.keep_spin.setToolTip("Periodic checkpoints kept (the newest); best and final are always kept.")
        self.accelerator_combo = bounded(QComboBox(), TrainConfig, "accelerator")
        self.seed_spin = bounded(QSpinBox(), TrainConfig, "seed", least=0, most=2**31 - 1)
        self.accelerator_combo.setToolTip("auto: a CUDA GPU, else Apple MPS, else the CPU; gpu: CUDA or MPS.")

        # self-training (folded): iterations of pseudo-labelling after the supervised iteration 0
        self.selftrain_spin = bounded(QSpinBox(), SelfTrainConfig, "iterations", most=1000)
        self.selftrain_spin.setSpecialValueText("off")  # 0 iterations
        self.selftrain_spin.setToolTip("Self-training iterations after training on the labels: each predicts the "
                                       "unlabelled images (the config's selftrain.unlabelled, else this image), keeps "
                                       "the confident pixels as pseudo-labels and trains again.")
        self.threshold_start_spin = bounded(QDoubleSpinBox(decimals=3, singleStep=0.01), SelfTrainConfig,
                                            "threshold_start")
        self.threshold_end_spin = bounded(QDoubleSpinBox(decimals=3, singleStep=0.01), SelfTrainConfig,
                                          "threshold_end")
        self.threshold_start_spin.setToolTip("Confidence a pixel needs to become a pseudo-label at the first iteration.")
        self.threshold_end_spin.setToolTip("... relaxed linearly to this at the last iteration.")

        self.load_button = QPushButton("Load YAML...")
        self.save_button = QPushButton("Save YAML...")
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.resume_button = QPushButton("Resume")
        self.finetune_button = QPushButton("Fine-tune")
        self.finetune_button.setToolTip("A new run from the current model's weights (the one Predict uses) on the "
                                        "annotation layer, e.g. corrections from Proofread, and the run's own "
                                        "training files.")
        self.finetune_button.setEnabled(False)
        self.stop_button.setEnabled(False)
        self.resume_button.setEnabled(False)
        self.state_label = QLabel(self.state)
        self.state_label.setObjectName("state")
        self.device_label = QLabel("device: ...")  # what the Accelerator setting trains on (segtrain.device)
        self.device_label.setObjectName("device")
        self.device_label.setWordWrap(True)
        self.run_dir_label = QLabel("run folder: -")
        self.run_dir_label.setWordWrap(True)
        self.tensorboard_button = QPushButton("Copy TensorBoard command")
        self.tensorboard_button.setEnabled(False)
        # the loss plot is made when there is something to plot: importing matplotlib and drawing
        # empty axes took about a second of the GUI thread when the panel opened
        self.canvas = self.figure = self.loss_axes = self.metric_axes = None
        self.plot_box = QWidget()
        QVBoxLayout(self.plot_box).setContentsMargins(0, 0, 0, 0)
        self.plot_box.setVisible(False)
        self.preview_label = QLabel("preview: raw | target | prediction (after the first validation)")
        self.preview_label.setWordWrap(True)
        self.preview_label.setAlignment(Qt.AlignCenter)
        self.status = status_label()

        advanced = QWidget()
        aform = compact(QFormLayout(advanced))
        aform.setContentsMargins(0, 0, 0, 0)
        aform.addRow("Feature maps", self.fmaps_spin)
        aform.addRow("Networks (ensemble)", self.ensemble_spin)
        aform.addRow(self.lsds_check)
        aform.addRow("LSD sigma", self.lsd_sigma_spin)
        aform.addRow("LR schedule", self.scheduler_combo)
        aform.addRow("Patience", self.patience_spin)
        aform.addRow("Checkpoint every", self.checkpoint_spin)
        aform.addRow("Keep periodic", self.keep_spin)
        aform.addRow("Accelerator", self.accelerator_combo)
        aform.addRow("Seed", self.seed_spin)

        selftrain = QWidget()
        sform = compact(QFormLayout(selftrain))
        sform.setContentsMargins(0, 0, 0, 0)
        sform.addRow("Iterations", self.selftrain_spin)
        sform.addRow("Threshold start", self.threshold_start_spin)
        sform.addRow("Threshold end", self.threshold_end_spin)
        self.selftrain_group = Foldable("Self-training", selftrain)

        form = compact(QFormLayout())
        form.addRow("Preset", self.preset_combo)
        form.addRow("Task", self.task_label)
        form.addRow("Trains on", self.pair_label)
        form.addRow("Run name", self.name_edit)
        form.addRow("Runs folder", self.runs_root_edit)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Batch size", self.batch_spin)
        form.addRow("Learning rate", self.lr_spin)
        form.addRow("Patch shape", self.patch_edit)
        form.addRow("Validate every", self.val_every_spin)
        form.addRow(Foldable("Advanced", advanced))
        form.addRow(self.selftrain_group)
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
        layout.addWidget(self.finetune_button)
        layout.addWidget(self.state_label)
        layout.addWidget(self.device_label)
        layout.addWidget(self.plot_box)
        layout.addWidget(self.preview_label)
        layout.addWidget(self.run_dir_label)
        layout.addWidget(self.tensorboard_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.preset_combo.currentTextChanged.connect(self.load_preset)
        self.steps_spin.valueChanged.connect(self._steps_changed)
        self.accelerator_combo.currentTextChanged.connect(lambda _: self._show_device())
        # clicked(bool) must not reach a slot that takes an argument: a real click passes False
        self.load_button.clicked.connect(lambda: self._load_yaml_dialog())
        self.save_button.clicked.connect(lambda: self._save_yaml_dialog())
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button.clicked.connect(lambda: self.stop())
        self.resume_button.clicked.connect(lambda: self.resume())
        self.finetune_button.clicked.connect(lambda: self.fine_tune())
        self.tensorboard_button.clicked.connect(lambda: self.copy_tensorboard_command())
        self.session.changed.connect(self._session_changed)
        self.session.changed.connect(self._show_pair)
        napari_viewer.layers.events.inserted.connect(self._show_pair)
        napari_viewer.layers.events.removed.connect(self._show_pair)

        self._lines: dict = {}
        self._draw_throttle = Throttle(lambda _: self.canvas is not None and self.canvas.draw_idle(), 1000, self)
        self._clear_plot()
        self.preset_combo.setCurrentText(self.task_preset() or self.preset_combo.currentText())
        self.load_preset(self.preset_combo.currentText())
        self._show_task()
        self._show_pair()
        self._set_buttons()
        warm_up_imports()  # PyTorch loads in the background now, not on the first Start
        self._show_device()  # after it: the device worker waits for the warm-up instead of importing beside it
        self.fit()

    # --- config <-> form -----------------------------------------------------------------------
    def image_ndim(self) -> int | None:
        image = self._layer(self.session.image_layer)
        return None if image is None else L.spatial_ndim(image)

    def task_preset(self) -> str | None:
        """The preset for the task chosen in Data & annotation and the image's dimensions."""
        task = find_task(self.session.task)
        return task.preset(self.image_ndim() or 3) if task is not None else None

    def _session_changed(self, key: str) -> None:
        if key in ("task", "image_layer") and not self.is_running():
            preset = self.task_preset()
            if preset and self.preset_combo.findText(preset) >= 0:
                self.preset_combo.setCurrentText(preset)
            self._show_task()
        elif key == "runs_root" and not self.is_running():
            self.runs_root_edit.setText(str(self.session.runs_root))
        elif key in ("run_dir", "checkpoint") and not self.is_running():
            self._set_buttons()

    def _show_task(self) -> None:
        ndim = self.image_ndim()
        text = L.TASKS.get(self.session.task, self.session.task)
        self.task_label.setText(f"{text}{'' if ndim is None else f', {ndim}D'} (from Data)")

    def load_preset(self, name: str) -> None:
        try:
            self.set_config(preset(name))
        except Exception as error:  # noqa: BLE001
            notify_error(f"Preset '{name}' could not be loaded: {error}", self.status)

    def _steps_changed(self, steps: int) -> None:
        """Validation never waits longer than the run: its interval is capped by the steps."""
        if self.val_every_spin.value() > steps:
            self.val_every_spin.setValue(steps)

    def _fields(self) -> list[tuple[str, Any]]:
        """(config section.attribute, form widget) pairs: the form <-> Config mapping."""
        return [
            ("train.max_steps", self.steps_spin), ("train.batch_size", self.batch_spin),
            ("train.lr", self.lr_spin), ("data.patch_shape", self.patch_edit),
            ("train.val_every", self.val_every_spin), ("model.num_fmaps", self.fmaps_spin),
            ("model.ensemble", self.ensemble_spin),
            ("model.lsds", self.lsds_check), ("model.lsd_sigma", self.lsd_sigma_spin),
            ("train.scheduler", self.scheduler_combo),
            ("train.early_stopping_patience", self.patience_spin),  # 0 shows "off" = None
            ("train.checkpoint_every", self.checkpoint_spin),
            ("train.keep_checkpoints", self.keep_spin),
            ("train.accelerator", self.accelerator_combo), ("train.seed", self.seed_spin),
        ]

    def set_config(self, config) -> None:
        self.config = config
        for path, widget in self._fields():
            section, name = path.split(".")
            set_widget_value(widget, getattr(getattr(config, section), name))
        self.lsds_check.setVisible(task_of(config).agglomerates)
        self.lsd_sigma_spin.setEnabled(task_of(config).agglomerates)
        self._show_selftrain(config)

    def _show_selftrain(self, config) -> None:
        """The Self-training group from the config (the first class's thresholds when it lists several)."""
        s = config.selftrain
        self.selftrain_spin.setValue(s.iterations)
        for spin, value in ((self.threshold_start_spin, s.threshold_start), (self.threshold_end_spin, s.threshold_end)):
            spin.setValue(value[0] if isinstance(value, list) else value)

    def _apply_selftrain(self, config) -> None:
        """The Self-training group into ``config`` (thresholds that list classes stay unless edited)."""
        s = config.selftrain
        s.iterations = self.selftrain_spin.value()
        for name, spin in (("threshold_start", self.threshold_start_spin), ("threshold_end", self.threshold_end_spin)):
            old = getattr(s, name)
            if not isinstance(old, list) or abs(old[0] - spin.value()) > 1e-9:
                setattr(s, name, spin.value())

    def current_config(self):
        """The form as a validated Config (raises ConfigError/ValueError with a readable message)."""
        config = self.config.copy()
        for path, widget in self._fields():
            section, name = path.split(".")
            try:
                value = widget_value(widget)
            except ValueError as error:  # e.g. letters typed as the patch shape: name the field
                raise ValueError(f"{path}: {error}") from None
            setattr(getattr(config, section), name, value)
        t, m, d = config.train, config.model, config.data
        set_max_steps(config, t.max_steps)
        if t.threads is None and t.accelerator != "gpu":
            # leave one CPU core to the GUI: torch on every core starves napari's event loop
            t.threads = max(1, (os.cpu_count() or 2) - 1)
        chosen = find_task(self.session.task)  # the task chosen in Data & annotation
        if chosen is not None and chosen.label and self.image_ndim() in (None, config.ndim):
            m.task = chosen.name
        if self.session.voxel_size and len(self.session.voxel_size) == config.ndim:
            d.voxel_size = list(self.session.voxel_size)
        if self.name_edit.text().strip():
            config.name = self.name_edit.text().strip()
        self._apply_selftrain(config)
        return config.validate()

    def _show_device(self) -> None:
        """Say which device and precision training would use (asked in a worker: querying the GPU
        can take a second)."""
        try:
            t = self.current_config().train
        except Exception:  # noqa: BLE001 - a half-typed field: the loaded config's settings
            t = self.config.train
        start_worker(_device_line, t.accelerator, t.precision, t.threads, action="Finding the device",
                     on_return=self._set_device_line)

    def _set_device_line(self, line: str) -> None:
        try:
            self.device_label.setText(f"device: {line}")
        except RuntimeError:  # the panel was closed before the answer came
            pass

    def load_yaml(self, path: str | Path) -> None:
        try:
            self.set_config(load_config(path))
        except Exception as error:  # noqa: BLE001
            notify_error(str(error) if "segtrain" in type(error).__module__ else
                         f"Could not load the config {path}: {error}", self.status)
            return
        self.status.setText(f"Loaded {path}")

    def save_yaml(self, path: str | Path) -> None:
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

    def training_layers(self, fine_tune: bool = False) -> tuple[Any, Any, Any]:
        """The (image, annotation, ground truth) layers a run trains on, always a pair of one image:
        Start takes the image chosen in Data & annotation with its annotation (which must not be
        another image's) or ground truth; Fine-tune takes the annotation (Proofread's corrections)
        with the image it was made on, whatever Data shows. Ground truth of another image is not
        used. ValueError (InputError) with one sentence when the pair cannot be told."""

        annotation = self._layer(self.session.annotation_layer)
        gt = self._layer(self.session.gt_layer)
        if fine_tune and annotation is not None:
            image = L.source_image(annotation, self.viewer)
        else:
            image = self._layer(self.session.image_layer)
            if image is None:
                raise InputError("No image layer to train on: open an image and choose it in "
                                 "Data & annotation, then start training.")
            made_on = None if annotation is None else L.image_of(annotation, self.viewer)
            if made_on not in (None, image.name):
                raise InputError(f"The annotation '{annotation.name}' was made on the image '{made_on}', not on "
                                 f"'{image.name}'; choose them together in Data & annotation.")
        if gt is not None and L.image_of(gt, self.viewer) not in (None, image.name):
            gt = None  # the ground truth of another image neither trains nor validates
        return image, annotation, gt

    def pair_text(self) -> str:
        """What Start (and Fine-tune, where a model exists) would train on, or why it cannot."""
        def describe(fine_tune: bool) -> str:
            try:
                image, annotation, gt = self.training_layers(fine_tune)
            except ValueError as error:
                return str(error)
            if annotation is None and gt is None:
                return f"'{image.name}', no labels yet"
            labels = f"annotation '{annotation.name}'" if annotation is not None else f"ground truth '{gt.name}'"
            check = f", validated on '{gt.name}'" if annotation is not None and gt is not None else ""
            return f"'{image.name}' with {labels}{check}"

        start = describe(False)
        model = self.session.checkpoint or self.session.run_dir
        if model is None or self._layer(self.session.annotation_layer) is None:
            return start
        tune = describe(True)
        return start if tune == start else f"Start: {start}\nFine-tune: {tune}"

    def _show_pair(self, *_: Any) -> None:
        self.pair_label.setText(self.pair_text())

    def training_arrays(self, fine_tune: bool = False) -> dict:
        """raw, labels, known, val_labels and voxel_size from :meth:`training_layers` (the
        annotation trains; the ground truth validates, or trains when there is no annotation);
        ValueError with one sentence when something is missing."""
        image, annotation, gt = self.training_layers(fine_tune)
        shape = L.spatial_shape(image)
        for role, layer in (("annotation", annotation), ("ground-truth", gt)):
            if layer is not None and tuple(layer.data.shape) != shape:
                raise ValueError(f"The {role} layer '{layer.name}' has shape "
                                 f"{tuple(layer.data.shape)} but the image has shape {shape}; "
                                 "choose labels of the image's shape.")
        voxel_size = self.session.voxel_size if image.name == self.session.image_layer else None
        out = {"raw": np.asarray(image.data), "voxel_size": voxel_size or L.spatial_scale(image),
               "known": None, "val_labels": None}
        if annotation is not None:
            labels, known = L.training_arrays(np.asarray(annotation.data), self.session.sparse)
            if not known.any():
                raise ValueError(f"The annotation layer '{annotation.name}' is empty: paint some "
                                 "objects (and background) first, or choose a ground-truth layer.")
            out.update(labels=labels, known=known)
            if gt is not None:
                out["val_labels"] = np.asarray(gt.data)
        elif gt is not None:
            out["labels"] = np.asarray(gt.data)
        else:
            raise ValueError("No labels to train on: create and paint an annotation layer (or "
                             "choose a ground-truth layer) in Data & annotation.")
        return out

    def batch_corrections(self) -> list[tuple]:
        """Fine-tune after proofreading a batch: ``(raw, labels, known, voxel size)`` of each other
        image's corrections layer (Proofread's, :attr:`Session.batch_corrections`), each paired with
        the image it was made on; ValueError (InputError) with one sentence when an image is closed."""
        pairs = []
        for name in self.session.batch_corrections:
            layer = self._layer(name)
            if layer is None or name == self.session.annotation_layer:
                continue
            image = L.source_image(layer, self.viewer)
            labels, known = L.training_arrays(np.asarray(layer.data), self.session.sparse)
            if known.any():
                pairs.append((np.asarray(image.data), labels, known, tuple(L.spatial_scale(image))))
        return pairs

    # --- run control ---------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.worker is not None

    def start(self, resume: str | Path | None = None, init_from: str | Path | None = None) -> None:
        """Start a new run (or continue ``resume``, or fine-tune ``init_from``'s weights) from the
        form and the chosen layers."""
        if self.is_running():
            notify_error("A training run is already going: stop it before starting another.", self.status)
            return
        try:
            arrays = self.training_arrays(fine_tune=init_from is not None)  # the pair first: what it trains on
            if init_from is not None:
                config = fine_tune_config(Path(init_from), self.steps_spin.value())
            else:
                config = self.current_config() if resume is None else None
        except Exception as error:  # noqa: BLE001 - any problem before the run is one sentence
            notify_error(str(error).strip().splitlines()[0] if str(error).strip() else
                         f"Starting training failed: {type(error).__name__}.", self.status)
            return
        root = typed_runs_root(self.runs_root_edit.text(), self.session.runs_root)
        blocking = next((p for p in (root, *root.parents) if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            notify_error(f"The runs folder {root} cannot be made: {blocking} is a file; choose another runs folder.",
                         self.status)
            return
        try:
            more = self.batch_corrections() if init_from is not None else []
        except ValueError as error:
            notify_error(str(error), self.status)
            return
        self.job = TrainingJob(config, arrays["raw"], arrays["labels"], arrays["known"], arrays["val_labels"],
                               tuple(arrays["voxel_size"]), root,
                               name=config.name if config is not None and self.name_edit.text().strip() else None,
                               resume=None if resume is None else Path(resume), max_steps=self.steps_spin.value(),
                               init_from=None if init_from is None else Path(init_from), more=more)
        if init_from is not None:
            self.job.name = config.name

        if config is not None:
            self._monitor = monitor_metric(config)[0].removeprefix("val/")
        if resume is None or not self.history:
            self.history = {}
            self._last_metrics = {}
            self._clear_plot()
            if resume is not None:
                self._history_from_run(Path(resume))
        self.last_report = None
        self._iteration_text = ""
        self.session.set(runs_root=root)
        self.progress = progress(total=self.steps_spin.value(), desc="Training")
        self._set_state("preparing")
        self.status.setText("")
        # full garbage collections scan every object and stall the GUI whichever thread triggers
        # them: what exists now is frozen (segtrain.plugin.collector; a removed layer unfreezes)
        collector.freeze()
        self.worker = start_worker(
            training_reports, self.job, on_yield=self.on_report, on_finish=self._finished,
            on_error=self._on_error, action="Training", status=self.status, throttle_ms=200,
        )
        self._set_buttons()

    def stop(self) -> None:
        if self.job is not None and self.is_running():
            self.job.stop.set()
            self._set_state("stopping")
            self._set_buttons()

    def resume(self) -> None:
        run_dir = self.run_dir or self.session.run_dir
        if run_dir is None:
            notify_error("No run to resume: start a run first or load one in Runs.", self.status)
            return
        self.start(resume=run_dir)

    def fine_tune(self) -> None:
        """A new run from the current model's weights (Predict's) on the annotation layer."""
        parent = self.session.checkpoint or self.session.run_dir
        if parent is None:
            notify_error("No model to fine-tune: train one, or pick a run in Runs (Use in Predict).", self.status)
            return
        self.start(init_from=parent)

    def _set_buttons(self) -> None:
        running = self.is_running()
        self.finetune_button.setEnabled(not running and (self.session.checkpoint or self.session.run_dir) is not None)
        self.start_button.setEnabled(not running)
        self.resume_button.setEnabled(not running and (self.run_dir or self.session.run_dir) is not None)
        self.stop_button.setEnabled(running and self.state != "stopping")

    def _set_state(self, state: str, text: str | None = None) -> None:
        self.state = state
        self.state_label.setText(text or state)

    def _finished(self) -> None:
        self.worker = None
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        report = self.last_report
        if self.state != "failed":
            if report is not None and report.done:
                verb = {"stopped": "stopped", "early stopping": "stopped early"}.get(report.message, "finished")
                where = "" if report.iteration is None else f" iteration {report.iteration[0]}/{report.iteration[1]}"
                self._set_state(verb, f"{verb}{where} at step {report.step} / {report.max_steps}")
                last_iteration = f" ({self._iteration_text})" if report.iteration and self._iteration_text else ""
                fine_tune = f"; {self._fine_tune_text()}" if self._fine_tune_text() else ""
                notify_info(f"Training {verb}{where} at step {report.step} of {report.max_steps}{last_iteration}; "
                            f"run folder {self.run_dir}{fine_tune}.", self.status)
            else:
                self._set_state("stopped", "stopped before the first step")
        if self.run_dir is not None:
            self.session.set(run_dir=self.run_dir, checkpoint=self.run_dir)
        self._set_buttons()

    def _fine_tune_text(self) -> str:
        """What the run being shown fine-tunes at (its run.json), "" for a run from scratch."""

        record = None if self.run_dir is None else RunFolder(self.run_dir).fine_tune()
        return "" if record is None else fine_tune_note(record)

    def _on_error(self, message: str) -> None:
        self._set_state("failed", f"failed: {message}")

    def on_report(self, report) -> None:
        """Show a report: state, progress, the loss plot and the preview (GUI thread, throttled)."""
        if isinstance(report, str):  # before the run exists
            if self.state != "stopping":
                self._set_state("preparing", f"preparing: {report}")
            return
        if hasattr(report, "kept"):  # a self-training iteration ended
            self._iteration_text = report.describe()
            self.status.setText(self._iteration_text)
            return
        if report.run_dir is not None and report.run_dir != self.run_dir:
            self.run_dir = Path(report.run_dir)
            self.run_dir_label.setText(f"run folder: {self.run_dir}")
            if self._fine_tune_text():  # the rate it fine-tunes at stays in the status line
                self.status.setText(self._fine_tune_text())
            self.tensorboard_button.setEnabled(True)
            self.session.set(run_dir=self.run_dir)
        if report.phase == "preparing":
            if self.state != "stopping":
                self._set_state("preparing", f"preparing: {report.message}")
            return
        self.last_report = report
        step = int(report.step)
        # self-training: iterations train one after another; the plot and the bar count all their steps
        index, last = report.iteration or (0, 0)
        offset = index * int(report.max_steps)
        if self.progress is not None:
            self.progress.total = int(report.max_steps) * (last + 1)
            self.progress.update(max(0, offset + step - self.progress.n))
        text = f"step {step} / {report.max_steps}"
        if report.phase == "validating":
            text = f"validating at step {step} / {report.max_steps}"
        if report.iteration is not None:
            text = f"iteration {index}/{last}: {text}"
        step += offset
        if "loss" in report.losses and report.phase == "training":
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
        if self.state != "stopping" and not report.done:
            self._set_state("training" if report.phase == "training" else report.phase, text)
        if report.preview is not None:
            self.show_preview(np.asarray(report.preview))
        self.plot()

    def _record(self, key: str, step: int, value: float) -> None:
        points = self.history.setdefault(key, [])
        if points and points[-1][0] == step:
            points[-1] = (step, float(value))
        elif not points or points[-1][0] < step:
            points.append((step, float(value)))

    def _history_from_run(self, run_dir: Path) -> None:
        """The validation records of a run this panel did not train (Resume after loading it)."""

        for record in RunFolder(run_dir).history():
            step = int(record.get("step", 0))
            for key, name in (("train/loss", "train loss"), ("val/loss", "val loss"),
                              (f"val/{self._monitor}", f"val {self._monitor}")):
                if key in record and np.isfinite(record[key]):
                    self._record(name, step, record[key])

    def show_preview(self, preview: np.ndarray) -> None:
        """The run's preview (a 2D ``raw | target | prediction`` strip) in the panel."""
        self.preview = preview
        pixmap = array_to_pixmap(preview, self.PREVIEW_HEIGHT)
        room = max(self.preview_label.width(), self.width() - 24, 120)  # the panel's width: no sideways scrolling
        if pixmap.width() > room:
            pixmap = pixmap.scaledToWidth(room, Qt.SmoothTransformation)
        label = self.preview_label
        label.setWordWrap(False)  # a wrapping label asks its height for its width, which a picture has not: 0 px
        label.setMinimumHeight(pixmap.height())
        label.setPixmap(pixmap)
        self.preview_label.setToolTip("raw | target | prediction (validation patch)")

    def plot(self) -> None:
        """Update the loss plot's lines in place; the canvas redraws at most once a second."""
        self._make_plot()
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

    def _make_plot(self) -> None:
        """The loss plot (losses and the validation metric against step), made once and shown."""
        if self.canvas is None:
            self.canvas, self.figure = mpl_canvas(2.2)
            self.loss_axes = self.figure.add_subplot(111)
            self.metric_axes = self.loss_axes.twinx()
            self.plot_box.layout().addWidget(self.canvas)
            self._label_axes()
        self.plot_box.setVisible(True)

    def _label_axes(self) -> None:
        self.loss_axes.set_xlabel("step")
        self.loss_axes.set_ylabel("loss")
        self.metric_axes.set_ylabel("validation metric")

    def _clear_plot(self) -> None:
        if self.canvas is None:
            return
        for line in self._lines.values():
            line.remove()
        self._lines = {}
        legend = self.loss_axes.get_legend()
        if legend is not None:
            legend.remove()
        self._label_axes()
        self.canvas.draw_idle()

    def tensorboard_command(self) -> str:
        run_dir = self.run_dir or self.session.run_dir or typed_runs_root(self.runs_root_edit.text(), self.session.runs_root)
        return f"tensorboard --logdir {shlex.quote(str(Path(run_dir).resolve()))}"

    def copy_tensorboard_command(self) -> None:
        command = self.tensorboard_command()
        QApplication.clipboard().setText(command)
        self.status.setText(f"Copied: {command}")

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt name
        self.stop()
        super().closeEvent(event)
