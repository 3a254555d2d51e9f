"""Opening files through napari with the segtrain reader: real data and files written here."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr

PLUGIN = "napari-segtrain"


def _open(viewer, path):
    layers = viewer.open(str(path), plugin=PLUGIN)
    return {layer.name: layer for layer in layers}


def _type(layer) -> str:
    return type(layer).__name__.lower()


@pytest.mark.shared_data
def test_em3d_hdf5_image_and_labels(make_napari_viewer, em3d_dir):
    viewer = make_napari_viewer()
    image = _open(viewer, em3d_dir / "train-image.h5")["train-image"]
    gt = _open(viewer, em3d_dir / "train-gt.lzf.h5")["train-gt"]
    assert _type(image) == "image" and _type(gt) == "labels"
    assert image.data.shape == gt.data.shape == (50, 100, 200)
    assert image.data.dtype == np.uint8 and gt.data.dtype == np.int32
    assert len(np.unique(np.asarray(gt.data))) == 88  # 87 neurons + boundary


@pytest.mark.shared_data
def test_isbi_png_folder_in_numeric_order(make_napari_viewer, isbi_dir):
    viewer = make_napari_viewer()
    image = _open(viewer, isbi_dir / "image")["image"]
    assert _type(image) == "image"
    assert image.data.shape == (20, 512, 512) and image.data.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(image.data[10]), iio.imread(isbi_dir / "image" / "10.png"))
    np.testing.assert_array_equal(np.asarray(image.data[2]), iio.imread(isbi_dir / "image" / "2.png"))
    label = _open(viewer, isbi_dir / "label")["label"]
    assert _type(label) == "labels" and label.data.shape == (20, 512, 512)


@pytest.mark.shared_data
def test_cells_tiff_and_png_labels(make_napari_viewer, cells_dir):
    viewer = make_napari_viewer()
    raw = _open(viewer, cells_dir / "set01" / "raw.tif")["raw"]
    ids = _open(viewer, cells_dir / "set01" / "instances_ids.png")["instances_ids"]
    assert _type(raw) == "image" and raw.data.shape == (1022, 1024) and raw.data.dtype == np.uint16
    assert _type(ids) == "labels" and ids.data.shape == (1022, 1024) and ids.data.dtype == np.uint8


def _write_formats(tmp_path, raw, labels):
    """Write raw + labels in each format; returns {name: (path, voxel size, offset)}."""
    import tensorstore as ts

    out = {}
    for fmt in (2, 3):
        path = tmp_path / f"v{fmt}.zarr"
        group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
        for name, data in (("raw", raw), ("labels", labels)):
            group.create_array(name, data=data, chunks=(2, 8, 8))
            group[name].attrs.update(resolution=[40, 4, 4], offset=[40, 0, 8])
        out[f"zarr v{fmt}"] = path
    ome = tmp_path / "image.ome.zarr"
    group = zarr.open_group(str(ome), mode="w", zarr_format=2)
    group.create_array("0", data=raw, chunks=(2, 8, 8))
    group.create_array("1", data=raw[:, ::2, ::2], chunks=(2, 8, 8))
    group.attrs["multiscales"] = [{
        "version": "0.4", "axes": [{"name": a, "type": "space"} for a in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [40, 4, 4]}, {"type": "translation", "translation": [40, 0, 8]}]},
            {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [40, 8, 8]}]}],
    }]
    out["ome-zarr"] = ome
    n5 = tmp_path / "data.n5"
    for name, data, dtype in (("raw", raw, "uint8"), ("labels", labels, "uint32")):
        store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(n5 / name)},
                         "metadata": {"dimensions": list(data.shape[::-1]), "blockSize": [8, 8, 2],
                                      "dataType": dtype, "compression": {"type": "raw"}},
                         "create": True}).result()
        store[...] = data.T
        attrs = json.loads((n5 / name / "attributes.json").read_text())
        attrs.update(resolution=[4, 4, 40], offset=[8, 0, 40])  # x first in N5
        (n5 / name / "attributes.json").write_text(json.dumps(attrs))
    out["n5"] = n5
    tif = tmp_path / "tif"
    tif.mkdir()
    tifffile.imwrite(tif / "raw.tif", raw, imagej=True, resolution=(1 / 4, 1 / 4),
                     metadata={"spacing": 40, "axes": "ZYX"})
    tifffile.imwrite(tif / "labels.tif", labels, photometric="minisblack",
                     metadata={"resolution": [40, 4, 4], "offset": [40, 0, 8]})
    out["tiff"] = tif
    return out


def test_formats_written_here(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 255, (4, 16, 24), dtype=np.uint8)
    labels = rng.integers(0, 5, (4, 16, 24)).astype(np.uint32)
    viewer = make_napari_viewer()
    for fmt, path in _write_formats(tmp_path, raw, labels).items():
        layers = _open(viewer, path)
        expected = {"ome-zarr": {"image": ("image", raw)}}.get(
            fmt, {"raw": ("image", raw), "labels": ("labels", labels)})
        assert set(layers) == set(expected), fmt
        for name, (kind, data) in expected.items():
            layer = layers[name]
            assert _type(layer) == kind, (fmt, name)
            assert layer.data.shape == data.shape and layer.data.dtype == data.dtype, (fmt, name)
            np.testing.assert_array_equal(np.asarray(layer.data), data)
            np.testing.assert_allclose(layer.scale, (40, 4, 4), err_msg=f"{fmt} {name}")
            translate = (0, 0, 0) if (fmt, name) == ("tiff", "raw") else (40, 0, 8)
            np.testing.assert_allclose(layer.translate, translate, err_msg=f"{fmt} {name}")
        viewer.layers.clear()
