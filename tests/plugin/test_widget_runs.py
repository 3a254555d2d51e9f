"""Runs panel, driven by clicks: a table of real run folders (steps reached, best metric, size),
sorted by clicking a column header, a run handed to Predict."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QPoint, Qt
from qtpy.QtTest import QTest

from segtrain.config import preset
from segtrain.plugin.widgets.predict import PredictWidget
from segtrain.plugin.widgets.runs import RunsWidget
from segtrain.runs import RunFolder


def _run(root: Path, name: str, preset_name: str, steps: int, best: float | None, size: int) -> RunFolder:
    """A real run folder: config, metrics and a checkpoint-sized file (no training needed)."""
    folder = RunFolder.at(root / name, create=True)
    config = preset(preset_name)
    folder.save_config(config)
    history = [] if best is None else [{"step": steps, "val/loss": 0.1, "val/voi": best}]
    folder.write_metrics({"monitor": "val/voi", "mode": "min", "best": best, "best_step": steps if best else None,
                          "steps": steps, "max_steps": config.train.max_steps}, history)
    (folder.checkpoints_dir / "final.ckpt").write_bytes(b"\0" * size)
    return folder


def _click_header(table, column: int) -> None:
    header = table.horizontalHeader()
    x = header.sectionViewportPosition(column) + header.sectionSize(column) // 2
    QTest.mouseClick(header.viewport(), Qt.LeftButton, Qt.NoModifier, QPoint(x, header.height() // 2))


def _click_row(table, row: int) -> None:
    rect = table.visualItemRect(table.item(row, 0))
    QTest.mouseClick(table.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())


def test_runs_table_sorts_by_header_clicks_and_hands_a_run_to_predict(docked, gui, tmp_path, error_messages):
    root = tmp_path / "runs"
    _run(root, "b-20261120-100000", "em3d", 900, 1.2, 2_000_000)
    _run(root, "a-20261121-100000", "em3d_quick", 10000, 0.9, 5_000_000)
    _run(root, "c-20261122-100000", "wells2d", 50, None, 1_000_000)
    viewer, dock = docked
    runs, predict = RunsWidget(viewer), PredictWidget(viewer)
    dock(runs, predict)
    gui.click(runs.load_button)  # nothing selected yet
    assert error_messages()[-1] == "Select a run in the table first, then load its checkpoint."
    gui.type(runs.root_edit, str(root))  # Enter refreshes
    assert runs.table.rowCount() == 3 and runs.status.text() == f"3 run(s) in {root}"
    _click_header(runs.table, 6)  # size, numerically
    assert [runs.table.item(r, 0).text()[0] for r in range(3)] == ["c", "b", "a"]
    row = {runs.table.horizontalHeaderItem(c).text(): runs.table.item(0, c).text() for c in range(8)}
    assert row["steps"] == "50 / 20000" and row["value"] == "-" and row["best metric"] == "-"
    _click_header(runs.table, 0)
    _click_row(runs.table, 0)
    gui.click(runs.load_button)
    assert Path(predict.checkpoint_edit.text()) == root / "a-20261121-100000"
    # its only checkpoint here is not a real one: Predict says so instead of offering it
    gui.wait_until(lambda: predict.model_label.text() == "model: this run has no readable checkpoint yet", timeout=10)
    assert predict.which_combo.count() == 0
