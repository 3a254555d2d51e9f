"""Network targets and loss weights from (augmented) labels, per task."""

from __future__ import annotations

import numpy as np

from segtrain.config import Config
from segtrain.models.build import offsets_for
from segtrain.train.sources import Sample


def targets_for(sample: Sample, config: Config, voxel_size=None) -> dict[str, np.ndarray]:
    """Arrays for one sample, all float32 unless noted, channels first:

    ``raw``; for affinities ``affinities``, ``affinities_weight`` (known * voxel weights) and, with
    LSDs, ``lsds``, ``lsds_weight``; for masks/instances ``probabilities`` (1 or 2 channels:
    foreground, boundary) and ``probabilities_weight``; for classes ``classes`` (int64) and
    ``classes_weight`` (0 = ignored). ``labels`` (int64) is kept for segmentation metrics.
    """
    from segtrain import targets

    m = config.model
    labels, known = sample.labels, sample.known
    weights = known.astype(np.float32)
    if sample.weights is not None:
        weights = weights * sample.weights
    out = {"raw": sample.raw.astype(np.float32, copy=False), "labels": labels}
    if m.task == "affinities":
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
            out["lsds_weight"] = weights[None]
    elif m.task == "masks":
        out["probabilities"] = (labels != 0).astype(np.float32)[None]
        out["probabilities_weight"] = weights[None]
    elif m.task == "instances":
        fg = labels != 0
        boundary = (targets.boundaries(labels, mode="inner", width=m.boundary_width) if fg.any()
                    else np.zeros_like(fg))
        out["probabilities"] = np.stack([fg, boundary]).astype(np.float32)
        out["probabilities_weight"] = np.stack([weights, weights])
    else:
        out["classes"] = np.clip(labels, 0, m.n_classes - 1).astype(np.int64)
        out["classes_weight"] = weights
    return out
