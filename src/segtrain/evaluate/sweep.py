"""Threshold sweeps: VOI and ARAND at every threshold of a grid, from one merge tree.

The contingency table of fragments x ground truth is counted once; for each threshold its rows
are relabelled through the merge tree's lookup table and aggregated. The volume itself is never
relabelled per threshold and waterz is never run again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.evaluate.metrics import check_labelled, scores_from_table, stack_labels
from segtrain.io.atomic import atomic_path


def default_thresholds(max_threshold: float = 1.0, step: float = 0.02) -> np.ndarray:
    """0, step, 2 step, ... up to ``max_threshold`` (inclusive)."""
    n = int(np.floor(max_threshold / step + 1e-9))
    return np.round(np.arange(n + 1) * step, 6)


@dataclass
class SweepResult:
    """Scores at each threshold of a sweep (arrays aligned with ``thresholds``)."""

    thresholds: np.ndarray
    voi_split: np.ndarray
    voi_merge: np.ndarray
    voi: np.ndarray
    arand: np.ndarray
    n_segments: np.ndarray
    scoring: str = ""
    attrs: dict = field(default_factory=dict)

    @property
    def best_index(self) -> int:
        """Index of the lowest total VOI (the lowest such threshold on ties)."""
        return int(np.argmin(self.voi))

    @property
    def best_threshold(self) -> float:
        return float(self.thresholds[self.best_index])

    @property
    def best(self) -> dict:
        i = self.best_index
        return dict(
            threshold=float(self.thresholds[i]),
            voi_split=float(self.voi_split[i]),
            voi_merge=float(self.voi_merge[i]),
            voi=float(self.voi[i]),
            arand=float(self.arand[i]),
            n_segments=int(self.n_segments[i]),
        )

    def rows(self) -> list[dict]:
        return [
            dict(
                threshold=float(t),
                voi_split=float(s),
                voi_merge=float(m),
                voi=float(v),
                arand=float(a),
                n_segments=int(n),
            )
            for t, s, m, v, a, n in zip(
                self.thresholds, self.voi_split, self.voi_merge, self.voi, self.arand,
                self.n_segments,
            )
        ]

    def to_dict(self) -> dict:
        return dict(
            scoring=self.scoring,
            best_threshold=self.best_threshold,
            best=self.best,
            thresholds=[float(t) for t in self.thresholds],
            voi_split=[float(v) for v in self.voi_split],
            voi_merge=[float(v) for v in self.voi_merge],
            voi=[float(v) for v in self.voi],
            arand=[float(v) for v in self.arand],
            n_segments=[int(v) for v in self.n_segments],
            attrs=self.attrs,
        )

    def write_csv(self, path, overwrite: bool = True) -> Path:
        """The table as CSV (atomically; with ``overwrite`` an existing text file is replaced)."""

        path = Path(path)
        with atomic_path(path, overwrite=overwrite, fmt="text") as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(
                    f, fieldnames=["threshold", "voi_split", "voi_merge", "voi", "arand",
                                   "n_segments"]
                )
                writer.writeheader()
                writer.writerows(self.rows())
        return path

    def write_json(self, path, overwrite: bool = True) -> Path:
        """The sweep as JSON (atomically; with ``overwrite`` an existing JSON file is replaced)."""

        path = Path(path)
        with atomic_path(path, overwrite=overwrite, fmt="json") as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path

    def figure(self, current: float | None = None):
        """A matplotlib Figure of VOI split/merge/total (and ARAND) against the threshold."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), dpi=100)
        ax = fig.add_subplot(111)
        ax.plot(self.thresholds, self.voi_split, label="VOI split", color="tab:blue")
        ax.plot(self.thresholds, self.voi_merge, label="VOI merge", color="tab:orange")
        ax.plot(self.thresholds, self.voi, label="VOI total", color="black", linewidth=2)
        ax.set_xlabel("merge threshold")
        ax.set_ylabel("VOI (bits)")
        ax2 = ax.twinx()
        ax2.plot(self.thresholds, self.arand, label="ARAND", color="tab:green", linestyle="--")
        ax2.set_ylabel("ARAND")
        ax2.set_ylim(0, 1)
        best = self.best
        ax.axvline(best["threshold"], color="tab:red", linestyle=":",
                   label=f"best {best['threshold']:.3g} (VOI {best['voi']:.3f})")
        if current is not None:
            ax.axvline(float(current), color="gray", linestyle="-", alpha=0.6,
                       label=f"current {float(current):.3g}")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="best")
        ax.set_title(f"threshold sweep{' (' + self.scoring + ')' if self.scoring else ''}")
        fig.tight_layout()
        return fig

    def plot(self, path, current: float | None = None, overwrite: bool = True) -> Path:
        """Write :meth:`figure` as a PNG (atomically; with ``overwrite`` an existing PNG is replaced)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        path = Path(path)
        fig = self.figure(current)
        FigureCanvasAgg(fig)
        with atomic_path(path, overwrite=overwrite, fmt="png") as tmp:
            with open(tmp, "wb") as f:
                fig.savefig(f, format="png")
        return path


def fragment_table(fragments: np.ndarray, gt: np.ndarray):
    """Contingency of fragments (ids as int64) against compacted gt (gt 0 ignored)."""
    fragments = np.asarray(fragments).reshape(-1)
    gt = np.asarray(gt).reshape(-1)
    keep = gt != 0
    f = fragments[keep].astype(np.int64)
    g = gt[keep]
    if f.size == 0:
        raise InputError("The ground truth has no labelled voxels (all 0); nothing to score.")
    _, g_idx = np.unique(g, return_inverse=True)
    g_idx = g_idx.reshape(-1).astype(np.int64)
    n_g = int(g_idx.max()) + 1
    keys, counts = np.unique(f * n_g + g_idx, return_counts=True)
    return keys // n_g, keys % n_g, counts


def sweep(
    tree,
    gt,
    thresholds: Sequence[float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """VOI split/merge and ARAND of ``tree`` against ``gt`` at every threshold.

    Parameters
    ----------
    tree
        A :class:`segtrain.segment.MergeTree` (with fragments).
    gt
        Ground-truth labels of the fragments' shape; 0 is ignored. For the tree of a 2D model's
        stack (``tree.attrs["slices"]``) each slice's objects count on their own (:func:`stack_labels`).
    thresholds
        Grid to evaluate (default 0 to the tree's maximum threshold in steps of 0.02).
    progress
        Optional ``callable(done, total)``.
    """
    if tree.fragments is None:
        raise InputError("The merge tree has no fragments; load it with its fragments to sweep.")
    if hasattr(gt, "compute") and not isinstance(gt, np.ndarray):
        gt = gt.compute()
    gt = np.asarray(gt)
    if not np.issubdtype(gt.dtype, np.integer):
        raise InputError(f"Ground truth must hold integer labels, not {gt.dtype}.")
    if tree.attrs.get("slices") and gt.ndim == 3:  # a 2D model's stack is scored slice by slice
        gt = stack_labels(gt, 2)
    if gt.shape != tuple(tree.fragments.shape):
        raise InputError(
            f"Ground truth has shape {gt.shape} but the segmentation {tuple(tree.fragments.shape)}; "
            "they must cover the same voxels."
        )
    if thresholds is None:
        thresholds = default_thresholds(tree.max_threshold)
    thresholds = np.asarray(sorted(float(t) for t in thresholds), dtype=np.float64)
    if thresholds.size == 0:
        raise InputError("Give at least one threshold to sweep.")
    for t in (thresholds[0], thresholds[-1]):
        tree._check(t)
    check_labelled(gt)
    f_idx, g_idx, counts = fragment_table(tree.fragments, gt)
    n = len(thresholds)
    out = {k: np.zeros(n) for k in ("voi_split", "voi_merge", "voi", "arand")}
    n_segments = np.zeros(n, dtype=np.int64)
    previous_k = None
    previous = None
    for i, t in enumerate(thresholds):
        k = tree.n_merges(t)
        if k != previous_k:
            lut = tree._lut_for(k)
            seg = lut[f_idx].astype(np.int64)
            previous = scores_from_table(seg, g_idx, counts)
            previous_k = k
        for key in out:
            out[key][i] = previous[key]
        n_segments[i] = tree.n_present - k
        if progress:
            progress(i + 1, n)
    return SweepResult(
        thresholds=thresholds,
        voi_split=out["voi_split"],
        voi_merge=out["voi_merge"],
        voi=out["voi"],
        arand=out["arand"],
        n_segments=n_segments,
        scoring=getattr(tree, "scoring", ""),
    )

