"""BioImage.IO packages end to end: a tiny 2D instance run and a tiny 3D affinity+LSD run are
exported with `segtrain export-model`, validated with bioimageio.core's own test_model, and run
again with `segtrain predict --run model.zip` (the command line as a user runs it) to the run's
own prediction; a TorchScript-only package, a package segtrain did not write (through
bioimageio.core), unsupported packages and a failing export."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.zoo_runs import repack
from segtrain.cli import main


def segtrain(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "segtrain.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)


def image_file(tmp_path: Path, run_dir: Path) -> tuple[Path, np.ndarray]:
    """A crop of the run's validation image, written as a file segtrain reads (not a multiple of
    the network's divisor, so padding is exercised)."""
    from segtrain.io import Volume, read_volume, write_volume
    from segtrain.runs import RunFolder

    source = RunFolder(run_dir).data()["val"][0]
    data = np.asarray(read_volume(source["raw"]["path"]).data)
    crop = data[tuple(slice(a, b) for a, b in source["crop"])]
    crop = crop[:-1, :-3] if crop.ndim == 2 else crop[:-1, :-3, :-5]
    axes = ("y", "x") if crop.ndim == 2 else ("z", "y", "x")
    path = write_volume(tmp_path / "image.zarr", Volume(data=crop, voxel_size=(1.0,) * crop.ndim,
                                                      offset=(0.0,) * crop.ndim, axes=axes, name="raw"))
    return Path(path), crop


def outputs_of(path: Path) -> dict[str, np.ndarray]:
    import zarr

    group = zarr.open_group(str(path), mode="r")
    return {name: group[name][:] for name in group.array_keys()}


@pytest.fixture(scope="module")
def packages(cells_run, em_run, tmp_path_factory):
    """Both runs exported by the command (in this process)."""
    out = tmp_path_factory.mktemp("packages")
    made = {}
    for key, run_dir, extra in (("cells", cells_run, ["--author", "Ada Tester", "--license", "CC-BY-4.0"]),
                                ("em", em_run, ["--cite", "Our EM paper", "--doi", "10.1038/s41592-022-01711-z"])):
        made[key] = out / f"{key}.zip"
        assert main(["export-model", str(run_dir), str(made[key]), *extra]) == 0
    return made


@pytest.mark.parametrize("key", ["cells", "em"])
def test_export_passes_bioimageio_test_and_reimport_predicts_as_the_run(key, packages, cells_run, em_run, tmp_path):
    from bioimageio.core import test_model
    from bioimageio.spec import load_model_description

    run_dir = {"cells": cells_run, "em": em_run}[key]
    package = packages[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = test_model(package)
    assert summary.status == "passed", summary.display() if hasattr(summary, "display") else summary
    tested = {d.name for d in summary.details if d.status == "passed"}
    assert any("batch_size: 2" in name and "torchscript" in name for name in tested)
    assert any("batch_size: 2" in name and "pytorch_state_dict" in name for name in tested)

    descr = load_model_description(package, perform_io_checks=False)
    # weights: a pure state_dict loadable with weights_only=True, keys of segtrain's network
    state = torch.load(io.BytesIO(descr.weights.pytorch_state_dict.get_reader().read()), weights_only=True)
    from segtrain.predict import load_model

    loaded = load_model(run_dir, device="cpu")
    assert set(state) == set(loaded.model.state_dict())
    arch = descr.weights.pytorch_state_dict.architecture
    assert (arch.import_from, str(arch.callable)) == ("segtrain.models.packaged", "ZooNetwork")
    assert descr.weights.torchscript is not None
    record = descr.config.model_extra["segtrain"]
    assert record["task"] == loaded.config.task and record["segment"]["threshold"] == loaded.config.segment.threshold
    assert [p.id for p in descr.inputs[0].preprocessing][-1] in ("scale_range", "ensure_dtype")
    assert any(p.id == "scale_range" for p in descr.inputs[0].preprocessing)  # the runs normalise by percentiles
    assert descr.training_data is not None and run_dir.name in descr.training_data.name
    assert descr.covers and descr.documentation is not None
    if key == "em":
        assert [str(t.id) for t in descr.outputs] == ["affinities", "lsds"]
        assert record["affinity_offsets"] == [list(o) for o in loaded.config.model.offsets or
                                              __import__("segtrain.targets", fromlist=["x"]).default_offsets(3)]
        assert [(c.text, str(c.doi)) for c in descr.cite] == [("Our EM paper", "10.1038/s41592-022-01711-z")]
        assert str(descr.license) == "MIT"
    else:
        assert [str(t.id) for t in descr.outputs] == ["probabilities"]
        assert descr.outputs[0].axes[1].channel_names == ["foreground", "boundary"]
        assert [a.name for a in descr.authors] == ["Ada Tester"] and str(descr.license) == "CC-BY-4.0"
        assert [str(c.doi) for c in descr.cite] == ["10.1007/978-3-319-24574-4_28"]  # U-Net, by default

    # re-import: the command line with the package gives the run's own prediction
    image, _ = image_file(tmp_path, run_dir)
    assert main(["predict", "--run", str(run_dir), str(image), str(tmp_path / "run.zarr")]) == 0
    by_package = segtrain("predict", "--run", package, image, tmp_path / "package.zarr")
    assert by_package.returncode == 0, by_package.stderr
    assert "BioImage.IO package" in by_package.stdout
    expected, got = outputs_of(tmp_path / "run.zarr"), outputs_of(tmp_path / "package.zarr")
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5)
        assert np.ptp(got[name]) > 0


def test_torchscript_only_package_predicts_as_the_run(packages, em_run, tmp_path):
    def torchscript_only(rdf):
        del rdf["weights"]["pytorch_state_dict"]
        rdf["weights"]["torchscript"].pop("parent", None)

    package = repack(packages["em"], tmp_path / "ts.zip", torchscript_only, drop=("weights.pt",))
    assert "weights.pt" not in zipfile.ZipFile(package).namelist()
    image, _ = image_file(tmp_path, em_run)
    result = segtrain("predict", "--run", package, image, tmp_path / "ts.zarr")
    assert result.returncode == 0, result.stderr
    from segtrain.predict import predict_array

    expected = predict_array(em_run, np.asarray(__import__("zarr").open_array(str(image), mode="r")[:]))
    for name, value in outputs_of(tmp_path / "ts.zarr").items():
        np.testing.assert_allclose(value, expected[name], atol=1e-5)


def test_a_package_segtrain_did_not_write_runs_through_bioimageio_core(packages, em_run, tmp_path):
    """Without config.segtrain the package is any zoo model: bioimageio.core's pipeline (its own
    percentile normalisation and blocks) runs it; on an image of a valid size that is one block,
    the network on the whole image."""
    from segtrain.io import Volume, read_volume, write_volume
    from segtrain.predict import predict_array

    package = repack(packages["em"], tmp_path / "foreign.zip", lambda rdf: rdf["config"].pop("segtrain"))
    source = __import__("segtrain.runs", fromlist=["RunFolder"]).RunFolder(em_run).data()["val"][0]
    crop = np.asarray(read_volume(source["raw"]["path"]).data)[35:47, :48, :40]  # multiples of 4
    image = write_volume(tmp_path / "img.zarr", Volume(data=crop, voxel_size=(1.0,) * 3, offset=(0.0,) * 3,
                                                       axes=("z", "y", "x"), name="raw"))
    result = segtrain("predict", "--run", package, image, tmp_path / "foreign.zarr")
    assert result.returncode == 0, result.stderr
    assert "via bioimageio.core" in result.stdout
    whole = predict_array(em_run, crop, tile_shape=list(crop.shape), margin=[0, 0, 0], tta=1)  # the plain network
    for name, value in outputs_of(tmp_path / "foreign.zarr").items():
        np.testing.assert_allclose(value, whole[name], atol=1e-4)
    # options of segtrain's own prediction do not apply: one sentence, no output
    refused = segtrain("predict", "--run", package, image, tmp_path / "tta.zarr", "--tta", "2")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--tta" in refused.stderr
    assert not (tmp_path / "tta.zarr").exists()


def test_unsupported_packages_are_one_sentence_and_no_output(packages, em_run, tmp_path):
    def tensorflow_only(rdf):
        rdf["config"].pop("segtrain")
        rdf["weights"] = {"tensorflow_saved_model_bundle": {"source": "cover.png", "tensorflow_version": "2.15"}}

    def time_axis(rdf):
        rdf["config"].pop("segtrain")
        rdf["inputs"][0]["axes"][2] = {"type": "time", "id": "z", "size": {"min": 4, "step": 4}}

    image, _ = image_file(tmp_path, em_run)
    for name, edit, reason in (("tf", tensorflow_only, "tensorflow_saved_model_bundle"),
                               ("time", time_axis, "z (time), y (space), x (space)] cannot be mapped")):
        package = repack(packages["em"], tmp_path / f"{name}.zip", edit,
                         drop=("weights.pt", "weights.torchscript.pt") if name == "tf" else ())
        result = segtrain("predict", "--run", package, image, tmp_path / f"{name}.zarr")
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert reason in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / f"{name}.zarr").exists()
    not_a_model = tmp_path / "notes.zip"
    with zipfile.ZipFile(not_a_model, "w") as z:
        z.writestr("notes.txt", "hello")
    result = segtrain("predict", "--run", not_a_model, image, tmp_path / "n.zarr")
    assert result.returncode == 2 and "not a BioImage.IO model package" in result.stderr


def test_a_failing_package_test_is_one_sentence_and_no_file(cells_run, tmp_path, monkeypatch, capsys):
    """A package whose recorded test output is not what its network gives (as a broken export would
    write) fails bioimageio.core's test: one sentence, no package, no temporary left."""
    import segtrain.zoo.export as export

    real = export.package_description

    def wrong_test_output(loaded, cut, voxel_size, info, work):
        descr = real(loaded, cut, voxel_size, info, work)
        path = work / "test_output_probabilities.npy"
        np.save(path, np.load(path) * 0 + 0.5)
        return descr

    monkeypatch.setattr(export, "package_description", wrong_test_output)
    output = tmp_path / "broken.zip"
    assert main(["export-model", str(cells_run), str(output)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "failed bioimageio.core's test" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_bad_outputs_and_runs_without_files(cells_run, tmp_path, capsys):
    existing = tmp_path / "notes.zip"
    existing.write_text("my notes")
    assert main(["export-model", str(cells_run), str(existing)]) == 2
    assert existing.read_text() == "my notes"
    assert main(["export-model", str(cells_run), str(tmp_path / "model.tar")]) == 2
    assert main(["export-model", str(tmp_path / "nothing"), str(tmp_path / "m.zip")]) == 2
    assert main(["export-model", str(cells_run), str(tmp_path / "m.zip"), "--cite", "A paper"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and "not a zip" in err[0] and ".zip" in err[1] and "No checkpoint or run folder" in err[2]
    assert "one --doi (or URL) per --cite" in err[3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.zip"]


def test_bioimageio_logging_stays_quiet_until_the_outermost_quiet_block_ends():
    """An export tests and saves its package inside its own quiet block: the inner blocks ending
    must not switch bioimageio's log lines back on (loguru's disable/enable do not count)."""
    from loguru import logger

    from segtrain.predict.package import quiet_bioimageio

    seen = []
    sink = logger.add(lambda message: seen.append(message.record["message"]), level="INFO")
    try:
        with quiet_bioimageio():
            with quiet_bioimageio():
                logger.info("inner")
            logger.info("after the inner block")
        logger.info("after the outer block")
    finally:
        logger.remove(sink)
    assert seen == ["after the outer block"]
