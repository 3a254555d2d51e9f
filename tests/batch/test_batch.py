"""Batch segmentation of a plate folder made from the shared cells images (segtrain.batch and
`segtrain segment-batch`): every good image segmented with the run's settings, the bad ones reported
in one sentence each, one summary row per image; a SIGKILL midway and a rerun finish the rest without
touching what was finished; a stop event ends it between images."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tifffile
from helpers.batch import plate_folder

from segtrain.batch import batch_images, labels_path, marker_path, read_summary, segment_batch, well_of
from segtrain.batch.run import segment_image
from segtrain.cli import main
from segtrain.errors import InputError
from segtrain.io import read_volume
from segtrain.measure import read_table
from segtrain.predict import load_model


@pytest.mark.parametrize("name, pattern, well", [
    ("A01.tif", None, "A01"), ("plate3_B7_w1.tif", None, "B07"), ("r02c11f01p01-ch1.tiff", None, "B11"),
    ("scan_s12.tif", None, "s12"), ("set01_raw.tif", None, None), ("raw.tif", None, None),
    ("exp-well_C-4.tif", r"well_(?P<row>[A-H])-(?P<col>\d+)", "C04"),
    ("exp-well_07.tif", r"well_(\d+)", "07"), ("plate_H12.tif", r"(?P<well>[A-H]\d\d)", "H12"),
])
def test_the_well_is_read_from_the_file_name(name, pattern, well):
    assert well_of(name, pattern) == well


def test_inputs_are_a_folder_a_glob_a_list_and_positions_of_a_multi_position_file(tmp_path):
    from segtrain.errors import InputError

    for name in ("B2.tif", "B10.tif", "B1.tif"):
        tifffile.imwrite(tmp_path / name, np.zeros((8, 8), np.uint8))
    (tmp_path / ".hidden.tif").write_bytes(b"")
    images = batch_images([tmp_path])
    assert [i.key for i in images] == ["B1", "B2", "B10"]  # numeric order, hidden left out
    assert [i.well for i in images] == ["B01", "B02", "B10"]
    assert [i.key for i in batch_images([str(tmp_path / "B1*.tif")])] == ["B1", "B10"]
    for name in ("set01", "set02"):
        (tmp_path / name).mkdir()
        tifffile.imwrite(tmp_path / name / "raw.tif", np.zeros((8, 8), np.uint8))
    assert [i.key for i in batch_images([tmp_path / "set01" / "raw.tif", tmp_path / "set02" / "raw.tif"])] == \
        ["set01_raw", "set02_raw"]  # the folders tell same-named files apart
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 8, 8), np.uint8))  # (3 or 4 planes read as colour)
    positions = batch_images([tmp_path / "stack.tif"], model_ndim=2)
    assert [(i.position, i.key, i.well) for i in positions] == [(0, "stack_p000", "s1"), (1, "stack_p001", "s2"),
                                                                (2, "stack_p002", "s3"), (3, "stack_p003", "s4"),
                                                                (4, "stack_p004", "s5")]
    assert [i.position for i in batch_images([tmp_path / "stack.tif"], model_ndim=3)] == [None]
    with pytest.raises(InputError, match="does not exist"):
        batch_images([tmp_path / "missing"])
    with pytest.raises(InputError, match="not a regular expression"):
        batch_images([tmp_path], well_pattern="(")


def _segtrain(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "segtrain.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def _mtimes(out, keys):
    return {k: (os.stat(out / f"{k}_labels.tif").st_mtime_ns, os.stat(out / f"{k}.done.json").st_mtime_ns)
            for k in keys}


def test_cli_batch_segments_the_good_images_reports_the_bad_and_resumes_after_sigkill(tmp_path, cells_dir, cells_run,
                                                                                      capsys):
    plate = plate_folder(tmp_path / "plate", cells_dir)
    out = tmp_path / "out"
    good = [f"A{i:02d}" for i in range(1, 11)]
    # killed midway: once a few images are finished
    proc = _segtrain("segment-batch", cells_run, plate, out)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(out.glob("*.done.json"))) < 3 and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the batch ended before it could be killed midway"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    finished = sorted(p.name.removesuffix(".done.json") for p in out.glob("*.done.json"))
    assert 3 <= len(finished) < 10
    before = _mtimes(out, finished)

    proc = _segtrain("segment-batch", cells_run, plate, out)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr  # some images failed: not a success
    assert f"segmented {10 - len(finished)} images, {len(finished)} finished earlier" in stdout
    assert _mtimes(out, finished) == before  # finished images untouched
    # the bad ones: one sentence each, naming the file
    skipped = [line for line in stderr.splitlines() if "skipped:" in line]
    assert len(skipped) == 2
    assert any("A11.tif is not a readable TIFF file" in s for s in skipped)
    assert any("notes.txt has an unsupported extension" in s for s in skipped)
    assert "Traceback" not in stderr
    rows = read_summary(out)
    assert [r["key"] for r in rows] == [*good, "A11", "notes"]
    assert [r["status"] for r in rows] == ["done"] * 10 + ["failed"] * 2
    assert [r["well"] for r in rows[:10]] == good
    model = load_model(cells_run)
    first = np.asarray(tifffile.imread(plate / "A01.tif"))
    expected, _, _ = segment_image(model, first, (1.0, 1.0))
    for row in rows[:10]:
        labels = read_volume(out / row["labels"])
        assert int(row["objects"]) == len(np.unique(labels.data)) - 1 > 0
        areas = np.bincount(np.asarray(labels.data).ravel())[1:]
        assert float(row["area_mean"]) == pytest.approx(areas[areas > 0].mean(), abs=1e-3)
        assert labels.attrs["run"] == str(cells_run) and labels.attrs["settings"]["min_size"] == 5
        assert labels.attrs["source"] == str(plate / f"{row['key']}.tif")
        objects, header = read_table(out / f"{row['key']}_objects.csv")  # segtrain.measure's table per image
        assert list(objects["label"]) == [i for i in range(1, len(areas) + 1) if areas[i - 1] > 0]
        assert list(objects["area_px"]) == [a for a in areas if a > 0]
        assert set(objects["well"]) == {row["well"]} and header["image"] == str(plate / f"{row['key']}.tif")
        assert "mean_intensity" in objects.columns
    np.testing.assert_array_equal(read_volume(out / "A01_labels.tif").data, expected)  # the run's own pipeline
    assert rows[10]["message"].startswith(str(plate / "A11.tif")) and rows[10]["labels"] == ""
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left behind

    # an image interrupted after its labels (no done marker) is redone; the rest are left alone
    marker_path(out, batch_images([plate / "A02.tif"])[0]).unlink()
    before = _mtimes(out, [k for k in good if k != "A02"])
    labels_before = os.stat(out / "A02_labels.tif").st_mtime_ns
    capsys.readouterr()
    assert main(["segment-batch", str(cells_run), str(plate / "A0*.tif"), str(plate / "A10.tif"), str(out)]) == 0
    assert "segmented 1 images, 9 finished earlier" in capsys.readouterr().out
    assert _mtimes(out, [k for k in good if k != "A02"]) == before
    assert os.stat(out / "A02_labels.tif").st_mtime_ns != labels_before
    with open(out / "summary.csv", newline="") as handle:
        assert [r["status"] for r in csv.DictReader(handle)] == ["done"] * 10


def test_a_stop_event_ends_the_batch_between_images_and_progress_counts_down(tmp_path, cells_dir, cells_run):
    plate = plate_folder(tmp_path / "plate", cells_dir)
    model = load_model(cells_run)
    images = batch_images([plate], model_ndim=2)
    stop, seen = threading.Event(), []

    def progress(done, total, left):
        seen.append((done, total, left))
        if done == 3:
            stop.set()

    results = list(segment_batch(model, images, tmp_path / "out", stop=stop, progress=progress))
    assert [r.status for r in results] == ["done"] * 3
    assert [s[:2] for s in seen] == [(1, 12), (2, 12), (3, 12)]
    assert seen[-1][2] > 0 and seen[-1][2] == pytest.approx(np.mean([float(r.row["seconds"]) for r in results]) * 9)
    rows = read_summary(tmp_path / "out")
    assert [r["status"] for r in rows] == ["done"] * 3 + ["pending"] * 9
    marker = json.loads(marker_path(tmp_path / "out", images[0]).read_text())
    assert marker["status"] == "done" and labels_path(tmp_path / "out", images[0]).is_file()


def test_an_output_folder_among_the_inputs_is_refused_in_one_sentence(tmp_path, cells_dir, cells_run, capsys):
    plate = plate_folder(tmp_path / "plate", cells_dir)
    assert main(["segment-batch", str(cells_run), str(plate), str(plate)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (f"segtrain segment-batch: error: The output folder {plate} holds the "
                                               "input images; choose another folder for the outputs.")


def test_an_image_without_objects_is_a_failure_with_nothing_written(tmp_path, cells_dir, cells_run):
    from helpers.batch import cells_crops

    plate = tmp_path / "plate"
    plate.mkdir()
    tifffile.imwrite(plate / "A01.tif", cells_crops(cells_dir)[0])
    tifffile.imwrite(plate / "B01.tif", np.zeros((128, 128), np.uint16))  # an empty well
    model = load_model(cells_run)
    images = batch_images([plate], model_ndim=2)
    results = list(segment_batch(model, images, tmp_path / "out"))
    assert [r.status for r in results] == ["done", "failed"]
    assert results[1].message == (f"No objects found in {plate / 'B01.tif'}; check that it is the kind of image the "
                                  "run was trained on (nothing was written for it).")
    assert not labels_path(tmp_path / "out", images[1]).exists()
    assert not marker_path(tmp_path / "out", images[1]).exists()
    assert [r["status"] for r in read_summary(tmp_path / "out")] == ["done", "failed"]


def test_an_objects_table_the_batch_did_not_write_is_never_replaced(tmp_path, cells_dir, cells_run):
    """The output rule: <key>_objects.csv is replaced on a rerun only when this batch wrote it."""
    plate = plate_folder(tmp_path / "plate", cells_dir)
    model = load_model(cells_run)
    images = batch_images([plate / "A01.tif"], model_ndim=2)
    out = tmp_path / "out"
    out.mkdir()
    theirs = out / "A01_objects.csv"
    theirs.write_text("label,area\n1,5\n")
    (result,) = segment_batch(model, images, out)
    assert result.status == "failed" and "was not written by this batch" in result.row["message"]
    assert theirs.read_text() == "label,area\n1,5\n"
    assert not labels_path(out, images[0]).exists()  # refused before any work
    theirs.unlink()
    (result,) = segment_batch(model, images, out)
    assert result.status == "done" and theirs.is_file()
    marker_path(out, images[0]).unlink()  # interrupted after its files: redone, its own table replaced
    (result,) = segment_batch(model, images, out)
    assert result.status == "done"


def test_a_summary_csv_the_batch_did_not_write_stops_it_before_any_image(tmp_path, cells_dir, cells_run):
    plate = plate_folder(tmp_path / "plate", cells_dir)
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.csv").write_text("well,cells\nA01,40\n")
    with pytest.raises(InputError, match="is not a batch summary"):
        list(segment_batch(load_model(cells_run), batch_images([plate / "A01.tif"], model_ndim=2), out))
    assert (out / "summary.csv").read_text() == "well,cells\nA01,40\n" and len(list(out.iterdir())) == 1


def test_a_done_marker_the_batch_did_not_write_is_never_replaced(tmp_path, cells_dir, cells_run):
    """The output rule for <key>.done.json: an image redone (its labels missing) replaces only a
    marker a batch wrote for it; a file of that name of the user's fails that image in one sentence
    and stays as it was (the other images go on)."""
    plate = plate_folder(tmp_path / "plate", cells_dir)
    model = load_model(cells_run)
    images = batch_images([plate / "A01.tif", plate / "A02.tif"], model_ndim=2)
    out = tmp_path / "out"
    out.mkdir()
    theirs = marker_path(out, images[0])
    theirs.write_text('{"my notes": "A01 looked odd"}')
    results = list(segment_batch(model, images, out))
    assert [r.status for r in results] == ["failed", "done"]
    assert "was not written by a batch" in results[0].row["message"]
    assert theirs.read_text() == '{"my notes": "A01 looked odd"}'
    assert not labels_path(out, images[0]).exists()  # no work done for it
    ours = marker_path(out, images[1])
    labels_path(out, images[1]).unlink()  # a finished image whose labels went missing: redone
    theirs.unlink()
    results = list(segment_batch(model, images, out))
    assert [r.status for r in results] == ["done", "done"] and ours.is_file()
