"""Save layers with the segtrain writers and read them back: identical data and metadata."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from segtrain.plugin.writer import WriteError

PLUGIN = "napari-segtrain"


@pytest.mark.parametrize("suffix", [".zarr", ".tif"])
def test_labels_round_trip(make_napari_viewer, tmp_path, suffix):
    viewer = make_napari_viewer()
    labels = np.zeros((5, 12, 14), np.uint64)
    labels[1:4, 2:8, 3:9] = 7
    labels[:, 9:, :] = 2**35
    settings = {"threshold": 0.35, "scoring": "hist_quant_50", "run": "runs/em3d-001"}
    layer = viewer.add_labels(labels, name="segmentation", scale=(40, 4, 4),
                              translate=(80, 8, 0), metadata=settings)
    path = tmp_path / f"seg{suffix}"
    written = layer.save(str(path), plugin=PLUGIN)
    assert [str(p) for p in written] == [str(path)]

    (back,) = viewer.open(str(path), plugin=PLUGIN)
    assert type(back).__name__ == "Labels"
    np.testing.assert_array_equal(np.asarray(back.data), labels)
    assert back.data.dtype == labels.dtype
    np.testing.assert_allclose(back.scale, layer.scale)
    np.testing.assert_allclose(back.translate, layer.translate)
    assert back.metadata == {**settings, "voxel_size_in_file": True}  # the reader says where the scale came from


def test_image_round_trip_and_no_silent_overwrite(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    image = np.random.default_rng(0).random((16, 20), dtype=np.float32)
    layer = viewer.add_image(image, name="probabilities", scale=(2, 3), metadata={"model": "unet"})
    path = tmp_path / "prob.zarr"
    layer.save(str(path), plugin=PLUGIN)
    (back,) = viewer.open(str(path), plugin=PLUGIN)
    assert type(back).__name__ == "Image" and back.metadata == {"model": "unet", "voxel_size_in_file": True}
    np.testing.assert_array_equal(np.asarray(back.data), image)
    np.testing.assert_allclose(back.scale, (2, 3))
    with pytest.raises(WriteError, match="already exists; choose another name"):
        layer.save(str(path), plugin=PLUGIN)
    assert np.array_equal(np.asarray(viewer.open(str(path), plugin=PLUGIN)[0].data), image)


def test_writer_functions_directly(tmp_path):
    from segtrain.io import read_volume
    from segtrain.plugin.writer import write_image, write_labels

    meta = {"name": "x", "scale": (1.5, 1.5), "translate": (0, 3), "metadata": {"a": np.int64(3)}}
    assert write_labels(str(tmp_path / "l.tif"), np.ones((4, 4), np.uint16), meta) == [
        str(tmp_path / "l.tif")]
    assert write_image(str(tmp_path / "i.tiff"), np.ones((4, 4), np.float32), meta)
    volume = read_volume(tmp_path / "l.tif")
    assert volume.is_labels and volume.voxel_size == (1.5, 1.5) and volume.attrs == {"a": 3}
    assert not read_volume(tmp_path / "i.tiff").is_labels


def test_save_layers_and_export_panel_keep_the_same_attrs(make_napari_viewer, qtbot, tmp_path):
    """File > Save Layers and the Export panel build the Volume with one function: the same
    geometry and the same attributes (JSON-able metadata, the panels' LayerInfo lifted to top
    level, arrays left out), and reopening gives the LayerInfo back."""
    from segtrain.io import read_volume
    from segtrain.plugin.layers import META, LayerInfo, layer_info, segment_config
    from segtrain.plugin.widgets.export import ExportWidget

    viewer = make_napari_viewer()
    labels = np.zeros((4, 10, 12), np.uint32)
    labels[1:3, 2:7, 3:9] = 5
    settings = segment_config({"scoring": "hist_quant_50", "min_seed_distance": 3})
    metadata = {"note": "curated", "count": np.int64(2),
                META: LayerInfo("segmentation", task="affinities", threshold=0.4, source="affs", settings=settings,
                                fragments=np.arange(labels.size).reshape(labels.shape))}
    layer = viewer.add_labels(labels, name="seg", scale=(40, 4, 4), translate=(80, 8, 0), metadata=metadata)
    layer.save(str(tmp_path / "saved.zarr"), plugin=PLUGIN)

    widget = ExportWidget(viewer)
    qtbot.addWidget(widget)
    widget.seg_combo.set_layer(layer)
    widget.folder_edit.setText(str(tmp_path / "export"))
    widget.export()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    assert widget.written, widget.status.text()

    saved = read_volume(tmp_path / "saved.zarr")
    exported = read_volume(tmp_path / "export" / "segmentation.zarr")
    expected = {"note": "curated", "count": 2, "kind": "segmentation", "task": "affinities", "threshold": 0.4,
                "source": "affs", "settings": dataclasses.asdict(settings)}
    assert saved.attrs == expected
    assert exported.attrs == expected
    (back,) = viewer.open(str(tmp_path / "export" / "segmentation.zarr"), plugin=PLUGIN)
    info = layer_info(back)
    assert info.kind == "segmentation" and info.threshold == 0.4 and info.settings == settings
    for volume in (saved, exported):
        assert volume.is_labels and volume.voxel_size == (40, 4, 4) and volume.offset == (80, 8, 0)
        np.testing.assert_array_equal(np.asarray(volume.data), labels)
