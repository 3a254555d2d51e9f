"""Losses with ignore masks and per-voxel weights.

- :func:`weighted_mse`: affinities and LSDs, weighted by the known mask (and optionally by class
  balance, so that rare boundary affinities count as much as the many affine ones).
- :func:`binary_loss`: BCE / focal / Dice / focal+Dice / BCE+Dice for masks, with a positive-class
  weight, focal gamma and alpha, and ignore mask (weight 0 = no loss).
- :func:`multiclass_loss`: cross-entropy / focal / Dice / CE+Dice / focal+Dice for class maps, with
  per-class focal alpha and ignore mask.

Focal alpha (``train.focal_alpha``): a number ``a`` weights foreground voxels by ``a`` and
background voxels by ``1 - a`` (as in Lin et al.'s focal loss); a list gives one weight per class
(``[background, foreground]`` for binary losses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segtrain.tasks import task_of
from segtrain.config import resolved_loss


def balance_weights(target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-channel weights making positives and negatives contribute equally (gunpowder's
    BalanceLabels): each class gets ``0.5 / its share`` among the weighted voxels."""
    dims = tuple(range(2, target.ndim))
    pos = (target > 0.5).float()
    w_total = weight.sum(dim=dims, keepdim=True).clamp_min(1e-6)
    pos_share = ((pos * weight).sum(dim=dims, keepdim=True) / w_total).clamp(0.05, 0.95)
    return weight * torch.where(pos > 0, 0.5 / pos_share, 0.5 / (1 - pos_share))


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                 balance: bool = False) -> torch.Tensor:
    """Mean of ``weight * (prediction - target)**2`` over weighted voxels (0 when none)."""
    if balance:
        weight = balance_weights(target, weight)
    total = weight.sum()
    if total <= 0:
        return (prediction * 0).sum()
    return (weight * (prediction.float() - target) ** 2).sum() / total


def _dice(prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    dims = tuple(range(2, prob.ndim)) if prob.ndim > 2 else (1,)
    inter = (prob * target * weight).sum(dim=(0, *dims))
    denom = ((prob + target) * weight).sum(dim=(0, *dims))
    return (1 - (2 * inter + eps) / (denom + eps)).mean()


def class_alpha(alpha: float | list[float] | None, n_classes: int) -> list[float] | None:
    """Per-class focal weights from ``train.focal_alpha``: a number ``a`` gives background
    ``1 - a`` and every other class ``a``; a list is taken as it is."""
    if alpha is None:
        return None
    if isinstance(alpha, (list, tuple)):
        if len(alpha) != n_classes:
            raise ValueError(f"focal alpha lists {len(alpha)} weights for {n_classes} classes")
        return [float(a) for a in alpha]
    return [1.0 - float(alpha)] + [float(alpha)] * (n_classes - 1)


def binary_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: str = "focal_dice",
                pos_weight: float = 1.0, gamma: float = 2.0,
                alpha: float | list[float] | None = None) -> torch.Tensor:
    """Binary losses on logits; ``weight`` 0 marks ignored voxels; ``alpha`` (focal terms only)
    see :func:`class_alpha`."""
    logits = logits.float()
    total = weight.sum().clamp_min(1e-6)
    pw = torch.tensor(pos_weight, device=logits.device, dtype=logits.dtype)
    prob = torch.sigmoid(logits)
    parts = []
    if kind in ("bce", "bce_dice"):
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none", pos_weight=pw)
        parts.append((bce * weight).sum() / total)
    if kind in ("focal", "focal_dice"):
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p_t = prob * target + (1 - prob) * (1 - target)
        factor = target * pos_weight + (1 - target)
        per_class = class_alpha(alpha, 2)
        if per_class is not None:
            factor = factor * (target * per_class[1] + (1 - target) * per_class[0])
        focal = factor * (1 - p_t) ** gamma * bce
        parts.append((focal * weight).sum() / total)
    if kind in ("dice", "focal_dice", "bce_dice"):
        parts.append(_dice(prob, target, weight))
    return sum(parts)


def multiclass_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: str = "ce_dice",
                    gamma: float = 2.0, alpha: float | list[float] | None = None) -> torch.Tensor:
    """Multi-class losses on logits ``(N, K, ...)`` with int targets ``(N, ...)``; weight 0 = ignore.
    Focal: ``alpha_c (1 - p_t) ** gamma * CE`` per voxel (``alpha`` see :func:`class_alpha`)."""
    logits = logits.float()
    total = weight.sum().clamp_min(1e-6)
    parts = []
    if kind in ("ce", "ce_dice"):
        ce = F.cross_entropy(logits, target, reduction="none")
        parts.append((ce * weight).sum() / total)
    if kind in ("focal", "focal_dice"):
        log_p = torch.log_softmax(logits, dim=1)
        log_p_t = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        focal = -((1 - log_p_t.exp()) ** gamma) * log_p_t
        per_class = class_alpha(alpha, logits.shape[1])
        if per_class is not None:
            focal = focal * torch.tensor(per_class, device=logits.device, dtype=logits.dtype)[target]
        parts.append((focal * weight).sum() / total)
    if kind in ("dice", "ce_dice", "focal_dice"):
        prob = torch.softmax(logits, dim=1)
        onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).float()
        parts.append(_dice(prob, onehot, weight.unsqueeze(1)))
    return sum(parts)


def task_loss(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], config) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss of a batch for ``config``'s task and its parts (for logging)."""

    t = config.train
    kind = resolved_loss(config)
    parts: dict[str, torch.Tensor] = {}
    task = task_of(config.model)
    if task.agglomerates:
        affs = torch.sigmoid(outputs["affinities"].float())
        parts["affinities"] = weighted_mse(affs, batch["affinities"], batch["affinities_weight"], t.balance)
        if config.model.lsds:  # the model has an LSD head and the batch LSD targets (train/targets.py)
            lsds = torch.sigmoid(outputs["lsds"].float())
            parts["lsds"] = t.lsd_weight * weighted_mse(lsds, batch["lsds"], batch["lsds_weight"])
    elif task.foreground:
        parts["probabilities"] = binary_loss(outputs["probabilities"], batch["probabilities"],
                                             batch["probabilities_weight"], kind, t.pos_weight, t.focal_gamma,
                                             t.focal_alpha)
    else:
        parts["classes"] = multiclass_loss(outputs["probabilities"], batch["classes"], batch["classes_weight"], kind,
                                           t.focal_gamma, t.focal_alpha)
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}
