"""Reading every supported format from files the tests write themselves, and write round trips."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from segtrain import io
from segtrain.io import Volume, read_volume, read_volumes, write_volume


@pytest.fixture
def raw():
    return np.random.default_rng(0).integers(0, 255, (6, 20, 30), dtype=np.uint8)


@pytest.fixture
def labels():
    out = np.zeros((6, 20, 30), dtype=np.uint64)
    out[:, :10, :15] = 1
    out[:, 10:, 15:] = 2**40
    return out


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_group_with_funlib_attrs(tmp_path, raw, labels, zarr_format):
    path = tmp_path / "sample.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.create_array("volumes/raw", data=raw, chunks=(3, 10, 10))
    group["volumes/raw"].attrs.update(resolution=[40, 4, 4], offset=[80, 8, 0])
    group.create_array("volumes/labels/neuron_ids", data=labels, chunks=(3, 10, 10))
    group["volumes/labels/neuron_ids"].attrs.update(resolution=[40, 4, 4], offset=[80, 8, 0])

    volumes = {v.dataset: v for v in read_volumes(path)}
    assert set(volumes) == {"volumes/raw", "volumes/labels/neuron_ids"}
    image, gt = volumes["volumes/raw"], volumes["volumes/labels/neuron_ids"]
    assert not image.is_labels and gt.is_labels
    assert image.data.dtype == np.uint8 and gt.data.dtype == np.uint64
    np.testing.assert_array_equal(np.asarray(image.data), raw)
    np.testing.assert_array_equal(np.asarray(gt.data), labels)
    assert image.voxel_size == (40, 4, 4) and image.offset == (80, 8, 0)
    assert image.axes == ("z", "y", "x") and image.ndim_spatial == 3
    # one array by name, and by path inside the container
    assert read_volume(path, "volumes/raw").dataset == "volumes/raw"
    assert read_volume(path / "volumes/labels/neuron_ids").is_labels
    with pytest.raises(io.InputError, match="holds 2 arrays"):
        read_volume(path)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_highest_resolution_and_transforms(tmp_path, raw, version):
    path = tmp_path / "image.ome.zarr"
    zarr_format = 2 if version == "0.4" else 3
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    data5 = raw[None, None]  # t, c, z, y, x with singleton t and c
    group.create_array("0", data=data5, chunks=(1, 1, 3, 10, 10))
    group.create_array("1", data=data5[..., ::2, ::2], chunks=(1, 1, 3, 10, 10))
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"},
            {"name": "z", "type": "space", "unit": "nanometer"},
            {"name": "y", "type": "space", "unit": "nanometer"},
            {"name": "x", "type": "space", "unit": "nanometer"}]
    multiscales = [{
        "version": version, "name": "em", "axes": axes,
        "datasets": [
            {"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [1, 1, 30, 5, 5]},
                {"type": "translation", "translation": [0, 0, 60, 10, 5]}]},
            {"path": "1", "coordinateTransformations": [
                {"type": "scale", "scale": [1, 1, 30, 10, 10]}]},
        ],
    }]
    group.attrs.update({"multiscales": multiscales} if version == "0.4"
                       else {"ome": {"version": version, "multiscales": multiscales}})
    labels_group = group.create_group("labels")
    labels_group.attrs.update({"labels": ["cells"]} if version == "0.4" else {"ome": {"labels": ["cells"]}})
    cells = labels_group.create_group("cells")
    cells.create_array("0", data=(raw > 128).astype(np.uint16)[None, None], chunks=(1, 1, 3, 10, 10))
    label_meta = {"multiscales": multiscales, "image-label": {"version": version}}
    cells.attrs.update(label_meta if version == "0.4" else {"ome": label_meta})

    image, mask = read_volumes(path)
    assert image.data.shape == raw.shape and image.axes == ("z", "y", "x")
    np.testing.assert_array_equal(np.asarray(image.data), raw)
    assert image.voxel_size == (30, 5, 5) and image.offset == (60, 10, 5)
    assert not image.is_labels
    assert mask.is_labels and mask.data.dtype == np.uint16 and mask.name == "cells"


def test_n5_with_tensorstore(tmp_path, labels):
    import tensorstore as ts

    path = tmp_path / "data.n5"
    store = ts.open({
        "driver": "n5", "kvstore": {"driver": "file", "path": str(path / "labels")},
        "metadata": {"dimensions": list(labels.shape[::-1]), "blockSize": [16, 16, 4],
                     "dataType": "uint64", "compression": {"type": "gzip"}},
        "create": True,
    }).result()
    store[...] = labels.T  # N5 lists x first
    (path / "attributes.json").write_text(json.dumps({"n5": "2.0.0"}))
    attrs = json.loads((path / "labels" / "attributes.json").read_text())
    attrs.update(resolution=[4, 4, 40], offset=[0, 8, 80])  # x, y, z in N5
    (path / "labels" / "attributes.json").write_text(json.dumps(attrs))

    volume = read_volume(path)
    assert volume.is_labels and volume.data.dtype == np.uint64
    np.testing.assert_array_equal(np.asarray(volume.data), labels)
    assert volume.voxel_size == (40, 4, 4) and volume.offset == (80, 8, 0)


def test_tiff_stack_imagej_and_plain(tmp_path, raw):
    plain = tmp_path / "stack.tif"
    tifffile.imwrite(plain, raw)
    volume = read_volume(plain)
    assert volume.data.shape == raw.shape and volume.axes == ("z", "y", "x")
    assert not volume.is_labels
    imagej = tmp_path / "imagej.tif"
    tifffile.imwrite(imagej, raw, imagej=True, resolution=(1 / 4, 1 / 4),
                     metadata={"spacing": 40, "unit": "nm", "axes": "ZYX"})
    assert read_volume(imagej).voxel_size == pytest.approx((40, 4, 4))


@pytest.mark.parametrize("suffix", [".zarr", ".tif", ".h5"])
def test_write_read_round_trip(tmp_path, labels, suffix):
    settings = {"threshold": 0.3, "scoring": "hist_quant_50", "sweep": {"best": [0.3, 1.1]}}
    volume = Volume(labels, voxel_size=(40, 4, 4), offset=(80, 8, 0), name="seg",
                    is_labels=True, attrs=settings)
    path = write_volume(tmp_path / f"out{suffix}", volume)
    back = read_volume(path)
    np.testing.assert_array_equal(np.asarray(back.data), labels)
    assert back.data.dtype == labels.dtype and back.is_labels
    assert back.voxel_size == (40, 4, 4) and back.offset == (80, 8, 0)
    assert back.attrs == settings
    with pytest.raises(io.InputError, match="already exists"):
        write_volume(path, volume)
    np.testing.assert_array_equal(np.asarray(read_volume(path).data), labels)  # refused: the first is kept
    changed = Volume(labels + 1, voxel_size=(40, 4, 4), offset=(80, 8, 0), name="seg", is_labels=True, attrs=settings)
    write_volume(path, changed, overwrite=True)
    np.testing.assert_array_equal(np.asarray(read_volume(path).data), labels + 1)  # asked for: replaced


def test_write_dask_blockwise_and_into_group(tmp_path, raw, labels):
    container = tmp_path / "pair.zarr"
    write_volume(container / "raw", Volume(da.from_array(raw, chunks=(2, 10, 10)), name="raw"))
    write_volume(container / "labels", Volume(labels, name="labels", is_labels=True))
    volumes = {v.name: v for v in read_volumes(container)}
    assert set(volumes) == {"raw", "labels"}
    np.testing.assert_array_equal(volumes["raw"].data, raw)
    assert volumes["labels"].is_labels and not volumes["raw"].is_labels
    tif = write_volume(tmp_path / "raw.tif", Volume(da.from_array(raw, chunks=(2, 10, 10))))
    np.testing.assert_array_equal(read_volume(tif).data, raw)


def test_large_arrays_stay_lazy(tmp_path, raw, monkeypatch):
    import imageio.v3 as iio

    write_volume(tmp_path / "big.zarr", Volume(raw))
    write_volume(tmp_path / "big.h5", Volume(raw))
    tifffile.imwrite(tmp_path / "big.tif", raw)
    (tmp_path / "slices").mkdir()
    for z in range(raw.shape[0]):
        iio.imwrite(tmp_path / "slices" / f"s{z}.png", raw[z])
    for module in ("segtrain.io.volume", "segtrain.io.hdf5_io", "segtrain.io.tiff_io",
                   "segtrain.io.slices"):
        monkeypatch.setattr(f"{module}.LAZY_BYTES", 100)
    for name in ("big.zarr", "big.h5", "big.tif", "slices"):
        volume = read_volume(tmp_path / name)
        assert isinstance(volume.data, da.Array), name
        np.testing.assert_array_equal(volume.data[2].compute(), raw[2])
