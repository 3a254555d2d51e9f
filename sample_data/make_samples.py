"""Regenerate the sample files in this folder with segtrain's own synthetic-data generator.

    python sample_data/make_samples.py

Writes ``em_volume.zarr`` (arrays ``raw`` uint8 and ``labels`` uint64, 8 nm voxels) and
``well_image.zarr`` (arrays ``image`` uint16 and ``labels`` uint32, 2 um pixels). Deterministic:
the same files every time (fixed seeds in :mod:`segtrain.synthetic`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from segtrain.io import Volume, write_volume
from segtrain.synthetic import (
    SAMPLE_EM,
    SAMPLE_EM_VOXEL_SIZE,
    SAMPLE_WELL,
    SAMPLE_WELL_PIXEL_SIZE,
    make_em_volume,
    make_well_image,
)

HERE = Path(__file__).resolve().parent


def main(folder: Path = HERE) -> None:
    raw, labels = make_em_volume(**SAMPLE_EM)
    image, spheroids = make_well_image(**SAMPLE_WELL)
    em_attrs = {"generator": "segtrain.synthetic.make_em_volume", "parameters": SAMPLE_EM}
    well_attrs = {"generator": "segtrain.synthetic.make_well_image", "parameters": SAMPLE_WELL}
    for name, arrays, size, attrs in [
        ("em_volume.zarr", {"raw": raw, "labels": labels}, SAMPLE_EM_VOXEL_SIZE, em_attrs),
        ("well_image.zarr", {"image": image, "labels": spheroids}, SAMPLE_WELL_PIXEL_SIZE, well_attrs),
    ]:
        target = folder / name
        if target.exists():
            shutil.rmtree(target)
        for key, data in arrays.items():
            write_volume(target / key, Volume(data, voxel_size=size, name=key,
                                              is_labels=key == "labels", attrs=attrs))
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
