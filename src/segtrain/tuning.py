"""Moved to :mod:`segtrain.workflows.tuning`; these names stay importable from here."""

from segtrain.workflows.tuning import save_postprocess, tune_run  # noqa: F401

__all__ = ["save_postprocess", "tune_run"]
