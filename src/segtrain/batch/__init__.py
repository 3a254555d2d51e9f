"""Batches of many images: a folder, a glob, a list or a multi-position file segmented with a
trained run's settings, resumably, into labels per image and one summary table."""

from segtrain.batch.inputs import BatchImage, batch_images, input_files, well_of
from segtrain.batch.run import (
    ImageResult,
    finished_row,
    labels_path,
    marker_path,
    read_summary,
    segment_batch,
    segment_image,
    write_summary,
)

__all__ = ["BatchImage", "ImageResult", "batch_images", "finished_row", "input_files", "labels_path",
           "marker_path", "read_summary", "segment_batch", "segment_image", "well_of", "write_summary"]
