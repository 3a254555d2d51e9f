"""How a prediction was made is one record (segtrain.record.PredictionRecord): the one writer
(predict in memory, into zarr, blockwise) and the one strict parser (command line, reader, panels,
blockwise job) agree, and a malformed record is one sentence naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from segtrain.cli import main
from segtrain.config import config_from_dict
from segtrain.errors import InputError
from segtrain.models import build_model
from segtrain.predict import LoadedModel, predict_to_zarr
from segtrain.record import PredictionRecord


def tiny_model() -> LoadedModel:
    torch.manual_seed(0)
    config = config_from_dict({"preset": "em3d_quick", "data": {"patch_shape": [8, 16, 16]},
                               "model": {"num_fmaps": 3, "fmap_inc_factor": 2, "lsd_sigma": 2.0},
                               "segment": {"scoring": "mean", "threshold": 0.4}})
    return LoadedModel(build_model(config).eval(), config, Path("<test>"), 7)


@pytest.fixture
def prediction(tmp_path) -> tuple[Path, LoadedModel]:
    loaded = tiny_model()
    array = np.random.default_rng(1).integers(0, 255, (8, 32, 32), dtype=np.uint8)
    out = predict_to_zarr(loaded, array, tmp_path / "pred.zarr", voxel_size=(4.0, 2.0, 2.0))
    return out, loaded


def test_predict_writes_the_record_the_parser_reads(prediction):
    out, loaded = prediction
    group = zarr.open_group(str(out), mode="r")
    expected = loaded.record()
    assert expected.settings.scoring == "mean" and expected.step == 7
    assert PredictionRecord.from_attrs(dict(group.attrs), "group") == expected
    for name in ("affinities", "lsds"):
        assert PredictionRecord.from_attrs(dict(group[name].attrs), name) == expected
    assert PredictionRecord.from_attrs(expected.to_attrs()) == expected
    assert PredictionRecord.from_attrs({"resolution": [1, 1, 1]}) is None  # no record: said so, not guessed


def _spoil(out: Path, **attrs) -> None:
    zarr.open_group(str(out), mode="r+")["affinities"].attrs.update(attrs)


@pytest.mark.parametrize("spoiled, field", [
    ({"settings": {"scoring": "hist_quant_33"}}, "settings.scoring"),
    ({"settings": "fast"}, "settings"),
    ({"model_ndim": "three"}, "model_ndim"),
])
def test_a_malformed_record_is_one_sentence_naming_the_file_and_the_field(prediction, tmp_path, capsys,
                                                                          spoiled, field):
    out, _ = prediction
    _spoil(out, **spoiled)
    # the command line
    assert main(["segment", str(out), str(tmp_path / "seg"), "--dataset", "affinities", "--threshold", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1, err
    assert str(out) in err and field in err, err
    assert not (tmp_path / "seg").exists()
    # the reader (napari's File > Open): one sentence, no layer with silently dropped settings
    from segtrain.plugin.reader import read_layers

    with pytest.raises(InputError, match=field.replace(".", r"\.")) as error:
        read_layers(str(out / "affinities"))
    assert str(out) in str(error.value)


def test_the_blockwise_job_checks_settings_as_the_config_does():
    from segtrain.scale.job import SEGMENT_KEYS, check_segment_settings

    good = {"fragments": "watershed", "boundary_threshold": 0.5, "min_seed_distance": 2, "min_size": 5,
            "per_slice": False, "scoring": "hist_quant_75"}
    assert check_segment_settings(good) == {k: good[k] for k in SEGMENT_KEYS}
    with pytest.raises(InputError, match=r"segment\.scoring must be one of the valid names"):
        check_segment_settings({**good, "scoring": "median"})


def test_the_blockwise_job_writes_the_same_record_on_its_affinities(tmp_path):
    """`segtrain scale run --raw --model`: the affinities it will predict carry the record that
    `segtrain predict` writes (the run's settings with the job's overrides)."""
    from segtrain.io import Volume, write_volume
    from segtrain.predict import load_model
    from segtrain.scale import create_job
    from segtrain.scale.volumes import read_attrs
    from segtrain.synthetic import make_em_volume
    from segtrain.train import ArraySource, TrainingRun

    raw, gt = make_em_volume((8, 32, 32), n_cells=4, seed=0)[:2]
    config = config_from_dict({
        "preset": "em3d_quick", "name": "tiny",
        "data": {"patch_shape": [8, 16, 16], "val_patches": 1, "min_annotated_fraction": 0.1},
        "model": {"num_fmaps": 2, "fmap_inc_factor": 2, "lsd_sigma": 2.0},
        "train": {"max_steps": 2, "val_every": 2, "checkpoint_every": 2, "batch_size": 1, "threads": 1,
                  "report_interval": 0.0, "warmup_steps": 0}})
    run = TrainingRun(config, [ArraySource(raw, gt)], [ArraySource(raw, gt)], runs_root=tmp_path / "runs")
    run.run()
    write_volume(tmp_path / "raw.zarr", Volume(data=raw, voxel_size=(1.0, 1.0, 1.0), axes=("z", "y", "x")))
    create_job(tmp_path / "job", block_shape=(8, 16, 16), raw=str(tmp_path / "raw.zarr"), model=str(run.run_dir),
               segment={"scoring": "hist_quant_75"})
    attrs = read_attrs(tmp_path / "job" / "volumes.zarr" / "affinities")  # unfinished: not read as a volume
    record = PredictionRecord.from_attrs(attrs, "the job's affinities")
    expected = load_model(run.run_dir, device="cpu").record()
    assert record.settings.scoring == "hist_quant_75" and attrs["kind"] == "affinities"
    assert record.with_(settings=expected.settings) == expected
