"""The engine's commands end to end: segment -> sweep -> export -> evaluate, and their errors."""

import json

import h5py
import numpy as np
import pytest

from segtrain.targets import affinities


def run_cli(argv, capsys):
    from segtrain.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def volume_files(tmp_path):
    rng = np.random.default_rng(0)
    blocks = np.arange(1, 2 * 36 + 1).reshape(2, 6, 6)
    gt = np.repeat(np.repeat(np.repeat(blocks, 5, 0), 6, 1), 6, 2).astype(np.uint32)
    gt[:, ::6, :] = 0
    affs, _ = affinities(gt)
    affs = np.clip(affs + rng.normal(0, 0.2, affs.shape).astype(np.float32), 0, 1)
    with h5py.File(tmp_path / "affs.h5", "w") as f:
        f["affs"] = affs
    with h5py.File(tmp_path / "gt.h5", "w") as f:
        f["labels"] = gt
    return tmp_path, gt


def test_segment_sweep_export_evaluate(volume_files, capsys):
    tmp, gt = volume_files
    out = tmp / "seg"
    code, stdout, err = run_cli(
        ["segment", tmp / "affs.h5", out, "--min-seed-distance", "2", "--threshold", "0.5"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["segments"] >= 1 and (out / "merge_tree.npz").exists()
    assert (out / "fragments.zarr").exists() and (out / "segmentation.zarr").exists()
    assert "merging until" not in stdout + err  # waterz's chatter stays hidden

    code, stdout, err = run_cli(
        ["sweep", "--tree", out / "merge_tree.npz", "--gt", tmp / "gt.h5", "--out-dir", tmp / "sw"],
        capsys)
    assert code == 0, err
    best = json.loads(stdout)["best_threshold"]
    assert (tmp / "sw" / "sweep.png").exists() and (tmp / "sw" / "sweep.csv").exists()
    assert json.loads((tmp / "sw" / "sweep.json").read_text())["best_threshold"] == best

    code, stdout, err = run_cli(
        ["export", tmp / "final.zarr", "--tree", out / "merge_tree.npz", "--threshold", best],
        capsys)
    assert code == 0, err
    from segtrain.io import read_volume
    from segtrain.segment import MergeTree

    exported = np.asarray(read_volume(tmp / "final.zarr").data)
    np.testing.assert_array_equal(exported, MergeTree.load(out / "merge_tree.npz").segmentation(best))

    code, stdout, err = run_cli(["evaluate", tmp / "final.zarr", tmp / "gt.h5", "--out",
                                 tmp / "m.json"], capsys)
    assert code == 0, err
    metrics = json.loads(stdout)
    from segtrain.evaluate import segmentation_scores

    direct = segmentation_scores(exported, gt)
    assert metrics["voi"] == pytest.approx(direct["voi"]) and metrics["arand"] == pytest.approx(direct["arand"])
    assert "f1" in metrics
    assert json.loads((tmp / "m.json").read_text()) == metrics


def test_sweep_from_affinities(volume_files, capsys):
    tmp, _ = volume_files
    code, stdout, err = run_cli(["sweep", "--affs", tmp / "affs.h5", "--gt", tmp / "gt.h5",
                                 "--fragments-method", "waterz", "--thresholds", "0:1:0.1"], capsys)
    assert code == 0, err
    assert len(json.loads(stdout)["table"]) == 11


@pytest.mark.parametrize(
    "argv, words",
    [
        (["segment", "{tmp}/affs.h5", "{tmp}/o1", "--scoring", "max_thing"], "precompiled"),
        (["segment", "{tmp}/affs.h5", "{tmp}/o2", "--threshold", "1.5"], "between 0 and 1"),
        (["segment", "{tmp}/gt.h5", "{tmp}/o3"], "Affinities"),
        (["sweep", "--affs", "{tmp}/affs.h5", "--gt", "{tmp}/gt.h5", "--thresholds", "a:b"],
         "thresholds"),
        (["evaluate", "{tmp}/gt.h5", "{tmp}/missing.h5"], "missing.h5"),
    ],
)
def test_errors_are_one_line(volume_files, capsys, argv, words):
    tmp, _ = volume_files
    code, stdout, err = run_cli([a.format(tmp=tmp) for a in argv], capsys)
    assert code == 2
    assert words in err and "Traceback" not in err
    lines = err.strip().splitlines()
    assert [line for line in lines if "error:" in line] == [lines[-1]], err
