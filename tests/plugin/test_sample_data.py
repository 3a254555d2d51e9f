"""File > Open Sample: the synthetic EM volume and well image, from sample_data/ or generated."""

from __future__ import annotations

import numpy as np

from segtrain.plugin import sample_data


def test_open_samples_in_napari(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segtrain", "em_volume")
    viewer.open_sample("napari-segtrain", "well_image")
    kinds = {layer.name: type(layer).__name__ for layer in viewer.layers}
    assert kinds == {"em raw": "Image", "em labels": "Labels",
                     "well image": "Image", "well labels": "Labels"}
    raw, labels = viewer.layers["em raw"], viewer.layers["em labels"]
    assert raw.data.shape == labels.data.shape and raw.data.ndim == 3
    assert raw.data.dtype == np.uint8 and labels.data.dtype == np.uint64
    assert tuple(raw.scale) == tuple(labels.scale)
    assert viewer.layers["well labels"].data.max() >= 5


def test_samples_generated_when_files_are_absent(tmp_path, monkeypatch):
    stored = [(d.copy(), k, t) for d, k, t in sample_data.sample_em_volume()]
    monkeypatch.setattr(sample_data, "SAMPLE_DIR", tmp_path / "nothing")
    generated = sample_data.sample_em_volume()
    for (a, ka, ta), (b, kb, tb) in zip(stored, generated):
        assert ta == tb and ka["name"] == kb["name"] and ka["scale"] == kb["scale"]
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # files match the generator
    image, labels = sample_data.well_volumes()
    assert image.data.dtype == np.uint16 and labels.is_labels
