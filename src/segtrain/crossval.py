"""Moved to :mod:`segtrain.workflows.crossval`; these names stay importable from here."""

from segtrain.workflows.crossval import (  # noqa: F401
    cross_validate,
    evaluate_fold,
    fold_config,
    score_heldout,
    summarise,
    train_fold,
    zoomed_volumes,
)

__all__ = ["cross_validate", "evaluate_fold", "fold_config", "score_heldout", "summarise", "train_fold",
           "zoomed_volumes"]
