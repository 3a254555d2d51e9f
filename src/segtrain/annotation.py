"""The annotation convention of painted labels, shared by the panels, proofreading corrections
and training:

- ``0``: not painted. With *sparse* annotation (the default) these voxels are unknown and excluded
  from the loss; with *dense* annotation they are background.
- ``1 .. 65533``: objects (one id per object / cell / neuron).
- :data:`BACKGROUND_LABEL` (65534): painted background (membrane, medium), always known.
- :data:`IGNORE_LABEL` (65535): painted "ignore" region, always excluded from the loss.
"""

from __future__ import annotations

import numpy as np

BACKGROUND_LABEL = 65534
IGNORE_LABEL = 65535


def training_arrays(annotation: np.ndarray, sparse: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Labels (0 = background, 1.. = objects) and the known mask from an annotation array."""
    annotation = np.asarray(annotation)
    known = annotation != IGNORE_LABEL
    if sparse:
        known &= annotation != 0
    labels = np.where((annotation == BACKGROUND_LABEL) | (annotation == IGNORE_LABEL), 0, annotation)
    return labels.astype(np.uint64, copy=False), known


def annotated_count(annotation: np.ndarray, sparse: bool = True) -> int:
    """Number of voxels that count as annotated (known) for training."""
    annotation = np.asarray(annotation)
    if sparse:
        return int(np.count_nonzero((annotation != 0) & (annotation != IGNORE_LABEL)))
    return int(annotation.size - np.count_nonzero(annotation == IGNORE_LABEL))
