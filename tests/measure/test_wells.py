"""A well grid over one image: each object goes to the well its centroid lies in, one row per well
(empty ones included), through the library and `segtrain measure --well-grid` (the batch's: tests/batch/test_batch_wells.py)."""

from __future__ import annotations

import json
import subprocess

import imageio.v3 as iio
import numpy as np
import pytest

from segtrain.errors import InputError
from segtrain.measure import grid_wells, measure_objects, parse_grid, per_well, read_table


def test_objects_go_to_the_well_of_their_centroid_and_empty_wells_have_rows():
    labels = np.zeros((100, 120), np.uint32)
    labels[5:15, 5:15] = 1  # top left: A01
    labels[60:70, 100:110] = 2  # bottom right: B03
    labels[55:65, 2:12] = 3  # bottom left: B01
    labels[50:70, 40:60] = 4  # centroid (59.5, 49.5): row 1 of 2, column 1 of 3 (49.5 * 3 / 120 = 1.24) -> B02
    table = measure_objects(labels)
    wells = grid_wells(table, labels.shape, parse_grid("2x3"))
    assert dict(zip(table.label, wells)) == {1: "A01", 2: "B03", 3: "B01", 4: "B02"}
    rows = per_well(table, labels.shape, (2, 3))
    assert list(rows.well) == ["A01", "A02", "A03", "B01", "B02", "B03"]
    assert list(rows["count"]) == [1, 0, 0, 1, 1, 1]
    assert rows.loc[rows.well == "B02", "size_mean_px"].item() == 400
    assert rows.loc[rows.well == "A01", "coverage"].item() == pytest.approx(100 / (100 * 120 / 6))


@pytest.mark.parametrize("text", ["8", "8x", "0x12", "27x2", "axb", "8x101"])
def test_a_bad_grid_is_one_sentence(text):
    with pytest.raises(InputError, match="well grid"):
        parse_grid(text)


def test_measure_with_a_well_grid_on_the_shared_cells(cells_dir, tmp_path):
    seg = cells_dir / "set03" / "instances_ids.png"
    done = subprocess.run(["segtrain", "measure", str(seg), "--out", "cells.csv", "--well-grid", "2x2"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    table, _ = read_table(tmp_path / "cells.csv")
    labels = np.asarray(iio.imread(seg))
    height, width = labels.shape
    expected = [f"{'AB'[int(y * 2 / height)]}{int(x * 2 / width) + 1:02d}"
                for y, x in zip(table.centroid_y, table.centroid_x)]
    assert list(table.grid_well) == expected
    assert [w["well"] for w in summary["wells"]] == ["A01", "A02", "B01", "B02"]
    assert sum(w["count"] for w in summary["wells"]) == summary["objects"] == len(table)
    bad = subprocess.run(["segtrain", "measure", str(seg), "--out", "other.csv", "--well-grid", "8by12"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert bad.returncode == 2 and "is not ROWSxCOLUMNS" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "other.csv").exists()
