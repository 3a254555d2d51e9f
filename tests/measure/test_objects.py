"""Per-object measurements equal scikit-image's regionprops on the same labels (shared cells
instances, a crop of the FIB-SEM labels), with calibrated units from a known voxel size; 2D stacks
are measured slice by slice; the per-image summary; tables on disk with their header."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
from helpers.engine_data import em3d_gt
from skimage.measure import marching_cubes, mesh_surface_area, regionprops

from segtrain.errors import InputError
from segtrain.measure import measure_objects, read_table, summarise, table_header, write_table


def _cells(cells_dir, name="set01"):
    labels = np.asarray(iio.imread(cells_dir / name / "instances_ids.png"))
    raw = np.asarray(iio.imread(cells_dir / name / "raw.tif"))
    return labels, raw


def test_cells_measurements_equal_regionprops(cells_dir):
    labels, raw = _cells(cells_dir)
    table = measure_objects(labels, raw).set_index("label")
    regions = regionprops(labels, intensity_image=raw)
    assert sorted(table.index) == [r.label for r in regions] and len(regions) > 40
    for r in regions:
        row = table.loc[r.label]
        assert row.area_px == r.area
        assert row.perimeter_px == pytest.approx(r.perimeter)
        assert row.circularity == pytest.approx(4 * np.pi * r.area / r.perimeter ** 2)
        assert row.eccentricity == pytest.approx(r.eccentricity)
        assert row.solidity == pytest.approx(r.solidity)
        assert row.equivalent_diameter_px == pytest.approx(r.equivalent_diameter_area)
        assert row.major_axis_px == pytest.approx(r.axis_major_length)
        assert row.minor_axis_px == pytest.approx(r.axis_minor_length)
        assert (row.centroid_y, row.centroid_x) == pytest.approx(r.centroid)
        assert (row.bbox_min_y, row.bbox_min_x, row.bbox_max_y, row.bbox_max_x) == r.bbox
        assert row.mean_intensity == pytest.approx(r.intensity_mean)
        assert row.max_intensity == r.intensity_max
        edge = r.bbox[0] == 0 or r.bbox[1] == 0 or r.bbox[2] == labels.shape[0] or r.bbox[3] == labels.shape[1]
        assert bool(row.touches_border) == edge
    assert table.touches_border.any() and not table.touches_border.all()
    assert "area_cal" not in table  # no voxel size: no calibrated column pretending to be one


def test_calibrated_units_from_a_known_voxel_size():
    labels = np.zeros((40, 60), np.uint16)
    labels[5:15, 10:30] = 3  # 10 x 20 pixels
    labels[20:40, 0:10] = 7  # touches the border
    table = measure_objects(labels, voxel_size=(0.5, 2.0)).set_index("label")  # y, x pixel sizes
    assert table.loc[3, "area_px"] == 200 and table.loc[3, "area_cal"] == pytest.approx(200 * 0.5 * 2.0)
    scaled = regionprops(labels, spacing=(0.5, 2.0))[0]
    assert table.loc[3, "major_axis_cal"] == pytest.approx(scaled.axis_major_length)
    assert table.loc[3, "equivalent_diameter_cal"] == pytest.approx(np.sqrt(4 * 200.0 / np.pi))
    assert np.isnan(table.loc[3, "perimeter_cal"])  # anisotropic pixels: skimage has no perimeter, never a guess
    assert list(table.touches_border) == [False, True]
    iso = measure_objects(labels, voxel_size=(0.65, 0.65)).set_index("label")
    assert iso.loc[3, "perimeter_cal"] == pytest.approx(iso.loc[3, "perimeter_px"] * 0.65)
    assert iso.loc[3, "area_cal"] == pytest.approx(200 * 0.65 ** 2)


def test_3d_measurements_on_the_em3d_labels(em3d_dir):
    gt = em3d_gt(em3d_dir, (slice(0, 16), slice(0, 64), slice(0, 64)))
    voxel = (10.0, 8.0, 8.0)
    table = measure_objects(gt, voxel_size=voxel).set_index("label")
    regions = regionprops(gt.astype(np.int64))
    assert sorted(table.index) == [r.label for r in regions] and len(regions) > 10
    assert "perimeter_px" not in table and "eccentricity" not in table and "solidity" not in table
    for r in regions:
        row = table.loc[r.label]
        assert row.volume_px == r.area
        assert row.volume_cal == pytest.approx(r.area * 10 * 8 * 8)
        assert row.major_axis_px == pytest.approx(r.axis_major_length)
        assert (row.centroid_z, row.centroid_y, row.centroid_x) == pytest.approx(r.centroid)
    big = table.volume_px.idxmax()
    mask = np.pad(gt == big, 1).astype(np.float32)
    verts, faces, _, _ = marching_cubes(mask, 0.5, spacing=voxel)
    assert table.loc[big, "surface_area_cal"] == pytest.approx(mesh_surface_area(verts, faces), rel=1e-6)


def test_surface_area_of_a_ball_is_close_to_4_pi_r2():
    z, y, x = np.ogrid[-15:16, -15:16, -15:16]
    ball = ((z ** 2 + y ** 2 + x ** 2) <= 12 ** 2).astype(np.uint8)
    table = measure_objects(ball, voxel_size=(2, 2, 2))
    radius = 12.5  # the voxels within 12 of the centre reach 12.5 (their outer faces)
    assert table.surface_area_px[0] == pytest.approx(4 * np.pi * radius ** 2, rel=0.03)
    assert table.surface_area_cal[0] == pytest.approx(4 * table.surface_area_px[0], rel=1e-6)
    assert not table.touches_border[0]


def test_a_2d_models_stack_is_measured_slice_by_slice():
    stack = np.zeros((3, 20, 20), np.uint32)
    stack[:, 2:8, 2:8] = 5  # the same id on every slice: three objects for a 2D model
    stack[1, 10:19, 10:19] = 9
    table = measure_objects(stack, model_ndim=2)
    assert list(zip(table.z, table.label)) == [(0, 5), (1, 5), (1, 9), (2, 5)]
    assert list(table.area_px) == [36, 36, 81, 36] and "perimeter_px" in table
    assert measure_objects(stack).shape[0] == 2  # as a volume: two 3D objects
    summary = summarise(table)
    assert summary["count"] == 4 and summary["coverage"] == pytest.approx((3 * 36 + 81) / stack.size)


def test_summary_per_image(cells_dir):
    labels, _ = _cells(cells_dir, "set02")
    table = measure_objects(labels, voxel_size=(0.5, 0.5))
    sizes = np.bincount(labels.ravel())[1:]
    sizes = sizes[sizes > 0]
    summary = summarise(table)
    assert summary["count"] == len(sizes)
    assert summary["size_mean_px"] == pytest.approx(sizes.mean())
    assert summary["size_median_px"] == pytest.approx(np.median(sizes))
    assert summary["size_std_px"] == pytest.approx(sizes.std())
    assert summary["size_mean_cal"] == pytest.approx(sizes.mean() * 0.25)
    assert summary["coverage"] == pytest.approx(np.count_nonzero(labels) / labels.size)
    empty = summarise(measure_objects(np.zeros((8, 8), np.uint8)))
    assert empty["count"] == 0 and empty["size_mean_px"] is None and empty["coverage"] == 0


def test_bad_labels_are_one_sentence():
    with pytest.raises(InputError, match="integer labels"):
        measure_objects(np.random.default_rng(0).random((8, 8)))
    with pytest.raises(InputError, match="image has shape"):
        measure_objects(np.ones((8, 8), np.uint8), raw=np.ones((9, 8)))
    with pytest.raises(InputError, match="voxel size"):
        measure_objects(np.ones((4, 8, 8), np.uint8), voxel_size=(1.0, 1.0))


def test_table_file_has_its_header_and_is_never_replaced_unasked(tmp_path):
    labels = np.zeros((30, 30), np.uint8)
    labels[3:9, 3:9], labels[12:20, 12:25] = 1, 2
    table = measure_objects(labels, voxel_size=(0.65, 0.65))
    header = table_header(table, source="cells.tif", unit="um", run="runs/demo")
    path = write_table(table, tmp_path / "t.csv", header)
    back, read_header = read_table(path)
    assert read_header["labels"] == "cells.tif" and read_header["run"] == "runs/demo"
    assert read_header["voxel_size"] == [0.65, 0.65] and read_header["units"]["area_cal"] == "um^2"
    assert read_header["units"]["area_px"] == "px^2" and read_header["objects"] == 2
    assert list(back.label) == [1, 2] and back.area_cal.to_numpy() == pytest.approx(table.area_cal.to_numpy())
    before = path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        write_table(table.iloc[:1], path, header)
    assert path.read_bytes() == before
    (tmp_path / "other.csv").mkdir()
    with pytest.raises(InputError, match="folder"):
        write_table(table, tmp_path / "other.csv", header, overwrite=True)
    write_table(table.iloc[:1], path, header, overwrite=True)
    assert list(read_table(path)[0].label) == [1]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_parquet_with_pyarrow_or_one_sentence_without(tmp_path):
    from segtrain.measure.table import has_parquet

    labels = np.zeros((16, 16), np.uint8)
    labels[2:6, 2:6] = 4
    table = measure_objects(labels)
    header = table_header(table, source="x.tif")
    if not has_parquet():
        with pytest.raises(InputError, match="needs pyarrow.*pip install pyarrow"):
            write_table(table, tmp_path / "t.parquet", header)
        assert list(tmp_path.iterdir()) == []
        return
    path = write_table(table, tmp_path / "t.parquet", header)
    back, read_header = read_table(path)
    assert list(back.label) == [4] and read_header["labels"] == "x.tif"
