"""Data & annotation dock widget: choose the image, ground truth and annotation layers, create an
annotation layer and paint objects, background or ignore with one click each, choose the task (the
ground truth suggests it) and voxel size (read from the file when it has one), and see how much is
annotated."""

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
)

from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import (
    NONE_TEXT,
    LayerCombo,
    Panel,
    compact,
    parse_floats,
    status_label,
)
from segtrain.plugin.workers import LatestOnly, notify_error, notify_info, start_worker
from segtrain.tasks import default_task, find_task, suggested_task

GT_WORDS = L.GT_WORDS


# --- worker bodies (array work, out of the GUI thread) --------------------------------------------
def next_object_id(data) -> int:
    """The next unused object id of an annotation (its highest object id + 1; background and ignore
    are no objects)."""
    data = np.asarray(data)
    objects = data[(data != L.BACKGROUND_LABEL) & (data != L.IGNORE_LABEL)]
    return int(objects.max()) + 1 if objects.size else 1


def annotation_count(data, sparse: bool) -> tuple[int, int]:
    """``(annotated voxels, all voxels)`` of an annotation."""
    data = np.asarray(data)
    return L.annotated_count(data, sparse), int(data.size)


def _fmt(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


class DataWidget(Panel):
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
        self.object_button = QPushButton("New object")
        self.object_button.setToolTip("Paint a new object: the next unused id.")
        self.background_button = QPushButton("Background")
        self.background_button.setToolTip(f"Paint background ({L.BACKGROUND_LABEL}).")
        self.ignore_button = QPushButton("Ignore")
        self.ignore_button.setToolTip(f"Paint regions the loss ignores ({L.IGNORE_LABEL}).")
        self.sparse_check = QCheckBox("Sparse: unpainted = unknown")
        self.sparse_check.setToolTip("Checked: only painted voxels train the network. Unchecked: "
                                     "unpainted voxels are background (dense annotation).")
        self.sparse_check.setChecked(True)
        self.task_combo = QComboBox()
        for key, text in L.TASKS.items():
            self.task_combo.addItem(text, key)
        self.voxel_edit = QLineEdit()
        self.voxel_edit.setPlaceholderText("e.g. 40, 4, 4 (z, y, x)")
        self.voxel_button = QPushButton("Apply")
        self.voxel_note = QLabel("")
        self._typed_voxel: tuple[float, ...] | None = None  # what the user typed, for volumes opened later
        self.voxel_note.setWordWrap(True)
        self.annotated_label = QLabel("annotated: -")
        self.status = status_label()

        brushes = QHBoxLayout()
        for button in (self.object_button, self.background_button, self.ignore_button):
            brushes.addWidget(button)

        form = compact(QFormLayout())
        form.addRow("Image", self.image_combo)
        form.addRow("Ground truth", self.gt_combo)
        form.addRow("Annotation", self.annotation_combo)
        form.addRow(self.create_button)
        form.addRow("Paint", brushes)
        form.addRow(self.sparse_check)
        form.addRow("Task", self.task_combo)
        voxel_row = QHBoxLayout()
        voxel_row.addWidget(self.voxel_edit)
        voxel_row.addWidget(self.voxel_button)
        form.addRow("Voxel size", voxel_row)
        form.addRow(self.voxel_note)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.annotated_label)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(300)
        self._count_timer.timeout.connect(self.update_count)
        self.count_job = LatestOnly(annotation_count, self._show_count, "Counting the annotation", self.status)
        self._watched = None

        self.image_combo.layer_changed.connect(self._image_changed)
        self.gt_combo.layer_changed.connect(self._gt_changed)
        self.annotation_combo.layer_changed.connect(self._annotation_changed)
        # clicked(bool) must not reach a slot that takes an argument: a real click passes False
        self.create_button.clicked.connect(lambda: self.create_annotation_layer())
        self.object_button.clicked.connect(lambda: self.paint_label(None))
        self.background_button.clicked.connect(lambda: self.paint_label(L.BACKGROUND_LABEL))
        self.ignore_button.clicked.connect(lambda: self.paint_label(L.IGNORE_LABEL))
        self.sparse_check.toggled.connect(self._sparse_changed)
        self.task_combo.currentIndexChanged.connect(self._task_changed)
        self.voxel_button.clicked.connect(lambda: self.apply_voxel_size())
        self.voxel_edit.returnPressed.connect(self.apply_voxel_size)

        napari_viewer.layers.events.inserted.connect(self._layer_inserted)
        self.session.changed.connect(self._session_changed)
        self._image_changed(self.image_combo.layer())
        for layer in napari_viewer.layers:
            self._guess_gt(layer)
        self._gt_changed(self.gt_combo.layer())
        self._annotation_changed(self.annotation_combo.layer())
        self.fit()

    # --- choices -------------------------------------------------------------------------------
    def _image_changed(self, layer) -> None:
        self.session.set(image_layer=layer.name if layer is not None else None)
        if layer is None:
            return
        self.voxel_edit.setText(", ".join(f"{s:g}" for s in L.spatial_scale(layer)))
        self.session.set(voxel_size=L.spatial_scale(layer))
        in_file = layer.metadata.get("voxel_size_in_file")
        self.voxel_note.setText(
            "" if in_file is None else "from the file" if in_file else
            "the file stores no voxel size: 1 per axis is assumed; enter the real one (e.g. nm)")
        self._suggest_task()
        self.check_shapes()
        self.update_count()

    def _suggest_task(self) -> None:
        """The task the image and ground truth suggest: 3D -> affinities; 2D -> instances or masks
        by the ground truth's ids (masks without ground truth); the user may change it."""
        image = self.image_combo.layer()
        if image is None:
            return
        ndim = L.spatial_ndim(image)
        gt = self.gt_combo.layer()
        if gt is not None and tuple(gt.data.shape) == L.spatial_shape(image):
            task = suggested_task(gt.data, ndim).name
        else:
            current = find_task(self.task())
            keep = ndim != 3 and (current is None or not current.agglomerates)
            task = self.task() if keep else default_task(ndim).name
        self.set_task(task)

    def _layer_inserted(self, event) -> None:
        self._guess_gt(event.value)
        self._give_voxel_size(event.value)

    def _guess_gt(self, layer) -> None:
        """Pick a Labels layer named like ground truth (e.g. 'em labels', 'gt') that fits the
        image, while no ground truth is chosen: a sample or a dropped file then needs no clicks."""
        image = self.image_combo.layer()
        if self.gt_combo.layer() is not None or image is None or not L.named_like_ground_truth(layer):
            return
        if tuple(layer.data.shape) == L.spatial_shape(image):
            self.gt_combo.set_layer(layer)

    def _gt_changed(self, layer) -> None:
        self.session.set(gt_layer=layer.name if layer is not None else None)
        self._suggest_task()
        self.check_shapes()

    def _session_changed(self, key: str) -> None:
        """Another panel chose the annotation (Proofread's corrections): show it here."""
        name = self.session.annotation_layer
        if key == "annotation_layer" and name and name != self.annotation_combo.currentText() \
                and name in self.viewer.layers:
            self.annotation_combo.set_layer(name)

    def _image_of_annotation(self, layer) -> str:
        """Choose the image ``layer`` (an annotation) was made on when another image is chosen,
        setting aside the ground truth, which belongs to the other image; what was done, or ""."""
        image = self.image_combo.layer()
        name = L.image_of(layer, self.viewer)
        if image is None or not name or name == image.name or name not in self.viewer.layers:
            return ""
        gt = self.gt_combo.layer()
        self.image_combo.set_layer(name)
        text = f"Image '{name}' chosen: '{layer.name}' was made on it"
        if gt is not None:
            self.gt_combo.set_layer(NONE_TEXT)
            text += f"; the ground truth '{gt.name}' of '{image.name}' is no longer used"
        return text + "."

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
        switched = "" if layer is None else self._image_of_annotation(layer)
        self.session.set(annotation_layer=layer.name if layer is not None else None)
        if self.check_shapes() and switched:
            self.status.setText(switched)
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
        kwargs = L.aligned_kwargs(image, name, L.LayerInfo("annotation", source=image.name, image=image.name))
        layer = self.viewer.add_labels(np.zeros(L.spatial_shape(image), dtype=np.uint32), **kwargs)
        self.annotation_combo.set_layer(layer)
        self.viewer.layers.selection.active = layer
        layer.mode = "paint"
        layer.selected_label = 1
        notify_info(f"Created '{name}': paint objects 1, 2, ...; {L.BACKGROUND_LABEL} = background, "
                    f"{L.IGNORE_LABEL} = ignore.", self.status)
        return layer

    def paint_label(self, value: int | None) -> None:
        """Put the annotation layer in paint mode with ``value`` (None: the next unused object id)."""
        layer = self.annotation_combo.layer()
        if layer is None:
            layer = self.create_annotation_layer()
            if layer is None:
                return
        if value is None:  # the highest id is looked up in a worker
            start_worker(next_object_id, layer.data, on_return=lambda v: self._paint(layer, v),
                         action="Finding the next object id", status=self.status)
            return
        self._paint(layer, value)

    def _paint(self, layer, value: int) -> None:
        if layer not in self.viewer.layers:
            return
        self.viewer.layers.selection.active = layer
        layer.mode = "paint"
        layer.selected_label = int(value)
        what = {L.BACKGROUND_LABEL: "background", L.IGNORE_LABEL: "ignore"}.get(value, f"object {value}")
        self.status.setText(f"Painting {what} on '{layer.name}'.")

    def apply_voxel_size(self) -> None:
        """The typed voxel size for the image and every layer lying on it (same shape and scale:
        its ground truth, annotation, predictions); the view is reset to show them whole (it
        stayed zoomed 8x), and volumes opened later without a voxel size in their file get it too
        (:meth:`_give_voxel_size`)."""
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
        shape, old = L.spatial_shape(image), L.spatial_scale(image)
        chosen = [layer for layer in (self.gt_combo.layer(), self.annotation_combo.layer()) if layer is not None]
        aligned = [layer for layer in self.viewer.layers if layer is not image and layer not in chosen
                   and layer.__class__.__name__ in ("Image", "Labels") and L.spatial_ndim(layer) == ndim
                   and L.spatial_shape(layer) == shape and L.spatial_scale(layer) == old
                   and L.image_of(layer, self.viewer) in (None, image.name)]  # not another image's layers
        for layer in (image, *chosen, *aligned):
            layer.scale = values
        self.session.set(voxel_size=values)
        self._typed_voxel = values
        self.viewer.reset_view()
        self.voxel_note.setText("set here")
        self.status.setText(f"Voxel size {_fmt(values)} for '{image.name}' and {len(chosen) + len(aligned)} "
                            "layer(s) on it; volumes opened later without a voxel size in their file get it too.")

    def _give_voxel_size(self, layer) -> None:
        """A volume opened after a voxel size was typed here gets it where its file stores none
        (with 1 per axis it sat, 1/8 the size, in a corner of the world, invisible at the current
        slice); one whose file has another keeps it. The status line says which."""
        typed = self._typed_voxel
        if (typed is None or layer.__class__.__name__ not in ("Image", "Labels") or L.META in layer.metadata
                or L.spatial_ndim(layer) != len(typed)):
            return
        current = L.spatial_scale(layer)
        in_file = layer.metadata.get("voxel_size_in_file")
        if in_file or (in_file is None and any(s != 1 for s in current)):
            if current != typed:
                self.status.setText(f"'{layer.name}' keeps its own voxel size {_fmt(current)} "
                                    f"(typed here: {_fmt(typed)}).")
            return
        layer.scale = typed
        self.viewer.reset_view()
        self.status.setText(f"'{layer.name}' stores no voxel size: it gets {_fmt(typed)}, as typed here.")

    def _schedule_count(self, *_):
        self._count_timer.start()

    def update_count(self) -> None:
        layer = self.annotation_combo.layer()
        if layer is None:
            self._show_count((0, 0))
        else:  # counted in a worker
            self.count_job.submit(layer.data, self.sparse_check.isChecked())

    def _show_count(self, counts: tuple[int, int]) -> None:
        n, total = counts
        if total == 0:
            gt = self.gt_combo.layer()
            self.annotated_label.setText(
                "annotated: no annotation layer" + (f" (ground truth '{gt.name}' is used)" if gt else "")
            )
            return
        self.annotated_label.setText(f"annotated: {n:,} voxels ({100.0 * n / total:.2f} %)")
