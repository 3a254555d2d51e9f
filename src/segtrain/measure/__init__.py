"""Measurements of segmented objects (scikit-image regionprops), per object and per image, and
their tables on disk. Qt-free: the CLI (`segtrain measure`), the Measurements panel and batch
segmentation call these."""

from segtrain.measure.objects import measure_objects, size_column, summarise
from segtrain.measure.table import check_table_output, read_table, table_header, write_table
from segtrain.measure.wells import grid_wells, parse_grid, per_well

__all__ = ["measure_objects", "summarise", "size_column", "table_header", "write_table", "read_table",
           "check_table_output", "parse_grid", "grid_wells", "per_well"]
