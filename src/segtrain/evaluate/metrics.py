"""Segmentation scores: VOI, adapted Rand error, mask scores, instance matching, class IoU.

VOI and ARAND follow waterz (``waterz.evaluate``): voxels with ground truth 0 are ignored,
segmentation label 0 counts as a label like any other; entropies in bits (log2);
``voi_split = H(seg | gt)``, ``voi_merge = H(gt | seg)``; ``rand_split = sum n_ij^2 / sum t_j^2``,
``rand_merge = sum n_ij^2 / sum s_i^2`` (n = contingency counts, t = gt sizes, s = seg sizes) and
``arand = 1 - 2 sum n_ij^2 / (sum t_j^2 + sum s_i^2)`` (one minus their harmonic mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segtrain.errors import InputError


def _as_label_array(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise InputError(f"{name} must hold integer labels, not {array.dtype}.")
    return array


def _check_pair(seg, gt, names=("segmentation", "ground truth")) -> tuple[np.ndarray, np.ndarray]:
    seg = _as_label_array(seg, names[0])
    gt = _as_label_array(gt, names[1])
    if seg.shape != gt.shape:
        raise InputError(
            f"The {names[0]} has shape {seg.shape} but the {names[1]} {gt.shape}; "
            "they must cover the same voxels."
        )
    return seg, gt


@dataclass
class Contingency:
    """Sparse contingency table: ``counts[k]`` voxels have seg ``seg_ids[k]`` and gt ``gt_ids[k]``."""

    seg_ids: np.ndarray
    gt_ids: np.ndarray
    counts: np.ndarray


def _compact(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids, inverse = np.unique(values, return_inverse=True)
    return ids, inverse.reshape(-1)


def contingency(seg: np.ndarray, gt: np.ndarray, ignore_gt_zero: bool = True) -> Contingency:
    """Contingency table of ``seg`` against ``gt`` (gt 0 ignored by default)."""
    seg, gt = _check_pair(seg, gt)
    seg = seg.reshape(-1)
    gt = gt.reshape(-1)
    if ignore_gt_zero:
        keep = gt != 0
        seg = seg[keep]
        gt = gt[keep]
    if seg.size == 0:
        empty = np.zeros(0, dtype=np.uint64)
        return Contingency(empty, empty, np.zeros(0, dtype=np.int64))
    seg_ids, seg_c = _compact(seg)
    gt_ids, gt_c = _compact(gt)
    key = seg_c.astype(np.int64) * len(gt_ids) + gt_c
    keys, counts = np.unique(key, return_counts=True)
    return Contingency(
        seg_ids[keys // len(gt_ids)], gt_ids[keys % len(gt_ids)], counts.astype(np.int64)
    )


def _entropy_terms(counts: np.ndarray, total: float) -> float:
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def scores_from_table(
    seg_index: np.ndarray, gt_index: np.ndarray, counts: np.ndarray
) -> dict[str, float]:
    """VOI and Rand scores from a table given as integer row/column indices and counts.

    Rows may repeat (the same (seg, gt) pair given several times is summed).
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return dict(voi_split=0.0, voi_merge=0.0, voi=0.0, arand=0.0, rand_split=1.0, rand_merge=1.0)
    seg_index = np.asarray(seg_index, dtype=np.int64)
    gt_index = np.asarray(gt_index, dtype=np.int64)
    n_gt = int(gt_index.max()) + 1
    key = seg_index * n_gt + gt_index
    _, inv = np.unique(key, return_inverse=True)
    n_ij = np.bincount(inv.reshape(-1), weights=counts)
    s_i = np.bincount(seg_index, weights=counts)
    t_j = np.bincount(gt_index, weights=counts)
    h_st = _entropy_terms(n_ij, total)
    h_s = _entropy_terms(s_i, total)
    h_t = _entropy_terms(t_j, total)
    sum_p = float((n_ij**2).sum())
    sum_s = float((s_i**2).sum())
    sum_t = float((t_j**2).sum())
    voi_split = max(h_st - h_t, 0.0)
    voi_merge = max(h_st - h_s, 0.0)
    return dict(
        voi_split=voi_split,
        voi_merge=voi_merge,
        voi=voi_split + voi_merge,
        arand=1.0 - 2.0 * sum_p / (sum_s + sum_t),
        rand_split=sum_p / sum_t,
        rand_merge=sum_p / sum_s,
    )


def check_labelled(gt, name: str = "The ground truth") -> None:
    """Refuse ground truth with no labelled voxel (all 0, which VOI and ARAND ignore): every
    segmentation would score a perfect 0 against it."""
    if not np.any(np.asarray(gt)):
        raise InputError(f"{name} has no labelled voxel (every value is 0, which means unlabelled), so any "
                         "segmentation would score perfectly against it; give ground truth with objects labelled "
                         "1 or more.")


def segmentation_scores(seg: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """VOI split/merge/total and ARAND (plus Rand split/merge) of ``seg`` against ``gt``;
    ground truth with no labelled voxel is refused (:func:`check_labelled`)."""
    table = contingency(seg, gt)
    if table.counts.size == 0:
        check_labelled(np.asarray(gt))
    _, si = np.unique(table.seg_ids, return_inverse=True)
    _, gi = np.unique(table.gt_ids, return_inverse=True)
    return scores_from_table(si.reshape(-1), gi.reshape(-1), table.counts)


def voi(seg: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Variation of information in bits: ``voi_split``, ``voi_merge`` and their sum ``voi``."""
    s = segmentation_scores(seg, gt)
    return dict(voi_split=s["voi_split"], voi_merge=s["voi_merge"], voi=s["voi"])


def arand(seg: np.ndarray, gt: np.ndarray) -> float:
    """Adapted Rand error (0 = perfect), as in waterz/funlib; gt 0 ignored."""
    return segmentation_scores(seg, gt)["arand"]


# --- masks -----------------------------------------------------------------------------------


def auc(prob: np.ndarray, gt: np.ndarray) -> float:
    """Area under the ROC curve of probabilities against a binary ground truth (NaN if one class)."""
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    gt = np.asarray(gt).reshape(-1).astype(bool)
    if prob.shape != gt.shape:
        raise InputError(f"Probabilities ({prob.size} values) and ground truth ({gt.size}) differ in size.")
    n_pos = int(gt.sum())
    n_neg = gt.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(prob)
    return float((ranks[gt].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def mask_scores(pred, gt, prob: np.ndarray | None = None) -> dict[str, float]:
    """Dice, IoU, precision, recall, F1 (== Dice) of a binary prediction; ``auc`` if ``prob`` given.

    Empty prediction and empty ground truth score 1 (nothing to find, nothing found).
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise InputError(f"The prediction has shape {pred.shape} but the ground truth {gt.shape}.")
    pred = pred.astype(bool)
    gt = gt.astype(bool)
    tp = float(np.count_nonzero(pred & gt))
    fp = float(np.count_nonzero(pred & ~gt))
    fn = float(np.count_nonzero(~pred & gt))

    def ratio(a, b):
        return a / b if b > 0 else 1.0

    precision = ratio(tp, tp + fp)
    recall = ratio(tp, tp + fn)
    dice = ratio(2 * tp, 2 * tp + fp + fn)
    out = dict(
        dice=dice,
        iou=ratio(tp, tp + fp + fn),
        precision=precision,
        recall=recall,
        f1=dice,
    )
    if prob is not None:
        out["auc"] = auc(prob, gt)
    return out


def class_iou(
    pred: np.ndarray, gt: np.ndarray, n_classes: int | None = None, ignore_index: int | None = None
) -> dict:
    """Per-class IoU and their mean (mIoU) of two class-label maps.

    Classes absent from both prediction and ground truth get NaN and are left out of the mean.
    """
    pred, gt = _check_pair(pred, gt, ("prediction", "ground truth"))
    pred = pred.reshape(-1).astype(np.int64)
    gt = gt.reshape(-1).astype(np.int64)
    if ignore_index is not None:
        keep = gt != ignore_index
        pred, gt = pred[keep], gt[keep]
    if n_classes is None:
        n_classes = int(max(pred.max(initial=0), gt.max(initial=0))) + 1
    if pred.size and (pred.min() < 0 or gt.min() < 0):
        raise InputError("Class labels must be non-negative.")
    valid = (pred < n_classes) & (gt < n_classes)
    conf = np.bincount(gt[valid] * n_classes + pred[valid], minlength=n_classes**2).reshape(
        n_classes, n_classes
    )
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    present = ~np.isnan(iou)
    return dict(
        per_class=[float(v) for v in iou],
        miou=float(iou[present].mean()) if present.any() else float("nan"),
    )


# --- instances -------------------------------------------------------------------------------


def _overlaps(pred: np.ndarray, gt: np.ndarray):
    """Sizes and pairwise overlaps of non-zero instances."""
    pred = pred.reshape(-1)
    gt = gt.reshape(-1)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    g_ids, g_inv = np.unique(gt, return_inverse=True)
    p_inv = p_inv.reshape(-1)
    g_inv = g_inv.reshape(-1)
    p_sizes = np.bincount(p_inv, minlength=len(p_ids))
    g_sizes = np.bincount(g_inv, minlength=len(g_ids))
    both = (pred != 0) & (gt != 0)
    key = p_inv[both].astype(np.int64) * len(g_ids) + g_inv[both]
    keys, inter = np.unique(key, return_counts=True)
    pi = keys // len(g_ids)
    gi = keys % len(g_ids)
    union = p_sizes[pi] + g_sizes[gi] - inter
    iou = inter / union
    p_fg = p_ids != 0
    g_fg = g_ids != 0
    # re-index to foreground-only indices
    p_map = np.cumsum(p_fg) - 1
    g_map = np.cumsum(g_fg) - 1
    return int(p_fg.sum()), int(g_fg.sum()), p_map[pi], g_map[gi], iou


def _n_matches(n_pred: int, n_gt: int, pi, gi, iou, threshold: float) -> int:
    keep = iou >= threshold
    pi, gi, iou_k = pi[keep], gi[keep], iou[keep]
    if threshold > 0.5 or len(iou_k) == 0:
        # IoU > 0.5 matches are unique
        return int(len(iou_k))
    from scipy.optimize import linear_sum_assignment

    rows, ri = np.unique(pi, return_inverse=True)
    cols, ci = np.unique(gi, return_inverse=True)
    cost = np.zeros((len(rows), len(cols)))
    cost[ri, ci] = iou_k
    r, c = linear_sum_assignment(-cost)
    return int(np.count_nonzero(cost[r, c] > 0))


def instance_scores(
    pred_labels: np.ndarray,
    gt_labels: np.ndarray,
    iou_threshold: float = 0.5,
    thresholds: np.ndarray | None = None,
) -> dict:
    """Match predicted to ground-truth instances by IoU (0 = background in both).

    Returns ``tp, fp, fn, precision, recall, f1`` and ``ap`` (``tp / (tp + fp + fn)``, the DSB
    "average precision") at ``iou_threshold``, and ``mean_ap``/``mean_f1`` averaged over
    ``thresholds`` (default 0.5:0.95:0.05), with the per-threshold values in ``ap_per_threshold``.
    """
    pred, gt = _check_pair(pred_labels, gt_labels, ("prediction", "ground truth"))
    if not 0 < iou_threshold <= 1:
        raise InputError(f"The IoU threshold must be in (0, 1], not {iou_threshold}.")
    if thresholds is None:
        thresholds = np.round(np.arange(0.5, 0.96, 0.05), 2)
    n_pred, n_gt, pi, gi, iou = _overlaps(pred, gt)

    def at(t):
        tp = _n_matches(n_pred, n_gt, pi, gi, iou, t)
        fp = n_pred - tp
        fn = n_gt - tp
        prec = tp / n_pred if n_pred else (1.0 if n_gt == 0 else 0.0)
        rec = tp / n_gt if n_gt else (1.0 if n_pred == 0 else 0.0)
        f1 = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0
        ap = tp / (tp + fp + fn) if (tp + fp + fn) else 1.0
        return dict(tp=tp, fp=fp, fn=fn, precision=prec, recall=rec, f1=f1, ap=ap)

    out = at(iou_threshold)
    per = [at(float(t)) for t in thresholds]
    out["thresholds"] = [float(t) for t in thresholds]
    out["ap_per_threshold"] = [p["ap"] for p in per]
    out["f1_per_threshold"] = [p["f1"] for p in per]
    out["mean_ap"] = float(np.mean(out["ap_per_threshold"]))
    out["mean_f1"] = float(np.mean(out["f1_per_threshold"]))
    out["n_pred"] = n_pred
    out["n_gt"] = n_gt
    return out


def stack_labels(gt, model_ndim: int | None = None) -> np.ndarray:
    """Ground truth as a model's segmentation is scored against it: for a 2D model's stack
    (``model_ndim == 2``, 3D labels) each slice's objects on their own (an id found in two slices
    is two objects, as a 2D model sees them), else ``gt`` unchanged. 0 stays 0."""
    gt = np.asarray(gt)
    if model_ndim != 2 or gt.ndim != 3:
        return gt
    out, offset = np.zeros(gt.shape, np.int64), 0
    for z in range(gt.shape[0]):
        ids, inverse = np.unique(gt[z], return_inverse=True)
        new = np.arange(len(ids), dtype=np.int64) + offset + (0 if ids[0] == 0 else 1)
        new[ids == 0] = 0
        out[z] = new[inverse.reshape(gt[z].shape)]
        offset = max(offset, int(out[z].max()))
    return out
