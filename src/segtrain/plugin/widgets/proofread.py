"""Proofread dock widget: fix the segmentation in a few clicks, then teach the model.

Pick a tool and click segments in the viewer (2D or 3D, any slice): *Merge* (click two segments),
*Split* (the segment falls back into its merge-tree children one level down), *Seeds* (click a
seed in each part, then *Split at seeds*: a seeded watershed on the predictions' boundaries,
restricted to the segment), *Delete*, *Paint* (paint the missing object in the scratch layer,
then *Add painted object*). Undo / Redo; the edit log is listed and travels with the
segmentation: a merge-tree segmentation keeps its edits on top when the Segment slider moves,
Export writes the edited segmentation with the log (``*_proofreading.npz``), *Open* reads one back.

*Use corrections as annotation* turns what the edits confirmed (the neighbourhood of each split's
new boundary and seeds, of each merge's removed boundary, deleted areas as background, painted
objects; :func:`segtrain.proofread.corrections_annotation`), or the edited objects whole, or the
whole segmentation, into annotation (unknown elsewhere) in the annotation layer; Train's
*Fine-tune* then continues from the model's weights on it.

Across a batch (the Batch panel's output): *Previous image* / *Next image* show the batch's images one
after the other, each with its own segmentation layer, edits and log (kept while its layers are open);
on a batch image, *Use corrections as annotation* turns the corrections of every corrected image of the
batch into a corrections layer of that image, and Train's *Fine-tune* trains on all of them, each with
its own image. Every edit runs in a worker (:mod:`segtrain.plugin.workers`); the core
is :mod:`segtrain.proofread`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import LayerCombo, Panel, compact, status_label
from segtrain.plugin.widgets.batch import BATCH_META, batch_entries, read_batch_image, show_batch_image
from segtrain.plugin.workers import notify_error, notify_info, start_worker
from segtrain.proofread import Proofreader, boundary_map, corrections_annotation
from segtrain.proofread.annotation import MEMBRANES, RADIUS
from segtrain.tasks import is_affinities, is_segmentable

TOOLS = ("Navigate", "Merge", "Split", "Seeds", "Delete", "Paint")
SEEDS_LAYER = "split seeds"
PAINT_LAYER = "missing object"
SCOPES = {"what the edits confirmed": "confirmed", "edited objects": "edited", "whole segmentation": "all"}
#: "Predicted membranes as background" (affinity segmentations) is not ticked when the panel opens:
#: it helped on a real shift with a well-trained parent and hurt with a weak one (docs/training.md)
MEMBRANES_BY_DEFAULT = False


def _proofreadable(layer: Any) -> bool:
    """Labels that can be proofread: segmentations, labels read from files (not the scratch layers
    nor annotation)."""
    return layer.name != PAINT_LAYER and L.layer_kind(layer) in (None, "segmentation")


# --- worker bodies (core calls only) -------------------------------------------------------------
def apply_edit(reader: Proofreader, op: str, *args):
    """Run one edit (``op`` is a Proofreader method name); returns the edit (or None)."""
    return getattr(reader, op)(*args)


def uncertain_regions(uncertainty: np.ndarray, n: int = 20):
    """The ``n`` most uncertain non-overlapping regions of a map: 64 x 64 pixels (8 slices deep in 3D)."""
    from segtrain.predict.uncertainty import (
        rank_patches,  # beside PyTorch: imported in the worker
    )

    uncertainty = np.asarray(uncertainty, dtype=np.float32)
    patch = (8, 64, 64)[-uncertainty.ndim:]
    return rank_patches(uncertainty, patch, n=n)


def _with_boundary(reader: Proofreader, source_array, source_kind) -> None:
    """Give ``reader`` the boundary map of its source prediction (once, when it fits)."""
    if reader.boundary is None and source_array is not None and is_segmentable(source_kind):
        boundary = boundary_map(source_array, source_kind)
        if boundary.shape == tuple(reader.fragments.shape):
            reader.boundary = boundary


def annotation_and_counts(reader: Proofreader, scope, membranes_of=None, **kwargs) -> tuple[np.ndarray, int, int]:
    """``(the corrections as annotation, corrected objects, annotated voxels)``
    (:func:`corrections_annotation`; counted here, not in the GUI thread). ``membranes_of``: the
    source prediction ``(array, kind)`` whose membranes (boundary map > :data:`MEMBRANES`) inside
    the corrected objects become background."""
    if membranes_of is not None:
        _with_boundary(reader, *membranes_of)
        kwargs["boundary_background"] = MEMBRANES
    annotation = corrections_annotation(reader, scope, **kwargs)
    objects = len(np.unique(annotation[(annotation > 0) & (annotation < L.BACKGROUND_LABEL)]))
    return annotation, objects, int(np.count_nonzero(annotation))


def batch_step(out, current: str | None, step: int):
    """``(out, key, index, total, (image, labels, voxel size, attrs) or None)`` of the batch image
    ``step`` away from ``current`` (the first for None; key None past either end)."""
    entries = batch_entries(out)
    keys = [row["key"] for row in entries]
    index = 0 if current not in keys else keys.index(current) + step
    if not 0 <= index < len(keys):
        return out, None, index, len(keys), None
    return out, keys[index], index, len(keys), read_batch_image(entries[index], out)


def batch_annotations(readers, scope, **kwargs) -> list:
    """:func:`annotation_and_counts` of each reader."""
    return [annotation_and_counts(reader, scope, **kwargs) for reader in readers]


def seeded_split(reader: Proofreader, seeds, source_array, source_kind):
    _with_boundary(reader, source_array, source_kind)
    return reader.split_with_seeds(seeds)


class ProofreadWidget(Panel):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = L.session(napari_viewer)
        self.worker = None
        self.picked: list = []  # merge: the first segment's point
        self.layer = None  # the segmentation being proofread

        # only segmentations are chosen by themselves: other labels (ground truth above all) only by the user
        self.seg_combo = LayerCombo(napari_viewer, ("Labels",), allow_none=True, predicate=_proofreadable,
                                    prefer=L.kind_is("segmentation"))
        self.tool_group = QButtonGroup(self)
        self.tool_buttons: dict[str, QPushButton] = {}
        grid = QGridLayout()
        grid.setSpacing(2)
        for i, name in enumerate(TOOLS):
            button = QPushButton(name)
            button.setCheckable(True)
            self.tool_group.addButton(button)
            self.tool_buttons[name] = button
            grid.addWidget(button, i // 3, i % 3)
        self.tool_buttons["Navigate"].setChecked(True)
        self.seeds_button = QPushButton("Split at seeds")
        self.paint_button = QPushButton("Add painted object")
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.log_list = QListWidget()
        self.log_list.setMaximumHeight(110)
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(list(SCOPES))
        self.scope_combo.setToolTip("What becomes annotation: near each edit (the new or removed boundary, the "
                                    "seeds and clicks, deleted areas, painted objects), the edited objects whole, "
                                    "or the whole segmentation; unknown elsewhere.")
        self.radius_spin = QSpinBox()
        self.radius_spin.setRange(1, 200)
        self.radius_spin.setValue(RADIUS)
        self.radius_spin.setSuffix(" voxels")
        self.radius_spin.setToolTip("How far around each edit's boundary and points the corrections count as "
                                    "annotation (along the finest axis).")
        self.membranes_check = QCheckBox("Predicted membranes as background")
        self.membranes_check.setChecked(MEMBRANES_BY_DEFAULT)
        self.membranes_check.setToolTip(
            f"Affinity segmentations: where the prediction shows a membrane (boundary above {MEMBRANES}) inside a "
            "corrected object, the annotation says background, as EM ground truth does. A merge alone only says "
            "'these pixels belong together'; the membranes say where objects end. Tick it when the predicted "
            "membranes look right: it helped a well-trained model on a new instrument and hurt a weak one whose "
            "membranes ran through objects (docs/training.md, 'A real shift').")
        self.annotate_button = QPushButton("Use corrections as annotation")
        self.uncertainty_combo = LayerCombo(napari_viewer, ("Image",), allow_none=True, predicate=L.kind_is("uncertainty"),
                                            prefer=self._same_image_uncertainty)
        self.next_button = QPushButton("Next uncertain region")
        self.next_button.setToolTip("Where to look next: the regions where the test-time augmented predictions "
                                    "disagree most (Predict with Uncertainty ticked), most uncertain first.")
        self.regions: list = []  # ranked regions of the uncertainty layer
        self._regions_of = None  # the uncertainty array they were ranked for
        self._regions_layer = None
        self.region_index = -1
        self.prev_image_button = QPushButton("Previous image")
        self.next_image_button = QPushButton("Next image")
        self.batch_label = QLabel("")
        self.open_edit = QLineEdit()
        self.open_edit.setPlaceholderText("*_proofreading.npz")
        self.open_button = QPushButton("Open")
        self.status = status_label()

        form = compact(QFormLayout())
        form.addRow("Segmentation", self.seg_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.prev_image_button)
        row.addWidget(self.next_image_button)
        layout.addLayout(row)
        layout.addWidget(self.batch_label)
        layout.addWidget(QLabel("Tool (then click in the viewer)"))
        layout.addLayout(grid)
        row = QHBoxLayout()
        row.addWidget(self.seeds_button)
        row.addWidget(self.paint_button)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.undo_button)
        row.addWidget(self.redo_button)
        layout.addLayout(row)
        layout.addWidget(QLabel("Edits"))
        layout.addWidget(self.log_list)
        aform = compact(QFormLayout())
        aform.addRow("Learn from", self.scope_combo)
        aform.addRow("Around each edit", self.radius_spin)
        layout.addLayout(aform)
        layout.addWidget(self.membranes_check)
        layout.addWidget(self.annotate_button)
        nform = compact(QFormLayout())
        nform.addRow("Uncertainty", self.uncertainty_combo)
        layout.addLayout(nform)
        layout.addWidget(self.next_button)
        row = QHBoxLayout()
        row.addWidget(self.open_edit, 1)
        row.addWidget(self.open_button)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.tool_group.buttonClicked.connect(lambda button: self._tool_changed(button.text()))
        self.seeds_button.clicked.connect(lambda: self.split_at_seeds())
        self.paint_button.clicked.connect(lambda: self.add_painted())
        self.undo_button.clicked.connect(lambda: self.undo())
        self.redo_button.clicked.connect(lambda: self.redo())
        self.annotate_button.clicked.connect(lambda: self.use_as_annotation())
        self.scope_combo.currentTextChanged.connect(lambda _: self._refresh_controls())
        self.open_button.clicked.connect(lambda: self.open(self.open_edit.text()))
        self.next_button.clicked.connect(lambda: self.next_region())
        self.prev_image_button.clicked.connect(lambda: self.step_batch(-1))
        self.next_image_button.clicked.connect(lambda: self.step_batch(+1))
        self.session.changed.connect(lambda key: self._refresh_controls() if key == "batch_out" else None)
        self.open_edit.returnPressed.connect(lambda: self.open(self.open_edit.text()))
        self.seg_combo.layer_changed.connect(lambda _: (self._follow_image(), self._refresh_controls()))
        napari_viewer.layers.events.removed.connect(self._layer_removed)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        self.destroyed.connect(lambda *_: self._disconnect(napari_viewer, self._on_mouse))
        self._refresh_controls()
        self.fit()

    def _same_image_uncertainty(self, layer) -> bool:
        """The uncertainty map of the chosen segmentation's image (any, without a segmentation)."""
        segmentation = self.seg_combo.layer()
        if L.layer_kind(layer) != "uncertainty":
            return False
        return segmentation is None or L.image_of(layer, self.viewer) == L.image_of(segmentation, self.viewer)

    def _follow_image(self) -> None:
        """Another segmentation chosen: the uncertainty map of its image, when there is one."""
        current = self.uncertainty_combo.layer()
        if current is not None and self._same_image_uncertainty(current):
            return
        same = [layer for layer in self.viewer.layers if self._same_image_uncertainty(layer)]
        if same:
            self.uncertainty_combo.set_layer(same[-1])

    @staticmethod
    def _disconnect(viewer, callback) -> None:
        try:
            callbacks = viewer.mouse_drag_callbacks
        except (AttributeError, RuntimeError):  # the viewer is closing: nothing left to disconnect
            return
        if callback in callbacks:
            callbacks.remove(callback)

    def _layer_removed(self, event=None) -> None:
        """The uncertainty layer was closed: forget its ranked regions and its array."""
        if self._regions_layer is not None and self._regions_layer not in self.viewer.layers:
            self.regions, self._regions_of, self._regions_layer, self.region_index = [], None, None, -1

    # --- state ---------------------------------------------------------------------------------
    def tool(self) -> str:
        button = self.tool_group.checkedButton()
        return button.text() if button is not None else "Navigate"

    def reader(self, create: bool = False) -> Proofreader | None:
        """The chosen segmentation's Proofreader; with ``create``, one is made for a segmentation
        without a merge tree (instances, masks, labels from a file) and the layer shows it. Ground
        truth is never edited: with ``create`` it gets a copy, '<name> (edited copy)', which is
        chosen and edited instead."""
        layer = self.seg_combo.layer()
        if layer is None:
            return None
        info = L.layer_info(layer)
        if info is not None and info.proofreader is not None:
            return info.proofreader
        if not create:
            return None
        if L.is_ground_truth(layer, self.viewer):
            layer = self._edited_copy(layer)
            info = L.layer_info(layer)
            if info.proofreader is not None:
                return info.proofreader
        labels = np.asarray(layer.data)
        # the edit log records the threshold that made the segmentation (none for labels from a file)
        reader = Proofreader(labels, threshold=None if info is None else info.threshold)
        if info is None or not isinstance(layer.metadata.get(L.META), L.LayerInfo):
            info = info or L.LayerInfo("segmentation", image=L.image_of(layer, self.viewer))
            layer.metadata[L.META] = info
        info.proofreader = reader
        info.fragments = reader.fragments
        layer.data = L.LookupLabels(reader.fragments, reader.relabel, dtype=labels.dtype)
        return reader

    def _edited_copy(self, layer):
        """The copy of the ground-truth ``layer`` that Proofread edits (made once, then reused)."""
        name = f"{layer.name} (edited copy)"
        if name in self.viewer.layers and L.layer_kind(self.viewer.layers[name]) == "segmentation":
            copy = self.viewer.layers[name]
        else:
            info = L.LayerInfo("segmentation", source=layer.name, image=L.image_of(layer, self.viewer))
            copy = self.viewer.add_labels(np.array(layer.data, copy=True), name=L.unique_name(self.viewer, name),
                                          scale=layer.scale, translate=layer.translate, metadata={L.META: info})
        self.seg_combo.set_layer(copy)
        notify_info(f"'{layer.name}' is ground truth and stays as it is: the edits go to its copy '{copy.name}'.",
                    self.status)
        return copy

    def busy(self) -> bool:
        return self.worker is not None

    def _refresh_controls(self) -> None:
        reader = self.reader()
        self.undo_button.setEnabled(bool(reader and reader.edits))
        self.redo_button.setEnabled(bool(reader and reader.redo_stack))
        self.seeds_button.setVisible(self.tool() == "Seeds")
        self.paint_button.setVisible(self.tool() == "Paint")
        self.annotate_button.setEnabled(reader is not None)
        in_batch = self.session.batch_out is not None
        self.prev_image_button.setVisible(in_batch)
        self.next_image_button.setVisible(in_batch)
        self.batch_label.setVisible(in_batch)
        self.radius_spin.setEnabled(SCOPES[self.scope_combo.currentText()] == "confirmed")
        self.membranes_check.setEnabled(self._membrane_source() is not None)
        self.log_list.clear()
        if self.seg_combo.layer() is None and not self.status.text():
            self.status.setText("No segmentation yet: build one in Segment, or choose labels above to proofread "
                                "(ground truth is edited as a copy).")
        if reader is not None:
            for n, edit in enumerate(reader.edits, start=1):
                self.log_list.addItem(f"{n}. {edit.describe()}")

    def _tool_changed(self, name: str) -> None:
        self.picked = []
        layer = self.seg_combo.layer()
        if name == "Seeds" and layer is not None:
            self._scratch_points(layer)
        if name == "Paint" and layer is not None:
            scratch = self._scratch_labels(layer)
            self.viewer.layers.selection.active = scratch
            scratch.mode = "paint"
            scratch.selected_label = 1
        elif layer is not None and layer in self.viewer.layers:
            self.viewer.layers.selection.active = layer
        hints = {"Navigate": "", "Merge": "Click the two segments to merge.",
                 "Split": "Click a segment to split it one level down the merge tree.",
                 "Seeds": "Click a seed in each part of one segment, then Split at seeds.",
                 "Delete": "Click a segment to delete it.",
                 "Paint": f"Paint the missing object in '{PAINT_LAYER}', then Add painted object."}
        self.status.setText(hints[name])
        self._refresh_controls()

    def _scratch_points(self, layer):
        if SEEDS_LAYER in self.viewer.layers:
            points = self.viewer.layers[SEEDS_LAYER]
            points.data = np.zeros((0, layer.ndim))
            return points
        return self.viewer.add_points(np.zeros((0, layer.ndim)), name=SEEDS_LAYER, size=4, face_color="yellow",
                                      scale=layer.scale, translate=layer.translate)

    def _scratch_labels(self, layer):
        if PAINT_LAYER in self.viewer.layers:
            return self.viewer.layers[PAINT_LAYER]
        return self.viewer.add_labels(np.zeros(layer.data.shape, np.uint8), name=PAINT_LAYER,
                                      scale=layer.scale, translate=layer.translate)

    # --- clicks in the viewer ------------------------------------------------------------------
    def _on_mouse(self, viewer, event):
        tool = self.tool()
        if tool in ("Navigate", "Paint") or event.button != 1:
            return
        layer = self.seg_combo.layer()
        if layer is None or layer not in viewer.layers:
            return
        point = [float(c) for c in layer.world_to_data(event.position)]
        self.click(tool, point)

    def click(self, tool: str, point) -> None:
        """What a click at ``point`` (data coordinates) does with ``tool``."""
        if self.busy():
            self.status.setText("An edit is being applied; click again when it is done.")
            return
        reader = self.reader(create=True)
        if reader is None:
            notify_error("No segmentation to proofread: build one in Segment (or choose labels to proofread) first.",
                         self.status)
            return
        try:
            segment = reader.segment_at(point)
            if tool == "Seeds":  # refused at the click, not only at Split at seeds
                points = self._scratch_points_layer()
                reader.check_seed(point, [list(p) for p in points.data])
        except Exception as error:  # noqa: BLE001 - outside the volume, a seed on background: one sentence
            notify_error(str(error), self.status)
            return
        if tool == "Seeds":
            points.add(np.asarray(point)[None])
            self.status.setText(f"{len(points.data)} seeds in segment {segment}; add one per part, then "
                                "Split at seeds.")
            return
        if tool == "Merge":
            if not self.picked:
                if segment == 0:
                    notify_error("That is background; click a segment to merge.", self.status)
                    return
                self.picked = [point]
                self.status.setText(f"Segment {segment} picked; click the segment to merge it with.")
                return
            points, self.picked = [*self.picked, point], []
            self._run(apply_edit, reader, "merge", points)
        elif tool == "Split":
            self._run(apply_edit, reader, "split", point)
        elif tool == "Delete":
            self._run(apply_edit, reader, "delete", point)

    def _scratch_points_layer(self):
        if SEEDS_LAYER not in self.viewer.layers:
            return self._scratch_points(self.seg_combo.layer())
        return self.viewer.layers[SEEDS_LAYER]

    # --- edits ---------------------------------------------------------------------------------
    def _run(self, func, *args) -> None:
        self.status.setText("Applying the edit ...")
        self.worker = start_worker(func, *args, on_return=self._edited, on_finish=self._edit_finished,
                                   action="The edit", status=self.status)

    def _edit_finished(self) -> None:
        self.worker = None
        self._refresh_controls()

    def _edited(self, edit) -> None:
        self._show()
        if edit is not None:
            reader = self.reader()
            self.status.setText(f"{edit.describe().capitalize()}; {reader.summary()}.")

    def _show(self) -> None:
        """Redraw the segmentation from its proofreader (the fragments may have been copied)."""
        layer = self.seg_combo.layer()
        reader = self.reader()
        if layer is None or reader is None:
            return
        info = L.layer_info(layer)
        if isinstance(layer.data, L.LookupLabels):
            layer.data.fragments = reader.fragments
        info.fragments = reader.fragments
        layer.refresh()
        self._refresh_controls()
        self.session.set(edited=layer.name)  # measurements of it follow the edit

    def split_at_seeds(self) -> None:
        if self.busy():
            return
        reader = self.reader(create=True)
        points = self.viewer.layers[SEEDS_LAYER] if SEEDS_LAYER in self.viewer.layers else None
        if reader is None or points is None or len(points.data) < 2:
            notify_error("Put at least two seeds in the segment to split (one in each part) with the Seeds tool.",
                         self.status)
            return
        layer = self.seg_combo.layer()
        seeds = [list(layer.world_to_data(points.data_to_world(p))) for p in points.data]
        array, kind = self._source_prediction()
        points.data = np.zeros((0, layer.ndim))
        self._run(seeded_split, reader, seeds, array, kind)

    def _source_layer(self, layer):
        info = L.layer_info(layer)
        name = None if info is None else info.source
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _source_prediction(self) -> tuple[Any, str | None]:
        """``(array, kind)`` of the prediction layer the chosen segmentation was cut from, or
        ``(None, None)``."""
        layer = self.seg_combo.layer()
        source = None if layer is None else self._source_layer(layer)
        info = None if source is None else L.layer_info(source)
        return (None, None) if info is None else (info.array, info.kind)

    def _membrane_source(self) -> tuple[Any, str] | None:
        """The source prediction when it is affinities (the membranes "Predicted membranes as
        background" reads), or None."""
        array, kind = self._source_prediction()
        return (array, kind) if array is not None and is_affinities(kind) else None

    def add_painted(self) -> None:
        if self.busy():
            return
        reader = self.reader(create=True)
        if reader is None or PAINT_LAYER not in self.viewer.layers:
            notify_error("Choose the Paint tool and paint the missing object first.", self.status)
            return
        scratch = self.viewer.layers[PAINT_LAYER]
        mask = np.asarray(scratch.data) > 0
        scratch.data = np.zeros_like(scratch.data)
        self._run(apply_edit, reader, "paint", mask)

    def undo(self) -> None:
        reader = self.reader()
        if reader is None or self.busy():
            return
        edit = reader.undo()
        self._show()
        if edit is not None:
            self.status.setText(f"Undone: {edit.describe()}; {reader.summary()}.")

    def redo(self) -> None:
        reader = self.reader()
        if reader is None or self.busy():
            return
        edit = reader.redo()
        self._show()
        if edit is not None:
            self.status.setText(f"Redone: {edit.describe()}; {reader.summary()}.")

    # --- corrections -> annotation -------------------------------------------------------------
    def use_as_annotation(self) -> None:
        """The corrections (in the chosen scope) into the annotation layer, computed in a worker."""
        reader = self.reader()
        layer = self.seg_combo.layer()
        if reader is None or layer is None:
            notify_error("No edits to learn from: proofread the segmentation first.", self.status)
            return
        if self.busy():
            return
        if BATCH_META in layer.metadata:
            self._batch_annotation(layer)
            return
        existing_layer = self._annotation_of_same_image(layer, reader)
        existing = None if existing_layer is None else np.asarray(existing_layer.data)
        scope = SCOPES[self.scope_combo.currentText()]
        membranes = self._membrane_source() if self.membranes_check.isChecked() else None
        self.status.setText("Turning the corrections into annotation ...")
        self.worker = start_worker(
            annotation_and_counts, reader, scope, membranes, existing=existing, radius=self.radius_spin.value(),
            sampling=tuple(float(s) for s in layer.scale),
            on_return=lambda result: self._annotated(*result, layer, existing_layer),
            on_finish=self._edit_finished, action="Turning the corrections into annotation", status=self.status)
        self._refresh_controls()

    def _annotation_of_same_image(self, layer, reader):
        """The annotation layer (chosen in Data & annotation, made by the panels) the corrections go
        into: only one of the segmentation's image and shape; None: a new corrections layer."""
        name = self.session.annotation_layer
        existing = self.viewer.layers[name] if name and name in self.viewer.layers else None
        if (existing is None or L.layer_kind(existing) != "annotation"
                or tuple(existing.data.shape) != tuple(reader.fragments.shape)):
            return None
        image = L.image_of(layer, self.viewer)
        return existing if image is not None and L.image_of(existing, self.viewer) == image else None

    def _new_corrections_layer(self, seg, annotation: np.ndarray, visible: bool = True):
        """A new annotation layer with the corrections of ``seg``: they know the image they were made
        on (Train's Fine-tune pairs them with it); named '<image> corrections' unless that is taken."""
        info = L.LayerInfo("annotation", source=seg.name, image=L.image_of(seg, self.viewer))
        name = L.unique_name(self.viewer, L.derived_name(seg, "corrections", self.viewer))
        return self.viewer.add_labels(annotation, name=name, scale=seg.scale, translate=seg.translate,
                                      metadata={L.META: info}, visible=visible)

    def _annotated(self, annotation: np.ndarray, objects: int, known: int, layer, existing_layer) -> None:
        if existing_layer is not None and existing_layer in self.viewer.layers:
            existing_layer.data = annotation
        else:
            existing_layer = self._new_corrections_layer(layer, annotation)
        self.session.set(annotation_layer=existing_layer.name)
        notify_info(f"'{existing_layer.name}' now holds {objects} corrected objects ({known:,} annotated voxels); "
                    "press Fine-tune in Train to teach the model.", self.status)

    # --- across a batch ------------------------------------------------------------------------
    def _batch_layers(self, out: str) -> list:
        """The segmentation layers of the batch in ``out`` that are open, in the batch's order."""
        return [layer for layer in self.viewer.layers
                if layer.metadata.get(BATCH_META, {}).get("out") == out
                and layer.metadata[BATCH_META].get("role") == "labels"]

    def step_batch(self, step: int) -> None:
        """Show the batch's previous / next finished image (its layers reused when open, so its
        edits and log stay) and proofread it."""
        out = self.session.batch_out
        if out is None or self.busy():
            return
        layer = self.seg_combo.layer()
        meta = {} if layer is None else layer.metadata.get(BATCH_META, {})
        current = meta.get("key") if meta.get("out") == str(Path(out).resolve()) else None
        self.status.setText("Opening the image ...")
        self.worker = start_worker(batch_step, out, current, step, on_return=self._stepped,
                                   on_finish=self._edit_finished, action="Opening the image", status=self.status)

    def _stepped(self, result) -> None:
        out, key, index, total, data = result
        if key is None:
            self.status.setText("No further image in this direction: that was the batch's "
                                f"{'first' if index <= 0 else 'last'} finished image.")
            return
        same = [layer for layer in self._batch_layers(str(Path(out).resolve()))
                if layer.metadata[BATCH_META]["key"] == key]
        if same:  # already open: its edits and log as they were
            for layer in self.viewer.layers:
                if BATCH_META in layer.metadata:
                    layer.visible = layer.metadata[BATCH_META]["key"] == key
            seg = same[0]
        else:
            seg = show_batch_image(self.viewer, out, key, *data)
        self.seg_combo.set_layer(seg)
        self.viewer.reset_view()
        reader = self.reader()
        edits = 0 if reader is None else len(reader.edits)
        self.batch_label.setText(f"Batch image {index + 1} of {total}: {key} ({edits} edits)")
        self.status.setText(f"Proofreading {key}.")
        self._refresh_controls()

    def _batch_annotation(self, layer) -> None:
        """The corrections of every edited image of ``layer``'s batch into a corrections layer each."""
        out = layer.metadata[BATCH_META]["out"]
        edited = [seg for seg in self._batch_layers(out)
                  if L.layer_info(seg) is not None and L.layer_info(seg).proofreader is not None
                  and L.layer_info(seg).proofreader.edits]
        if not edited:
            notify_error("No edits to learn from in this batch: proofread some of its images first.", self.status)
            return
        scope = SCOPES[self.scope_combo.currentText()]
        jobs = [(seg, L.layer_info(seg).proofreader) for seg in edited]
        self.status.setText(f"Turning the corrections of {len(jobs)} images into annotation ...")
        self.worker = start_worker(
            batch_annotations, [reader for _, reader in jobs], scope, radius=self.radius_spin.value(),
            sampling=tuple(float(s) for s in layer.scale),
            on_return=lambda results: self._batch_annotated([seg for seg, _ in jobs], results),
            on_finish=self._edit_finished, action="Turning the corrections into annotation", status=self.status)
        self._refresh_controls()

    def _batch_annotated(self, segs, results) -> None:
        names, total = [], 0
        for seg, (annotation, objects, _known) in zip(segs, results):
            if seg not in self.viewer.layers:
                continue
            name = L.derived_name(seg, "corrections", self.viewer)
            layer = self.viewer.layers[name] if name in self.viewer.layers else None
            if layer is not None and L.layer_kind(layer) == "annotation":
                layer.data = annotation
            else:  # a layer of another kind holding the name keeps it: the new one is named apart
                layer = self._new_corrections_layer(seg, annotation, visible=seg.visible)
            names.append(layer.name)
            total += objects
        self.session.set(batch_corrections=names, annotation_layer=names[0])
        notify_info(f"{len(names)} images of the batch now have corrections layers ({total} corrected objects); "
                    "press Fine-tune in Train to teach the model on all of them.", self.status)

    # --- where to look next -------------------------------------------------------------------
    def next_region(self) -> None:
        """Move the view to the next most uncertain region (ranked in a worker the first time)."""
        layer = self.uncertainty_combo.layer()
        if layer is None:
            notify_error("No uncertainty layer: predict with Uncertainty ticked (Predict panel), then ask again.",
                         self.status)
            return
        info = L.layer_info(layer)
        source = info.array if info.array is not None else layer.data
        if self._regions_of is not source:  # (napari hands plugins proxies of layers: compare the data)
            if self.busy():
                return
            self.status.setText("Ranking the uncertain regions ...")
            self.worker = start_worker(uncertain_regions, source, on_return=lambda regions: self._ranked(layer, source, regions),
                                       on_finish=self._edit_finished, action="Ranking the regions", status=self.status)
            return
        self._go_to_next()

    def _ranked(self, layer, source, regions) -> None:
        self.regions, self._regions_of, self.region_index = list(regions), source, -1
        self._regions_layer = layer
        self._go_to_next()

    def _go_to_next(self) -> None:
        if not self.regions:
            self.status.setText("The uncertainty layer is empty: nothing to look at.")
            return
        self.region_index = (self.region_index + 1) % len(self.regions)
        region = self.regions[self.region_index]
        layer = self._regions_layer
        world = layer.data_to_world([float(c) for c in region.center])
        displayed = list(self.viewer.dims.displayed)
        for axis in range(len(world)):
            if axis not in displayed:
                self.viewer.dims.set_point(axis, world[axis])
        self.viewer.camera.center = tuple(world[a] for a in displayed)
        where = ", ".join(f"{s.start}-{s.stop}" for s in region.box)
        self.status.setText(f"Region {self.region_index + 1} of {len(self.regions)} (mean uncertainty "
                            f"{region.score:.3f}): {where}.")

    # --- the log on disk -----------------------------------------------------------------------
    def open(self, path: str) -> None:
        """Add the segmentation and edit log an Export wrote (``*_proofreading.npz``) as a layer."""
        path = Path(path.strip()).expanduser()
        if not path.is_file():
            notify_error(f"No proofreading file at {path}; give a *_proofreading.npz written by Export.", self.status)
            return
        try:
            reader = Proofreader.load(path)
        except Exception as error:  # noqa: BLE001 - one sentence
            notify_error(str(error), self.status)
            return
        layer_attrs = reader.attrs.get("layer", {})
        info = L.LayerInfo("segmentation", threshold=reader.threshold, fragments=reader.fragments)
        info.proofreader = reader
        name = path.name.removesuffix(".npz")
        layer = self.viewer.add_labels(L.LookupLabels(reader.fragments, reader.relabel), name=name,
                                       scale=layer_attrs.get("scale"), translate=layer_attrs.get("translate"),
                                       metadata={L.META: info})
        self.seg_combo.set_layer(layer)
        self._refresh_controls()
        self.status.setText(f"Opened {path.name}: {reader.summary()}.")
