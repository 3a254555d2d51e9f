"""RunsWidget: a sortable table of runs; loading a run hands it to the Predict widget."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt

from segtrain.plugin.widgets.predict import PredictWidget
from segtrain.plugin.widgets.runs import RunsWidget


def test_runs_table_sorts_numbers_and_loads(make_napari_viewer, qtbot, tmp_path, monkeypatch,
                                            error_messages):
    from segtrain import runs
    from segtrain.runs import RunSummary

    summaries = [
        RunSummary("b", tmp_path / "b", "em3d", "affinities", 900, "voi", 1.2, "2026-11-20T10:00:00"),
        RunSummary("a", tmp_path / "a", "em3d_quick", "affinities", 10000, "voi", 0.9,
                   "2026-11-21T10:00:00"),
        RunSummary("c", tmp_path / "c", "wells2d", "instances", 50, "f1", None, "2026-11-22T10:00:00"),
    ]
    monkeypatch.setattr(runs, "list_runs", lambda root: list(summaries))
    viewer = make_napari_viewer()
    widget = RunsWidget(viewer)
    predict = PredictWidget(viewer)
    qtbot.addWidget(widget)
    qtbot.addWidget(predict)
    widget.load_selected()  # nothing selected yet
    assert any("Select a run" in m for m in error_messages())
    widget.root_edit.setText(str(tmp_path))
    widget.refresh()
    assert widget.table.rowCount() == 3
    widget.table.sortItems(3, Qt.AscendingOrder)  # steps, numerically (not "10000" < "50")
    assert [widget.table.item(r, 0).text() for r in range(3)] == ["c", "b", "a"]
    widget.table.sortItems(0, Qt.AscendingOrder)
    widget.table.selectRow(0)
    widget.load_selected()
    assert Path(predict.checkpoint_edit.text()) == tmp_path / "a"
