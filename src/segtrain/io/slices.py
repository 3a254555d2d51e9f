"""Single 2D image files (PNG, JPEG, BMP, TIFF) and folders of numbered slices (``0.png``,
``1.png``, ... ``10.png``), stacked in numeric order (10 after 9), lazily when large."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.io.tiff_io import TIFF_SUFFIXES, read_tiff
from segtrain.io.volume import LAZY_BYTES, Volume, looks_like_labels, stem

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SLICE_SUFFIXES = IMAGE_SUFFIXES + TIFF_SUFFIXES


def natural_key(path: Path) -> tuple:
    """Sort key that orders embedded numbers numerically: ``2.png`` < ``10.png``."""
    parts = re.split(r"(\d+)", path.name.lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p)


def _label_names(path: Path) -> list[str]:
    """Names that may say labels: the file's own stem, and its folder's when the stem is a number."""
    own = stem(path)
    if re.fullmatch(r"[\d_\-. ]*", own) or re.fullmatch(r"(slice|z|img|image)?[_\-]?\d+", own.lower()):
        return [path.parent.name]
    return [own]


def _imread(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    try:
        return np.asarray(iio.imread(path))
    except Exception as error:
        raise InputError(f"{path} is not a readable image file ({error}).") from None


def _axes_2d(array: np.ndarray, path: Path) -> tuple[str, ...]:
    if array.ndim == 2:
        return ("y", "x")
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return ("y", "x", "c")
    raise InputError(f"{path} has shape {array.shape}; expected a 2D grey or RGB image.")


def read_image(path: Path) -> Volume:
    """One 2D image file (PNG, JPEG, BMP, GIF; TIFFs go through the TIFF reader)."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        return read_tiff(path, names=_label_names(path))
    data = _imread(path)
    axes = _axes_2d(data, path)
    return Volume(
        data=data,
        axes=axes,
        name=stem(path),
        is_labels=axes == ("y", "x") and looks_like_labels(data.dtype, _label_names(path)),
        source=str(path),
    )


def slice_files(folder: Path) -> list[Path]:
    """The numbered slice files in ``folder``, in numeric order; [] when it is not such a folder
    (no image files, mixed suffixes, or a file without a number)."""
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix.lower() in SLICE_SUFFIXES and not p.name.startswith(".")]
    if not files:
        return []
    if len({p.suffix.lower().replace("tiff", "tif") for p in files}) != 1:
        return []
    if not all(re.search(r"\d", p.stem) for p in files):
        return []
    return sorted(files, key=natural_key)


def _header(path: Path) -> tuple:
    """(shape, dtype-ish) of an image without decoding its pixels."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return tuple(tif.series[0].shape), str(tif.series[0].dtype)
    from PIL import Image

    with Image.open(path) as image:
        return (image.size[1], image.size[0]), image.mode


def read_slices(folder: Path, files: list[Path]) -> Volume:
    """Stack the numbered slice ``files`` of ``folder`` along z (lazily when large)."""
    first = _imread(files[0])
    if first.ndim != 2:
        raise InputError(f"{files[0]} has shape {first.shape}; slice stacks need 2D grey slices.")
    header = _header(files[0])
    for path in files[1:]:
        try:
            other = _header(path)
        except Exception as error:
            raise InputError(f"{path} is not a readable image file ({error}).") from None
        if other != header:
            raise InputError(
                f"{path} has shape/type {other}, unlike {files[0].name} {header}; all slices "
                f"in {folder} must match."
            )
    shape = (len(files), *first.shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * first.dtype.itemsize
    if len(files) == 1:
        data = first
    elif nbytes < LAZY_BYTES:
        data = np.stack([first] + [_checked(_imread(p), first, p) for p in files[1:]])
    else:
        import dask
        import dask.array as da

        lazy = [da.from_delayed(dask.delayed(_imread)(p), first.shape, first.dtype) for p in files]
        data = da.stack(lazy)
    return Volume(
        data=data,
        name=folder.name,
        is_labels=looks_like_labels(first.dtype, [folder.name]),
        attrs={},
        source=str(folder),
    )


def _checked(array: np.ndarray, first: np.ndarray, path: Path) -> np.ndarray:
    if array.shape != first.shape or array.dtype != first.dtype:
        raise InputError(f"{path} has shape {array.shape} {array.dtype}, unlike the first slice "
                         f"{first.shape} {first.dtype}; all slices must match.")
    return array
