"""Export dock widget: save the segmentation (and fragments, merge tree, predictions) to zarr or
TIFF with voxel size, offset, threshold and settings as metadata. The segmentation is relabelled
for the whole volume blockwise (``segtrain.scale.relabel_lazy``, a dask array) and written by
``segtrain.io.write_volume`` (atomic)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from segtrain.plugin import layers as L
from segtrain.plugin.widgets._common import LayerCombo, Panel, compact, status_label
from segtrain.plugin.widgets.export_blockwise import add_to as add_blockwise_section
from segtrain.plugin.workers import notify_error, notify_info, start_worker
from segtrain.io import Volume
from segtrain.io import write_volume
from segtrain.tasks import is_prediction

FORMATS = {"zarr": ".zarr", "TIFF": ".tif"}


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot take the export (None if it can): missing parent, not writable."""
    folder = Path(folder)
    probe_dir = folder if folder.exists() else folder.parent
    if not probe_dir.exists():
        return f"The folder {probe_dir} does not exist; choose an existing folder."
    if not probe_dir.is_dir():
        return f"{probe_dir} is not a folder; choose a folder to export into."
    try:  # a real write: os.access says yes to root even on read-only mounts
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".segtrain-probe-"):
            pass
    except OSError:
        return f"The folder {probe_dir} is read-only (cannot write there); choose a writable folder."
    return None


def export_items(items: list[tuple[str, Any]], folder: Path, base: str, suffix: str,
                 overwrite: bool) -> list[Path]:
    """Worker body: write each (name, Volume or MergeTree) item; returns the written paths."""

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, item in items:
        if name == "merge_tree":
            path = folder / f"{base}_merge_tree.npz"
            item.save(path, overwrite=overwrite)
            written.append(path)
            continue
        if name == "proofreading":  # the edited fragments, the tree and the edit log, to open again
            path, log = folder / f"{base}_proofreading.npz", folder / f"{base}_edit_log.json"
            item.save(path, overwrite=overwrite, log_path=log)
            written += [path, log]
            continue
        path = folder / (f"{base}{suffix}" if name == "segmentation" else f"{base}_{name}{suffix}")
        written.append(Path(write_volume(path, item, overwrite=overwrite)))
    return written


class ExportWidget(Panel):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = L.session(napari_viewer)
        self.worker = None
        self.written: list[Path] = []

        # the newest segmentation of the session by default, never the ground truth
        self.seg_combo = LayerCombo(napari_viewer, ("Labels",), allow_none=True, prefer=L.kind_is("segmentation"))
        self.folder_edit = QLineEdit(str(Path.cwd() / "export"))
        self.browse_button = QPushButton("Browse...")
        self.name_edit = QLineEdit("segmentation")
        self.format_combo = QComboBox()
        self.format_combo.addItems(list(FORMATS))
        self.fragments_check = QCheckBox("fragments")
        self.tree_check = QCheckBox("merge tree")
        self.predictions_check = QCheckBox("predictions")
        self.overwrite_check = QCheckBox("overwrite existing files")
        self.export_button = QPushButton("Export")
        self.status = status_label()

        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.browse_button)
        extras = QVBoxLayout()
        for check in (self.fragments_check, self.tree_check, self.predictions_check):
            extras.addWidget(check)
        form = compact(QFormLayout())
        form.addRow("Segmentation", self.seg_combo)
        form.addRow("Folder", folder_row)
        form.addRow("Name", self.name_edit)
        form.addRow("Format", self.format_combo)
        form.addRow("Also save", extras)
        form.addRow(self.overwrite_check)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.export_button)
        layout.addWidget(self.status)
        self.blockwise = add_blockwise_section(self, layout)  # the whole volume on disk, segtrain scale
        layout.addStretch(1)

        # clicked(bool) must not reach a slot that takes an argument: a real click passes False
        self.browse_button.clicked.connect(lambda: self._browse())
        self.export_button.clicked.connect(lambda: self.export())
        self.fit()

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export folder", self.folder_edit.text())
        if path:
            self.folder_edit.setText(path)

    def items(self, layer) -> list[tuple[str, Any]]:
        """What to write: (name, Volume or MergeTree), with metadata attrs."""

        info = L.layer_info(layer)
        # a merge-tree segmentation (and any proofread one) is its Proofreader: fragments, the tree
        # cut at the threshold, the edits on top
        reader = None if info is None else info.proofreader
        tree = None if reader is None else reader.tree
        data = layer.data
        if reader is not None and isinstance(data, L.LookupLabels):
            from segtrain.scale import relabel_lazy

            data = relabel_lazy(np.asarray(reader.fragments), reader.lut)  # blockwise, at export
        _, state, layer_type = layer.as_layer_data_tuple()
        volume = L.volume_from_layer_data(data, state, layer_type)  # the LayerInfo's attrs included
        items: list[tuple[str, Any]] = [("segmentation", volume)]
        if self.fragments_check.isChecked() and info is not None and info.fragments is not None:
            items.append(("fragments", L.volume_from_layer_data(info.fragments, {**state, "name": "fragments"},
                                                                layer_type)))
        if self.tree_check.isChecked() and tree is not None:
            items.append(("merge_tree", tree))
        if reader is not None and reader.edits:
            reader.attrs["layer"] = {"name": layer.name, "scale": [float(v) for v in layer.scale],
                                     "translate": [float(v) for v in layer.translate]}
            items.append(("proofreading", reader))
        if self.predictions_check.isChecked():
            for other in self.viewer.layers:
                oinfo = L.layer_info(other)
                if oinfo is not None and is_prediction(oinfo.kind) \
                        and oinfo.array is not None and (oinfo.channel or 0) == 0:
                    array = oinfo.array
                    n = min(other.ndim, 3)  # spatial dims (an RGB layer's ndim has no channel)
                    items.append((oinfo.kind, Volume(
                        data=array, voxel_size=tuple(float(s) for s in other.scale[-n:]),
                        offset=tuple(float(t) for t in other.translate[-n:]),
                        axes=(("c",) if array.ndim > n else ()) + ("z", "y", "x")[-n:],
                        name=oinfo.kind, is_labels=False, attrs=oinfo.to_attrs())))
        return items

    def export(self) -> None:
        layer = self.seg_combo.layer()
        if layer is None:
            notify_error("No segmentation to export: segment first (or choose a labels layer).",
                         self.status)
            return
        folder = Path(self.folder_edit.text().strip() or ".").expanduser()
        base = self.name_edit.text().strip() or "segmentation"
        suffix = FORMATS[self.format_combo.currentText()]
        if (folder / f"{base}{suffix}").exists() and not self.overwrite_check.isChecked():
            notify_error(f"{folder / f'{base}{suffix}'} already exists; choose another name or tick "
                         "'overwrite existing files'.", self.status)
            return
        problem = folder_problem(folder)
        if problem:
            notify_error(problem, self.status)
            return
        try:
            items = self.items(layer)
        except Exception as error:  # noqa: BLE001
            from segtrain.plugin.workers import error_message

            notify_error(error_message(error, "Export"), self.status)
            return
        self.export_button.setEnabled(False)
        self.status.setText("Exporting ...")
        self.worker = start_worker(
            export_items, items, folder, base, suffix, self.overwrite_check.isChecked(),
            on_return=self._done, on_finish=self._finished, action="Export", status=self.status,
            progress={"desc": "Exporting"},
        )

    def _done(self, written: list[Path]) -> None:
        self.written = written
        notify_info(f"Exported {', '.join(p.name for p in written)} to {written[0].parent}.",
                    self.status)

    def _finished(self) -> None:
        self.worker = None
        self.export_button.setEnabled(True)
