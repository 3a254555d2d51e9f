"""Network targets and loss weights from (augmented) labels, per task."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segtrain.config import Config
from segtrain.models.build import offsets_for
from segtrain.tasks import task_of
from segtrain.train.sources import Sample
from segtrain import targets
from segtrain.targets.lsds import TRUNCATE


def targets_for(sample: Sample, config: Config, voxel_size=None) -> dict[str, np.ndarray]:
    """Arrays for one sample, all float32 unless noted, channels first:

    ``raw``; for affinities ``affinities``, ``affinities_weight`` (known * voxel weights) and, with
    LSDs, ``lsds``, ``lsds_weight``; for masks/instances ``probabilities`` (1 or 2 channels:
    foreground, boundary) and ``probabilities_weight``; for classes ``classes`` (int64) and
    ``classes_weight`` (0 = ignored). ``labels`` (int64) is kept for segmentation metrics.

    With sparse annotation (some voxels unknown), targets that depend on what lies next to a voxel
    are known only where that neighbourhood is: an object voxel beside an unknown one may or may not
    be on the object's boundary (instances: its boundary target has weight 0), and a voxel's LSDs
    describe the object within a Gaussian window (weight 0 where unknown voxels hold more than 1 %
    of the window). Fully annotated patches are unaffected.
    """

    m = config.model
    labels, known = sample.labels, sample.known
    weights = known.astype(np.float32)
    if sample.weights is not None:
        weights = weights * sample.weights
    out = {"raw": sample.raw.astype(np.float32, copy=False), "labels": labels}
    task = task_of(m)
    if task.agglomerates:
        affs, affs_known = targets.affinities(labels, offsets_for(config), known=known)
        w = affs_known.astype(np.float32)
        if sample.weights is not None:
            w = w * sample.weights[None]
        out["affinities"] = affs.astype(np.float32)
        out["affinities_weight"] = w
        if m.lsds:
            vs = voxel_size if voxel_size is not None else config.data.voxel_size
            out["lsds"] = targets.local_shape_descriptors(labels, m.lsd_sigma, voxel_size=vs,
                                                          downsample=m.lsd_downsample)
            out["lsds_weight"] = (weights * _window_known(known, m.lsd_sigma, vs))[None]
    elif task.foreground and not task.boundary_channel:
        out["probabilities"] = (labels != 0).astype(np.float32)[None]
        out["probabilities_weight"] = weights[None]
    elif task.boundary_channel:
        fg = labels != 0
        boundary = (targets.boundaries(labels, mode="inner", width=m.boundary_width) if fg.any()
                    else np.zeros_like(fg))
        out["probabilities"] = np.stack([fg, boundary]).astype(np.float32)
        out["probabilities_weight"] = np.stack([weights, weights * ~(fg & _beside_unknown(known, m.boundary_width))])
    else:
        out["classes"] = np.clip(labels, 0, m.n_classes - 1).astype(np.int64)
        out["classes_weight"] = weights
    return out


def _beside_unknown(known: np.ndarray, steps: int = 1) -> np.ndarray:
    """Known voxels within ``steps`` face-neighbour steps of an unknown one (inside the patch): as
    far as a boundary ``steps`` wide could reach from an object hidden there."""
    if known.all():
        return np.zeros(known.shape, bool)
    return known & ndimage.binary_dilation(~known, structure=ndimage.generate_binary_structure(known.ndim, 1),
                                           iterations=steps)


def _window_known(known: np.ndarray, sigma, voxel_size) -> np.ndarray:
    """1 where unknown voxels hold at most 1 % of the LSDs' Gaussian window around a voxel, else 0
    (all 1 when everything is known)."""
    if known.all():
        return np.ones(known.shape, np.float32)

    vs = np.ones(known.ndim) if voxel_size is None else np.broadcast_to(np.asarray(voxel_size, float), (known.ndim,))
    sigma_vox = np.broadcast_to(np.asarray(sigma, float), (known.ndim,)) / vs
    share = ndimage.gaussian_filter(known.astype(np.float32), sigma_vox, mode="nearest", truncate=TRUNCATE)
    return (share >= 0.99).astype(np.float32)
