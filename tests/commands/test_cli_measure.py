"""`segtrain measure` as a user runs it: the console script on the shared cells instances and
image, a table with its header, the summary on stdout; bad input one sentence, exit 2, no file."""

from __future__ import annotations

import json
import subprocess

import imageio.v3 as iio
import numpy as np
import tifffile

from segtrain.measure import read_table


def segtrain(*args, cwd):
    return subprocess.run(["segtrain", "measure", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_measure_cells_with_voxel_size(cells_dir, tmp_path):
    seg, raw = cells_dir / "set03" / "instances_ids.png", cells_dir / "set03" / "raw.tif"
    done = segtrain(seg, raw, "--out", "cells.csv", "--voxel-size", "0.65,0.65", "--unit", "um", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    labels = np.asarray(iio.imread(seg))
    ids = np.unique(labels[labels > 0])
    assert summary["objects"] == summary["count"] == len(ids)
    assert summary["coverage"] == np.count_nonzero(labels) / labels.size
    table, header = read_table(tmp_path / "cells.csv")
    assert list(table.label) == list(ids)
    assert header["labels"] == str(seg) and header["image"] == str(raw) and header["unit"] == "um"
    assert header["voxel_size"] == [0.65, 0.65] and header["units"]["area_cal"] == "um^2"
    assert np.allclose(table.area_cal, np.bincount(labels.ravel())[ids] * 0.65 ** 2)
    assert (table.mean_intensity > 0).all()
    # the same name again: refused, the table unchanged
    before = (tmp_path / "cells.csv").read_bytes()
    again = segtrain(seg, "--out", "cells.csv", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert (tmp_path / "cells.csv").read_bytes() == before


def test_bad_input_is_one_sentence_and_writes_nothing(cells_dir, tmp_path):
    tifffile.imwrite(tmp_path / "empty_labels.tif", np.zeros((32, 32), np.uint16))
    cases = [
        ((tmp_path / "empty_labels.tif",), "holds no objects"),
        ((cells_dir / "set01" / "raw.tif",), "looks like an image, not labels"),
        ((cells_dir / "set01" / "instances_ids.png", "--voxel-size", "0,1"), "voxel size"),
        ((cells_dir / "set01" / "instances_ids.png", tmp_path / "missing.tif"), "does not exist"),
    ]
    for args, words in cases:
        done = segtrain(*args, "--out", "t.csv", cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        last = done.stderr.strip().splitlines()[-1]
        assert words in last and last.startswith("segtrain measure: error:") and "Traceback" not in done.stderr
        assert not (tmp_path / "t.csv").exists()
    done = segtrain(cells_dir / "set01" / "instances_ids.png", "--out", "t.xlsx", cwd=tmp_path)
    assert done.returncode == 2 and ".csv" in done.stderr
