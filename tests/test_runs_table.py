"""Runs compared: `segtrain runs` and segtrain.runs list, sort and export the runs table (text, CSV,
Markdown); a run folder records the data it saw (paths, shapes, content hashes, voxels per class)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from segtrain.cli import main
from segtrain.config import config_from_dict, preset
from segtrain.errors import InputError
from segtrain.runs import (
    RunFolder,
    array_fingerprint,
    format_csv,
    format_markdown,
    format_table,
    list_runs,
    run_columns,
    sort_runs,
)
from segtrain.train.sources import ArraySource


def make_run(root: Path, name: str, preset_name: str = "em3d_quick", steps: int = 100, best: float | None = 0.5,
             final: float | None = None, lr: float | None = None, classes: dict | None = None,
             parent: str | None = None) -> RunFolder:
    """A real run folder (config, metrics, a checkpoint-sized file) without training."""
    folder = RunFolder.at(root / name, create=True)
    config = preset(preset_name)
    if lr is not None:
        config.train.lr = lr
    folder.save_config(config)
    monitor = "val/voi" if config.task == "affinities" else "val/f1"
    history = []
    if best is not None:
        history = [{"step": steps // 2, "val/loss": 0.2, monitor: best},
                   {"step": steps, "val/loss": 0.1, monitor: best if final is None else final,
                    **{f"val/{k}": v for k, v in (classes or {}).items()}}]
    folder.write_metrics({"monitor": monitor, "mode": "min" if monitor == "val/voi" else "max", "best": best,
                          "best_step": steps // 2 if best is not None else None, "steps": steps,
                          "max_steps": config.train.max_steps}, history)
    (folder.checkpoints_dir / "final.ckpt").write_bytes(b"\0" * 1000)
    if parent:
        folder.set_info(parent=parent)
    return folder


@pytest.fixture
def runs_root(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "b-20261120-100000", steps=900, best=1.2, final=1.4, lr=1e-3)
    make_run(root, "a-20261121-100000", steps=3000, best=0.9, lr=5e-4,
             classes={"iou_class1": 0.7, "f1_class1": 0.82}, parent=str(root / "b-20261120-100000"))
    make_run(root, "c-20261122-100000", preset_name="wells2d", steps=50, best=None)
    return root


def test_table_lists_every_run_with_its_settings_and_metrics(runs_root):
    runs = list_runs(runs_root)
    assert [r.name[0] for r in runs] == ["b", "a", "c"]  # oldest first
    a = runs[1]
    assert (a.model, a.lr, a.batch_size, a.patch) == ("unet3d 8x2", 5e-4, 2, [24, 64, 64])
    assert (a.best_metric, a.best_step, a.final_metric) == (0.9, 1500, 0.9)
    assert a.class_metrics == {"iou_class1": 0.7, "f1_class1": 0.82} and a.parent.endswith("b-20261120-100000")
    assert runs[0].final_metric == 1.4 and runs[2].best_metric is None and runs[2].model == "smp Unet resnet18"
    keys = [c.key for c in run_columns(runs)]
    assert keys[:14] == ["name", "preset", "task", "model", "steps", "status", "max_steps", "lr", "batch", "patch",
                         "metric", "best", "best_step", "final"]
    assert keys[14:] == ["iou_class1", "f1_class1", "parent", "data", "size", "created"]
    lines = format_table(runs).splitlines()
    assert len(lines) == 4 and lines[0].split()[:4] == ["name", "preset", "task", "model"]
    assert "iou_class1" in lines[0] and "data seen" in lines[0]
    row_a = lines[2]
    assert row_a.startswith("a-20261121-100000") and "0.0005" in row_a and "24x64x64" in row_a and "0.82" in row_a
    assert "b-20261120-100000" in row_a  # its parent


def test_sort_orders_rows_and_puts_missing_values_last(runs_root):
    runs = list_runs(runs_root)

    def names(ordered):
        return [r.name[0] for r in ordered]

    # VOI: lower is better; metric columns put the best first by default and "desc" (down from the best)
    assert names(sort_runs(runs, "best")) == ["a", "b", "c"]
    assert names(sort_runs(runs, "best", "desc")) == ["a", "b", "c"]
    assert names(sort_runs(runs, "best", "asc")) == ["b", "a", "c"]  # worst first; c has no metric: last
    assert names(sort_runs(runs, "iou_class1")) == ["a", "b", "c"]
    assert names(sort_runs(runs, "steps")) == ["c", "b", "a"]  # numbers as numbers (50 < 900 < 3000)
    assert names(sort_runs(runs, "steps", "desc")) == ["a", "b", "c"]
    assert names(sort_runs(runs, "name")) == ["a", "b", "c"]
    assert names(sort_runs(runs, "lr", "desc")) == ["b", "a", "c"]
    with pytest.raises(InputError, match=r"Unknown sort key 'bogus'; valid keys are: name, preset, .*iou_class1"):
        sort_runs(runs, "bogus")


def test_csv_round_trips_and_markdown_has_a_line_per_run(runs_root):
    runs = sort_runs(list_runs(runs_root), "name")
    rows = list(csv.reader(io.StringIO(format_csv(runs))))
    header = rows[0]
    assert header == [c.key for c in run_columns(runs)] and len(rows) == 4
    table = [dict(zip(header, row)) for row in rows[1:]]
    assert [t["name"] for t in table] == [r.name for r in runs]
    for t, r in zip(table, runs):  # numbers come back exactly; missing values are empty cells
        assert (float(t["best"]) if t["best"] else None) == r.best_metric
        assert int(t["size"]) == r.size and int(t["steps"]) == r.steps
        assert (float(t["lr"]) if t["lr"] else None) == r.lr
    assert table[0]["parent"] == str(runs_root / "b-20261120-100000") and table[1]["parent"] == ""
    assert table[0]["iou_class1"] == "0.7" and table[2]["best"] == ""
    md = format_markdown(runs).splitlines()
    assert len(md) == 2 + len(runs)
    assert md[0].startswith("| name | preset |") and md[0].endswith("| date |")
    assert set(md[1].replace("|", "")) == {"-"} and md[1].count("|") == md[0].count("|")
    assert all(line.startswith(f"| {r.name} |") and line.count("|") == md[0].count("|")
               for line, r in zip(md[2:], runs))


def test_cli_sorts_writes_files_atomically_and_rejects_unknown_keys(runs_root, tmp_path, capsys):
    for order, expected in [([], "abc"), (["--desc"], "abc"), (["--asc"], "bac"), (["--reverse"], "bac")]:
        assert main(["runs", str(runs_root), "--sort", "best", *order]) == 0  # VOI: lowest first = best first
        lines = capsys.readouterr().out.splitlines()
        assert "".join(line[0] for line in lines[1:]) == expected, order
    out = tmp_path / "runs.csv"
    assert main(["runs", str(runs_root), "--sort", "steps", "--format", "csv", "--output", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert [r[0][0] for r in rows[1:]] == ["c", "b", "a"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".runs.csv")]  # no temporary left
    # an existing file is not overwritten unless asked
    assert main(["runs", str(runs_root), "--format", "markdown", "--output", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text().startswith("name,")
    assert main(["runs", str(runs_root), "--format", "markdown", "--output", str(out), "--overwrite"]) == 0
    assert out.read_text().startswith("| name |") and len(out.read_text().splitlines()) == 5
    capsys.readouterr()
    assert main(["runs", str(runs_root), "--sort", "speed"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Unknown sort key 'speed'; valid keys are: name," in err[0]


def test_cli_sort_best_puts_the_best_first_for_metrics_where_higher_is_better(tmp_path, capsys):
    """F1 (higher is better) and VOI (lower is better) runs: `--sort best` ranks each best first."""
    root = tmp_path / "runs"
    make_run(root, "p-20261120-100000", preset_name="wells2d", best=0.6)
    make_run(root, "q-20261121-100000", preset_name="wells2d", best=0.8)
    make_run(root, "r-20261122-100000", preset_name="wells2d", best=0.7)
    make_run(root, "v-20261123-100000", best=1.5)
    make_run(root, "w-20261124-100000", best=0.4)

    def order(*args):
        assert main(["runs", str(root), "--sort", *args]) == 0
        return "".join(line[0] for line in capsys.readouterr().out.splitlines()[1:])

    assert order("best") == "qrpwv"  # F1 0.8, 0.7, 0.6, then VOI 0.4, 1.5 (grouped by metric)
    assert order("best", "--desc") == "qrpwv"
    assert order("best", "--reverse") == "vwprq"
    assert order("final", "--asc") == "vwprq"
    assert order("steps", "--desc") == "pqrvw"  # equal steps: the listing's order (oldest first)
    with pytest.raises(SystemExit) as exit_:  # one order only
        main(["runs", str(root), "--sort", "best", "--asc", "--desc"])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_table_shows_megabytes_on_disk(tmp_path, capsys):
    root = tmp_path / "runs"
    folder = make_run(root, "m-20261120-100000")
    (folder.checkpoints_dir / "best.ckpt").write_bytes(b"\0" * 2_500_000)
    (folder.checkpoints_dir / "last.ckpt").symlink_to("best.ckpt")  # a link is not counted twice
    (run,) = list_runs(root)
    assert 2_500_000 < run.size < 2_600_000
    assert main(["runs", str(root)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    at = header.index("  MB  ") + 2  # the column starts where its title does
    assert row[at:].split()[0] == "2.5"


# --- the data a run saw -----------------------------------------------------------------------


def test_record_data_hashes_change_with_the_data_and_counts_classes(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.random((4, 32, 32)).astype(np.float32)
    labels = np.zeros((4, 32, 32), np.int64)
    labels[:, :8] = 1
    labels[:, 8:10] = 2
    folder = RunFolder.at(tmp_path / "run", create=True)
    config = config_from_dict({"preset": "em3d_quick", "model": {"task": "classes", "n_classes": 3},
                               "data": {"patch_shape": [8, 32, 32]}, "train": {"loss": "ce"}})
    folder.save_config(config)
    record = folder.record_data([ArraySource(raw, labels, crop=[[0, 3]])], [ArraySource(raw, labels, crop=[[3, 4]])])
    assert json.loads(folder.run_file.read_text())["data"] == record
    train = record["train"][0]
    assert train["raw"]["shape"] == [4, 32, 32] and train["raw"]["dtype"] == "float32"
    assert train["raw"]["hashed"] == "full" and train["crop"] == [[0, 3]]
    assert train["class_counts"] == {"0": 3 * 32 * 22, "1": 3 * 32 * 8, "2": 3 * 32 * 2}  # of the crop
    assert record["val"][0]["class_counts"]["2"] == 64
    assert train["raw"]["hash"] != record["val"][0]["raw"]["hash"]  # different crops of one array
    again = folder.record_data([ArraySource(raw.copy(), labels.copy(), crop=[[0, 3]])],
                               [ArraySource(raw, labels, crop=[[3, 4]])], write=False)
    assert again["train"] == record["train"] and again["fingerprint"] == record["fingerprint"]
    changed = raw.copy()
    changed[1, 5, 7] += 0.25  # one voxel
    other = folder.record_data([ArraySource(changed, labels, crop=[[0, 3]])], [ArraySource(raw, labels, crop=[[3, 4]])])
    assert other["train"][0]["raw"]["hash"] != train["raw"]["hash"]
    assert other["train"][0]["labels"]["hash"] == train["labels"]["hash"]
    assert other["fingerprint"] != record["fingerprint"]
    info = folder.info()
    assert info["data"] == other and info["earlier_data"] == [record]  # a resume on other data keeps both
    summary = folder.summary()
    assert summary.data == f"1+1 sources {other['fingerprint']}"


def test_large_arrays_are_hashed_by_a_strided_sample(monkeypatch):
    from segtrain.runs import fingerprints as runs  # the hash limits live in runs/fingerprints.py

    monkeypatch.setattr(runs, "HASH_FULL_BYTES", 4096)
    monkeypatch.setattr(runs, "HASH_SAMPLE_ELEMENTS", 1000)
    a = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    info, values = array_fingerprint(a)
    assert info["hashed"].startswith("strided sample") and values.size <= 1000
    b = a.copy()
    b[0, 0] = -1  # a sampled voxel
    assert array_fingerprint(b)[0]["hash"] != info["hash"]
    small, _ = array_fingerprint(a[:8, :8])
    assert small["hashed"] == "full"


def test_cli_default_runs_folder_is_segtrain_runs_or_the_user_data_folder(runs_root, tmp_path, capsys, monkeypatch):
    """`segtrain runs` without a folder lists $SEGTRAIN_RUNS, else the user data folder's
    segtrain/runs, never ./runs of wherever it was started."""
    monkeypatch.chdir(runs_root.parent)  # ./runs holds the three runs: not what is listed without the variable
    monkeypatch.setenv("SEGTRAIN_RUNS", str(runs_root))
    assert main(["runs", "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    monkeypatch.delenv("SEGTRAIN_RUNS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    assert main(["runs"]) == 0
    assert capsys.readouterr().out == f"no runs in {tmp_path / 'data-home' / 'segtrain' / 'runs'}\n"
