"""Proofreading: edits on top of a segmentation (merge, split along the merge tree or at seeds,
delete, paint, undo/redo, a log saved with the result), and corrections turned into annotation."""

from segtrain.proofread.annotation import corrections_annotation
from segtrain.proofread.edits import (
    OPERATIONS,
    Edit,
    Proofreader,
    VoxelChange,
    boundary_map,
)

__all__ = ["OPERATIONS", "Edit", "Proofreader", "VoxelChange", "boundary_map", "corrections_annotation"]
