"""Nothing the user has is destroyed by an output, through the command line as a user types it: an
output is a new path or, with --overwrite, the same kind of thing (never a folder, never a container
holding other things, never an input); a dataset written into an existing HDF5 file is added beside
the others; two commands racing to one output: one wins, the other gets one sentence; a killed
command's temporary is removed by the next write to that output. Every refusal is checked against a
snapshot (names, sizes, times) of the parent folder of every path the command names."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from segtrain.io import Volume, read_volume, write_volume


def snapshot(*folders: Path) -> dict:
    """Every name under ``folders`` (resolved) with its size and time, folders' times included:
    a refusal happens before any temporary is made."""
    state = {}
    for folder in {Path(os.path.realpath(f)) for f in folders}:
        for path in [folder, *folder.rglob("*")]:
            info = path.lstat()
            state[str(path)] = (info.st_size if path.is_file() else None, info.st_mtime_ns)
    return state


def parents(argv) -> list[Path]:
    """The parent folder of every path in ``argv``."""
    found = []
    for arg in map(str, argv):
        if "/" in arg or os.path.exists(arg):
            path = Path(arg)
            while not path.exists() and path != path.parent:
                path = path.parent
            found.append(path.parent if path.exists() else path)
    return found


def cli(argv, capsys) -> tuple[int, str, str]:
    from segtrain.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def refused(argv, capsys, match: str, *extra: Path) -> str:
    """Run ``argv``: exit 2, one sentence matching ``match``, nothing changed on disk."""
    folders = [*parents(argv), *extra]
    before = snapshot(*folders)
    code, _, err = cli(argv, capsys)
    lines = [line for line in err.strip().splitlines() if line.strip() and "..." not in line]
    assert code == 2, f"{argv}: exit {code}, {err[-1500:]}"
    assert len(lines) == 1 and lines[0].startswith(f"segtrain {argv[0]}: error: "), err
    assert re.search(match, lines[0]), lines[0]
    assert snapshot(*folders) == before, f"{argv} changed the disk"
    return lines[0]


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    labels = np.repeat(np.arange(1, 9).reshape(2, 2, 2), 4, axis=0).repeat(8, 1).repeat(8, 2).astype(np.uint32)
    write_volume(tmp_path / "seg.zarr", Volume(data=labels, name="seg", is_labels=True))
    with h5py.File(tmp_path / "gt.h5", "w") as handle:
        handle["labels"] = labels
    return tmp_path


def test_evaluate_out_never_replaces_a_folder_an_input_or_another_file(work, capsys):
    (work / "victim").mkdir()
    (work / "victim" / "precious.tif").write_bytes(b"II*\0" + b"\1" * 500)
    (work / "notes.txt").write_text("my notes")
    (work / "old.json").write_text('{"voi": 9}')
    base = ["evaluate", work / "seg.zarr", work / "gt.h5"]
    refused([*base, "--out", "victim"], capsys, r"victim is a folder", work)
    refused([*base, "--out", "victim", "--overwrite"], capsys, r"victim is a folder", work)
    refused([*base, "--out", "."], capsys, r"output \. holds the input", work)
    refused([*base, "--out", "old.json"], capsys, r"old.json already exists.*--overwrite", work)
    refused([*base, "--out", "notes.txt", "--overwrite"], capsys, r"notes.txt is a text file, not a JSON file", work)
    refused([*base, "--out", "gt.h5", "--overwrite"], capsys, r"output gt.h5 is the input", work)
    code, out, err = cli([*base, "--out", "old.json", "--overwrite"], capsys)  # the same kind: replaced
    assert code == 0, err
    assert json.loads((work / "old.json").read_text()) == json.loads(out)


def test_runs_output_never_removes_a_folder(work, capsys):
    (work / "runs").mkdir()
    (work / "table").mkdir()
    (work / "table" / "mine.csv").write_text("a,b\n1,2\n")
    refused(["runs", work / "runs", "--output", work / "table", "--overwrite"], capsys, r"table is a folder", work)
    code, _, err = cli(["runs", work / "runs", "--output", work / "table.txt"], capsys)
    assert code == 0, err
    refused(["runs", work / "runs", "--json", "--output", work / "table.txt", "--overwrite"], capsys,
            r"not a JSON file", work)


@pytest.fixture
def checkpoint(tmp_path_factory):
    """A checkpoint of an untrained tiny affinity model (the weights do not matter here)."""
    import torch

    from segtrain.config import config_from_dict
    from segtrain.models import build_model

    torch.manual_seed(0)
    config = config_from_dict({"preset": "em3d_quick", "data": {"patch_shape": [8, 16, 16]},
                               "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0}})
    path = tmp_path_factory.mktemp("model") / "random.ckpt"
    torch.save({"hyper_parameters": {"config": config.to_dict()}, "global_step": 0,
                "state_dict": {f"model.{k}": v for k, v in build_model(config).state_dict().items()}}, path)
    return path


def test_predict_never_replaces_its_input_nor_a_group_it_did_not_write(work, checkpoint, capsys):
    raw = (np.random.default_rng(0).random((8, 16, 16)) * 255).astype(np.uint8)
    write_volume(work / "data.zarr" / "raw", Volume(data=raw, name="raw"))
    write_volume(work / "data.zarr" / "labels", Volume(data=np.ones((8, 16, 16), np.uint32), name="labels",
                                                       is_labels=True))
    (work / "alias.zarr").symlink_to(work / "data.zarr")
    predict = ["predict", "--run", checkpoint]
    refused([*predict, "data.zarr/raw", "data.zarr", "--overwrite"], capsys, r"output data.zarr holds the input", work)
    refused([*predict, "alias.zarr/raw", "data.zarr", "--overwrite"], capsys, r"holds the input", work)
    refused([*predict, "data.zarr/raw", "sub/../alias.zarr", "--overwrite"], capsys, r"holds the input", work)
    write_volume(work / "mine.zarr" / "a", Volume(data=raw, name="a"))
    refused([*predict, "data.zarr/raw", "mine.zarr", "--overwrite"], capsys, r"holds other things", work)
    for _ in range(2):  # its own output, replaced with --overwrite
        code, _, err = cli([*predict, "data.zarr/raw", "pred.zarr", "--overwrite"], capsys)
        assert code == 0, err
    assert sorted(zarr.open_group(str(work / "pred.zarr"), mode="r")) == ["affinities", "lsds"]
    write_volume(work / "pred.zarr" / "seg", Volume(data=np.ones((8, 16, 16), np.uint32), name="seg", is_labels=True))
    refused([*predict, "data.zarr/raw", "pred.zarr", "--overwrite"], capsys, r"holds other things", work)
    assert sorted(zarr.open_group(str(work / "data.zarr"), mode="r")) == ["labels", "raw"]


@pytest.fixture
def tree(work):
    from segtrain.segment import MergeTree
    from segtrain.targets import affinities

    labels = np.asarray(read_volume(work / "seg.zarr").data)
    path = work / "tree.npz"
    MergeTree.build(affinities(labels)[0], None).save(path)
    return path


def test_export_adds_a_dataset_to_an_existing_hdf5_file_and_never_replaces_the_file(work, tree, capsys):
    raw = np.arange(8 * 16 * 16, dtype=np.uint16).reshape(8, 16, 16)
    with h5py.File(work / "data.h5", "w") as handle:  # the user's own file
        handle["raw"] = raw
        handle["meta/notes"] = np.arange(3)
    export = ["export", "--tree", tree, "--threshold", "0.5"]
    code, _, err = cli([*export, "data.h5/seg"], capsys)
    assert code == 0, err
    refused([*export, "data.h5/seg"], capsys, r"data.h5/seg already exists", work)
    code, _, err = cli([*export, "data.h5/seg", "--overwrite", "--threshold", "0.9"], capsys)
    assert code == 0, err
    with h5py.File(work / "data.h5", "r") as handle:
        assert sorted(handle) == ["meta", "raw", "seg"] and list(handle["meta"]) == ["notes"]
        np.testing.assert_array_equal(handle["raw"][...], raw)
        assert handle["seg"].attrs["threshold"] == 0.9
    refused([*export, "data.h5", "--overwrite"], capsys, r"data.h5 holds other things", work)
    refused([*export, "data.h5/meta", "--overwrite"], capsys, r"group holding other datasets", work)
    refused([*export, "tree.npz", "--overwrite"], capsys, r"tree.npz is the input", work)
    write_volume(work / "frag.zarr", Volume(data=np.asarray(read_volume(work / "seg.zarr").data), name="f",
                                            is_labels=True))
    refused([*export, "frag.zarr", "--fragments", "frag.zarr", "--overwrite"], capsys, r"is the input", work)


def test_segment_and_sweep_refuse_an_output_that_is_their_input_and_ask_before_replacing(work, tree, capsys):
    from segtrain.targets import affinities

    labels = np.asarray(read_volume(work / "seg.zarr").data)
    (work / "out").mkdir()
    write_volume(work / "out" / "fragments.zarr", Volume(data=affinities(labels)[0], name="affs"))
    refused(["segment", "out/fragments.zarr", "out", "--overwrite"], capsys, r"fragments.zarr is the input", work)
    sweep = ["sweep", "--tree", tree, "--gt", "gt.h5", "--out-dir", "sw"]
    code, _, err = cli(sweep, capsys)
    assert code == 0, err
    refused(sweep, capsys, r"sweep.csv already exists.*--overwrite", work)
    code, _, err = cli([*sweep, "--overwrite"], capsys)
    assert code == 0, err
    (work / "sw2").mkdir()
    (work / "sw2" / "sweep.json").mkdir()  # a folder where the JSON goes
    (work / "sw2" / "sweep.json" / "keep.txt").write_text("keep")
    code, _, err = cli(["sweep", "--tree", tree, "--gt", "gt.h5", "--out-dir", "sw2", "--overwrite"], capsys)
    assert code == 2 and "sweep.json is a folder" in err and (work / "sw2" / "sweep.json" / "keep.txt").exists()


# --- real processes ------------------------------------------------------------------------------

RACER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import segtrain.predict.infer as infer
    from segtrain.cli import main

    barrier = Path(sys.argv[1])
    real = infer._run_tiles

    def meet(*args, **kwargs):  # both predictions are being written before either finishes
        (barrier / str(os.getpid())).touch()
        deadline = time.monotonic() + 120
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(float(sys.argv[2]))
        return real(*args, **kwargs)

    infer._run_tiles = meet
    sys.exit(main(sys.argv[3:]))
""")


def test_two_predictions_racing_to_one_output(work, checkpoint):
    raw = (np.random.default_rng(0).random((8, 16, 16)) * 255).astype(np.uint8)
    write_volume(work / "raw.zarr", Volume(data=raw, name="raw"))
    barrier = work / "barrier"
    barrier.mkdir()
    argv = ["predict", "--run", str(checkpoint), str(work / "raw.zarr"), str(work / "out" / "pred.zarr")]
    (work / "out").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(barrier), delay, *argv], env=env, cwd=work,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for delay in ("0", "1.5")]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in racers]
    assert len(list(barrier.iterdir())) == 2, results  # both were predicting at the same time
    assert sorted(code for code, _, _ in results) == [0, 2], results  # the later one (mostly the second) loses
    (_, won, _), (_, lost, lost_err) = sorted(results, key=lambda r: r[0])
    errors = [line for line in lost_err.splitlines() if line.startswith("segtrain predict: error: ")]
    assert len(errors) == 1 and "created by another writer" in errors[0], lost_err
    assert "wrote" in won and "wrote" not in lost
    assert sorted(os.listdir(work / "out")) == ["pred.zarr"]


KILLED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import segtrain.io.zarr_io as zarr_io
    from segtrain.cli import main

    signal_file = Path(sys.argv[1])
    real = zarr_io.store_array

    def stuck(data, array):
        real(data, array)
        signal_file.touch()
        time.sleep(600)

    zarr_io.store_array = stuck
    sys.exit(main(sys.argv[2:]))
""")


def test_a_killed_export_leaves_a_temporary_that_the_next_export_removes(work, tree, capsys):
    mid = work / "mid-write"
    argv = ["export", "out.zarr", "--tree", str(tree), "--threshold", "0.5"]
    writer = subprocess.Popen([sys.executable, "-c", KILLED, str(mid), *argv], cwd=work,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 180
    while not mid.exists() and time.monotonic() < deadline and writer.poll() is None:
        time.sleep(0.05)
    assert mid.exists(), "the export never reached the middle of its write"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    left = [p.name for p in work.iterdir() if p.name.startswith(".out.zarr.tmp-")]
    assert left and not (work / "out.zarr").exists()
    code, _, err = cli(argv, capsys)
    assert code == 0, err
    assert [p.name for p in work.iterdir() if p.name.startswith(".out.zarr.")] == []
    assert (work / "out.zarr").is_dir()


def test_scale_never_writes_into_an_array_it_did_not_make_nor_into_its_input(work, capsys):
    from segtrain.targets import affinities

    affs = work / "affs.zarr"
    zarr.create_array(store=str(affs), shape=(3, 8, 16, 16), chunks=(3, 8, 16, 16), dtype="float32",
                      zarr_format=2)[:] = affinities(np.asarray(read_volume(work / "seg.zarr").data))[0][:3]
    refused(["scale", "run", work / "job", "--affinities", affs, "--block-shape", "8,16,16", "--threshold", "0.5",
             "--out", affs], capsys, r"output .*affs.zarr is the input", work)
    mine = zarr.create_array(store=str(work / "mine.zarr"), name="seg", shape=(8, 16, 16), chunks=(8, 16, 16),
                             dtype="uint64", zarr_format=2)  # the user's array, the very shape of the output
    mine[:] = 7
    code, _, err = cli(["scale", "run", work / "job", "--affinities", affs, "--block-shape", "8,16,16"], capsys)
    assert code == 0, err
    refused(["scale", "segment", work / "job", "--threshold", "0.5", "--out", work / "mine.zarr" / "seg"], capsys,
            r"mine.zarr/seg exists and was not made by a blockwise step", work)
    assert (zarr.open_array(str(work / "mine.zarr"), path="seg", mode="r")[:] == 7).all()
    for _ in range(2):  # its own output: made, then resumed into
        code, out, err = cli(["scale", "segment", work / "job", "--threshold", "0.5", "--out", work / "out.zarr"],
                             capsys)
        assert code == 0 and json.loads(out)["complete"], err
