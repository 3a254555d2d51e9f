"""Corrections -> annotation: what the proofreading confirmed becomes training labels, unknown
elsewhere.

Scopes:

- ``"confirmed"``: what the user looked at and decided, edit by edit: a split, the neighbourhood
  (``radius`` voxels) of its seeds and of the new boundary between its parts where it passes near
  them; a merge, the same around the clicked points and the boundary it removed; a delete, the
  deleted area (background); a paint, the painted object. Around the confirmed objects, what the
  segmentation shows as background within ``radius`` is background. The rest of an edited segment
  stays unknown: a part of a split may still be merged with other objects, and the cut runs
  through them far from the seeds; annotating the parts whole would teach those merges.
- ``"edited"``: the segments the edits made, whole, and what was deleted as background.
- ``"box"``: everything inside a box (objects and background); ``"all"``: the whole segmentation.

Every scope labels its voxels with the corrected segmentation's ids.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segtrain.annotation import BACKGROUND_LABEL, IGNORE_LABEL
from segtrain.errors import InputError
from segtrain.proofread.edits import Edit, Proofreader

SCOPES = ("confirmed", "edited", "box", "all")
RADIUS = 8  # voxels (along the finest axis) around an edit's boundary and points that it confirms
#: boundary-map value above which a corrected object's voxel is a membrane (``boundary_background``): 0.7
#: beat 0.5 on both fine-tuning protocols measured (docs/training.md, "A real shift")
MEMBRANES = 0.7


def _spacing(sampling, ndim: int) -> np.ndarray:
    if sampling is None:
        return np.ones(ndim)
    spacing = np.asarray(sampling, dtype=float)
    if spacing.shape != (ndim,) or (spacing <= 0).any():
        raise InputError(f"Give one positive voxel size per axis ({ndim} axes), not {tuple(sampling)}.")
    return spacing / spacing.min()


def _pad(box: tuple[slice, ...], margin: np.ndarray, shape) -> tuple[slice, ...]:
    return tuple(slice(max(0, s.start - int(np.ceil(m))), min(n, s.stop + int(np.ceil(m))))
                 for s, m, n in zip(box, margin, shape))


def _near(where: np.ndarray, radius: float, spacing: np.ndarray) -> np.ndarray:
    """Voxels within ``radius`` of a voxel of ``where`` (distances scaled by ``spacing``)."""
    if not where.any():
        return np.zeros(where.shape, bool)
    return ndimage.distance_transform_edt(~where, sampling=spacing) <= radius


def _boundary(pieces: np.ndarray) -> np.ndarray:
    """Voxels of a piece (> 0) next to a voxel of another piece (face neighbours)."""
    out = np.zeros(pieces.shape, bool)
    for axis in range(pieces.ndim):
        a = [slice(None)] * pieces.ndim
        b = [slice(None)] * pieces.ndim
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        a, b = tuple(a), tuple(b)
        differ = (pieces[a] != pieces[b]) & (pieces[a] > 0) & (pieces[b] > 0)
        out[a] |= differ
        out[b] |= differ
    return out


def _pieces(reader: Proofreader, k: int, edit: Edit) -> tuple[tuple[slice, ...], np.ndarray]:
    """``(box, pieces)`` right after edit ``k`` (a merge or split): inside the box, which piece each
    voxel of the edited segment belongs to (1.., 0 elsewhere): for a split its parts, for a merge the
    segments it joined."""
    groups = [np.asarray(g, dtype=np.int64) for g in edit.groups]
    ids = np.concatenate(groups)
    box = reader.extent(ids, k)
    if edit.voxels is not None:  # a seeded split: all of it lies in the box it rewrote
        box = tuple(slice(min(s.start, a), max(s.stop, b)) for s, (a, b) in zip(box, edit.voxels.box)) \
            if all(s.stop > s.start for s in box) else edit.voxels.slices()
    frags = reader.fragments_after(k + 1, box).astype(np.int64)
    order = np.argsort(ids)
    sorted_ids = ids[order]
    where = np.clip(np.searchsorted(sorted_ids, frags), 0, len(ids) - 1)
    inside = sorted_ids[where] == frags
    if edit.op == "merge":  # the segments each fragment belonged to before the merge
        before = reader.lut_after(k)
        pieces = np.where(inside, before[np.where(inside, frags, 0)].astype(np.int64) + 1, 0)
    else:
        group_of = np.concatenate([np.full(len(g), n + 1) for n, g in enumerate(groups)])[order]
        pieces = np.where(inside, group_of[where], 0)
    return box, pieces


def confirmed_regions(reader: Proofreader, radius: float = RADIUS,
                      sampling=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(objects, background, painted)``: boolean masks of what the edits confirmed (see the
    module): ``objects`` near the boundaries splits made and merges removed, around their points,
    and the painted objects (``painted``, whose outline the user drew); ``background`` the deleted
    areas."""
    shape = reader.fragments.shape
    spacing = _spacing(sampling, len(shape))
    objects = np.zeros(shape, bool)
    background = np.zeros(shape, bool)
    painted = np.zeros(shape, bool)
    for k, edit in enumerate(reader.edits):
        if edit.op == "paint":
            change = edit.voxels
            painted[change.slices()] |= change.mask
            continue
        if edit.op == "delete":
            ids = np.asarray(edit.groups[0], dtype=np.int64)
            box = reader.extent(ids, k)
            background[box] |= np.isin(reader.fragments_after(k + 1, box).astype(np.int64), ids)
            continue
        box, pieces = _pieces(reader, k, edit)
        segment = pieces > 0
        points = np.zeros(segment.shape, bool)
        for p in edit.points:
            index = tuple(int(np.floor(float(c) + 0.5)) - s.start for c, s in zip(p, box))
            if all(0 <= i < n for i, n in zip(index, points.shape)):
                points[index] = True
        objects[box] |= segment & (_near(_local_cut(_boundary(pieces), points, pieces, radius, spacing), radius,
                                         spacing) | _near(points, radius, spacing))
    return objects | painted, background, painted


def _local_cut(cut: np.ndarray, points: np.ndarray, pieces: np.ndarray, radius: float,
               spacing: np.ndarray) -> np.ndarray:
    """The part of a boundary between pieces that the edit's points decided: seen from each point,
    the boundary of its piece no farther than its nearest boundary voxel plus ``radius``. (A split
    of a segment that is still merged elsewhere cuts through those other objects too, far from the
    seeds; that part of the cut nobody looked at.)"""
    if not cut.any() or not points.any():
        return cut
    out = np.zeros(cut.shape, bool)
    for index in np.argwhere(points):
        point = np.zeros(cut.shape, bool)
        point[tuple(index)] = True
        distance = ndimage.distance_transform_edt(~point, sampling=spacing)
        own = cut & (pieces == pieces[tuple(index)])
        if own.any():
            out |= own & (distance <= distance[own].min() + radius)
    return out


def corrections_annotation(reader: Proofreader, scope: str = "confirmed", box=None, existing=None,
                           background: int = BACKGROUND_LABEL, ignore: int = IGNORE_LABEL,
                           radius: float = RADIUS, sampling=None, boundary_background: float | None = None,
                           outline: float = 0, ring: bool = True) -> np.ndarray:
    """Annotation (uint32; 0 = not annotated, ``background``, objects 1..) from a proofread
    segmentation.

    ``scope``: ``"confirmed"`` (what the edits confirmed, ``radius`` voxels around their boundaries
    and points; ``sampling``: the voxel size, for anisotropic volumes), ``"edited"`` (the edited
    segments whole), ``"box"`` (everything inside ``box``, start and stop per axis) or ``"all"``;
    see the module. ``existing`` (an annotation of the same shape, same convention) is kept where
    the corrections say nothing; object ids are numbered after its own.

    ``outline`` (scope "confirmed"): object voxels closer than this to the segmentation's background
    stay unknown, except painted ones: the outline is the model's own (its threshold's), not
    something an edit decided. ``ring`` (scope "confirmed"): the background the segmentation shows
    within ``radius`` of the confirmed objects is background.

    ``boundary_background``: annotated object voxels where the proofreader's boundary map exceeds
    it become background, as the boundaries between objects are in EM ground truth (label 0 on
    membranes): a segmentation grown over the membranes would otherwise teach affinity 1 into
    them, that is, merges. None (cells, whose segmentations have background of their own): kept."""
    seg = reader.segmentation()
    shape = seg.shape
    if existing is not None and tuple(np.shape(existing)) != shape:
        raise InputError(f"The annotation layer has shape {np.shape(existing)}, the segmentation {shape}; "
                         "choose the annotation of this image.")
    known = np.zeros(shape, bool)
    if scope in ("confirmed", "edited") and not reader.edits:
        raise InputError("No edits to learn from yet: merge, split, delete or paint segments first "
                         "(or use a box or the whole view).")
    if scope == "confirmed":
        if not radius > 0:
            raise InputError(f"The radius around the edits must be positive, not {radius}.")
        objects, gone, painted = confirmed_regions(reader, radius, sampling)
        spacing = _spacing(sampling, len(shape))
        if outline > 0 and objects.any():  # the model's outlines: not decided by an edit
            around = _pad(ndimage.find_objects(objects.astype(np.uint8))[0], outline / spacing, shape)
            objects[around] &= ~_near(seg[around] == 0, outline, spacing) | painted[around]
        known = objects | gone
        if ring and objects.any():  # the background the segmentation shows around the confirmed objects
            around = _pad(ndimage.find_objects(objects.astype(np.uint8))[0], radius / spacing, shape)
            known[around] |= _near(objects[around], radius, spacing) & (seg[around] == 0)
    elif scope == "edited":
        edited = np.array(sorted(reader.edited_segments()), dtype=np.uint64)
        objects = np.isin(seg, edited)
        deleted = [f for e in reader.edits if e.op == "delete" for f in e.groups[0]]
        gone = np.isin(np.asarray(reader.fragments), np.asarray(deleted, np.int64)) & (seg == 0)
        known = objects | gone
    elif scope == "box":
        if box is None or len(box) != len(shape):
            raise InputError(f"Give a box with a start and stop per axis ({len(shape)} axes).")
        known[tuple(slice(int(a), int(b)) for a, b in box)] = True
        if not known.any():
            raise InputError("The box is empty; draw a box over the corrected region.")
    elif scope == "all":
        known[...] = True
    else:
        raise InputError(f"Scope is one of {', '.join(repr(s) for s in SCOPES)}, not {scope!r}.")
    if not known.any():
        raise InputError("The edits confirm nothing that is still in the segmentation (all undone or "
                         "overwritten); edit again, or use a box or the whole view.")
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
    if boundary_background is not None:
        if reader.boundary is None:
            raise InputError("This segmentation has no boundary map to find the membranes on; proofread it "
                             "with its predictions, or keep the boundaries as they are.")
        membrane = known & (seg != 0) & (np.asarray(reader.boundary) > boundary_background)
        out[membrane] = background
    return out
