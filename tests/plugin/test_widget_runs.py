"""Runs panel, driven by clicks: a table of real run folders (steps reached, settings, best and final
metric, per-class metrics, size), sorted by clicking a column header, a run handed to Predict, and the
validation curves of chosen runs plotted together."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QPoint, Qt
from qtpy.QtTest import QTest

from segtrain.config import preset
from segtrain.plugin.widgets.predict import PredictWidget
from segtrain.plugin.widgets.runs import RunsWidget
from segtrain.runs import RunFolder


def _run(root: Path, name: str, preset_name: str, steps: int, best: float | None, size: int,
         rounds: int = 1, classes: dict | None = None) -> RunFolder:
    """A real run folder: config, metrics (``rounds`` validations up to ``steps``, the last at
    ``best``) and a checkpoint-sized file (no training needed)."""
    folder = RunFolder.at(root / name, create=True)
    config = preset(preset_name)
    folder.save_config(config)
    history = [] if best is None else [
        {"step": steps * (k + 1) // rounds, "val/loss": 0.1, "val/voi": best + (rounds - 1 - k) * 0.1,
         **(classes or {})} for k in range(rounds)]
    folder.write_metrics({"monitor": "val/voi", "mode": "min", "best": best, "best_step": steps if best else None,
                          "steps": steps, "max_steps": config.train.max_steps}, history)
    (folder.checkpoints_dir / "final.ckpt").write_bytes(b"\0" * size)
    return folder


def _click_header(table, column: int) -> None:
    header = table.horizontalHeader()
    x = header.sectionViewportPosition(column) + header.sectionSize(column) // 2
    QTest.mouseClick(header.viewport(), Qt.LeftButton, Qt.NoModifier, QPoint(x, header.height() // 2))


def _click_row(table, row: int, modifier=Qt.NoModifier) -> None:
    rect = table.visualItemRect(table.item(row, 0))
    QTest.mouseClick(table.viewport(), Qt.LeftButton, modifier, rect.center())


def _column(table, title: str) -> int:
    titles = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert title in titles, titles
    return titles.index(title)


def _names(table) -> list[str]:
    return [table.item(r, 0).text()[0] for r in range(table.rowCount())]


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
    _click_header(runs.table, _column(runs.table, "MB"))  # size on disk, numerically
    assert _names(runs.table) == ["c", "b", "a"]
    row = {runs.table.horizontalHeaderItem(c).text(): runs.table.item(0, c).text()
           for c in range(runs.table.columnCount())}
    assert row["MB"] == "1" and row["status"] == "incomplete"  # its only checkpoint is unreadable
    assert row["steps"] == "50" and row["planned"] == "20000" and row["best"] == "-" and row["metric"] == "-"
    assert row["model"] == "smp Unet resnet18" and row["patch"] == "256x256" and row["lr"] == "0.0003"
    _click_header(runs.table, 0)
    _click_row(runs.table, 0)
    gui.click(runs.load_button)
    assert Path(predict.checkpoint_edit.text()) == root / "a-20261121-100000"
    # its only checkpoint here is not a real one: Predict says so instead of offering it
    gui.wait_until(lambda: predict.model_label.text() == "model: this run has no readable checkpoint yet", timeout=10)
    assert predict.which_combo.count() == 0


def test_runs_sort_with_missing_values_last_and_compare_plots_chosen_runs(docked, gui, tmp_path, error_messages):
    root = tmp_path / "runs"
    _run(root, "b-20261120-100000", "em3d", 900, 1.2, 1000, rounds=3)
    _run(root, "a-20261121-100000", "em3d_quick", 3000, 0.9, 1000, rounds=4,
         classes={"val/iou_class1": 0.7, "val/f1_class1": 0.82})
    _run(root, "c-20261122-100000", "wells2d", 50, None, 1000)
    viewer, dock = docked
    runs = RunsWidget(viewer)
    dock(runs)
    gui.type(runs.root_edit, str(root))
    assert runs.table.rowCount() == 3
    column = _column(runs.table, "iou_class1")  # a per-class column, from the run that has it
    assert _column(runs.table, "f1_class1") == column + 1
    best = _column(runs.table, "best")
    _click_header(runs.table, best)
    assert _names(runs.table) == ["a", "b", "c"]  # c has no metric: last
    _click_header(runs.table, best)  # again: descending, c still last
    assert runs.table.horizontalHeader().sortIndicatorOrder() == Qt.DescendingOrder
    assert _names(runs.table) == ["b", "a", "c"]
    _click_header(runs.table, column)
    assert _names(runs.table)[0] == "a" and runs.table.item(0, column).text() == "0.7"
    _click_header(runs.table, 0)  # by name: a, b, c
    if runs.table.horizontalHeader().sortIndicatorOrder() == Qt.DescendingOrder:
        _click_header(runs.table, 0)
    assert _names(runs.table) == ["a", "b", "c"]

    gui.click(runs.compare_button)  # nothing selected
    assert error_messages()[-1].startswith("Select the runs to compare in the table first")
    assert runs.metric_combo.currentText() == "voi"
    _click_row(runs.table, 0)
    _click_row(runs.table, 1, Qt.ControlModifier)
    _click_row(runs.table, 2, Qt.ControlModifier)
    gui.click(runs.compare_button)
    lines = runs.axes.get_lines()
    assert sorted(line.get_label() for line in lines) == ["a-20261121-100000", "b-20261120-100000"]
    assert {line.get_label(): len(line.get_xdata()) for line in lines} == {"a-20261121-100000": 4,
                                                                          "b-20261120-100000": 3}
    a = next(line for line in lines if line.get_label().startswith("a"))
    assert list(a.get_xdata()) == [750, 1500, 2250, 3000] and a.get_ydata()[-1] == 0.9
    assert runs.canvas.isVisible() and runs.axes.get_ylabel() == "voi"
    assert runs.status.text() == "voi of 2 run(s) against step; 1 without voi."
    # another metric, another comparison: one line, of the run that has it
    gui.choose(runs.metric_combo, "iou_class1")
    gui.click(runs.compare_button)
    assert [line.get_label() for line in runs.axes.get_lines()] == ["a-20261121-100000"]


def test_use_in_predict_keeps_the_selection_so_compare_works(docked, gui, tmp_path, error_messages):
    """The run handed to Predict stays selected with the others (the table is refilled when the
    session's run changes), so Compare right after "Use in Predict" plots them."""
    root = tmp_path / "runs"
    _run(root, "b-20261120-100000", "em3d", 900, 1.2, 1000, rounds=3)
    _run(root, "a-20261121-100000", "em3d_quick", 3000, 0.9, 1000, rounds=4)
    _run(root, "c-20261122-100000", "em3d", 60, 1.5, 1000, rounds=2)
    viewer, dock = docked
    runs, predict = RunsWidget(viewer), PredictWidget(viewer)
    dock(runs, predict)
    gui.type(runs.root_edit, str(root))
    _click_header(runs.table, _column(runs.table, "best"))  # best first: a, b, c
    assert _names(runs.table) == ["a", "b", "c"]
    _click_row(runs.table, 0)
    _click_row(runs.table, 2, Qt.ControlModifier)
    gui.click(runs.load_button)
    assert Path(predict.checkpoint_edit.text()) == root / "a-20261121-100000"
    assert _names(runs.table) == ["a", "b", "c"]  # the order chosen stays
    assert [p.name[0] for p in runs.selected_paths()] == ["a", "c"]
    gui.click(runs.compare_button)
    assert sorted(line.get_label()[0] for line in runs.axes.get_lines()) == ["a", "c"]
    assert not [m for m in error_messages() if m.startswith("Select")]


def test_runs_folder_defaults_to_the_user_data_folder_and_is_shown_in_train_and_runs(
        docked, gui, tmp_path, monkeypatch):
    """Without $SEGTRAIN_RUNS, runs go to the user data folder (not the folder napari started in);
    with it, there; both panels show it, and a folder typed in Runs is listed."""
    from segtrain.plugin.widgets.train import TrainWidget

    monkeypatch.delenv("SEGTRAIN_RUNS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    monkeypatch.chdir(tmp_path)
    viewer, dock = docked
    runs, train = RunsWidget(viewer), TrainWidget(viewer)
    dock(runs, train)
    default = tmp_path / "data-home" / "segtrain" / "runs"
    assert Path(runs.root_edit.text()) == default and Path(train.runs_root_edit.text()) == default
    assert "SEGTRAIN_RUNS" in runs.root_edit.toolTip() and "SEGTRAIN_RUNS" in train.runs_root_edit.toolTip()

    monkeypatch.setenv("SEGTRAIN_RUNS", str(tmp_path / "mine"))
    _run(tmp_path / "mine", "a-20261121-100000", "em3d_quick", 30, 0.9, 1000)
    from segtrain.plugin import layers as L
    from segtrain.runs import default_runs_root

    L.session(viewer).set(runs_root=default_runs_root())  # what a viewer opened now starts with
    assert Path(runs.root_edit.text()) == tmp_path / "mine" and Path(train.runs_root_edit.text()) == tmp_path / "mine"
    assert runs.table.rowCount() == 1 and runs.status.text() == f"1 run(s) in {tmp_path / 'mine'}"
    other = tmp_path / "other"
    _run(other, "b-20261120-100000", "em3d", 900, 1.2, 1000)
    _run(other, "c-20261122-100000", "em3d", 900, 1.3, 1000)
    gui.type(runs.root_edit, str(other))
    assert runs.table.rowCount() == 2
