"""The reader hook never raises: None for what it cannot read, with the reason shown in napari."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import zarr

from segtrain.plugin.reader import napari_get_reader


def _bad_inputs(tmp_path):
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.hdf5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"x" * 300)
    no_arrays = tmp_path / "no_arrays.zarr"
    zarr.open_group(str(no_arrays), mode="w")
    five_d = tmp_path / "five_d.zarr"
    zarr.create_array(str(five_d), shape=(2, 2, 3, 4, 5), dtype="u1", zarr_format=3)
    other = tmp_path / "table.csv"
    other.write_text("a,b\n1,2\n")
    return {
        tmp_path / "missing.tif": None,  # not there: silently None (napari says so itself)
        other: None,  # not ours: silently None, other readers may take it
        empty: "is empty",
        corrupt: "not a readable HDF5 file",
        no_arrays: "contains no arrays",
        five_d: "has 5 dimensions",
    }


def test_hook_returns_none_and_shows_reason(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", shown.append)
    for path, fragment in _bad_inputs(tmp_path).items():
        shown.clear()
        assert napari_get_reader(str(path)) is None, path
        if fragment is None:
            assert shown == [], path
        else:
            assert len(shown) == 1 and fragment in shown[0] and str(path) in shown[0], shown
    assert napari_get_reader([]) is None
    assert napari_get_reader(12345) is None  # nonsense input: still no exception


def test_hook_accepts_lists_and_returns_layer_data(tmp_path):
    import tifffile

    for i in range(2):
        tifffile.imwrite(tmp_path / f"im{i}.tif", np.full((4, 5), i, np.uint16))
    reader = napari_get_reader([str(tmp_path / "im0.tif"), str(tmp_path / "im1.tif")])
    layers = reader(None)
    assert [kind for _, _, kind in layers] == ["image", "image"]
    data, kwargs, _ = layers[1]
    assert data.shape == (4, 5) and kwargs["name"] == "im1" and kwargs["scale"] == (1.0, 1.0)


def test_manifest_valid_and_plugin_discovered():
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-segtrain"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("napari-segtrain")
    assert manifest.display_name == "segtrain"
    # the panels one by one, and all of them as one tabbed dock
    assert [w.display_name for w in manifest.contributions.widgets][0] == "All panels"
    assert len(manifest.contributions.widgets) == 10
    assert any(r.command == "napari-segtrain.get_reader" for r in manifest.contributions.readers)
