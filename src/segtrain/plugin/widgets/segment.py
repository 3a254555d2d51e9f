"""Segment dock widget: predictions -> segmentation with a live threshold slider.

Affinities: fragments + waterz merge tree are built in the background with the run's segment
settings (:func:`segtrain.postprocess.segment_affinities`, the same call validation and
``segtrain segment`` make, with the layer's voxel size). The segmentation layer's data is a
:class:`segtrain.plugin.layers.LookupLabels` over the fragments: napari asks it only for the
displayed slice, so moving the slider relabels one slice, never the whole volume. With a
ground-truth layer: VOI split / merge / total and ARAND from the sweep, the sweep plot and "Use
best". The slider starts at the threshold the run's validation chose.

Probabilities (masks / instances): the slider sets the probability threshold; instances
(:func:`segtrain.postprocess.instances`, both channels and the run's settings) and their scores are
computed in the background for the newest slider position only. Controls that only apply to
affinities are hidden. "Use best" tunes threshold, seeds and sizes on the ground truth.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
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

from segtrain import evaluate
from segtrain.parallel import in_process
from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import (
    Foldable,
    LayerCombo,
    Panel,
    compact,
    mpl_canvas,
    status_label,
)
from segtrain.plugin.workers import (
    LatestOnly,
    Throttle,
    notify_error,
    notify_warning,
    start_worker,
)
from segtrain.postprocess import OutputSpec, instances, merge_tree_and_sweep
from segtrain.postprocess.tune import tune_postprocessing
from segtrain.proofread import Proofreader
from segtrain.segment import SCORING_FUNCTIONS
from segtrain.tasks import AFFINITIES, find_task, is_affinities, is_probabilities, task_of, task_of_head

SLIDER_STEPS = 1000
DEFAULT_SCORING = ["hist_quant_50", "hist_quant_75", "hist_quant_25", "mean"]


def prediction_array(layer: Any) -> np.ndarray:
    """The channel-first prediction array behind a layer (its LayerInfo, else its data)."""
    info = L.layer_info(layer)
    if info is not None and info.array is not None:
        return info.array
    data = np.asarray(layer.data)
    if getattr(layer, "rgb", False):
        return np.moveaxis(data, -1, 0)
    return data


def prediction_spatial_shape(layer: Any) -> tuple[int, ...]:
    """The spatial shape of a prediction layer (without its channel axis)."""
    if L.layer_info(layer) is not None or getattr(layer, "rgb", False):
        return L.spatial_shape(layer)  # the displayed data has the spatial shape
    shape = tuple(layer.data.shape)
    return shape[1:] if len(shape) == 4 else shape


def _is_prediction(layer: Any) -> bool:
    info = L.layer_info(layer)
    if info is None:
        return layer.ndim == 4  # channel-first affinities opened from a file
    if is_probabilities(info.kind):
        task = find_task(info.task)
        return (info.channel or 0) == 0 or (task is not None and task.semantic)
    return is_affinities(info.kind)


def _scoring_names() -> list[str]:
    return sorted(SCORING_FUNCTIONS, key=lambda n: (n != "hist_quant_50", n))


# --- worker bodies (core calls only) -------------------------------------------------------------
def instances_and_scores(outputs, settings, spec, gt):
    """``(instance labels of outputs with settings, F1 against gt when given, number of objects)``."""
    labels = instances(np.asarray(outputs, dtype=np.float32), settings, spec)
    n_objects = int(labels.max()) if labels.size else 0
    if gt is None:
        return labels, None, n_objects
    objects = evaluate.stack_labels(np.asarray(gt), spec.ndim)  # a 2D model's stack: each slice's own objects
    return labels, evaluate.instance_scores(labels, objects), n_objects


def mask_scores(probability, threshold: float, gt):
    """Share of foreground, and Dice / IoU against ``gt`` when given, at ``threshold``."""
    mask = np.asarray(probability) >= threshold
    scores = {"foreground": float(mask.mean()) if mask.size else 0.0}
    if gt is not None:
        scores.update(evaluate.mask_scores(mask, np.asarray(gt) > 0))
    return scores


def tune_instances(outputs, gt, settings, spec):
    return tune_postprocessing([np.asarray(outputs, dtype=np.float32)], [np.asarray(gt)], settings, spec)


class SegmentWidget(Panel):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = L.session(napari_viewer)
        self.tree = None
        self.proofreader = None  # the merge tree's segmentation with its edits (segtrain.proofread)
        self.sweep = None
        self.seg_layer = None
        self.worker = None
        self.source_info: L.LayerInfo | None = None  # of the prediction being segmented
        self.settings = None  # the SegmentConfig in use
        self.spec = None  # OutputSpec of the prediction
        self.outputs = None  # probabilities path: every channel
        self.probabilities = None  # probabilities path: the foreground channel
        self.scores: dict = {}
        self._source_layer = None

        self.pred_combo = LayerCombo(napari_viewer, ("Image",), predicate=_is_prediction)
        # ground truth: labels no panel made, of the predictions' image (the Data panel's first)
        self.gt_combo = LayerCombo(napari_viewer, ("Labels",), allow_none=True, predicate=self._gt_fits,
                                   prefer=lambda layer: layer.name == self.session.gt_layer)
        self.gt_combo.setToolTip("Labels of the predictions' image only (the one chosen in Data first); "
                                 "labels of another image are not offered.")
        self.fragments_combo = LayerCombo(napari_viewer, ("Labels",), allow_none=True)
        self.method_combo = QComboBox()
        self.method_combo.addItems(["watershed", "waterz"])
        self.boundary_spin = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.05)
        self.seed_spin = QSpinBox(minimum=0, maximum=100)
        self.size_spin = QSpinBox(minimum=0, maximum=10**7)
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
        self.canvas, self.figure = mpl_canvas(2.2)
        self.axes = self.figure.add_subplot(111)
        self._marker = None
        self.canvas.setVisible(False)
        self.status = status_label()

        params = QWidget()
        pform = compact(QFormLayout(params))
        pform.setContentsMargins(0, 0, 0, 0)
        pform.addRow("Boundary threshold", self.boundary_spin)
        pform.addRow("Min seed distance", self.seed_spin)
        pform.addRow("Min fragment size", self.size_spin)
        pform.addRow(self.per_slice_check)

        self.affinity_box = QWidget()  # controls that only apply to affinities
        aform = compact(QFormLayout(self.affinity_box))
        aform.setContentsMargins(0, 0, 0, 0)
        aform.addRow("Fragments", self.fragments_combo)
        aform.addRow("Fragment method", self.method_combo)
        aform.addRow(Foldable("Fragment parameters", params))
        aform.addRow("Scoring", self.scoring_combo)

        form = compact(QFormLayout())
        form.addRow("Predictions", self.pred_combo)
        form.addRow("Ground truth", self.gt_combo)
        slider_row = QHBoxLayout()
        slider_row.addWidget(self.slider, 1)
        slider_row.addWidget(self.threshold_spin)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.affinity_box)
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
        self.instance_job = LatestOnly(instances_and_scores, self._instances_ready, "Segmenting instances",
                                       self.status)
        self.mask_job = LatestOnly(mask_scores, self._mask_scores_ready, "Scoring the mask", self.status)

        # clicked(bool) must not reach a slot that takes an argument: a real click passes False
        self.build_button.clicked.connect(lambda: self.build())
        self.best_button.clicked.connect(lambda: self.use_best())
        self.slider.valueChanged.connect(self._slider_moved)
        self.threshold_spin.editingFinished.connect(lambda: self.set_threshold(self.threshold_spin.value()))
        self.pred_combo.layer_changed.connect(self._prediction_changed)
        self.gt_combo.layer_changed.connect(self._update_best_button)
        self.session.changed.connect(self._session_changed)
        napari_viewer.layers.events.removed.connect(self._layer_removed)
        self.apply_settings(L.segment_config())
        self._prediction_changed(self.pred_combo.layer())
        self.fit()

    # --- state ---------------------------------------------------------------------------------
    def threshold(self) -> float:
        return self.slider.value() / SLIDER_STEPS

    def set_threshold(self, value: float) -> None:
        self.slider.setValue(int(round(float(value) * SLIDER_STEPS)))

    def busy(self) -> bool:
        """Whether background work for this panel is running or waiting."""
        return self.worker is not None or self.instance_job.busy() or self.mask_job.busy()

    def _layer_removed(self, event=None) -> None:
        """The segmentation layer was closed: let go of what made it (the merge tree, its
        Proofreader, the probabilities), which would otherwise stay in memory until the next Build,
        and disable the slider that moved it."""
        if self.seg_layer is None or self.seg_layer in self.viewer.layers:
            return
        self.seg_layer = self.tree = self.proofreader = self.sweep = None
        self.outputs = self.probabilities = self._source_layer = None
        self.scores = {}
        self.slider.setEnabled(False)
        self.threshold_spin.setEnabled(False)
        self.segments_label.setText("segments: -")
        self.scores_label.setText("")
        self._plot_sweep()  # no sweep: hides the plot
        self._update_best_button()

    def _gt_fits(self, layer) -> bool:
        """Whether ``layer`` can be the ground truth of the chosen predictions: labels no panel
        made (not a segmentation, not corrections) that do not belong to another image."""
        if L.layer_info(layer) is not None:
            return False
        predictions = self.pred_combo.layer()
        image = None if predictions is None else L.image_of(predictions, self.viewer)
        theirs = L.image_of(layer, self.viewer)
        return image is None or theirs is None or theirs == image

    def _session_changed(self, key: str) -> None:
        if key in ("gt_layer", "image_layer"):
            self.gt_combo.refresh()
            if self.session.gt_layer and self.gt_combo.findText(self.session.gt_layer) >= 0:
                self.gt_combo.set_layer(self.session.gt_layer)

    def _prediction_changed(self, layer) -> None:
        self.gt_combo.refresh()  # only the ground truth of the predictions' image is offered
        info = L.layer_info(layer) if layer is not None else None
        probabilities = info is not None and is_probabilities(info.kind)
        self.build_button.setText("Segment probabilities" if probabilities else "Build merge tree")
        self.affinity_box.setVisible(not probabilities)
        if info is not None and info.settings is not None:
            self.apply_settings(info.settings)

    def apply_settings(self, settings) -> None:
        """Show a SegmentConfig's fragment method/parameters and scoring in the controls."""
        self.method_combo.setCurrentText(settings.fragments)
        self.boundary_spin.setValue(settings.boundary_threshold)
        self.seed_spin.setValue(settings.min_seed_distance)
        self.size_spin.setValue(settings.min_size)
        self.per_slice_check.setChecked(bool(settings.per_slice))
        if self.scoring_combo.findText(settings.scoring) >= 0:
            self.scoring_combo.setCurrentText(settings.scoring)

    def current_settings(self):
        """The prediction's settings (the run's) with the controls' values: what Build uses."""
        base = self.source_info.settings if self.source_info is not None and self.source_info.settings else None
        settings = dataclasses.replace(base) if base is not None else L.segment_config()
        settings.fragments = self.method_combo.currentText()
        settings.boundary_threshold = self.boundary_spin.value()
        settings.min_seed_distance = self.seed_spin.value()
        settings.min_size = self.size_spin.value()
        settings.per_slice = self.per_slice_check.isChecked()
        settings.scoring = self.scoring_combo.currentText()
        return settings

    # --- actions -------------------------------------------------------------------------------
    def build(self) -> None:
        layer = self.pred_combo.layer()
        if layer is None:
            notify_error("No predictions to segment: run Predict first (or open an affinities "
                         "layer), then build the merge tree.", self.status)
            return
        if self.worker is not None:
            notify_error("A segmentation is being built; wait for it to finish.", self.status)
            return
        gt_layer = self.gt_combo.layer()
        spatial = prediction_spatial_shape(layer)
        if gt_layer is not None and tuple(gt_layer.data.shape) != tuple(spatial):
            notify_error(f"The ground truth '{gt_layer.name}' has shape {tuple(gt_layer.data.shape)} "
                         f"but the predictions have shape {tuple(spatial)}; choose matching layers.",
                         self.status)
            return
        self._source_layer = layer
        self.source_info = L.layer_info(layer) or L.LayerInfo(AFFINITIES, task=task_of_head(AFFINITIES).name)
        try:
            settings = self.current_settings()
        except ValueError as error:
            notify_error(str(error), self.status)
            return
        if is_probabilities(self.source_info.kind):
            self._start_probability_path(layer, settings)
            return
        array = prediction_array(layer)
        if array.ndim not in (3, 4):
            notify_error(f"'{layer.name}' is not an affinities array (channels, z, y, x); "
                         "choose the affinities layer from Predict.", self.status)
            return
        fragments_layer = self.fragments_combo.layer()
        fragments = None if fragments_layer is None else np.asarray(fragments_layer.data)
        gt = None if gt_layer is None else np.asarray(gt_layer.data)
        self.settings = settings
        self.build_button.setEnabled(False)
        self.status.setText("Building fragments and merge tree ...")
        self.worker = start_worker(  # in another process: waterz holds the GIL while it works
            in_process, merge_tree_and_sweep, array, settings, L.spatial_scale(layer),
            self.source_info.model_ndim, fragments, gt,
            on_return=self._tree_ready, on_finish=self._build_finished,
            action="Building the merge tree", status=self.status, progress={"desc": "Building merge tree"},
        )

    def _build_finished(self) -> None:
        self.worker = None
        self.build_button.setEnabled(True)

    def _segmentation_info(self, task: str, fragments=None) -> L.LayerInfo:
        source = self.source_info
        return L.LayerInfo("segmentation", task=task, model_ndim=source.model_ndim, settings=self.settings,
                           threshold=self.threshold(), run=source.run, checkpoint=source.checkpoint,
                           source=self._source_layer.name, image=L.image_of(self._source_layer, self.viewer),
                           fragments=fragments)

    def _tree_ready(self, result) -> None:
        tree, sweep = result
        self.tree, self.sweep, self.probabilities, self.outputs = tree, sweep, None, None
        fragments = np.asarray(tree.fragments)
        start, why = self._initial_threshold()
        self.slider.blockSignals(True)
        self.set_threshold(start)
        self.slider.blockSignals(False)
        self.proofreader = Proofreader(fragments, tree, self.threshold())  # edits go on top (Proofread)
        data = L.LookupLabels(fragments, self._relabel_function(self.threshold()))
        info = self._segmentation_info("affinities", fragments)
        info.proofreader = self.proofreader
        self._show_segmentation(data, info)
        self._enable_slider()
        self._slider_moved(self.slider.value())
        self._plot_sweep()
        self.status.setText(f"Merge tree built ({tree.n_present:,} fragments); threshold {start:.3f} {why}.")
        self._warn_if_one_segment()

    def _initial_threshold(self) -> tuple[float, str]:
        settings = self.settings
        if settings is not None and settings.threshold is not None:
            return float(settings.threshold), "chosen by the run's validation"
        if self.sweep is not None:
            return float(self.sweep.best_threshold), "best on the ground truth"
        return 0.5, "(not validated: no threshold was chosen on validation data; add ground truth)"

    def _warn_if_one_segment(self) -> None:
        """A best threshold that merges everything means the network separates nothing yet."""
        if self.sweep is None:
            return
        best = self.sweep.best
        if best["n_segments"] <= 1:
            notify_warning(
                f"The best threshold on the ground truth ({best['threshold']:.3f}) gives one segment "
                f"covering everything (VOI {best['voi']:.3f}): the network does not separate objects yet; "
                "train it longer (or check the ground truth) before trusting this segmentation.",
                self.status)

    def _relabel_function(self, threshold: float):
        """The tree cut at ``threshold`` with the proofreading edits on top, for the displayed region."""
        reader = self.proofreader
        reader.set_threshold(threshold)
        return lambda region: reader.relabel(region)

    def _start_probability_path(self, layer, settings) -> None:
        info = self.source_info
        self.settings = settings
        # as they are (no float32 copy of the volume here: the workers convert, the display
        # thresholds the displayed slice)
        self.outputs = prediction_array(layer)
        prob = layer.data  # the displayed (foreground) channel
        if self.outputs.ndim == prob.ndim:
            self.outputs = self.outputs[None]
        task = task_of(info.task or self.session.task).segment_as()
        self.spec = OutputSpec(task.name, info.model_ndim or prob.ndim)
        self.tree, self.sweep, self.scores = None, None, {}
        self.probabilities = prob
        self.slider.blockSignals(True)
        self.set_threshold(settings.probability_threshold)
        self.slider.blockSignals(False)
        if task.boundary_channel:
            data = np.zeros(prob.shape, np.uint32)  # filled by the background job
        else:
            data = L.LookupLabels(prob, self._probability_function(self.threshold()), dtype=np.uint32)
        self._show_segmentation(data, self._segmentation_info(self.spec.task))
        self._enable_slider()
        self._slider_moved(self.slider.value())
        self.canvas.setVisible(False)
        self.status.setText("Move the slider to set the probability threshold.")

    def _probability_function(self, threshold: float):
        """Masks: threshold the displayed region lazily (a LookupLabels relabel function)."""
        return lambda region: (region >= threshold).astype(np.uint32)

    def _show_segmentation(self, data, info: L.LayerInfo) -> None:
        layer = self._source_layer
        name = L.derived_name(layer, "segmentation", self.viewer)  # 'B segmentation', not a pile of names
        if name in self.viewer.layers:
            existing = L.layer_info(self.viewer.layers[name])
            if existing is None or existing.kind != "segmentation" or existing.source != layer.name:
                # a layer of the user's, or the segmentation of another prediction of this image
                # (perhaps proofread): never replaced; only this prediction's own is rebuilt
                name = L.unique_name(self.viewer, name)
        kwargs = L.aligned_kwargs(layer, name, info, ndim=data.ndim)
        if name in self.viewer.layers:
            self.seg_layer = None  # replaced, not closed: the new tree stays
            self.viewer.layers.remove(name)
        self.seg_layer = self.viewer.add_labels(data, **kwargs)
        self.seg_layer.editable = False

    def _enable_slider(self) -> None:
        self.slider.setEnabled(True)
        self.threshold_spin.setEnabled(True)
        self._update_best_button()

    def _update_best_button(self, *_: Any) -> None:
        """"Use best": the sweep's threshold, or tuning mask/instance settings on a ground-truth layer."""
        self.best_button.setEnabled(self.sweep is not None or (
            self.outputs is not None and self.gt_combo.layer() is not None))

    # --- the live slider -----------------------------------------------------------------------
    def _slider_moved(self, value: int) -> None:
        t = value / SLIDER_STEPS
        self.threshold_spin.blockSignals(True)
        self.threshold_spin.setValue(t)
        self.threshold_spin.blockSignals(False)
        if self.seg_layer is None or self.seg_layer not in self.viewer.layers:
            return
        info = L.layer_info(self.seg_layer)
        if self.tree is None and info.proofreader is not None:  # instances / masks being proofread
            if info.proofreader.edits:
                self.status.setText(
                    f"The segmentation has {len(info.proofreader.edits)} edits made at threshold "
                    f"{info.threshold:.2f}; undo them in Proofread to move the threshold.")
                return
            info.proofreader = None  # no edits left: back to the live threshold
            if self.spec is not None and not task_of(self.spec).boundary_channel:
                self.seg_layer.data = L.LookupLabels(self.probabilities, self._probability_function(t),
                                                     dtype=np.uint32)
        info.threshold = t
        gt_layer = self.gt_combo.layer()
        gt = None if gt_layer is None else gt_layer.data
        data = self.seg_layer.data
        if self.tree is not None:
            data.set_relabel(self._relabel_function(t))
            self.segments_label.setText(f"segments: {self.tree.n_segments(t):,}")
            self._update_tree_scores(t)
        elif self.spec is not None and task_of(self.spec).boundary_channel:
            settings = dataclasses.replace(self.settings, probability_threshold=t)
            info.settings = settings
            self.instance_job.submit(self.outputs, settings, self.spec, gt)
        elif self.probabilities is not None:
            data.set_relabel(self._probability_function(t))
            info.settings = dataclasses.replace(self.settings, probability_threshold=t)
            self.mask_job.submit(self.probabilities, t, gt)
        self.session.set(threshold=t)
        self.seg_layer.refresh()

    def _instances_ready(self, result) -> None:
        labels, scores, n_objects = result
        if self.seg_layer is None or self.seg_layer not in self.viewer.layers:
            return
        info = L.layer_info(self.seg_layer)
        if info.proofreader is not None:  # proofreading began while these were computed: keep its edits
            return
        self.seg_layer.data = labels
        self.segments_label.setText(f"objects: {n_objects:,}")
        self.scores = scores or {}
        if scores is not None:
            text = f"F1 {scores['f1']:.3f}, precision {scores['precision']:.3f}, recall {scores['recall']:.3f}"
            if scores["f1"] == 0:
                text += " (no object matches the ground truth by IoU 0.5)"
            self.scores_label.setText(text)

    def _mask_scores_ready(self, scores: dict) -> None:
        self.scores = scores
        self.segments_label.setText(f"foreground: {100.0 * scores['foreground']:.1f} %")
        if "dice" in scores:
            self.scores_label.setText(f"Dice {scores['dice']:.3f}, IoU {scores['iou']:.3f}")

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
        """Affinities: the sweep's best threshold (with a warning when it merges everything).
        Masks / instances: tune threshold, seeds and sizes on the ground-truth layer in the
        background (:mod:`segtrain.postprocess.tune`), then show them."""
        if self.sweep is not None:
            self.set_threshold(float(self.sweep.best_threshold))
            self._warn_if_one_segment()
            return
        gt_layer = self.gt_combo.layer()
        if self.outputs is None or gt_layer is None:
            return
        self.best_button.setEnabled(False)
        self.status.setText("Tuning threshold, seeds and sizes on the ground truth ...")
        self.worker = start_worker(
            tune_instances, self.outputs, np.asarray(gt_layer.data), self.settings, self.spec,
            on_return=self._tuned, on_finish=self._tune_finished,
            action="Tuning the instance settings", status=self.status,
        )

    def _tune_finished(self) -> None:
        self.worker = None
        self._update_best_button()

    def _tuned(self, result) -> None:
        self.settings = result.apply(self.settings)
        self.set_threshold(float(result.settings["probability_threshold"]))
        self._slider_moved(self.slider.value())
        settings = ", ".join(f"{k} {v}" for k, v in result.settings.items())
        text = f"Tuned on the ground truth: F1 {result.start_score:.3f} -> {result.score:.3f} ({settings})."
        if result.score == 0:
            steps = ""
            notify_warning(
                "F1 stays 0 for every setting: no predicted object overlaps a ground-truth object by IoU 0.5. "
                f"Check that '{self.gt_combo.currentText()}' belongs to this image, or train the model longer"
                f"{steps}.", self.status)
        else:
            self.status.setText(text)
