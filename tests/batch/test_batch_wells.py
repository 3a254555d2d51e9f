"""`segment-batch --well-grid`: each image holds a grid of wells; its objects table names each
object's well and <key>_wells.csv has one row per well."""

from __future__ import annotations

from helpers.batch import plate_folder

from segtrain.batch import batch_images, segment_batch
from segtrain.batch.run import wells_path
from segtrain.measure import read_table
from segtrain.predict import load_model


def test_a_batch_with_a_well_grid_writes_a_row_per_well(tmp_path, cells_dir, cells_run):
    plate = plate_folder(tmp_path / "plate", cells_dir)
    images = batch_images([plate / "A01.tif"], model_ndim=2)
    out = tmp_path / "out"
    (result,) = segment_batch(load_model(cells_run), images, out, well_grid=(2, 2))
    assert result.status == "done", result.row.get("message")
    objects, _ = read_table(out / "A01_objects.csv")
    wells, header = read_table(wells_path(out, images[0]))
    assert list(wells.well) == ["A01", "A02", "B01", "B02"]
    assert set(objects.grid_well) <= set(wells.well)
    assert sorted(wells["count"]) == sorted(objects.grid_well.value_counts().reindex(wells.well, fill_value=0))
    assert wells["count"].sum() == len(objects) == result.row["objects"]
    assert header["labels"].endswith("A01_labels.tif")
