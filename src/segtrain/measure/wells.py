"""Wells of one image that holds a grid of them (a plate or a slide scanned as one image): each
object goes to the grid cell its centroid lies in, ``rows`` x ``columns`` cells of equal size over
the image's last two axes, named like a plate's wells (A01 ... H12). The grid is given, not
detected; an image whose wells do not fill it evenly needs a crop to the plate first."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from segtrain.errors import InputError
from segtrain.measure.objects import summarise

COLUMN = "grid_well"


def parse_grid(text: str) -> tuple[int, int]:
    """``"8x12"`` -> ``(8, 12)``: rows x columns, each 1-100 (rows at most 26: one letter)."""
    found = re.fullmatch(r"\s*(\d+)\s*[xX*,]\s*(\d+)\s*", str(text))
    if not found:
        raise InputError(f"The well grid '{text}' is not ROWSxCOLUMNS; give e.g. 8x12 for a 96-well plate.")
    rows, columns = int(found.group(1)), int(found.group(2))
    if not (1 <= rows <= 26 and 1 <= columns <= 100):
        raise InputError(f"The well grid {rows}x{columns} is out of range; rows 1-26 (A-Z) and columns 1-100.")
    return rows, columns


def well_name(row: int, column: int) -> str:
    return f"{chr(ord('A') + row)}{column + 1:02d}"


def grid_wells(table: pd.DataFrame, shape: tuple[int, ...], grid: tuple[int, int]) -> pd.Series:
    """The well of each object (a row of ``table`` from :func:`measure_objects`, which has
    ``centroid_y`` and ``centroid_x`` in pixels) in an image of ``shape``."""
    rows, columns = grid
    height, width = shape[-2:]
    if height < rows or width < columns:
        raise InputError(f"An image of {height} x {width} pixels cannot hold a {rows}x{columns} well grid; check the "
                         "grid (rows x columns).")
    y = table["centroid_y"].to_numpy(float) if len(table) else np.zeros(0)
    x = table["centroid_x"].to_numpy(float) if len(table) else np.zeros(0)
    row = np.clip((y * rows / height).astype(int), 0, rows - 1)
    column = np.clip((x * columns / width).astype(int), 0, columns - 1)
    return pd.Series([well_name(r, c) for r, c in zip(row, column)], index=table.index, name=COLUMN, dtype=object)


def per_well(table: pd.DataFrame, shape: tuple[int, ...], grid: tuple[int, int]) -> pd.DataFrame:
    """One row per well of the grid, empty wells included: ``well``, ``count``, size mean / median /
    std and ``coverage`` of the well's area (:func:`summarise` per well)."""
    rows, columns = grid
    wells = table[COLUMN] if COLUMN in table.columns else grid_wells(table, shape, grid)
    well_pixels = int(np.prod(shape)) / (rows * columns)
    records = []
    for r in range(rows):
        for c in range(columns):
            name = well_name(r, c)
            part = table[wells.to_numpy() == name] if len(table) else table
            part.attrs = dict(table.attrs)
            records.append({"well": name, **summarise(part, image_pixels=well_pixels)})
    return pd.DataFrame.from_records(records)
