"""Bad input: each case raises one InputError sentence that names the file and the problem."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from segtrain.io import InputError, Volume, read_volumes, write_volume


def _bad_inputs(tmp_path):
    """(path, expected message fragment) for each kind of bad input."""
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    no_arrays = tmp_path / "no_arrays.zarr"
    zarr.open_group(str(no_arrays), mode="w").create_group("nothing_here")
    five_d = tmp_path / "five_d.zarr"
    zarr.create_array(str(five_d), shape=(2, 2, 3, 4, 5), dtype="u1", zarr_format=2)
    unsupported = tmp_path / "notes.docx"
    unsupported.write_bytes(b"PK\x03\x04")
    return [
        (tmp_path / "missing.h5", "does not exist"),
        (empty, "is empty"),
        (corrupt, "not a readable HDF5 file"),
        (no_arrays, "contains no arrays"),
        (five_d, "has 5 dimensions"),
        (unsupported, "unsupported extension '.docx'"),
    ]


def test_each_bad_input_gives_one_clear_sentence(tmp_path):
    for path, fragment in _bad_inputs(tmp_path):
        with pytest.raises(InputError) as info:
            read_volumes(path)
        message = str(info.value)
        assert fragment in message, (path, message)
        assert str(path) in message, message
        assert "\n" not in message


def test_5d_message_says_which_dimensions_are_supported(tmp_path):
    five_d = {path.name: path for path, _ in _bad_inputs(tmp_path)}["five_d.zarr"]
    with pytest.raises(InputError, match=r"2D \(y, x\), 3D \(z, y, x\) or 4D \(c, z, y, x\)"):
        read_volumes(five_d)


def test_slices_of_different_shapes(tmp_path):
    import imageio.v3 as iio

    folder = tmp_path / "stack"
    folder.mkdir()
    iio.imwrite(folder / "0.png", np.zeros((8, 8), np.uint8))
    iio.imwrite(folder / "1.png", np.zeros((8, 9), np.uint8))
    with pytest.raises(InputError, match="must match"):
        read_volumes(folder)


def test_write_refuses_unknown_extension_and_5d(tmp_path):
    with pytest.raises(InputError, match="cannot write"):
        write_volume(tmp_path / "x.png", Volume(np.zeros((4, 4), np.uint8)))
    with pytest.raises(InputError, match="5 dimensions"):
        Volume(np.zeros((1, 1, 1, 2, 2), np.uint8))
