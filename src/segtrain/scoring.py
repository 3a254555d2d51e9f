"""The one table of merge scoring functions: each name's waterz type string (the merge tree, in
memory) and the edge statistic the blockwise agglomeration computes it from
(:mod:`segtrain.scale.edge_stats`, :mod:`segtrain.scale.agglomeration`).

Adding a scoring function is one entry in :data:`SCORING_TABLE`: the config, the prediction
record, the panels, the merge tree and the blockwise pipeline all read their names from it. waterz
ships precompiled only the functions listed here; another type string needs a C++ compiler at run
time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from segtrain.errors import InputError


@dataclass(frozen=True)
class ScoringFunction:
    """How an edge between two regions is scored.

    ``waterz``: waterz's C++ type string. ``quantile``: None for ``1 - mean affinity`` (sums and
    counts per edge); Q for ``1 - the Q-th percentile`` of a 256-bin histogram of the affinities
    per edge (waterz's ``HistogramQuantileAffinity``)."""

    waterz: str
    quantile: int | None = None

    @property
    def histograms(self) -> bool:
        """Whether the blockwise pipeline must gather edge histograms for it."""
        return self.quantile is not None


def _histogram_quantile(q: int) -> ScoringFunction:
    return ScoringFunction(f"OneMinus<HistogramQuantileAffinity<RegionGraphType, {q}, ScoreValue, 256, false>>", q)


#: name -> scoring function; all of these are compiled into the waterz wheel
SCORING_TABLE: dict[str, ScoringFunction] = {
    "mean": ScoringFunction("OneMinus<MeanAffinity<RegionGraphType, ScoreValue>>"),
    **{f"hist_quant_{q}": _histogram_quantile(q) for q in range(10, 100, 5)},
}

SCORING_NAMES: tuple[str, ...] = tuple(SCORING_TABLE)
#: a scoring function's name: the table's names when segtrain is imported; the config checks values
#: against the table itself (:func:`scoring_problem`), so an entry added later is accepted too
ScoringName = Literal[SCORING_NAMES]  # type: ignore[valid-type]


def _compact(text: str) -> str:
    return "".join(str(text).split())


def scoring_name(scoring: str) -> str:
    """The table's name for ``scoring`` (a name, or the waterz type string of one); InputError
    for anything else."""
    if scoring in SCORING_TABLE:
        return scoring
    for name, function in SCORING_TABLE.items():  # the full type strings of the same functions
        if _compact(scoring) == _compact(function.waterz):
            return name
    raise InputError(
        f"Unknown scoring function {scoring!r}: only the functions precompiled into waterz work "
        f"({names_listed()}); anything else would need a C++ compiler."
    )


def names_listed(quote: bool = False) -> str:
    """The table's names, abbreviated: ``mean, hist_quant_10, hist_quant_15, ..., hist_quant_95``."""
    names = [repr(n) if quote else n for n in SCORING_TABLE]
    return ", ".join(names if len(names) <= 5 else [*names[:3], "...", names[-1]])


def scoring_problem(value) -> str | None:
    """None for a name in the table, else what is wrong (completes ``segment.scoring ...``)."""
    if isinstance(value, str) and value in SCORING_TABLE:
        return None
    return (f"must be one of the valid names of the scoring functions precompiled into waterz "
            f"({names_listed(quote=True)}), not {value!r}.")


def scoring_function(scoring: str) -> ScoringFunction:
    """The table's entry for a name (or a waterz type string of one); InputError otherwise."""
    return SCORING_TABLE[scoring_name(scoring)]


class WaterzTypes(Mapping):
    """The table seen as name -> waterz type string (a live view: nothing is copied)."""

    def __getitem__(self, name: str) -> str:
        return SCORING_TABLE[name].waterz

    def __iter__(self) -> Iterator[str]:
        return iter(SCORING_TABLE)

    def __len__(self) -> int:
        return len(SCORING_TABLE)
