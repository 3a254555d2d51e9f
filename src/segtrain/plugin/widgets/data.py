"""Data & annotation dock widget: choose the image, ground truth and annotation layers, create an
annotation layer to paint on, choose the task and voxel size, and see how much is annotated."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import LayerCombo, parse_floats, status_label
from segtrain.plugin.workers import notify_error, notify_info


GT_WORDS = ("gt", "ground", "truth", "label", "instances", "ids")


class DataWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = L.session(napari_viewer)

        self.image_combo = LayerCombo(napari_viewer, ("Image",))
        self.gt_combo = LayerCombo(napari_viewer, ("Labels",), allow_none=True)
        self.annotation_combo = LayerCombo(napari_viewer, ("Labels",), allow_none=True)
        self.create_button = QPushButton("Create annotation layer")
        self.create_button.setToolTip(
            "A Labels layer with the image's shape, scale and offset to paint on: "
            f"1.. = objects, {L.BACKGROUND_LABEL} = background, {L.IGNORE_LABEL} = ignore."
        )
        self.sparse_check = QCheckBox("Unpainted voxels are unknown (sparse annotation)")
        self.sparse_check.setChecked(True)
        self.task_combo = QComboBox()
        for key, text in L.TASKS.items():
            self.task_combo.addItem(text, key)
        self.voxel_edit = QLineEdit()
        self.voxel_edit.setPlaceholderText("e.g. 40, 4, 4 (z, y, x)")
        self.voxel_button = QPushButton("Apply")
        self.annotated_label = QLabel("annotated: -")
        self.status = status_label()

        legend = QLabel(
            f"Paint 1, 2, ... for objects, {L.BACKGROUND_LABEL} for background and "
            f"{L.IGNORE_LABEL} for regions to ignore."
        )
        legend.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Ground truth", self.gt_combo)
        form.addRow("Annotation", self.annotation_combo)
        form.addRow(self.create_button)
        form.addRow(legend)
        form.addRow(self.sparse_check)
        form.addRow("Task", self.task_combo)
        voxel_row = QHBoxLayout()
        voxel_row.addWidget(self.voxel_edit)
        voxel_row.addWidget(self.voxel_button)
        form.addRow("Voxel size", voxel_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.annotated_label)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(300)
        self._count_timer.timeout.connect(self.update_count)
        self._watched = None

        self.image_combo.layer_changed.connect(self._image_changed)
        self.gt_combo.layer_changed.connect(self._gt_changed)
        self.annotation_combo.layer_changed.connect(self._annotation_changed)
        self.create_button.clicked.connect(self.create_annotation_layer)
        self.sparse_check.toggled.connect(self._sparse_changed)
        self.task_combo.currentIndexChanged.connect(self._task_changed)
        self.voxel_button.clicked.connect(self.apply_voxel_size)
        self.voxel_edit.returnPressed.connect(self.apply_voxel_size)

        napari_viewer.layers.events.inserted.connect(self._layer_inserted)
        self._image_changed(self.image_combo.layer())
        for layer in napari_viewer.layers:
            self._guess_gt(layer)
        self._gt_changed(self.gt_combo.layer())
        self._annotation_changed(self.annotation_combo.layer())

    # --- choices -------------------------------------------------------------------------------
    def _image_changed(self, layer) -> None:
        self.session.set(image_layer=layer.name if layer is not None else None)
        if layer is None:
            return
        self.voxel_edit.setText(", ".join(f"{s:g}" for s in L.spatial_scale(layer)))
        self.session.set(voxel_size=L.spatial_scale(layer))
        if L.spatial_ndim(layer) == 2 and self.task() == "affinities":
            self.task_combo.setCurrentIndex(self.task_combo.findData("masks"))
        elif L.spatial_ndim(layer) == 3 and self.task() != "affinities":
            self.task_combo.setCurrentIndex(self.task_combo.findData("affinities"))
        self.check_shapes()
        self.update_count()

    def _layer_inserted(self, event) -> None:
        self._guess_gt(event.value)

    def _guess_gt(self, layer) -> None:
        """Pick a Labels layer named like ground truth (e.g. 'em labels', 'gt') that fits the
        image, while no ground truth is chosen: a sample or a dropped file then needs no clicks."""
        image = self.image_combo.layer()
        if (self.gt_combo.layer() is not None or image is None
                or layer.__class__.__name__ != "Labels" or L.META in layer.metadata):
            return
        name = layer.name.lower()
        if not any(word in name for word in GT_WORDS):
            return
        if tuple(layer.data.shape) == L.spatial_shape(image):
            self.gt_combo.set_layer(layer)

    def _gt_changed(self, layer) -> None:
        self.session.set(gt_layer=layer.name if layer is not None else None)
        self.check_shapes()

    def _annotation_changed(self, layer) -> None:
        if self._watched is not None:
            for event in ("paint", "data", "labels_update"):
                emitter = getattr(self._watched.events, event, None)
                if emitter is not None:
                    emitter.disconnect(self._schedule_count)
        self._watched = layer
        if layer is not None:
            for event in ("paint", "data", "labels_update"):
                emitter = getattr(layer.events, event, None)
                if emitter is not None:
                    emitter.connect(self._schedule_count)
        self.session.set(annotation_layer=layer.name if layer is not None else None)
        self.check_shapes()
        self.update_count()

    def _sparse_changed(self, on: bool) -> None:
        self.session.set(sparse=bool(on))
        self.update_count()

    def _task_changed(self, *_) -> None:
        self.session.set(task=self.task())

    def task(self) -> str:
        return self.task_combo.currentData()

    def set_task(self, task: str) -> None:
        self.task_combo.setCurrentIndex(self.task_combo.findData(task))

    # --- actions -------------------------------------------------------------------------------
    def check_shapes(self) -> bool:
        """Notify (once per problem) when a labels layer does not match the image's shape."""
        image = self.image_combo.layer()
        if image is None:
            return True
        shape = L.spatial_shape(image)
        for role, combo in (("ground-truth", self.gt_combo), ("annotation", self.annotation_combo)):
            labels = combo.layer()
            if labels is not None and tuple(labels.data.shape) != shape:
                notify_error(
                    f"The {role} layer '{labels.name}' has shape {tuple(labels.data.shape)} but "
                    f"the image '{image.name}' has shape {shape}; choose labels of the image's shape.",
                    self.status,
                )
                return False
        self.status.setText("")
        return True

    def create_annotation_layer(self):
        image = self.image_combo.layer()
        if image is None:
            notify_error("Open or choose an image layer first, then create an annotation layer.",
                         self.status)
            return None
        name = L.unique_name(self.viewer, f"{image.name} annotation")
        kwargs = L.aligned_kwargs(image, name, role="annotation", image=image.name)
        layer = self.viewer.add_labels(np.zeros(L.spatial_shape(image), dtype=np.uint32), **kwargs)
        self.annotation_combo.set_layer(layer)
        self.viewer.layers.selection.active = layer
        layer.mode = "paint"
        layer.selected_label = 1
        notify_info(f"Created '{name}': paint objects 1, 2, ...; {L.BACKGROUND_LABEL} = background, "
                    f"{L.IGNORE_LABEL} = ignore.", self.status)
        return layer

    def apply_voxel_size(self) -> None:
        image = self.image_combo.layer()
        try:
            values = parse_floats(self.voxel_edit.text())
        except ValueError as error:
            notify_error(f"Voxel size: {error}.", self.status)
            return
        if image is None:
            self.session.set(voxel_size=values)
            return
        ndim = L.spatial_ndim(image)
        if len(values) == 1:
            values = values * ndim
        if len(values) != ndim:
            notify_error(f"Voxel size needs {ndim} numbers for the {ndim}D image "
                         f"'{image.name}', got {len(values)}.", self.status)
            return
        for layer in (image, self.gt_combo.layer(), self.annotation_combo.layer()):
            if layer is not None:
                layer.scale = values
        self.session.set(voxel_size=values)

    def _schedule_count(self, *_):
        self._count_timer.start()

    def annotated(self) -> tuple[int, int]:
        layer = self.annotation_combo.layer()
        if layer is None:
            return 0, 0
        data = np.asarray(layer.data)
        return L.annotated_count(data, self.sparse_check.isChecked()), int(data.size)

    def update_count(self) -> None:
        n, total = self.annotated()
        if total == 0:
            gt = self.gt_combo.layer()
            self.annotated_label.setText(
                "annotated: no annotation layer" + (f" (ground truth '{gt.name}' is used)" if gt else "")
            )
            return
        self.annotated_label.setText(f"annotated: {n:,} voxels ({100.0 * n / total:.2f} %)")
