"""An oracle proofreader: the user who knows the ground truth and makes, at each step, the one edit
that fixes most voxels. It measures how fast proofreading converges (VOI / F1 after N edits) and
makes the corrections of the fine-tuning experiments; it is not a segmentation method.

Candidates, scored in voxels put right:

- **merge** two segments that lie mostly in the same ground-truth object (the smaller piece);
- **split** a segment that covers two ground-truth objects, at seeds in the middle of each (the
  smaller overlap);
- with ``background=True`` (instances: ground-truth 0 is background): **delete** a segment that
  lies mostly on background (its size), **paint** a ground-truth object no segment matches (its
  size less the best overlap).

Ground-truth 0 is otherwise "unknown" (EM boundaries): ignored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from segtrain.annotation import BACKGROUND_LABEL
from segtrain.proofread.edits import Edit, Proofreader


@dataclass
class Choice:
    op: str
    args: tuple
    gain: int


def _table(seg: np.ndarray, gt: np.ndarray):
    """(segment ids, gt ids, voxel counts) of every (segment, gt) pair that overlaps."""
    gmax = int(gt.max()) + 1 if gt.size else 1
    keys, counts = np.unique(seg.astype(np.uint64) * np.uint64(gmax) + gt.astype(np.uint64), return_counts=True)
    return (keys // np.uint64(gmax)).astype(np.int64), (keys % np.uint64(gmax)).astype(np.int64), counts


def _inside_point(mask: np.ndarray) -> tuple[int, ...]:
    """The voxel of ``mask`` farthest from its border (within its bounding box)."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    depth = ndimage.distance_transform_edt(np.pad(mask[box], 1))[tuple(slice(1, -1) for _ in box)]
    inner = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return tuple(int(s.start + i) for s, i in zip(box, inner))


def best_edit(reader: Proofreader, gt: np.ndarray, background: bool = False, min_gain: int = 1) -> Choice | None:
    """The edit that puts most voxels right (see the module), or None when none gains ``min_gain``."""
    found = candidates(reader, gt, background, min_gain)
    return found[0] if found else None


def oracle_step(reader: Proofreader, gt: np.ndarray, score, background: bool = False, top: int = 5,
                lower_is_better: bool = False) -> tuple[Edit | None, float, float]:
    """Try the ``top`` candidate edits of each kind, keep the one that improves ``score(segmentation)`` most (the
    user sees the result and keeps a good edit): ``(edit, score, seconds the edit took)``;
    ``(None, score now, 0)`` when none improves it."""
    now = score(reader.segmentation())
    best = (None, now)
    found = candidates(reader, gt, background)
    tried = [c for op in ("merge", "split_with_seeds", "delete", "paint") for c in [x for x in found if x.op == op][:top]]
    for choice in tried:
        try:
            apply_choice(reader, choice, gt)
        except Exception:  # noqa: BLE001 - e.g. seeds the watershed cannot separate: not an edit to make
            continue
        value = score(reader.segmentation())
        reader.undo()
        better = value < best[1] if lower_is_better else value > best[1]
        if better:
            best = (choice, value)
    if best[0] is None:
        return None, now, 0.0
    start = time.perf_counter()
    edit = apply_choice(reader, best[0], gt)
    return edit, best[1], time.perf_counter() - start


def candidates(reader: Proofreader, gt: np.ndarray, background: bool = False, min_gain: int = 1) -> list[Choice]:
    """Every candidate edit (see the module), most voxels put right first."""
    seg = reader.segmentation()
    gt = np.asarray(gt)
    s_ids, g_ids, counts = _table(seg, gt)
    sizes = dict(zip(*np.unique(seg, return_counts=True)))
    choices: list[Choice] = []
    fg = (s_ids > 0) & (g_ids > 0)
    # each segment's main ground-truth object
    order = np.lexsort((-counts[fg], s_ids[fg]))
    s_fg, g_fg, c_fg = s_ids[fg][order], g_ids[fg][order], counts[fg][order]
    first = np.r_[True, s_fg[1:] != s_fg[:-1]][:len(s_fg)]  # (none when no segment touches an object)
    main = dict(zip(s_fg[first].tolist(), zip(g_fg[first].tolist(), c_fg[first].tolist())))
    # merge: two segments whose main object is the same
    by_gt: dict[int, list[tuple[int, int]]] = {}
    for s, (g, c) in main.items():
        by_gt.setdefault(g, []).append((c, s))
    for g, pieces in by_gt.items():
        if len(pieces) > 1:
            pieces.sort(reverse=True)
            s1 = pieces[0][1]
            for c2, s2 in pieces[1:]:  # the largest piece with each other one
                choices.append(Choice("merge", (s1, s2, g), int(c2)))
    # split: a segment over two objects
    second = np.r_[False, (s_fg[1:] == s_fg[:-1]) & first[:-1]][:len(s_fg)]
    for s, g2, c2 in zip(s_fg[second].tolist(), g_fg[second].tolist(), c_fg[second].tolist()):
        choices.append(Choice("split_with_seeds", (s, main[s][0], g2), int(c2)))
    if background:
        for s in sizes:
            if s == 0:
                continue
            covered = int(counts[(s_ids == s) & (g_ids > 0)].sum())
            if covered * 2 < sizes[s]:
                choices.append(Choice("delete", (s,), int(sizes[s] - covered)))
        g_sizes = dict(zip(*np.unique(gt[gt > 0], return_counts=True)))
        for g, size in g_sizes.items():
            rows = (g_ids == g) & (s_ids > 0)
            best_iou = 0.0
            best = 0
            for s, c in zip(s_ids[rows], counts[rows]):
                iou = c / (sizes[s] + size - c)
                if iou > best_iou:
                    best_iou, best = iou, int(c)
            if best_iou < 0.5:
                choices.append(Choice("paint", (int(g),), int(size - best)))
    return sorted((c for c in choices if c.gain >= min_gain), key=lambda c: -c.gain)


def apply_choice(reader: Proofreader, choice: Choice, gt: np.ndarray) -> Edit:
    """Make the oracle's edit with the proofreader, as a user would (points, seeds, a painted mask)."""
    seg = reader.segmentation() if choice.op != "paint" else None
    if choice.op == "merge":
        s1, s2, g = choice.args
        return reader.merge([tuple(np.argwhere((seg == s) & (gt == g))[0]) for s in (s1, s2)])
    if choice.op == "split_with_seeds":
        s, g1, g2 = choice.args
        seeds = [_inside_point((seg == s) & (gt == g1)), _inside_point((seg == s) & (gt == g2))]
        return reader.split_with_seeds(seeds)
    if choice.op == "delete":
        (s,) = choice.args
        return reader.delete(tuple(np.argwhere(seg == s)[0]))
    if choice.op == "paint":
        (g,) = choice.args
        return reader.paint(gt == g)
    raise ValueError(choice.op)


def annotation_summary(annotation: np.ndarray, gt: np.ndarray) -> dict:
    """How much the corrections annotate, and how right it is by the ground truth: ``purity``, the
    fraction of object voxels (on ground-truth objects) that belong to their object's main
    ground-truth object (1 = no annotated object joins two true ones); ``split_purity``, the fraction
    that belong to their ground-truth object's main annotated object (1 = no true object is cut into
    two annotated ones); ``objects_on_gt_0``, the fraction of object voxels on ground-truth 0;
    ``background_right``, of annotated background."""
    objects = (annotation > 0) & (annotation < BACKGROUND_LABEL)
    obj, g = annotation[objects].astype(np.int64), np.asarray(gt)[objects].astype(np.int64)
    fg = g > 0
    base = int(g.max(initial=0)) + 1
    keys, counts = np.unique(obj[fg] * base + g[fg], return_counts=True)
    owner, truth = keys // base, keys % base

    def main_share(group: np.ndarray) -> float:
        order = np.argsort(group, kind="stable")
        starts = np.r_[0, np.flatnonzero(np.diff(group[order])) + 1] if len(group) else np.zeros(0, int)
        return float(np.maximum.reduceat(counts[order], starts).sum() / max(1, int(fg.sum()))) if len(group) else 1.0

    bg = annotation == BACKGROUND_LABEL
    return {"voxels_annotated": int(np.count_nonzero(annotation)), "voxels_objects": int(objects.sum()),
            "voxels_background": int(np.count_nonzero(bg)),
            "objects": len(np.unique(annotation[objects])), "fraction_of_image": float(np.mean(annotation > 0)),
            "purity": main_share(owner), "split_purity": main_share(truth),
            "objects_on_gt_0": float(1 - fg.mean()) if fg.size else 0.0,
            "background_right": float(np.mean(np.asarray(gt)[bg] == 0)) if bg.any() else None}
