"""A correction round with the oracle user (:mod:`segtrain.proofread.oracle`): up to N edits to a
Proofreader's segmentation, each the one the oracle prefers, with the score before and after.

Benchmarks call :func:`correction_round` (proofreading convergence, the corrections that fine-tuning
learns from); :func:`oracle_edits` yields each edit as it is made; :func:`corrections_source` turns
a proofread segmentation's corrections into an annotation and a training source of it;
:func:`timed_edits` makes the panel's edits at random places of a large segmentation and times
each (:func:`edit_timings` sums them up). The rounds of correct -> fine-tune -> score are in
:mod:`segtrain.workflows.finetuning`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from segtrain.annotation import training_arrays
from segtrain.proofread.annotation import corrections_annotation
from segtrain.proofread.edits import Proofreader, boundary_map
from segtrain.proofread.oracle import apply_choice, best_edit, oracle_step
from segtrain.tasks import task_of
from segtrain.postprocess import OutputSpec
from segtrain.postprocess import instances
from segtrain.postprocess import segment_affinities

Score = Callable[[np.ndarray], float]
OracleKind = Literal["score", "voxels"]


@dataclass
class OracleEdit:
    """One edit of the oracle: its number (1, 2, ...), kind of edit, the score after it (``kind
    "score"``; None for ``"voxels"``, which does not score) and the seconds it took."""

    index: int
    op: str
    score: float | None
    seconds: float


@dataclass
class CorrectionRound:
    """What a round of oracle edits did: the score before and after, the edits, and the score after
    N edits at each asked-for mark N (after the last edit for marks beyond it; 0: before)."""

    before: float
    after: float
    kind: str
    edits: list[OracleEdit] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)

    @property
    def ops(self) -> list[str]:
        return [e.op for e in self.edits]

    def op_counts(self) -> dict[str, int]:
        ops = self.ops
        return {op: ops.count(op) for op in sorted(set(ops))}

    def ms_per_edit(self) -> dict[str, float | None]:
        times = [e.seconds for e in self.edits]
        return {"median": 1000 * float(np.median(times)) if times else None,
                "max": 1000 * float(np.max(times)) if times else None}

    def summary(self) -> dict:
        """Plain values for a report: score before and after, number of edits, the oracle, the ops."""
        return {"before": self.before, "after": self.after, "edits": len(self.edits), "oracle": self.kind,
                "ops": self.op_counts()}


def proofreader_of(loaded, raw: np.ndarray, settings=None, threshold: float | None = None, tta: int | None = None
                   ) -> Proofreader:
    """A Proofreader of a run's segmentation of ``raw`` as the panels make it: an affinity run's
    fragments and merge tree at ``threshold`` (default: the settings' threshold, else 0.5), a mask
    or instance run's instances; ``settings`` default to the run's, and the boundary map the
    edits follow comes from the same prediction."""
    from segtrain.predict import predict_array

    config = loaded.config
    settings = config.segment if settings is None else settings
    task = task_of(config)
    outputs = predict_array(loaded, raw, tta=tta)[task.head]
    if task.agglomerates:
        tree = segment_affinities(outputs, settings, voxel_size=config.data.voxel_size, model_ndim=config.ndim)
        threshold = threshold if threshold is not None else settings.threshold if settings.threshold is not None else 0.5
        return Proofreader(tree.fragments, tree, threshold, boundary=boundary_map(outputs, task.head))
    return Proofreader(instances(outputs, settings, OutputSpec.of(config)), boundary=boundary_map(outputs, task.head))


def oracle_edits(reader: Proofreader, gt: np.ndarray, score: Score, n_edits: int, background: bool = False,
                 lower_is_better: bool = False, kind: OracleKind = "score") -> Iterator[OracleEdit]:
    """Up to ``n_edits`` oracle edits applied to ``reader``, each yielded once made. ``kind="score"``:
    each step keeps the candidate edit that improves ``score`` most and stops when none does (a user
    who looks at the result; :func:`~segtrain.proofread.oracle.oracle_step`); ``"voxels"``: the edit
    that puts most voxels right, whether or not the score moves."""
    for index in range(1, n_edits + 1):
        if kind == "score":
            edit, value, seconds = oracle_step(reader, gt, score, background=background,
                                               lower_is_better=lower_is_better)
            if edit is None:
                return
            yield OracleEdit(index, edit.op, value, seconds)
            continue
        choice = best_edit(reader, gt, background=background)
        if choice is None:
            return
        start = time.perf_counter()
        edit = apply_choice(reader, choice, gt)
        yield OracleEdit(index, edit.op, None, time.perf_counter() - start)


def correction_round(reader: Proofreader, gt: np.ndarray, score: Score, n_edits: int, background: bool = False,
                     lower_is_better: bool = False, kind: OracleKind = "score",
                     marks: Iterable[int] = ()) -> CorrectionRound:
    """Up to ``n_edits`` oracle edits (:func:`oracle_edits`) and the scores: before, after, and after
    N edits for each N of ``marks`` (and the last asked-for edit)."""
    marks = tuple(marks)
    result = CorrectionRound(before=score(reader.segmentation()), after=float("nan"), kind=kind)
    result.scores[0] = result.before
    for edit in oracle_edits(reader, gt, score, n_edits, background, lower_is_better, kind):
        result.edits.append(edit)
        if edit.score is not None and (edit.index in marks or edit.index == n_edits):
            result.scores[edit.index] = edit.score
    result.after = score(reader.segmentation())
    done = len(result.edits)
    for mark in marks:
        if done < mark <= n_edits:
            result.scores[mark] = result.after  # no edit left that helps: as after the last one
    return result


def corrections_source(reader: Proofreader, raw: np.ndarray, scope: str = "confirmed", name: str | None = None,
                       weight: float = 1.0, existing: np.ndarray | None = None, **options):
    """``(annotation, training source)``: the reader's corrections in ``scope`` as an annotation
    (:func:`~segtrain.proofread.annotation.corrections_annotation` with ``options``, added to
    ``existing``) and an ArraySource of ``raw`` that trains only where it says something."""
    from segtrain.train.sources import ArraySource

    annotation = corrections_annotation(reader, scope=scope, existing=existing, **options)
    labels, known = training_arrays(annotation)
    return annotation, ArraySource(raw, labels, known=known, weight=weight, name=name)


# --- the time of each edit on a large segmentation ------------------------------------------------

#: the edit kinds :func:`timed_edits` makes, in the order :func:`edit_timings` lists them
TIMED_OPS = ("merge", "delete", "split", "undo", "redo", "split_seeds", "threshold")


@dataclass
class TimedEdit:
    """One edit made for timing: its kind (:data:`TIMED_OPS`), the milliseconds it took and, for a
    seeded split, the voxels of the segment it split."""

    op: str
    ms: float
    voxels: int | None = None


def timed_edits(reader: Proofreader, rng: np.random.Generator, repeats: int = 20, plane: int | None = None,
                thresholds: tuple[float, float] = (0.1, 0.2)) -> Iterator[TimedEdit]:
    """The edits a user makes on plane ``plane`` (default: the middle one) of a 3D segmentation,
    each yielded with its time once made. ``repeats`` times two random points of two different
    segments: merge them, undo, redo, split the first along the merge tree, delete the second, move
    the threshold (uniform in ``thresholds``); then, at the upper threshold, seeded splits of the
    plane's ``repeats // 4`` largest segments (seeds at two of their far pixels; the cost grows with
    the segment's box)."""
    shape = reader.fragments.shape
    plane = shape[0] // 2 if plane is None else plane

    def timed(op, fn, *args):
        start = time.perf_counter()
        fn(*args)
        return TimedEdit(op, 1000 * (time.perf_counter() - start))

    for _ in range(repeats):
        ys, xs = rng.integers(0, shape[1], 2), rng.integers(0, shape[2], 2)
        p1, p2 = (plane, int(ys[0]), int(xs[0])), (plane, int(ys[1]), int(xs[1]))
        if reader.segment_at(p1) == reader.segment_at(p2) or 0 in (reader.segment_at(p1), reader.segment_at(p2)):
            continue
        yield timed("merge", reader.merge, [p1, p2])
        yield timed("undo", reader.undo)
        yield timed("redo", reader.redo)
        yield timed("split", reader.split, p1)
        yield timed("delete", reader.delete, p2)
        yield timed("threshold", reader.set_threshold, float(rng.uniform(*thresholds)))
    reader.set_threshold(thresholds[1])
    seg_slice = reader.segmentation((plane,))
    ids, counts = np.unique(seg_slice[seg_slice > 0], return_counts=True)
    for s in ids[np.argsort(counts)][-repeats // 4:]:
        where = np.argwhere(seg_slice == s)
        if len(where) > 2:
            box, mask = reader.mask_of(int(s))
            edit = timed("split_seeds", reader.split_with_seeds, [(plane, *where[0]), (plane, *where[-1])])
            edit.voxels = int(mask.sum())
            yield edit


def edit_timings(edits: Iterable[TimedEdit]) -> dict[str, dict]:
    """Per edit kind (those made, in :data:`TIMED_OPS` order): ``{"median_ms", "max_ms", "n"}``;
    and ``"split_seeds_voxels": {"median"}``, the size of the segments the seeded splits split."""
    times: dict[str, list[float]] = {op: [] for op in TIMED_OPS}
    voxels = []
    for edit in edits:
        times[edit.op].append(edit.ms)
        if edit.voxels is not None:
            voxels.append(edit.voxels)
    out = {op: {"median_ms": float(np.median(v)), "max_ms": float(np.max(v)), "n": len(v)}
           for op, v in times.items() if v}
    if voxels:
        out["split_seeds_voxels"] = {"median": float(np.median(voxels))}
    return out
