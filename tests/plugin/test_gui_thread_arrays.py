"""The GUI thread only draws: showing a prediction allocates memory for the displayed slice, not a
copy of the volume (the RGB view of affinities is moved channels last and clipped per slice; the
uncertainty's contrast limit comes from a sample). Measured with tracemalloc, which sees numpy's
allocations: a whole-volume moveaxis/clip/astype or np.percentile shows up as a peak of the
volume's size."""

from __future__ import annotations

import tracemalloc

import numpy as np

from segtrain.plugin import layers as L


def _peak_bytes(func):
    tracemalloc.start()
    try:
        result = func()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_showing_affinities_reads_the_displayed_slice_only(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 16, 16, 3), np.float32), rgb=True, name="image")  # napari's first-layer setup
    rng = np.random.default_rng(0)
    array = rng.uniform(-0.2, 1.2, size=(3, 64, 256, 256)).astype(np.float32)  # 50 MB, some values out of [0, 1]

    def show():
        data, kwargs = L.prediction_layer_args(array, None, "affinities", "affinities")
        return viewer.add_image(data, **kwargs)

    layer, peak = _peak_bytes(show)
    assert peak < array.nbytes / 4, f"showing the prediction allocated {peak / 1e6:.1f} MB"
    z = viewer.dims.current_step[0]
    expected = np.clip(np.moveaxis(array[:, z], 0, -1), 0.0, 1.0)
    np.testing.assert_array_equal(np.asarray(layer.data[z]), expected)  # what is drawn is unchanged
    np.testing.assert_array_equal(np.asarray(layer.data)[5, 7], np.clip(array[:, 5, 7].T, 0, 1))
    assert layer.rgb and layer.data.shape == (64, 256, 256, 3) and layer.data.dtype == np.float32


def test_uncertainty_contrast_comes_from_a_sample_of_a_large_map(monkeypatch):
    monkeypatch.setattr(L, "SAMPLE_ELEMENTS", 2**16, raising=False)
    rng = np.random.default_rng(1)
    array = rng.exponential(size=(1, 32, 128, 128)).astype(np.float32)  # 2 MB
    (data, kwargs), peak = _peak_bytes(lambda: L.uncertainty_layer_args(array, None, "uncertainty"))
    assert peak < array.nbytes / 4, f"the contrast limit allocated {peak / 1e6:.1f} MB"
    high = kwargs["contrast_limits"][1]
    exact = float(np.percentile(array, 99.9))
    assert abs(high - exact) < 0.15 * exact  # about the 99.9th percentile of the whole map
    assert data.shape == (32, 128, 128)
