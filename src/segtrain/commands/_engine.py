"""Helpers shared by the engine's commands (segment, sweep, evaluate, export)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from segtrain.errors import InputError


def log(message: str) -> None:
    """A progress line on stderr (stdout stays for results)."""
    print(message, file=sys.stderr, flush=True)


class Step:
    """``with Step("agglomerating"):`` prints the step and how long it took, on stderr."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        self.start = time.perf_counter()
        log(f"{self.what} ...")
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            log(f"{self.what}: done in {time.perf_counter() - self.start:.1f} s")
        return False


def tqdm_progress(desc: str):
    """A ``callable(done, total)`` that drives a tqdm bar on stderr."""
    from tqdm import tqdm

    bar = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False)
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return report


def read_array(path: str, dataset: str | None = None):
    """``(numpy array, Volume)`` of a file segtrain reads."""
    from segtrain.io import read_volume

    volume = read_volume(path, dataset)
    data = volume.data
    if not isinstance(data, np.ndarray):
        data = np.asarray(data.compute() if hasattr(data, "compute") else data)
    return data, volume


def read_affinities(path: str, dataset: str | None = None):
    """Affinities ``(C, z, y, x)`` or ``(C, y, x)`` and their Volume."""
    affs, volume = read_array(path, dataset)
    axes = tuple(volume.axes)
    if "c" in axes and axes.index("c") != 0:
        affs = np.moveaxis(affs, axes.index("c"), 0)
    return affs, volume


def spatial_geometry(volume) -> tuple[tuple[float, ...], tuple[float, ...], tuple[str, ...]]:
    axes = tuple(a for a in volume.axes if a != "c")
    return tuple(volume.voxel_size), tuple(volume.offset), axes


def write_labels(path: Path, data: np.ndarray, like, name: str, overwrite: bool,
                 attrs: dict | None = None) -> Path:
    from segtrain.io import Volume, write_volume

    voxel_size, offset, axes = spatial_geometry(like)
    if len(axes) != data.ndim:
        axes = ("z", "y", "x")[-data.ndim:]
    volume = Volume(data=data, voxel_size=voxel_size, offset=offset, axes=axes, name=name,
                    is_labels=True, attrs=dict(attrs or {}))
    return write_volume(path, volume, overwrite=overwrite)


def parse_thresholds(text: str | None):
    """``"0:1:0.02"`` (start:stop:step, stop included) or ``"0.1,0.2,0.5"``; None -> default."""
    if text is None:
        return None
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0:
                raise ValueError
            start, stop, step = parts
            n = int(np.floor((stop - start) / step + 1e-9))
            return [round(start + i * step, 10) for i in range(n + 1)]
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(
            f"Cannot read thresholds {text!r}; give start:stop:step (e.g. 0:1:0.02) or a "
            "comma-separated list."
        ) from None


def output_dir(path: str, overwrite: bool) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder; choose a folder for the outputs.")
    if not out.parent.exists():
        raise InputError(f"Folder {out.parent} does not exist; create it first.")
    out.mkdir(exist_ok=True)
    return out
