"""Corrections -> annotation: the proofread objects become training labels, unknown elsewhere."""

from __future__ import annotations

import numpy as np

from segtrain.annotation import BACKGROUND_LABEL, IGNORE_LABEL
from segtrain.errors import InputError
from segtrain.proofread.edits import Proofreader


def corrections_annotation(reader: Proofreader, scope: str = "edited", box=None, existing=None,
                           background: int = BACKGROUND_LABEL, ignore: int = IGNORE_LABEL) -> np.ndarray:
    """Annotation (uint32; 0 = not annotated, ``background``, objects 1..) from a proofread
    segmentation.

    ``scope``: ``"edited"``: the segments the edits made (merged, split, painted) as objects and
    what was deleted as background; ``"box"``: everything inside ``box`` (start, stop per axis),
    objects and background; ``"all"``: the whole corrected segmentation. ``existing`` (an annotation
    of the same shape, same convention) is kept where the corrections say nothing; object ids are
    numbered after its own."""
    seg = reader.segmentation()
    shape = seg.shape
    if existing is not None and tuple(np.shape(existing)) != shape:
        raise InputError(f"The annotation layer has shape {np.shape(existing)}, the segmentation {shape}; "
                         "choose the annotation of this image.")
    known = np.zeros(shape, bool)
    if scope == "edited":
        edited = np.array(sorted(reader.edited_segments()), dtype=np.uint64)
        objects = np.isin(seg, edited)
        deleted = [f for e in reader.edits if e.op == "delete" for f in e.groups[0]]
        gone = np.isin(np.asarray(reader.fragments), np.asarray(deleted, np.int64)) & (seg == 0)
        known = objects | gone
        if not known.any():
            raise InputError("No edits to learn from yet: merge, split, delete or paint segments first "
                             "(or use a box or the whole view).")
    elif scope == "box":
        if box is None or len(box) != len(shape):
            raise InputError(f"Give a box with a start and stop per axis ({len(shape)} axes).")
        known[tuple(slice(int(a), int(b)) for a, b in box)] = True
        if not known.any():
            raise InputError("The box is empty; draw a box over the corrected region.")
    elif scope == "all":
        known[...] = True
    else:
        raise InputError(f"Scope is 'edited', 'box' or 'all', not {scope!r}.")
    out = np.zeros(shape, np.uint32) if existing is None else np.asarray(existing).astype(np.uint32, copy=True)
    offset = 0
    if existing is not None:
        ids = out[(out != background) & (out != ignore)]
        offset = int(ids.max()) if ids.size else 0
    values = seg[known]
    ids, inverse = np.unique(values, return_inverse=True)
    numbered = np.where(ids == 0, background, offset + np.cumsum(ids != 0)).astype(np.uint32)
    if numbered.size and int(numbered[ids != 0].max(initial=0)) >= min(background, ignore):
        raise InputError("Too many objects for one annotation layer; use a smaller box.")
    out[known] = numbered[inverse.reshape(-1)]
    return out
