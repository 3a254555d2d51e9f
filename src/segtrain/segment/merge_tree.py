"""The merge tree: waterz run once, any threshold answered from its merge history.

waterz merges region-graph edges cheapest first and stops at the first edge whose score is
``>= threshold`` (compared in float32). Each merge ``(a, b, score)`` makes ``b`` a child of ``a``;
every voxel then gets the root of its fragment. The merge order does not depend on the threshold,
so the segmentation at ``t`` is: apply the merges in order up to (not including) the first merge
whose running-maximum score is ``>= t``, and label each fragment with its root. That is exactly
what waterz returns for ``t`` (ids included), without running waterz again.
"""

from __future__ import annotations

import json
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.segment._waterz import (
    SCORING_FUNCTIONS,
    agglomerate,
    as_waterz_affinities,
    as_waterz_fragments,
    check_threshold,
    scoring_type,
)
from segtrain.segment.fragments import relabel_consecutive
from segtrain.io.atomic import atomic_path

FORMAT_VERSION = 1


def _gather(lut: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``lut[ids]`` for ids known to lie in ``[0, len(lut))``, at memory speed."""
    if ids.dtype == np.uint64 or ids.dtype == np.int64:
        index = ids.view(np.int64)
    else:
        index = ids.astype(np.int64)
    out = np.empty(ids.shape, dtype=np.uint64)
    np.take(lut, index, out=out, mode="clip")  # no bounds checks: the caller checked
    return out


def apply_lut(lut: np.ndarray, ids) -> np.ndarray:
    """``lut[ids]`` as uint64; ids outside the table (or negative) stay what they are, as in waterz.

    The one place a fragment->segment table is applied: a displayed slice, a block of an export.
    """
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise InputError(f"Fragments must hold integer ids, not {ids.dtype}.")
    if ids.size and (ids.min() < 0 or ids.max() >= lut.size):
        ids = ids.astype(np.uint64)
        out = ids.copy()
        known = ids < lut.size
        out[known] = lut[ids[known]]
        return out
    return _gather(lut, ids)


def _roots(parent: np.ndarray) -> np.ndarray:
    """Root of every node of a forest given by parent pointers (pointer jumping)."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


class MergeTree:
    """Merge history of one waterz run, answering any threshold up to ``max_threshold``.

    Attributes
    ----------
    fragments
        The fragment array (uint64, the affinities' spatial shape; 0 = background).
    merges_a, merges_b
        Merge ``i`` made ``merges_b[i]`` a child of ``merges_a[i]``.
    scores
        float32 score of each merge; ``running_max`` is its running maximum.
    n_fragments
        Largest fragment id (ids are 1..n_fragments).
    """

    def __init__(
        self,
        fragments: np.ndarray | None,
        merges_a: np.ndarray,
        merges_b: np.ndarray,
        scores: np.ndarray,
        n_fragments: int,
        scoring: str = "hist_quant_50",
        max_threshold: float = 1.0,
        n_present: int | None = None,
        attrs: dict | None = None,
    ):
        self.fragments = fragments
        self.merges_a = np.asarray(merges_a, dtype=np.int64)
        self.merges_b = np.asarray(merges_b, dtype=np.int64)
        self.scores = np.asarray(scores, dtype=np.float32)
        self.running_max = (
            np.maximum.accumulate(self.scores) if self.scores.size else self.scores.copy()
        )
        self.n_fragments = int(n_fragments)
        self.scoring = scoring
        self.max_threshold = float(max_threshold)
        if n_present is None:
            if fragments is None:
                n_present = self.n_fragments
            else:
                n_present = int(np.count_nonzero(np.bincount(
                    np.asarray(fragments).reshape(-1).astype(np.int64),
                    minlength=self.n_fragments + 1,
                )[1:]))
        self.n_present = int(n_present)
        self.attrs = dict(attrs or {})
        self._luts: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.RLock()  # the GUI thread and a worker may ask at once
        self._fragments_checked = None  # the fragment array known to hold only ids <= n

    def __getstate__(self) -> dict:
        """Picklable (to and from another process): without the lock and the table cache."""
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state["_luts"] = OrderedDict()
        state["_fragments_checked"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        affs,
        fragments=None,
        scoring: str = "hist_quant_50",
        max_threshold: float = 1.0,
        progress: Callable[[str], None] | None = None,
    ) -> MergeTree:
        """Run waterz once up to ``max_threshold`` and keep its merge history.

        Parameters
        ----------
        affs
            ``(C>=3, z, y, x)`` or ``(C>=2, y, x)`` affinities, float in [0, 1].
        fragments
            Fragments of the affinities' spatial shape (uint64 ids, 0 = background), or None for
            waterz's own initial watershed. Ids that are not 1..n are renumbered consecutively.
        scoring
            A short name from :data:`SCORING_FUNCTIONS` (``mean``, ``hist_quant_10`` ...
            ``hist_quant_95``).
        """
        scoring_type(scoring)  # fail early on unknown names
        max_threshold = check_threshold(max_threshold, "maximum threshold")
        waffs, is_2d = as_waterz_affinities(affs)
        spatial = waffs.shape[1:]
        if fragments is not None:
            frags = as_waterz_fragments(fragments, spatial[1:] if is_2d else spatial)
            n_ids = int(frags.max()) if frags.size else 0
            present = np.unique(frags)
            n_present = int(np.count_nonzero(present))
            if n_ids != n_present:
                frags = relabel_consecutive(frags)
                n_ids = n_present
            thresholds = [max_threshold]
        else:
            frags = None
            thresholds = [0.0, max_threshold]
        if progress:
            progress("agglomerating with waterz")
        a_list: list[np.ndarray] = []
        b_list: list[np.ndarray] = []
        s_list: list[np.ndarray] = []
        initial = None
        # waterz writes its segmentation into the fragments it is given: give it a copy
        work = None if frags is None else frags.copy()
        for i, (seg, history) in enumerate(
            agglomerate(waffs, thresholds, fragments=work, scoring=scoring,
                        return_merge_history=True)
        ):
            if frags is None and i == 0:
                initial = seg.copy()  # waterz's own fragments, before any merge
            if history:
                a_list.append(np.fromiter((m["a"] for m in history), np.int64, len(history)))
                b_list.append(np.fromiter((m["b"] for m in history), np.int64, len(history)))
                s_list.append(np.fromiter((m["score"] for m in history), np.float32, len(history)))
        if frags is None:
            frags = initial
            n_ids = int(frags.max()) if frags.size else 0
            n_present = int(np.count_nonzero(np.unique(frags)))
        a = np.concatenate(a_list) if a_list else np.zeros(0, np.int64)
        b = np.concatenate(b_list) if b_list else np.zeros(0, np.int64)
        s = np.concatenate(s_list) if s_list else np.zeros(0, np.float32)
        fragments_out = frags[0] if is_2d else frags
        return cls(
            fragments_out, a, b, s, n_ids, scoring=scoring, max_threshold=max_threshold,
            n_present=n_present,
        )

    @classmethod
    def stacked(cls, trees: Sequence[MergeTree]) -> MergeTree:
        """One tree of the 2D trees of consecutive slices (a 2D model's stack): fragments stacked
        along z with ids offset per slice, no merge across slices. Its segmentation at any
        threshold is, slice by slice, the one its 2D tree gives (waterz run on that slice alone):
        the merges are ordered by the running maximum of their own slice, so the merges below
        ``t`` are exactly each slice's own."""
        if not trees:
            raise InputError("A stack needs at least one slice.")
        offsets = np.concatenate([[0], np.cumsum([t.n_fragments for t in trees])]).astype(np.int64)
        frags = np.stack([np.where(t.fragments != 0, t.fragments + np.uint64(off), 0).astype(np.uint64)
                          for t, off in zip(trees, offsets)])
        keys = np.concatenate([t.running_max for t in trees])
        order = np.argsort(keys, kind="stable")  # stable: each slice keeps its own merge order
        a = np.concatenate([t.merges_a + off for t, off in zip(trees, offsets)])[order]
        b = np.concatenate([t.merges_b + off for t, off in zip(trees, offsets)])[order]
        scores = np.concatenate([t.scores for t in trees])[order]
        return cls(frags, a, b, scores, int(offsets[-1]), scoring=trees[0].scoring,
                   max_threshold=min(t.max_threshold for t in trees),
                   n_present=sum(t.n_present for t in trees), attrs={"slices": len(trees)})

    # --- answering thresholds --------------------------------------------------------------

    def _check(self, threshold: float) -> np.float32:
        t = check_threshold(threshold)
        if t > self.max_threshold + 1e-9:
            raise InputError(
                f"Threshold {t} is above the {self.max_threshold} this merge tree was built to; "
                "rebuild it with a higher maximum threshold."
            )
        return np.float32(t)

    def n_merges(self, threshold: float) -> int:
        """How many merges waterz applies at ``threshold``."""
        t = self._check(threshold)
        return int(np.searchsorted(self.running_max, t, side="left"))

    def _lut_for(self, k: int) -> np.ndarray:
        """Lookup table after the first ``k`` merges (cached; built from the nearest cached one)."""
        with self._lock:
            return self._lut_locked(k)

    def _lut_locked(self, k: int) -> np.ndarray:
        lut = self._luts.get(k)
        if lut is not None:
            self._luts.move_to_end(k)
            return lut
        below = [c for c in self._luts if c < k]
        if below:
            k0 = max(below)
            base = self._luts[k0]
        else:
            k0 = 0
            base = None
        a = self.merges_a[k0:k]
        b = self.merges_b[k0:k]
        # every region merged after merge k0 is a root after merge k0, so the roots after merge k
        # are the k0-roots' roots in the forest of merges k0..k
        if len(a) * 16 < self.n_fragments:
            # few merges (a slider step): resolve the roots among the merged ids only
            ids = np.unique(np.concatenate([a, b]))
            parent = np.arange(len(ids), dtype=np.int64)
            parent[np.searchsorted(ids, b)] = np.searchsorted(ids, a)
            parent = _roots(parent)
            remap = np.arange(self.n_fragments + 1, dtype=np.uint64)
            remap[ids] = ids[parent].astype(np.uint64)
        else:
            parent = np.arange(self.n_fragments + 1, dtype=np.int64)
            parent[b] = a
            remap = _roots(parent).astype(np.uint64)
        lut = remap if base is None else remap[base.view(np.int64)]
        self._luts[k] = lut
        while len(self._luts) > 8:
            self._luts.popitem(last=False)
        return lut

    def lut(self, threshold: float) -> np.ndarray:
        """Dense table ``segment_id = lut[fragment_id]`` (uint64, length n_fragments + 1)."""
        return self._lut_for(self.n_merges(threshold))

    def lookup(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """``(fragment_ids, segment_ids)`` for fragments 1..n at ``threshold``."""
        lut = self.lut(threshold)
        return np.arange(1, self.n_fragments + 1, dtype=np.uint64), lut[1:].copy()

    def relabel(self, fragments_region, threshold: float) -> np.ndarray:
        """Segment ids for a region of the fragments (e.g. the displayed slice), uint64."""
        return apply_lut(self.lut(threshold), fragments_region)

    def segmentation(self, threshold: float) -> np.ndarray:
        """The whole segmentation at ``threshold``: identical to waterz's output at that threshold."""
        if self.fragments is None:
            raise InputError("This merge tree was saved without its fragments; load them too.")
        if self._fragments_checked is not self.fragments:
            frags = np.asarray(self.fragments)
            if frags.size and int(frags.max()) > self.n_fragments:
                return self.relabel(frags, threshold)
            self._fragments_checked = self.fragments
        return _gather(self.lut(threshold), np.asarray(self.fragments))

    def n_segments(self, threshold: float) -> int:
        """Number of segments (non-zero) at ``threshold``."""
        return self.n_present - self.n_merges(threshold)

    def thresholds_of_change(self) -> np.ndarray:
        """Distinct running-max scores: the thresholds just above which the result changes."""
        return np.unique(self.running_max)

    # --- persistence -----------------------------------------------------------------------

    def save(self, path, overwrite: bool = False, include_fragments: bool = True) -> Path:
        """Write the tree (and by default its fragments) to an ``.npz`` file, atomically."""

        path = Path(path)
        meta = dict(
            format_version=FORMAT_VERSION,
            scoring=self.scoring,
            scoring_function=SCORING_FUNCTIONS.get(self.scoring, self.scoring),
            max_threshold=self.max_threshold,
            n_fragments=self.n_fragments,
            n_present=self.n_present,
            attrs=self.attrs,
        )
        arrays = dict(
            merges_a=self.merges_a,
            merges_b=self.merges_b,
            scores=self.scores,
            meta=np.frombuffer(json.dumps(meta, default=str).encode(), dtype=np.uint8),
        )
        if include_fragments and self.fragments is not None:
            arrays["fragments"] = np.asarray(self.fragments)
        with atomic_path(path, overwrite=overwrite, fmt="zip") as tmp:  # replaces only an .npz (zip) file
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        return path

    @classmethod
    def load(cls, path) -> MergeTree:
        """Read a tree written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise InputError(f"Merge tree file {path} does not exist.")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                fragments = data["fragments"] if "fragments" in data.files else None
                tree = cls(
                    fragments,
                    data["merges_a"],
                    data["merges_b"],
                    data["scores"],
                    meta["n_fragments"],
                    scoring=meta.get("scoring", "hist_quant_50"),
                    max_threshold=meta.get("max_threshold", 1.0),
                    n_present=meta.get("n_present"),
                    attrs=meta.get("attrs"),
                )
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise InputError(f"{path} is not a merge tree written by segtrain ({type(error).__name__}); give the "
                             "merge_tree.npz that `segtrain segment` wrote.") from None
        return tree

    def __repr__(self) -> str:
        shape = None if self.fragments is None else tuple(self.fragments.shape)
        return (
            f"MergeTree(fragments={self.n_present}, merges={len(self.scores)}, "
            f"scoring={self.scoring!r}, max_threshold={self.max_threshold}, shape={shape})"
        )
