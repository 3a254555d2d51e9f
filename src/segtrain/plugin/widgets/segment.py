"""Segment dock widget: fragments + merge tree in the background, then a live threshold slider.

The segmentation layer's data is a :class:`segtrain.plugin.layers.LookupLabels` over the fragments:
napari asks it only for the displayed slice, so moving the slider relabels one slice (via
``MergeTree.relabel``), never the whole volume. With a ground-truth layer the widget shows VOI
split / merge / total and ARAND from the sweep, plots the sweep with the current threshold marked
and offers "Use best". For 2D probability maps the same slider sets the probability threshold.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import Foldable, LayerCombo, mpl_canvas, status_label
from segtrain.plugin.workers import Throttle, notify_error, start_worker

SLIDER_STEPS = 1000
DEFAULT_SCORING = ["hist_quant_50", "hist_quant_75", "hist_quant_25", "mean"]


def prediction_kind(layer: Any) -> str | None:
    """'affinities' / 'probabilities' / 'lsds' for a prediction layer, None for other images."""
    meta = layer.metadata.get(L.META, {}) if hasattr(layer, "metadata") else {}
    return meta.get("kind")


def prediction_array(layer: Any) -> np.ndarray:
    """The channel-first prediction array behind a layer (its metadata, else its data)."""
    meta = layer.metadata.get(L.META, {})
    if meta.get("array") is not None:
        return meta["array"]
    data = np.asarray(layer.data)
    if getattr(layer, "rgb", False):
        return np.moveaxis(data, -1, 0)
    return data


def prediction_spatial_shape(layer: Any) -> tuple[int, ...]:
    """The spatial shape of a prediction layer (without its channel axis)."""
    if L.META in layer.metadata or getattr(layer, "rgb", False):
        return L.spatial_shape(layer)  # the displayed data has the spatial shape
    shape = tuple(layer.data.shape)
    return shape[1:] if len(shape) == 4 else shape


def _is_prediction(layer: Any) -> bool:
    meta = layer.metadata.get(L.META, {})
    if meta.get("kind") == "probabilities":
        return meta.get("channel", 0) == 0 or meta.get("task") == "classes"
    return meta.get("kind") == "affinities" or layer.ndim == 4


INSTANCE_SETTINGS = ("instance_method", "min_size", "min_seed_distance", "seed_boundary_max", "seed_min_size")


def instance_config(task: str, segment: dict, model_ndim: int):
    """A config that turns probabilities into instances the way a run with these ``segment``
    settings does (the Segment panel's probability path)."""
    from segtrain.config import config_from_dict

    known = {k: v for k, v in segment.items() if k in INSTANCE_SETTINGS or k == "probability_threshold"}
    architecture = "smp" if int(model_ndim) == 2 else "unet3d"
    return config_from_dict({"model": {"task": task, "architecture": architecture}, "segment": known,
                             "data": {"patch_shape": [64] * int(model_ndim)}})


def _scoring_names() -> list[str]:
    try:
        from segtrain.segment import SCORING_FUNCTIONS

        names = list(SCORING_FUNCTIONS)
        return sorted(names, key=lambda n: (n != "hist_quant_50", n))
    except Exception:  # noqa: BLE001 - the engine is not there yet
        return DEFAULT_SCORING


def build_tree(affs, fragments, method: str, params: dict, scoring: str, gt=None):
    """Worker body (core calls only): fragments if needed, the merge tree, the sweep."""
    from segtrain import segment

    affs = np.ascontiguousarray(affs, dtype=np.float32)
    if fragments is None:
        fragments = segment.make_fragments(affs, method, **params)
    tree = segment.MergeTree.build(affs, np.asarray(fragments, dtype=np.uint64), scoring=scoring)
    sweep = None
    if gt is not None:
        from segtrain import evaluate

        sweep = evaluate.sweep(tree, np.asarray(gt))
    return tree, sweep


class SegmentWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = L.session(napari_viewer)
        self.tree = None
        self.sweep = None
        self.probabilities = None
        self.seg_layer = None
        self.worker = None
        self._source_layer = None
        self._prob_task = "masks"
        self._settings: dict = {}
        self.instance_outputs = None  # all probability channels of the prediction
        self.instance_config = None  # the run's segment settings as a Config

        self.pred_combo = LayerCombo(napari_viewer, ("Image",), predicate=_is_prediction)
        self.fragments_combo = LayerCombo(napari_viewer, ("Labels",), allow_none=True)
        self.gt_combo = LayerCombo(napari_viewer, ("Labels",), allow_none=True)
        if self.session.gt_layer:
            self.gt_combo.set_layer(self.session.gt_layer)
        self.method_combo = QComboBox()
        self.method_combo.addItems(["watershed", "waterz"])
        self.boundary_spin = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.05)
        self.boundary_spin.setValue(0.5)
        self.seed_spin = QSpinBox(minimum=0, maximum=100)
        self.seed_spin.setValue(10)
        self.size_spin = QSpinBox(minimum=0, maximum=10**7)
        self.size_spin.setValue(20)
        self.per_slice_check = QCheckBox("per slice (anisotropic data)")
        self.scoring_combo = QComboBox()
        self.scoring_combo.addItems(_scoring_names())
        self.build_button = QPushButton("Build merge tree")

        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setEnabled(False)
        self.threshold_spin = QDoubleSpinBox(decimals=3, minimum=0.0, maximum=1.0, singleStep=0.01)
        self.threshold_spin.setEnabled(False)
        self.segments_label = QLabel("segments: -")
        self.scores_label = QLabel("")
        self.scores_label.setWordWrap(True)
        self.best_button = QPushButton("Use best")
        self.best_button.setEnabled(False)
        self.canvas, self.figure = mpl_canvas(2.4)
        self.axes = self.figure.add_subplot(111)
        self._marker = None
        self.canvas.setVisible(False)
        self.status = status_label()

        params = QWidget()
        pform = QFormLayout(params)
        pform.setContentsMargins(0, 0, 0, 0)
        pform.addRow("Boundary threshold", self.boundary_spin)
        pform.addRow("Min seed distance", self.seed_spin)
        pform.addRow("Min fragment size", self.size_spin)
        pform.addRow(self.per_slice_check)

        form = QFormLayout()
        form.addRow("Predictions", self.pred_combo)
        form.addRow("Fragments", self.fragments_combo)
        form.addRow("Ground truth", self.gt_combo)
        form.addRow("Fragment method", self.method_combo)
        form.addRow(Foldable("Fragment parameters", params))
        form.addRow("Scoring", self.scoring_combo)
        slider_row = QHBoxLayout()
        slider_row.addWidget(self.slider, 1)
        slider_row.addWidget(self.threshold_spin)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.build_button)
        layout.addWidget(QLabel("Threshold"))
        layout.addLayout(slider_row)
        row = QHBoxLayout()
        row.addWidget(self.segments_label, 1)
        row.addWidget(self.best_button)
        layout.addLayout(row)
        layout.addWidget(self.scores_label)
        layout.addWidget(self.canvas)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self._redraw = Throttle(lambda _: self.canvas.draw_idle(), 150, self)
        self._scores_timer = QTimer(self)
        self._scores_timer.setSingleShot(True)
        self._scores_timer.setInterval(150)
        self._scores_timer.timeout.connect(self._update_mask_scores)
        self._instances_timer = QTimer(self)
        self._instances_timer.setSingleShot(True)
        self._instances_timer.setInterval(60)
        self._instances_timer.timeout.connect(self._update_instances)

        self.build_button.clicked.connect(self.build)
        self.slider.valueChanged.connect(self._slider_moved)
        self.threshold_spin.editingFinished.connect(
            lambda: self.set_threshold(self.threshold_spin.value()))
        self.best_button.clicked.connect(self.use_best)
        self.pred_combo.layer_changed.connect(self._prediction_changed)
        self.gt_combo.layer_changed.connect(self._update_best_button)
        self._prediction_changed(self.pred_combo.layer())

    # --- state ---------------------------------------------------------------------------------
    @property
    def instance_kwargs(self) -> dict:
        """The instance settings in use (recorded with exports), read from ``instance_config``."""
        if self.instance_config is None:
            return {}
        return {k: getattr(self.instance_config.segment, k) for k in INSTANCE_SETTINGS}

    def threshold(self) -> float:
        return self.slider.value() / SLIDER_STEPS

    def set_threshold(self, value: float) -> None:
        self.slider.setValue(int(round(float(value) * SLIDER_STEPS)))

    def _prediction_changed(self, layer) -> None:
        kind = prediction_kind(layer) if layer is not None else None
        self.build_button.setText(
            "Segment probabilities" if kind == "probabilities" else "Build merge tree")
        settings = layer.metadata.get(L.META, {}).get("segment") if layer is not None else None
        if settings:
            self.apply_settings(settings)

    def apply_settings(self, settings: dict) -> None:
        """Fragment method/parameters and scoring from a run's ``segment`` config section."""
        if settings.get("fragments") in ("watershed", "waterz"):
            self.method_combo.setCurrentText(settings["fragments"])
        for key, spin in (("boundary_threshold", self.boundary_spin),
                          ("min_seed_distance", self.seed_spin), ("min_size", self.size_spin)):
            if settings.get(key) is not None:
                spin.setValue(settings[key])
        if settings.get("per_slice") is not None:
            self.per_slice_check.setChecked(bool(settings["per_slice"]))
        if self.scoring_combo.findText(str(settings.get("scoring"))) >= 0:
            self.scoring_combo.setCurrentText(settings["scoring"])

    # --- actions -------------------------------------------------------------------------------
    def build(self) -> None:
        layer = self.pred_combo.layer()
        if layer is None:
            notify_error("No predictions to segment: run Predict first (or open an affinities "
                         "layer), then build the merge tree.", self.status)
            return
        gt_layer = self.gt_combo.layer()
        spatial = prediction_spatial_shape(layer)
        if gt_layer is not None and tuple(gt_layer.data.shape) != tuple(spatial):
            notify_error(f"The ground truth '{gt_layer.name}' has shape {tuple(gt_layer.data.shape)} "
                         f"but the predictions have shape {tuple(spatial)}; choose matching layers.",
                         self.status)
            return
        self._source_layer = layer
        if prediction_kind(layer) == "probabilities":
            self._start_probability_path(layer)
            return
        array = prediction_array(layer)
        if array.ndim not in (3, 4):
            notify_error(f"'{layer.name}' is not an affinities array (channels, z, y, x); "
                         "choose the affinities layer from Predict.", self.status)
            return
        fragments_layer = self.fragments_combo.layer()
        fragments = None if fragments_layer is None else np.asarray(fragments_layer.data)
        params = {
            "boundary_threshold": self.boundary_spin.value(),
            "min_seed_distance": self.seed_spin.value(),
            "min_size": self.size_spin.value(),
            "per_slice": self.per_slice_check.isChecked(),
        }
        gt = None if gt_layer is None else np.asarray(gt_layer.data)
        self._settings = {"fragments": self.method_combo.currentText()
                          if fragments_layer is None else f"layer {fragments_layer.name}",
                          **params, "scoring": self.scoring_combo.currentText(),
                          "predictions": layer.name,
                          "checkpoint": layer.metadata.get(L.META, {}).get("checkpoint")}
        self.build_button.setEnabled(False)
        self.status.setText("Building fragments and merge tree ...")
        self.worker = start_worker(
            build_tree, array, fragments, self.method_combo.currentText(), params,
            self.scoring_combo.currentText(), gt,
            on_return=self._tree_ready, on_finish=lambda: self.build_button.setEnabled(True),
            action="Building the merge tree", status=self.status,
            progress={"desc": "Building merge tree"},
        )

    def _tree_ready(self, result) -> None:
        tree, sweep = result
        self.tree, self.sweep, self.probabilities = tree, sweep, None
        self.session.set(merge_tree=tree)
        fragments = np.asarray(tree.fragments)
        data = L.LookupLabels(fragments, self._relabel_function(self._initial_threshold()))
        self._show_segmentation(data, "fragments", fragments)
        self._enable_slider()
        self.set_threshold(self._initial_threshold())
        self._slider_moved(self.slider.value())
        self._plot_sweep()
        self.status.setText(
            f"Merge tree built ({int(fragments.max()) if fragments.size else 0} fragments). "
            + ("" if sweep is not None else
               "No ground truth: the threshold is not validated; pick it by eye or add GT.")
        )

    def _initial_threshold(self) -> float:
        if self.sweep is not None:
            return float(self.sweep.best_threshold)
        return 0.5

    def _relabel_function(self, threshold: float):
        tree = self.tree
        return lambda region: tree.relabel(region, threshold)

    def _start_probability_path(self, layer) -> None:
        meta = layer.metadata.get(L.META, {})
        prob = np.asarray(layer.data, dtype=np.float32)  # the displayed (foreground) channel
        self._prob_task = meta.get("task", self.session.task)
        run_settings = meta.get("segment") or {}
        # instances use every channel (foreground, boundary) with the run's settings, as its
        # validation did; `segtrain tune` may have chosen them
        self.instance_outputs = np.asarray(prediction_array(layer), dtype=np.float32)
        if self.instance_outputs.ndim == prob.ndim:
            self.instance_outputs = self.instance_outputs[None]
        self.instance_config = instance_config(self._prob_task, run_settings,
                                               meta.get("model_ndim", prob.ndim))
        self._settings = {"predictions": layer.name, "task": self._prob_task,
                          "checkpoint": meta.get("checkpoint"),
                          **({"instances": self.instance_kwargs}
                             if self._prob_task == "instances" else {})}
        self.tree, self.sweep = None, None
        self.probabilities = prob
        start = float(run_settings.get("probability_threshold", 0.5))
        self.slider.blockSignals(True)
        self.set_threshold(start)
        self.slider.blockSignals(False)
        if self._prob_task == "instances":
            data = self._instances()
        else:
            data = L.LookupLabels(prob, self._probability_function(start), dtype=np.uint32)
        self._show_segmentation(data, "probabilities", None)
        self._enable_slider()
        self._slider_moved(self.slider.value())
        self.canvas.setVisible(False)
        self.status.setText("Move the slider to set the probability threshold.")

    def _probability_function(self, threshold: float):
        """Masks: threshold the displayed region lazily (a LookupLabels relabel function)."""
        return lambda region: (region >= threshold).astype(np.uint32)

    def _instances(self) -> np.ndarray:
        """Instances at the slider's threshold (the whole 2D image: seeds need it all)."""
        from segtrain.predict.postprocess import instances_from_outputs

        config = self.instance_config.copy()
        config.segment.probability_threshold = self.threshold()
        return instances_from_outputs(self.instance_outputs, config)

    def _update_instances(self) -> None:
        if self.seg_layer is not None and self.probabilities is not None:
            self.seg_layer.data = self._instances()
            self._update_mask_scores()

    def _show_segmentation(self, data, source: str, fragments) -> None:
        layer = self._source_layer
        name = f"{layer.name} segmentation"
        kwargs = L.aligned_kwargs(layer, name, role="segmentation", source=source)
        if layer.ndim > data.ndim:  # e.g. a 4D (C, z, y, x) affinities image
            kwargs["scale"] = kwargs["scale"][-data.ndim:]
            kwargs["translate"] = kwargs["translate"][-data.ndim:]
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.seg_layer = self.viewer.add_labels(data, **kwargs)
        self.seg_layer.editable = False
        self.seg_layer.metadata[L.META]["fragments"] = fragments
        self.seg_layer.metadata[L.META]["settings"] = {
            k: v for k, v in self._settings.items() if v is not None}

    def _enable_slider(self) -> None:
        self.slider.setEnabled(True)
        self.threshold_spin.setEnabled(True)
        self._update_best_button()

    def _update_best_button(self, *_: Any) -> None:
        """"Use best": the sweep's threshold, or tuning instance settings on a ground-truth layer."""
        self.best_button.setEnabled(self.sweep is not None or (
            self.probabilities is not None and self._prob_task == "instances" and self.gt_combo.layer() is not None))

    # --- the live slider -----------------------------------------------------------------------
    def _slider_moved(self, value: int) -> None:
        t = value / SLIDER_STEPS
        self.threshold_spin.blockSignals(True)
        self.threshold_spin.setValue(t)
        self.threshold_spin.blockSignals(False)
        if self.seg_layer is None or self.seg_layer not in self.viewer.layers:
            return
        data = self.seg_layer.data
        if self.tree is not None:
            data.set_relabel(self._relabel_function(t))
            self.segments_label.setText(f"segments: {self.tree.n_segments(t):,}")
            self._update_tree_scores(t)
        elif self.probabilities is not None and isinstance(data, L.LookupLabels):
            data.set_relabel(self._probability_function(t))
            self._scores_timer.start()
        elif self.probabilities is not None:
            self._instances_timer.start()  # debounced: recomputed when the slider rests 60 ms
        self.seg_layer.metadata[L.META]["threshold"] = t
        self.session.set(threshold=t)
        self.seg_layer.refresh()

    def _update_tree_scores(self, t: float) -> None:
        if self.sweep is None:
            self.scores_label.setText("")
            return
        i = int(np.argmin(np.abs(np.asarray(self.sweep.thresholds) - t)))
        s = self.sweep
        self.scores_label.setText(
            f"at {float(s.thresholds[i]):.3f}: VOI split {float(s.voi_split[i]):.3f}, "
            f"merge {float(s.voi_merge[i]):.3f}, total {float(s.voi[i]):.3f}; "
            f"ARAND {float(s.arand[i]):.3f}  (best {float(s.best_threshold):.3f})"
        )
        if self._marker is not None:
            self._marker.set_xdata([t, t])
            self._redraw.push(None)  # a matplotlib draw per tick would slow the slider

    def _update_mask_scores(self) -> None:
        if self.seg_layer is None:
            return
        seg = np.asarray(self.seg_layer.data)
        if self._prob_task == "instances":
            self.segments_label.setText(f"objects: {len(np.unique(seg)) - (seg == 0).any():,}")
        else:
            self.segments_label.setText(f"foreground: {100.0 * np.count_nonzero(seg) / seg.size:.1f} %")
        gt_layer = self.gt_combo.layer()
        if gt_layer is None:
            return
        from segtrain import evaluate

        gt = np.asarray(gt_layer.data)
        if self._prob_task == "instances":
            s = evaluate.instance_scores(seg, gt)
            self.scores_label.setText(
                f"F1 {s['f1']:.3f}, precision {s['precision']:.3f}, recall {s['recall']:.3f}")
        else:
            s = evaluate.mask_scores(seg > 0, gt > 0)
            self.scores_label.setText(f"Dice {s['dice']:.3f}, IoU {s['iou']:.3f}")

    def _plot_sweep(self) -> None:
        self.axes.clear()
        self._marker = None
        s = self.sweep
        if s is None:
            self.canvas.setVisible(False)
            return
        t = np.asarray(s.thresholds)
        self.axes.plot(t, s.voi_split, label="VOI split")
        self.axes.plot(t, s.voi_merge, label="VOI merge")
        self.axes.plot(t, s.voi, label="VOI", linewidth=2)
        self.axes.plot(t, s.arand, label="ARAND", linestyle="--")
        self.axes.axvline(float(s.best_threshold), color="0.6", linestyle=":", linewidth=1)
        self._marker = self.axes.axvline(self.threshold(), color="red", linewidth=1.5)
        self.axes.set_xlabel("threshold")
        self.axes.legend(fontsize=7, loc="best")
        self.canvas.setVisible(True)
        self.canvas.draw_idle()

    def use_best(self) -> None:
        """Affinities: the sweep's best threshold. Instances: tune threshold, seeds and sizes on
        the ground-truth layer in the background (``segtrain.predict.tune``), then show them."""
        if self.sweep is not None:
            self.set_threshold(float(self.sweep.best_threshold))
            return
        gt_layer = self.gt_combo.layer()
        if self.probabilities is None or self._prob_task != "instances" or gt_layer is None:
            return
        from segtrain.predict.tune import tune_postprocessing

        self.best_button.setEnabled(False)
        self.status.setText("Tuning threshold, seeds and sizes on the ground truth ...")
        self.worker = start_worker(
            tune_postprocessing, [self.instance_outputs], [np.asarray(gt_layer.data)], self.instance_config,
            on_return=self._tuned, on_finish=lambda: self.best_button.setEnabled(True),
            action="Tuning the instance settings", status=self.status,
        )

    def _tuned(self, result) -> None:
        self.instance_config = result.apply(self.instance_config)
        self._settings["instances"] = self.instance_kwargs
        if self.seg_layer is not None:
            self.seg_layer.metadata[L.META]["settings"]["instances"] = self.instance_kwargs
        self.set_threshold(float(result.settings["probability_threshold"]))
        self._update_instances()
        settings = ", ".join(f"{k} {v}" for k, v in result.settings.items())
        self.status.setText(f"Tuned on the ground truth: F1 {result.start_f1:.3f} -> {result.f1:.3f} ({settings}).")
