"""Measurement tables on disk: CSV (always) or Parquet (when pyarrow is installed), each with a
header naming what was measured, how it was made and the units.

- CSV: the header is comment lines at the top, ``# key: <JSON value>``, one per entry, then the
  table; read it back with :func:`read_table` (or ``pandas.read_csv(path, comment="#")``).
- Parquet: the same header as JSON under the key ``segtrain`` of the file's key-value metadata.

Both are written through :func:`segtrain.io.atomic.atomic_path` (a temporary file, then a rename
that never replaces what it was not asked to).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from segtrain.errors import InputError
from segtrain.io.atomic import atomic_path, check_output
from segtrain.io.volume import jsonable

SUFFIXES = {".csv": "text", ".parquet": "binary"}


def has_parquet() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def table_format(path: str | os.PathLike) -> str:
    """``csv`` or ``parquet`` from the file name; one sentence for anything else, or for Parquet
    without pyarrow."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{path}: measurements are written as .csv or .parquet files; give a name ending in .csv.")
    if suffix == ".parquet" and not has_parquet():
        raise InputError(f"{path}: writing Parquet needs pyarrow, which is not installed; install it "
                         "(pip install pyarrow) or write a .csv file.")
    return suffix[1:]


def check_table_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """The checks :func:`write_table` makes, before any work."""
    return check_output(path, overwrite, fmt=SUFFIXES[f".{table_format(path)}"])


def units(table: pd.DataFrame, unit: str | None) -> dict[str, str]:
    """The unit of each column with one: ``px`` / ``px^2`` / ``px^3`` for ``_px`` columns, the
    voxel size's ``unit`` (its powers) for ``_cal`` columns."""
    ndim = table.attrs.get("ndim", 2)
    out = {}
    for column in table.columns:
        for suffix, base in (("_px", "px"), ("_cal", unit or "world units")):
            if column.endswith(suffix):
                power = ndim if column.startswith(("area", "volume")) else 2 if column.startswith("surface") else 1
                out[column] = base if power == 1 else f"{base}^{power}"
    return out


def table_header(table: pd.DataFrame, *, source: str | None = None, raw: str | None = None,
                 unit: str | None = None, **more) -> dict:
    """What a table file says about itself: the labels and image measured, the voxel size and
    units, how the labels were made (``more``: run, settings, threshold, ...)."""
    from segtrain import __version__

    header = {"segtrain_measure": __version__, "labels": source, "image": raw,
              "voxel_size": table.attrs.get("voxel_size"), "unit": unit if table.attrs.get("voxel_size") else "px",
              "per_slice": table.attrs.get("per_slice", False), "image_pixels": table.attrs.get("image_pixels"),
              "objects": int(len(table)), "units": units(table, unit)}
    header.update({k: v for k, v in more.items() if v is not None})
    return jsonable(header)


def write_table(table: pd.DataFrame, path: str | os.PathLike, header: dict, overwrite: bool = False) -> Path:
    """Write ``table`` with ``header`` to ``path`` (.csv, or .parquet with pyarrow), atomically."""
    fmt = table_format(path)
    path = Path(path)
    with atomic_path(path, overwrite, fmt=SUFFIXES[path.suffix.lower()], what="a measurement table") as tmp:
        if fmt == "csv":
            with open(tmp, "w", encoding="utf-8", newline="") as handle:
                for key, value in header.items():
                    handle.write(f"# {key}: {json.dumps(value)}\n")
                table.to_csv(handle, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            arrow = pa.Table.from_pandas(table, preserve_index=False)
            metadata = {**(arrow.schema.metadata or {}), b"segtrain": json.dumps(header).encode()}
            pq.write_table(arrow.replace_schema_metadata(metadata), tmp)
    return path


def read_table(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """``(table, header)`` of a file :func:`write_table` wrote."""
    path = Path(path)
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        arrow = pq.read_table(path)
        header = json.loads((arrow.schema.metadata or {}).get(b"segtrain", b"{}"))
        return arrow.to_pandas(), header
    header = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("# "):
                break
            key, _, value = line[2:].partition(": ")
            header[key] = json.loads(value)
    return pd.read_csv(path, comment="#"), header
