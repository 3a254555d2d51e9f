"""Predict dock widget: choose a run (and which of its checkpoints: the newest readable one unless
told otherwise, with its step) and an image layer, predict in the background with progress, and
show affinities (RGB), LSDs (RGB of chosen channels, hidden at first) and probabilities (images)
aligned with the input, half transparent over it; with "Uncertainty" (which needs test-time
augmentation) also the disagreement between the augmented predictions (hidden at first). A
BioImage.IO model package ("Load BioImage.IO model..."): one segtrain exported runs as its run did;
another zoo model runs through bioimageio.core, its outputs shown as image layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import LayerCombo, Panel, compact, file_dialog, status_label
from segtrain.plugin.workers import (
    LatestOnly,
    ProgressRelay,
    notify_error,
    notify_info,
    notify_warning,
    start_worker,
)
from segtrain.config import PRESETS
from segtrain.errors import InputError
from segtrain.plugin.workers import release_gpu_memory
from segtrain.runs import RunFolder
from segtrain.tasks import AFFINITIES, LSDS, PROBABILITIES, is_lsds, is_probabilities

FEW_STEPS_FRACTION = 0.1  # a model trained for less than this share of its preset's steps is warned about


def run_prediction(checkpoint: str, which: str, raw, voxel_size, progress, augment: bool = False,
                   rgb: bool = False, uncertainty: bool = False, match_size: bool = False):
    """Worker body: load the model (a run folder's ``which`` checkpoint, or a file), tiled
    prediction (with ``augment``: averaged over every test-time transform the voxel size allows;
    with ``uncertainty`` too, which needs ``augment``: also the ``uncertainty`` output); returns
    (outputs, how they were made (a :class:`~segtrain.record.PredictionRecord`), what was loaded, a
    warning or ""); with ``match_size`` a tuned 2D mask/instance model predicts the image zoomed to
    its object size (:mod:`segtrain.predict.match_size`)."""
    import numpy as np

    from segtrain.predict import load_model
    from segtrain.predict.infer import predict_matched
    from segtrain.predict.match_size import matching_applies
    from segtrain.predict.tta import tta_counts

    from segtrain.predict.model_io import default_device, open_model
    from segtrain.predict.package import ZooModel, is_package

    try:
        loaded = open_model(checkpoint) if is_package(checkpoint) else load_model(checkpoint, which=which)
        if isinstance(loaded, ZooModel):
            image = np.moveaxis(np.asarray(raw), -1, 0) if rgb else raw
            return loaded.predict(image, default_device()), None, loaded.describe(), ""
        if rgb:  # napari's RGB(A) images have their channels last
            channels = loaded.config.data.in_channels
            if channels != raw.shape[-1]:
                raise InputError(f"The image is RGB{'A' if raw.shape[-1] == 4 else ''} but the model takes {channels} "
                                 f"channel{'s' if channels > 1 else ''}; convert the image to grayscale first.")
            raw = np.moveaxis(np.asarray(raw), -1, 0)
        tta = max(tta_counts(loaded.config.ndim, voxel_size)) if augment else None
        outputs, factors = predict_matched(loaded, raw, voxel_size=voxel_size, progress=progress, tta=tta,
                                           uncertainty=uncertainty, match_size=match_size)
        matched = matching_applies(loaded.config, match_size)
        record = loaded.record(tta=tta or loaded.config.predict.tta,
                               object_scale=[round(float(f), 4) for f in factors] if matched else None)
        described = loaded.describe() + (f", test-time augmentation x{tta}" if tta else "")
        if matched:
            zoomed = [f for f in factors if f != 1.0]
            described += (f", objects matched to the model's size (image zoomed {zoomed[0]:.2f}x)" if len(factors) == 1
                          and zoomed else f", objects matched to the model's size ({len(zoomed)} of {len(factors)} "
                          "images zoomed)" if zoomed else ", objects already at the model's size")
        return outputs, record, described, few_steps_warning(loaded.config, loaded.step)
    finally:
        release_gpu_memory()


def few_steps_warning(config, step: int) -> str:
    """A sentence when a model was trained for a small share of its preset's steps, else ""."""

    if config.preset not in PRESETS:
        return ""
    planned = PRESETS[config.preset]().train.max_steps
    if step >= FEW_STEPS_FRACTION * planned:
        return ""
    return (f"This model was trained for only {step} steps (the {config.preset} preset plans {planned}); "
            "its predictions are probably poor: train longer before trusting them.")


def checkpoint_choices(path: str) -> list[tuple[str, str]]:
    """Worker body: ``(label, which)`` for each checkpoint of a run folder, newest readable first
    (``which`` is what :func:`segtrain.predict.load_model` takes); a file gives itself."""

    if Path(path).is_file():
        return [(Path(path).name, "newest")]
    folder = RunFolder(path)
    choices = []
    for info in folder.checkpoints():
        if info.readable:
            choices.append((info.describe(), info.name))
    if choices:
        label, _ = choices[0]
        choices[0] = (f"newest: {label}", "newest")
    return choices


class PredictWidget(Panel):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = L.session(napari_viewer)
        self.worker = None
        self.relay = None
        self.result_layers: dict[str, Any] = {}
        self._image = None  # the image layer the newest prediction is for

        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("run folder or checkpoint file")
        self.browse_button = QPushButton("Browse...")
        self.zoo_button = QPushButton("Load BioImage.IO model...")
        self.zoo_button.setToolTip(
            "A BioImage.IO model package (.zip or rdf.yaml): one segtrain exported predicts exactly as its run (then "
            "Segment, tune and proofread as usual); other 2D/3D zoo models with PyTorch weights run through "
            "bioimageio.core with their own processing.")
        self.zoo_dialog = None
        self.image_combo = LayerCombo(napari_viewer, ("Image",),
                                      predicate=lambda layer: L.layer_info(layer) is None)
        self.tta_check = QCheckBox("Test-time augmentation")
        self.tta_check.setToolTip("Average the predictions of the image's flips (and in-plane transposes where "
                                  "the voxel size allows): better, and as many times slower as transforms.")
        self.uncertainty_check = QCheckBox("Uncertainty")
        self.uncertainty_check.setToolTip(
            "Also show where the augmented predictions disagree (their standard deviation; bright = unsure): "
            "the places to check or annotate next. Needs test-time augmentation, which ticking this turns on.")
        self.match_check = QCheckBox("Match object size")
        self.match_check.setChecked(False)
        self.match_check.setToolTip(
            "Cells and spheroids (2D mask/instance runs tuned with segtrain tune): measure the image's objects with "
            "a first pass and predict it zoomed so they have the size the model was tuned at, as Cellpose "
            "rescales to its cell diameter. Images like the training images are not zoomed. Off by default: it "
            "helps where only the magnification differs, and lowered F1 on real new dishes (docs/training.md).")
        self.which_combo = QComboBox()
        self.which_combo.setToolTip("Which checkpoint of the run: the newest readable one by default.")
        self.model_label = QLabel("model: -")
        self.model_label.setWordWrap(True)
        self.lsd_channels = [QSpinBox(minimum=0, maximum=9) for _ in range(3)]
        for i, spin in enumerate(self.lsd_channels):
            spin.setValue(i)
        self.predict_button = QPushButton("Predict")
        self.status = status_label()

        checkpoint_row = QHBoxLayout()
        checkpoint_row.addWidget(self.checkpoint_edit, 1)
        checkpoint_row.addWidget(self.browse_button)
        channel_row = QHBoxLayout()
        for spin in self.lsd_channels:
            channel_row.addWidget(spin)
        form = compact(QFormLayout())
        form.addRow("Run", checkpoint_row)
        form.addRow("Checkpoint", self.which_combo)
        for check in (self.tta_check, self.uncertainty_check, self.match_check):  # one a row, as wide as its text
            row = QHBoxLayout()
            row.addWidget(check)
            row.addStretch(1)
            form.addRow(row)
        form.addRow("Image", self.image_combo)
        form.addRow("LSD channels", channel_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.zoo_button)
        layout.addWidget(self.predict_button)
        layout.addWidget(self.model_label)
        layout.addWidget(self.status)
        layout.addStretch(1)

        # clicked(bool) must not reach a slot that takes an argument: a real click passes False
        self.choices_job = LatestOnly(checkpoint_choices, self._show_choices, "Reading the run's checkpoints",
                                      self.status)
        self.browse_button.clicked.connect(lambda: self._browse())
        self.zoo_button.clicked.connect(lambda: self._choose_package())
        self.predict_button.clicked.connect(lambda: self.predict())
        # uncertainty is the disagreement between augmented predictions: one needs the other
        self.uncertainty_check.toggled.connect(lambda on: on and self.tta_check.setChecked(True))
        self.tta_check.toggled.connect(lambda on: on or self.uncertainty_check.setChecked(False))
        self.checkpoint_edit.editingFinished.connect(lambda: self.refresh_checkpoints())
        for spin in self.lsd_channels:
            spin.valueChanged.connect(self._update_lsd_channels)
        self.session.changed.connect(self._session_changed)
        napari_viewer.layers.events.removed.connect(self._layer_removed)
        if self.session.image_layer:
            self.image_combo.set_layer(self.session.image_layer)
        self._session_changed("checkpoint")
        self.fit()

    def _layer_removed(self, event=None) -> None:
        """Forget closed layers (the predictions shown, the image predicted on): the panel must
        not keep their data alive."""
        layers = self.viewer.layers
        self.result_layers = {kind: layer for kind, layer in self.result_layers.items() if layer in layers}
        if self._image is not None and self._image not in layers and self.worker is None:
            self._image = None

    def _session_changed(self, key: str) -> None:
        if key in ("checkpoint", "run_dir"):
            path = self.session.checkpoint or self.session.run_dir
            if path is not None:
                self.set_checkpoint(path)
        elif key == "image_layer" and self.session.image_layer:
            self.image_combo.set_layer(self.session.image_layer)

    def set_checkpoint(self, path: str | Path) -> None:
        self.checkpoint_edit.setText(str(path))
        self.refresh_checkpoints()

    def refresh_checkpoints(self) -> None:
        """List the run's checkpoints with their steps (read in the background)."""
        path = self.checkpoint_edit.text().strip()
        if not path or not Path(path).exists():
            self.which_combo.clear()
            return
        self.choices_job.submit(path)

    def _show_choices(self, choices: list[tuple[str, str]]) -> None:
        self.which_combo.clear()
        for label, which in choices:
            self.which_combo.addItem(label, which)
        if not choices:
            self.model_label.setText("model: this run has no readable checkpoint yet")

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Run folder", str(self.session.runs_root))
        if path:
            self.set_checkpoint(path)

    def _choose_package(self) -> None:
        self.zoo_dialog = file_dialog(self, "BioImage.IO model package", str(self.session.runs_root),
                                      "BioImage.IO model (*.zip *rdf.yaml *bioimageio.yaml)", False,
                                      self._package_chosen)

    def _package_chosen(self, path: str) -> None:
        self.zoo_dialog = None
        self.set_checkpoint(path)
        notify_info(f"Model package {Path(path).name} chosen; press Predict.", self.status)

    def predict(self) -> None:
        image = self.image_combo.layer()
        checkpoint = self.checkpoint_edit.text().strip()
        if image is None:
            notify_error("No image layer to predict on: open an image first.", self.status)
            return
        if not checkpoint:
            notify_error("No model chosen: train a run or pick a run folder / checkpoint first.",
                         self.status)
            return
        if not Path(checkpoint).exists():
            notify_error(f"The run or checkpoint {checkpoint} does not exist; pick another.",
                         self.status)
            return
        if self.worker is not None:
            notify_error("A prediction is already running; wait for it to finish.", self.status)
            return
        self.predict_button.setEnabled(False)
        self.status.setText("Predicting ...")
        self.relay = ProgressRelay("Predicting")
        self._image = image
        which = self.which_combo.currentData() or "newest"
        self.worker = start_worker(
            run_prediction, checkpoint, which, image.data, L.spatial_scale(image), self.relay,
            self.tta_check.isChecked(), bool(getattr(image, "rgb", False)), self.uncertainty_check.isChecked(),
            self.match_check.isChecked(), on_return=self.show_predictions, on_finish=self._finished,
            action="Prediction", status=self.status,
        )

    def _finished(self) -> None:
        self.worker = None
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        self.predict_button.setEnabled(True)

    def show_predictions(self, result) -> None:
        outputs, record, loaded, warning = result
        self.model_label.setText(f"model: {loaded}")
        if record is None:  # a zoo model segtrain did not export: its outputs as they are
            self._show_zoo_outputs(outputs, loaded)
            return
        task = record.task
        # how the prediction was made travels with it (Segment starts from the run's settings),
        # the same record `segtrain predict` writes into its files
        info = L.LayerInfo.of_record(AFFINITIES, record)
        image = self._image
        self.result_layers = {}
        for kind in (LSDS, PROBABILITIES, AFFINITIES):  # affinities last = on top, active
            if outputs.get(kind) is None:
                continue
            array = outputs[kind]
            if is_probabilities(kind):
                for suffix, channel in L.probability_layers(array, task):
                    data, kwargs = L.prediction_layer_args(array, image, f"{image.name} {suffix}",
                                                         kind, channel=channel, info=info)
                    layer = L.upsert_layer(self.viewer, "image", data, **kwargs)
                    self.result_layers.setdefault(kind, layer)
                continue
            channels = tuple(s.value() for s in self.lsd_channels) if is_lsds(kind) else (0, 1, 2)
            data, kwargs = L.prediction_layer_args(array, image, f"{image.name} {kind}", kind,
                                                 channels, info=info)
            self.result_layers[kind] = L.upsert_layer(self.viewer, "image", data, **kwargs)
        if outputs.get("uncertainty") is not None:
            active = self.viewer.layers.selection.active  # the prediction stays the active layer
            data, kwargs = L.uncertainty_layer_args(outputs["uncertainty"], image, f"{image.name} uncertainty",
                                                    info=info)
            self.result_layers["uncertainty"] = L.upsert_layer(self.viewer, "image", data, **kwargs)
            self.viewer.layers.selection.active = active
        else:
            name = f"{image.name} uncertainty"
            if name in self.viewer.layers and getattr(L.layer_info(self.viewer.layers[name]), "kind", None) \
                    == "uncertainty":
                self.viewer.layers.remove(name)  # it belonged to the previous prediction
        if warning:
            notify_warning(warning, self.status)
        else:
            notify_info(f"Predicted {', '.join(self.result_layers)} for '{image.name}' with {loaded}.", self.status)

    def _show_zoo_outputs(self, outputs, described: str) -> None:
        """Each output of a zoo model as an image layer (channels as napari's first axis), on the image."""
        image = self._image
        self.result_layers = {}
        scale, translate = L.spatial_scale(image), L.spatial_translate(image)
        for name, array in outputs.items():
            data = array[0] if array.shape[0] == 1 else array
            channels = data.ndim - len(scale)  # a channel axis before the image's own: unscaled, unmoved
            self.result_layers[name] = L.upsert_layer(
                self.viewer, "image", data, name=f"{image.name} {name}", scale=(1.0,) * channels + scale,
                translate=(0.0,) * channels + translate, blending="additive", colormap="magma", opacity=0.6)
        notify_info(f"Predicted {', '.join(outputs)} for '{image.name}' with {described}.", self.status)

    def _update_lsd_channels(self, *_: Any) -> None:
        layer = self.result_layers.get(LSDS)
        if layer is None or layer not in self.viewer.layers:
            return
        info = L.layer_info(layer)
        channels = tuple(s.value() for s in self.lsd_channels)
        data, kwargs = L.prediction_layer_args(info.array, self._image, layer.name, LSDS, channels, info=info)
        layer.data = data
        layer.metadata[L.META] = kwargs["metadata"][L.META]
