"""A segmentation being proofread: fragments (and their merge tree) at a threshold, with a log of
edits on top.

The segmentation is ``lut[fragments]``: the merge tree's table at the current threshold, then every
edit of the log in order. Edits name the fragments they regroup (not the segment ids of the
moment), so they mean the same at any threshold: moving the threshold slider re-cuts the tree and
keeps the edits on top. Each edit is a small record:

- ``merge``: the fragments of the clicked segments become one segment;
- ``split``: a segment falls back into its merge-tree children one level down;
- ``split_seeds``: a seeded watershed on the boundary map, restricted to the segment, re-cuts its
  voxels into new fragments, one per seed;
- ``delete``: the segment's fragments become background;
- ``paint``: painted voxels become a new fragment and segment.

Merges, tree splits and deletions change the lookup table only (no voxel is touched); seeded
splits and paints change voxels inside a box and keep what they overwrote, for undo. Undo / redo
move edits between the log and a redo stack.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from segtrain.errors import InputError
from segtrain.segment import MergeTree
from segtrain.segment.merge_tree import _roots, apply_lut
from segtrain.io.atomic import atomic_path
from segtrain.tasks import is_affinities, is_probabilities

OPERATIONS = ("merge", "split", "split_seeds", "delete", "paint")
FORMAT_VERSION = 1


@dataclass
class VoxelChange:
    """Voxels an edit rewrote: ``box`` (start, stop per axis), where inside it, and the fragment
    ids before and after."""

    box: tuple[tuple[int, int], ...]
    mask: np.ndarray
    before: np.ndarray
    after: np.ndarray

    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.box)


@dataclass
class Edit:
    """One proofreading edit. ``groups``: fragment-id lists, each of which becomes one segment
    with the matching id of ``ids`` (``delete``: one group, id 0). ``points``: where the user
    clicked or put seeds (data coordinates). ``voxels``: what a seeded split or paint rewrote."""

    op: str
    groups: list[list[int]]
    ids: list[int]
    points: list[list[float]] = field(default_factory=list)
    threshold: float | None = None
    voxels: VoxelChange | None = None
    time: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"))

    def record(self) -> dict:
        """The edit as JSON-able values (without the voxel arrays)."""
        out = {"op": self.op, "groups": [[int(f) for f in g] for g in self.groups],
               "ids": [int(i) for i in self.ids], "points": [[float(c) for c in p] for p in self.points],
               "threshold": self.threshold, "time": self.time}
        if self.voxels is not None:
            out["box"] = [list(map(int, b)) for b in self.voxels.box]
        return out

    def describe(self) -> str:
        n = sum(len(g) for g in self.groups)
        what = {"merge": "merged", "split": "split one level down", "split_seeds": "split at seeds",
                "delete": "deleted", "paint": "painted"}[self.op]
        if self.op in ("split", "split_seeds"):
            return f"{what} into {len(self.groups)} segments"
        if self.op == "paint":
            return f"{what} a new segment ({int(self.voxels.mask.sum()):,} voxels)" if self.voxels else what
        return f"{what} ({n} fragments)"


def _point_index(point, shape) -> tuple[int, ...]:
    index = tuple(int(np.floor(float(c) + 0.5)) for c in point)
    if len(index) != len(shape) or any(i < 0 or i >= s for i, s in zip(index, shape)):
        raise InputError(f"The point {tuple(round(float(c), 1) for c in point)} lies outside the segmentation "
                         f"(shape {tuple(shape)}); click inside it.")
    return index


class Proofreader:
    """Edits on top of a segmentation.

    Parameters
    ----------
    fragments
        Fragment ids (integer array, 0 = background). Without ``tree`` these are the segments
        themselves (e.g. instance labels). The proofreader keeps its own copy once a voxel edit
        needs one.
    tree
        The :class:`MergeTree` over ``fragments`` (None: no tree, every fragment is a segment).
    threshold
        Where the tree is cut; without a tree, the threshold that made the segmentation (e.g. an
        instance segmentation's probability threshold), recorded with each edit, or None (labels
        from a file).
    boundary
        Boundary map for seeded splits (float, the fragments' shape, high on boundaries), e.g.
        :func:`boundary_map` of the predictions; without it, seeded splits cut along the distance
        transform of the segment.
    """

    def __init__(self, fragments, tree: MergeTree | None = None, threshold: float | None = 0.5, boundary=None):
        fragments = np.asarray(fragments)
        if not np.issubdtype(fragments.dtype, np.integer):
            raise InputError(f"A segmentation to proofread holds integer ids, not {fragments.dtype}.")
        self._own_fragments = False
        top = int(fragments.max()) if fragments.size else 0
        if tree is None and top > 4 * fragments.size + 1_000_000:
            # sparse, huge ids (e.g. hashed ids from another tool): the lookup table is dense, so
            # number the segments 1..n first (same segments, other ids)
            ids, inverse = np.unique(fragments, return_inverse=True)
            fragments = (inverse.reshape(fragments.shape) + (0 if ids[0] == 0 else 1)).astype(np.uint64)
            top = int(fragments.max())
            self._own_fragments = True
        self.fragments = fragments
        self.tree = tree
        if tree is not None and threshold is None:
            raise InputError("A segmentation cut from a merge tree needs the threshold it was cut at.")
        self.threshold = None if threshold is None else float(threshold)
        if boundary is not None and tuple(np.shape(boundary)) != tuple(fragments.shape):
            raise InputError(f"The boundary map has shape {np.shape(boundary)}, the segmentation "
                             f"{fragments.shape}; give predictions of the same image.")
        self.boundary = boundary
        if tree is not None:
            top = max(top, int(tree.n_fragments))
        self.next_id = top + 1  # new fragment and segment ids are drawn from here, never reused
        self.edits: list[Edit] = []
        self.redo_stack: list[Edit] = []
        self.attrs: dict = {}  # saved with the log (e.g. the layer's scale and name)
        self._boxes: list | None = None  # bounding box of every fragment (computed when first needed)
        self._lut = self._build_lut()

    # --- the table ------------------------------------------------------------------------------
    @staticmethod
    def _padded(lut: np.ndarray | None, size: int) -> np.ndarray:
        """A copy of ``lut`` cut or grown to ``size`` entries; new ids map to themselves."""
        out = np.arange(size, dtype=np.uint64)
        if lut is not None:
            n = min(len(lut), size)
            out[:n] = lut[:n]
        return out

    def _base_lut(self) -> np.ndarray:
        return self._padded(None if self.tree is None else self.tree.lut(self.threshold), self.next_id)

    @staticmethod
    def _apply(lut: np.ndarray, edit: Edit) -> None:
        for group, new in zip(edit.groups, edit.ids):
            lut[np.asarray(group, dtype=np.int64)] = new

    def _build_lut(self) -> np.ndarray:
        lut = self._base_lut()
        for edit in self.edits:
            self._apply(lut, edit)
        return lut

    @property
    def lut(self) -> np.ndarray:
        """``segment = lut[fragment]`` with every edit applied (uint64)."""
        return self._lut

    def set_threshold(self, threshold: float) -> None:
        """Cut the tree at ``threshold``; the edits stay on top."""
        self.threshold = float(threshold)
        self._lut = self._build_lut()

    def segmentation(self, region=...) -> np.ndarray:
        """The edited segmentation (uint64), whole or of ``region`` (an index into the volume)."""
        return apply_lut(self._lut, np.asarray(self.fragments[region]))

    def relabel(self, fragments_region) -> np.ndarray:
        """Segment ids of a fragments region (the displayed slice): a LookupLabels relabel function."""
        return apply_lut(self._lut, fragments_region)

    # --- looking things up ----------------------------------------------------------------------
    def segment_at(self, point) -> int:
        """The segment id under ``point`` (data coordinates), 0 on background."""
        index = _point_index(point, self.fragments.shape)
        return int(self._lut[int(self.fragments[index])])

    def fragments_of(self, segment: int) -> np.ndarray:
        """The fragment ids of ``segment`` (sorted, int64)."""
        return np.flatnonzero(self._lut == np.uint64(segment)).astype(np.int64)

    def _box_of(self, fragment_ids: np.ndarray) -> tuple[slice, ...]:
        self.prepare()
        starts, stops = [], []
        for f in fragment_ids:
            box = self._boxes[f - 1] if 0 < f <= len(self._boxes) else None
            if box is not None:
                starts.append([s.start for s in box])
                stops.append([s.stop for s in box])
        if not starts:
            return tuple(slice(0, 0) for _ in self.fragments.shape)
        lo, hi = np.min(starts, axis=0), np.max(stops, axis=0)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))

    def prepare(self) -> None:
        """Find every fragment's bounding box (one pass over the volume, seconds for 10^7 voxels):
        seeded splits need them. Done on the first seeded split, or ahead in the background."""
        if self._boxes is None:
            frags = np.asarray(self.fragments)
            if frags.dtype == np.uint64:
                frags = frags.view(np.int64)  # ids < 2**63: the same values, no copy
            self._boxes = list(ndimage.find_objects(frags))

    def mask_of(self, segment: int) -> tuple[tuple[slice, ...], np.ndarray]:
        """``(box, mask)``: the bounding box of ``segment`` and where it is inside the box."""
        ids = self.fragments_of(segment)
        box = self._box_of(ids)
        return box, np.isin(np.asarray(self.fragments[box]), ids)

    def edited_segments(self) -> set[int]:
        """Ids of the segments the log made (still present after later edits)."""
        ids = {i for edit in self.edits for i in edit.ids if i}
        present = set(np.unique(self._lut).tolist())
        return ids & present

    # --- the log replayed (what each edit saw and made) ---------------------------------------
    def lut_after(self, k: int) -> np.ndarray:
        """``segment = lut[fragment]`` after the first ``k`` edits of the log (at the current
        threshold)."""
        lut = self._base_lut()
        for edit in self.edits[:k]:
            self._apply(lut, edit)
        return lut

    def fragments_after(self, k: int, box: tuple[slice, ...]) -> np.ndarray:
        """The fragment ids of ``box`` (a copy) as they were after the first ``k`` edits: the voxel
        changes of the later edits taken back."""
        region = np.array(self.fragments[box], dtype=np.uint64)
        for edit in reversed(self.edits[k:]):
            change = edit.voxels
            if change is None:
                continue
            lo = [max(a, s.start) for (a, _), s in zip(change.box, box)]
            hi = [min(b, s.stop) for (_, b), s in zip(change.box, box)]
            if any(a >= b for a, b in zip(lo, hi)):
                continue
            inside = tuple(slice(a - c, b - c) for a, b, (c, _) in zip(lo, hi, change.box))
            before = np.zeros(change.mask.shape, np.uint64)
            before[change.mask] = change.before
            mask = change.mask[inside]
            region[tuple(slice(a - s.start, b - s.start) for a, b, s in zip(lo, hi, box))][mask] = before[inside][mask]
        return region

    def extent(self, fragment_ids, since: int = 0) -> tuple[slice, ...]:
        """A box holding every voxel the fragments ``fragment_ids`` had after any of the first
        ``since``.. edits: their boxes now, and the boxes of later voxel edits that took voxels from
        them."""
        ids = np.asarray(fragment_ids, dtype=np.int64)
        box = self._box_of(ids)
        lo = [s.start for s in box] if all(s.stop > s.start for s in box) else None
        hi = [s.stop for s in box] if lo is not None else None
        for edit in self.edits[since:]:
            change = edit.voxels
            if change is None or not np.isin(change.before.astype(np.int64), ids).any():
                continue
            a, b = [c[0] for c in change.box], [c[1] for c in change.box]
            lo = a if lo is None else np.minimum(lo, a).tolist()
            hi = b if hi is None else np.maximum(hi, b).tolist()
        if lo is None:
            return tuple(slice(0, 0) for _ in self.fragments.shape)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))

    # --- edits ----------------------------------------------------------------------------------
    def _fresh(self, n: int) -> list[int]:
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        if len(self._lut) < self.next_id:  # room for the new ids (identity until an edit maps them)
            self._lut = self._padded(self._lut, self.next_id)
        return ids

    def _commit(self, edit: Edit) -> Edit:
        if edit.voxels is not None:
            self._write_voxels(edit.voxels, edit.voxels.after)
        self._apply(self._lut, edit)
        self.edits.append(edit)
        self.redo_stack.clear()
        return edit

    def _segment_under(self, point) -> int:
        segment = self.segment_at(point)
        if segment == 0:
            raise InputError("There is no segment under that point (background); click inside a segment.")
        return segment

    def merge(self, points) -> Edit:
        """Merge the segments under ``points`` (two or more) into one, across all slices."""
        segments = sorted({self._segment_under(p) for p in points})
        if len(segments) < 2:
            raise InputError("Both points lie in the same segment; click two different segments to merge.")
        group = np.concatenate([self.fragments_of(s) for s in segments])
        return self._commit(Edit("merge", [group.tolist()], self._fresh(1), [list(p) for p in points],
                                 self.threshold))

    def delete(self, point) -> Edit:
        """The segment under ``point`` becomes background."""
        segment = self._segment_under(point)
        return self._commit(Edit("delete", [self.fragments_of(segment).tolist()], [0], [list(point)],
                                 self.threshold))

    def split(self, point) -> Edit:
        """The segment under ``point`` falls back into its merge-tree children one level down."""
        if self.tree is None:
            raise InputError("This segmentation has no merge tree to split along; split with seeds instead "
                             "(put a seed in each part).")
        segment = self._segment_under(point)
        groups = self._children(self.fragments_of(segment))
        if len(groups) < 2:
            raise InputError("This segment is a single fragment: the merge tree cannot split it further; "
                             "split it with seeds instead.")
        return self._commit(Edit("split", groups, self._fresh(len(groups)), [list(point)], self.threshold))

    def _children(self, ids: np.ndarray) -> list[list[int]]:
        """The segment's fragments grouped by the tree's merges among them up to the threshold,
        less the last: one level down. (A segment the log merged falls back into its parts.)"""
        tree = self.tree
        k = tree.n_merges(self.threshold)
        a, b = tree.merges_a[:k], tree.merges_b[:k]
        inside = np.flatnonzero(np.isin(a, ids) & np.isin(b, ids))

        def components(merges: np.ndarray) -> list[list[int]]:
            # waterz merges two roots, and so does any subset of its merges in order: b's parent is a
            parent = np.arange(len(ids), dtype=np.int64)
            parent[np.searchsorted(ids, b[merges])] = np.searchsorted(ids, a[merges])
            roots = _roots(parent)
            return [ids[roots == r].tolist() for r in np.unique(roots)]

        groups = components(inside)
        if len(groups) == 1 and len(inside):
            groups = components(inside[:-1])
        return groups

    def check_seed(self, point, seeds=()) -> int:
        """The segment under a new seed at ``point``, which must lie inside a segment and in the
        same one as ``seeds`` (the seeds put so far); InputError with one sentence otherwise."""
        segment = self.segment_at(point)
        if segment == 0:
            raise InputError("That seed lies on background; put every seed inside the segment to split.")
        if any(self.segment_at(p) != segment for p in seeds):
            raise InputError("That seed lies in another segment than the first seeds; put all seeds inside the one "
                             "segment to split.")
        return segment

    def split_with_seeds(self, seeds) -> Edit:
        """Re-cut the segment under the seeds (two or more points, all in one segment) by a
        seeded watershed on the boundary map restricted to the segment: one part per seed."""
        seeds = [list(p) for p in seeds]
        if len(seeds) < 2:
            raise InputError("Put at least two seeds in the segment to split (one in each part).")
        segments = {self.segment_at(p) for p in seeds}
        if 0 in segments:
            raise InputError("A seed lies on background; put every seed inside the segment to split.")
        if len(segments) > 1:
            raise InputError("The seeds lie in different segments; put all seeds inside the one segment to split.")
        box, mask = self.mask_of(segments.pop())
        starts = np.array([s.start for s in box])
        markers = np.zeros(mask.shape, np.int32)
        for n, p in enumerate(seeds, start=1):
            markers[tuple(np.array(_point_index(p, self.fragments.shape)) - starts)] = n
        from skimage.segmentation import watershed

        if self.boundary is not None:
            surface = np.asarray(self.boundary[box], dtype=np.float32)
        else:
            surface = -ndimage.distance_transform_edt(mask).astype(np.float32)
        parts = watershed(surface, markers=markers, mask=mask)
        new = self._fresh(len(seeds))
        after = np.asarray(new, dtype=np.uint64)[parts[mask] - 1]
        change = VoxelChange(tuple((s.start, s.stop) for s in box), mask,
                             np.asarray(self.fragments[box])[mask].copy(), after)
        segments_ids = self._fresh(len(seeds))
        edit = Edit("split_seeds", [[f] for f in new], segments_ids, seeds, self.threshold, change)
        return self._commit(edit)

    def paint(self, mask) -> Edit:
        """Voxels where ``mask`` (the segmentation's shape) is true become a new segment."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != tuple(self.fragments.shape):
            raise InputError(f"The painted layer has shape {mask.shape}, the segmentation "
                             f"{tuple(self.fragments.shape)}; paint on a layer of the same shape.")
        if not mask.any():
            raise InputError("Nothing is painted; paint the missing object first, then add it.")
        box = ndimage.find_objects(mask.astype(np.uint8))[0]
        inner = mask[box]
        (fragment,) = self._fresh(1)
        change = VoxelChange(tuple((s.start, s.stop) for s in box), inner,
                             np.asarray(self.fragments[box])[inner].copy(),
                             np.full(int(inner.sum()), fragment, np.uint64))
        (segment,) = self._fresh(1)
        return self._commit(Edit("paint", [[fragment]], [segment], [], self.threshold, change))

    def _write_voxels(self, change: VoxelChange, values: np.ndarray) -> None:
        if not self._own_fragments:
            self.fragments = np.array(self.fragments, dtype=np.uint64)
            self._own_fragments = True
        region = self.fragments[change.slices()]
        region[change.mask] = values
        if self._boxes is not None:  # new fragments lie inside the change's box
            box = change.slices()
            while len(self._boxes) < self.next_id:
                self._boxes.append(None)
            for f in np.unique(values):
                if f > 0 and self._boxes[int(f) - 1] is None:
                    self._boxes[int(f) - 1] = box

    # --- undo / redo ----------------------------------------------------------------------------
    def undo(self) -> Edit | None:
        """Take back the newest edit (None when there is none)."""
        if not self.edits:
            return None
        edit = self.edits.pop()
        if edit.voxels is not None:
            self._write_voxels(edit.voxels, edit.voxels.before)
        self.redo_stack.append(edit)
        self._lut = self._build_lut()
        return edit

    def redo(self) -> Edit | None:
        """Apply again the newest undone edit (None when there is none)."""
        if not self.redo_stack:
            return None
        edit = self.redo_stack.pop()
        if edit.voxels is not None:
            self._write_voxels(edit.voxels, edit.voxels.after)
        self._apply(self._lut, edit)
        self.edits.append(edit)
        return edit

    # --- the log on disk ------------------------------------------------------------------------
    def log(self) -> list[dict]:
        return [edit.record() for edit in self.edits]

    def save(self, path, overwrite: bool = False, log_path=None) -> Path:
        """Write the proofreading state (fragments as edited, the merge tree, the threshold, the log
        with its voxel changes, the redo stack) to an ``.npz`` file, atomically; with ``log_path``
        also the log as readable JSON, both files in place or neither."""

        path = Path(path)
        arrays: dict[str, np.ndarray] = {"fragments": np.asarray(self.fragments)}
        if self.tree is not None:
            arrays.update(merges_a=self.tree.merges_a, merges_b=self.tree.merges_b, scores=self.tree.scores)
        stacks = {"edits": self.edits, "redo": self.redo_stack}
        for name, edits in stacks.items():
            for n, edit in enumerate(edits):
                if edit.voxels is not None:
                    for part in ("mask", "before", "after"):
                        arrays[f"{name}_{n}_{part}"] = getattr(edit.voxels, part)
        meta = {"format_version": FORMAT_VERSION, "threshold": self.threshold, "next_id": self.next_id,
                "tree": None if self.tree is None else {
                    "n_fragments": self.tree.n_fragments, "scoring": self.tree.scoring,
                    "max_threshold": self.tree.max_threshold, "attrs": self.tree.attrs},
                "attrs": self.attrs, "edits": self.log(), "redo": [e.record() for e in self.redo_stack]}
        with atomic_path(path, overwrite=overwrite, fmt="zip") as tmp, contextlib.ExitStack() as also:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, meta=np.array(json.dumps(meta, default=str)), **arrays)
            if log_path is not None:  # the readable log, moved in place with the file or not at all
                with also.enter_context(atomic_path(log_path, overwrite=overwrite, fmt="json")).open("w") as handle:
                    json.dump({"threshold": self.threshold, "edits": self.log()}, handle, indent=1)
        return path

    @classmethod
    def load(cls, path, boundary=None) -> Proofreader:
        """A proofreader as :meth:`save` wrote it: the same segmentation, log and redo stack."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(str(arrays.pop("meta")))
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"Cannot read the proofreading file {path} ({error}); give a *_proofreading.npz "
                             "file written by Export.") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{path} has proofreading format {meta.get('format_version')}, this version reads "
                             f"{FORMAT_VERSION}.")
        fragments = arrays.pop("fragments")
        tree = None
        if meta["tree"] is not None:
            t = meta["tree"]
            tree = MergeTree(fragments, arrays.pop("merges_a"), arrays.pop("merges_b"), arrays.pop("scores"),
                             t["n_fragments"], scoring=t["scoring"], max_threshold=t["max_threshold"],
                             attrs=t["attrs"])
        reader = cls(fragments, tree, meta["threshold"], boundary)
        reader.next_id = int(meta["next_id"])
        reader.attrs = dict(meta.get("attrs") or {})
        reader._own_fragments = True

        def edits_of(name: str) -> list[Edit]:
            out = []
            for n, rec in enumerate(meta[name]):
                voxels = None
                if "box" in rec:
                    voxels = VoxelChange(tuple(tuple(b) for b in rec["box"]), arrays[f"{name}_{n}_mask"],
                                         arrays[f"{name}_{n}_before"], arrays[f"{name}_{n}_after"])
                out.append(Edit(rec["op"], rec["groups"], rec["ids"], rec["points"], rec["threshold"], voxels,
                                rec["time"]))
            return out

        reader.edits = edits_of("edits")
        reader.redo_stack = edits_of("redo")
        reader._lut = reader._build_lut()
        return reader

    def summary(self) -> str:
        counts = {op: 0 for op in OPERATIONS}
        for edit in self.edits:
            counts[edit.op] += 1
        done = ", ".join(f"{n} {op.replace('_', ' ')}" for op, n in counts.items() if n)
        return f"{len(self.edits)} edits" + (f" ({done})" if done else "")


def boundary_map(outputs, kind: str) -> np.ndarray:
    """A boundary map (high on boundaries, float32, spatial shape) from predictions:
    affinities (channels first) -> 1 - mean of the nearest-neighbour affinities; probabilities of
    an instances model (foreground, boundary) -> the boundary channel; of a mask -> 1 - foreground."""
    outputs = np.asarray(outputs, dtype=np.float32)
    if is_affinities(kind):
        nearest = 3 if outputs.ndim == 4 else 2
        return (1.0 - outputs[:nearest].mean(axis=0)).astype(np.float32)
    if is_probabilities(kind):
        if outputs.shape[0] >= 2:
            return outputs[1]
        return (1.0 - outputs[0]).astype(np.float32)
    raise InputError(f"No boundary map from '{kind}' predictions; use affinities or probabilities.")
