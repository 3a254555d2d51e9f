"""File > Open Sample: the synthetic EM volume and well image.

Loaded from ``sample_data/`` in the repository (an editable install) when the files are there;
otherwise made on the fly by :mod:`segtrain.synthetic` with the same parameters (well under a
second, no downloads).
"""

from __future__ import annotations

from pathlib import Path

from segtrain.io import Volume, read_volumes
from segtrain.plugin.reader import LayerData, layer_data
from segtrain import synthetic

SAMPLE_DIR = Path(__file__).resolve().parents[3] / "sample_data"


def _stored(name: str) -> dict[str, Volume] | None:
    path = SAMPLE_DIR / name
    if not path.exists():
        return None
    try:
        return {v.name: v for v in read_volumes(path)}
    except Exception:  # noqa: BLE001 - a damaged sample folder: make the data instead
        return None


def em_volumes() -> tuple[Volume, Volume]:
    """(raw, labels) of the sample EM volume."""
    stored = _stored("em_volume.zarr")
    if stored and {"raw", "labels"} <= set(stored):
        return stored["raw"], stored["labels"]
    raw, labels = synthetic.make_em_volume(**synthetic.SAMPLE_EM)
    size = synthetic.SAMPLE_EM_VOXEL_SIZE
    return (Volume(raw, voxel_size=size, name="raw"),
            Volume(labels, voxel_size=size, name="labels", is_labels=True))


def well_volumes() -> tuple[Volume, Volume]:
    """(image, labels) of the sample well image."""
    stored = _stored("well_image.zarr")
    if stored and {"image", "labels"} <= set(stored):
        return stored["image"], stored["labels"]
    image, labels = synthetic.make_well_image(**synthetic.SAMPLE_WELL)
    size = synthetic.SAMPLE_WELL_PIXEL_SIZE
    return (Volume(image, voxel_size=size, name="image"),
            Volume(labels, voxel_size=size, name="labels", is_labels=True))


def sample_em_volume() -> list[LayerData]:
    raw, labels = em_volumes()
    return [layer_data(raw, "em raw"), layer_data(labels, "em labels")]


def sample_well_image() -> list[LayerData]:
    image, labels = well_volumes()
    return [layer_data(image, "well image"), layer_data(labels, "well labels")]
