"""File > Open Sample: the synthetic EM volume and well image.

Loaded from ``sample_data/`` in the repository (an editable install) when the files are there;
otherwise made on the fly by :mod:`segtrain.synthetic` with the same parameters (well under a
second, no downloads).
"""

from __future__ import annotations

from pathlib import Path

from segtrain import synthetic
from segtrain.io import Volume, read_volumes
from segtrain.plugin.reader import LayerData, layer_data

SAMPLE_DIR = Path(__file__).resolve().parents[3] / "sample_data"


def _sample(folder: str, names: tuple[str, str], make, parameters: dict,
            voxel_size: tuple[float, ...]) -> tuple[Volume, Volume]:
    """(image, labels) from ``sample_data/<folder>`` when readable, else ``make(**parameters)``."""
    path = SAMPLE_DIR / folder
    if path.exists():
        try:
            stored = {v.name: v for v in read_volumes(path)}
            if set(names) <= set(stored):
                return stored[names[0]], stored[names[1]]
        except Exception:  # noqa: BLE001 - a damaged sample folder: make the data instead
            pass
    image, labels = make(**parameters)
    return (Volume(image, voxel_size=voxel_size, name=names[0]),
            Volume(labels, voxel_size=voxel_size, name=names[1], is_labels=True))


def em_volumes() -> tuple[Volume, Volume]:
    """(raw, labels) of the sample EM volume."""
    return _sample("em_volume.zarr", ("raw", "labels"), synthetic.make_em_volume,
                   synthetic.SAMPLE_EM, synthetic.SAMPLE_EM_VOXEL_SIZE)


def well_volumes() -> tuple[Volume, Volume]:
    """(image, labels) of the sample well image."""
    return _sample("well_image.zarr", ("image", "labels"), synthetic.make_well_image,
                   synthetic.SAMPLE_WELL, synthetic.SAMPLE_WELL_PIXEL_SIZE)


def sample_em_volume() -> list[LayerData]:
    raw, labels = em_volumes()
    return [layer_data(raw, "em raw"), layer_data(labels, "em labels")]


def sample_well_image() -> list[LayerData]:
    image, labels = well_volumes()
    return [layer_data(image, "well image"), layer_data(labels, "well labels")]
