"""`segtrain scale` end to end from raw data with a (tiny, untrained) model, through the worker
launcher path, into zarr and N5; and the one-sentence errors a user can cause."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from segtrain.cli import main
from segtrain.config import config_from_dict, divisor
from segtrain.io import read_volume
from segtrain.models import build_model
from segtrain.predict import LoadedModel, predict_array
from segtrain.scale import ScaleJob, read_graph


def tiny_checkpoint(path: Path) -> LoadedModel:
    torch.manual_seed(0)
    config = config_from_dict({"preset": "em3d_quick", "data": {"patch_shape": [8, 16, 16]},
                               "model": {"task": "affinities", "num_fmaps": 3, "fmap_inc_factor": 2,
                                         "downsample_factors": [[1, 2, 2], [2, 2, 2]]},
                               "segment": {"min_seed_distance": 2, "min_size": 0}})
    model = build_model(config).eval()
    torch.save({"hyper_parameters": {"config": config.to_dict()},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return LoadedModel(model, config, path, 0)


def raw_volume(path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 255, (4, 4, 4))
    raw = np.repeat(np.repeat(np.repeat(cells, 4, 0), 16, 1), 16, 2).astype(np.uint8)
    raw = np.clip(raw + rng.normal(0, 20, raw.shape), 0, 255).astype(np.uint8)
    array = zarr.create_array(store=str(path), shape=raw.shape, chunks=(8, 32, 32), dtype="uint8",
                              zarr_format=2, attributes={"resolution": [8, 4, 4]})
    array[:] = raw
    return raw


def test_raw_to_segments_with_a_model_through_launched_workers(tmp_path, capsys):
    loaded = tiny_checkpoint(tmp_path / "tiny.ckpt")
    assert divisor(loaded.config) == (2, 4, 4)
    raw = raw_volume(tmp_path / "raw.zarr")
    job = tmp_path / "job"
    code = main(["scale", "run", str(job), "--raw", str(tmp_path / "raw.zarr"), "--model",
                 str(tmp_path / "tiny.ckpt"), "--block-shape", "8,32,32", "--predict-context",
                 "4,16,16", "--context", "4,8,8", "--workers", "1", "--launcher", "env",
                 "--threshold", "0.5", "--out", str(tmp_path / "seg.n5" / "neurons")])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out)
    assert [s["task"] for s in summary["steps"]] == ["predict", "fragments", "agglomerate", "global"]
    assert [(s["completed"], s["total"]) for s in summary["steps"]] == [(8, 8)] * 3 + [(1, 1)]
    # the blockwise prediction is the whole-volume prediction (the network sees 16 voxels of
    # context in y and x, 4 in z, beyond each block)
    blockwise = zarr.open_array(str(job / "volumes.zarr"), path="affinities", mode="r")[:]
    whole = predict_array(loaded, raw)["affinities"]
    assert blockwise.shape == whole.shape == (3, 16, 64, 64)
    np.testing.assert_allclose(blockwise, whole, atol=1e-5)
    # the N5 segmentation reads back with its geometry and is the job's lookup applied
    seg_volume = read_volume(tmp_path / "seg.n5", "neurons")
    assert tuple(seg_volume.voxel_size) == (8.0, 4.0, 4.0)
    seg = np.asarray(seg_volume.data)
    frags = zarr.open_array(str(job / "volumes.zarr"), path="fragments", mode="r")[:]
    ids, segments = read_graph(ScaleJob.open(job).db).lookup(0.5)
    expected = np.where(frags == 0, 0, segments[np.searchsorted(ids, frags).clip(0, len(ids) - 1)])
    np.testing.assert_array_equal(seg, expected)
    assert summary["segmentation"]["segments"] == len(np.unique(seg[seg != 0]))
    # status, and a second segmentation from the stored graph into the job's own zarr
    assert main(["scale", "status", str(job)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["blocks"] == 8 and status["status"]["global"]["complete"]
    assert main(["scale", "segment", str(job), "--threshold", "0.9"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["segments"] <= summary["segmentation"]["segments"]


def test_user_errors_are_one_sentence_and_exit_code_2(tmp_path, capsys):
    affs = tmp_path / "affs.zarr"
    zarr.create_array(store=str(affs), shape=(3, 8, 16, 16), chunks=(3, 8, 16, 16),
                      dtype="float32", zarr_format=2)[:] = 0.9
    cases = [
        ["scale", "run", str(tmp_path / "new")],  # a new job without inputs
        ["scale", "run", str(tmp_path / "j"), "--affinities", str(affs), "--block-shape", "8,16"],
        ["scale", "run", str(tmp_path / "j"), "--affinities", str(affs), "--scoring", "median"],
        ["scale", "run", str(tmp_path / "j"), "--raw", str(affs)],  # no model
        ["scale", "segment", str(tmp_path / "missing"), "--threshold", "0.5"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("error:") == 1, err
    # segmenting before the graph is complete, and a re-run with other settings, are refused
    assert main(["scale", "run", str(tmp_path / "j"), "--affinities", str(affs), "--block-shape",
                 "8,16,16", "--steps", "fragments"]) == 0
    capsys.readouterr()
    assert main(["scale", "segment", str(tmp_path / "j"), "--threshold", "0.5"]) == 2
    assert "agglomeration" in capsys.readouterr().err
    assert main(["scale", "run", str(tmp_path / "j"), "--affinities", str(affs), "--block-shape",
                 "8,8,8"]) == 2
    assert "other settings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["scale"])


def test_a_failing_rerun_of_an_existing_job_keeps_its_folder(tmp_path, capsys):
    """Only a job the failing command started is removed; a re-run of an existing job that fails
    (here: a threshold above the job's maximum, refused after its steps ran) keeps every file."""
    affs = tmp_path / "affs.zarr"
    zarr.create_array(store=str(affs), shape=(3, 8, 16, 16), chunks=(3, 8, 16, 16),
                      dtype="float32", zarr_format=2)[:] = 0.9
    job = tmp_path / "k"
    made = ["scale", "run", str(job), "--affinities", str(affs), "--block-shape", "8,16,16", "--max-threshold", "0.5"]
    assert main(made) == 0
    capsys.readouterr()
    before = sorted(str(p.relative_to(job)) for p in job.rglob("*"))
    assert before
    for argv in (["scale", "run", str(job), "--threshold", "0.9"], [*made, "--threshold", "0.9"]):
        assert main(argv) == 2, argv
        assert "above the job's maximum threshold" in capsys.readouterr().err
        assert sorted(str(p.relative_to(job)) for p in job.rglob("*")) == before
