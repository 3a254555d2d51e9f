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

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

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
    seg = reader.segmentation()
    gt = np.asarray(gt)
    s_ids, g_ids, counts = _table(seg, gt)
    sizes = dict(zip(*np.unique(seg, return_counts=True)))
    choices: list[Choice] = []
    fg = (s_ids > 0) & (g_ids > 0)
    # each segment's main ground-truth object
    order = np.lexsort((-counts[fg], s_ids[fg]))
    s_fg, g_fg, c_fg = s_ids[fg][order], g_ids[fg][order], counts[fg][order]
    first = np.r_[True, s_fg[1:] != s_fg[:-1]]
    main = dict(zip(s_fg[first].tolist(), zip(g_fg[first].tolist(), c_fg[first].tolist())))
    # merge: two segments whose main object is the same
    by_gt: dict[int, list[tuple[int, int]]] = {}
    for s, (g, c) in main.items():
        by_gt.setdefault(g, []).append((c, s))
    for g, pieces in by_gt.items():
        if len(pieces) > 1:
            pieces.sort(reverse=True)
            (c1, s1), (c2, s2) = pieces[:2]
            p1 = tuple(np.argwhere((seg == s1) & (gt == g))[0])
            p2 = tuple(np.argwhere((seg == s2) & (gt == g))[0])
            choices.append(Choice("merge", ([p1, p2],), int(c2)))
    # split: a segment over two objects
    second = np.r_[False, (s_fg[1:] == s_fg[:-1]) & first[:-1]]
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
    choices = [c for c in choices if c.gain >= min_gain]
    if not choices:
        return None
    return max(choices, key=lambda c: c.gain)


def apply_choice(reader: Proofreader, choice: Choice, gt: np.ndarray) -> Edit:
    """Make the oracle's edit with the proofreader, as a user would (points, seeds, a painted mask)."""
    seg = reader.segmentation() if choice.op in ("split_with_seeds", "delete") else None
    if choice.op == "merge":
        return reader.merge(*choice.args)
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
