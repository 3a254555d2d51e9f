"""K-fold splits of a config's annotated data, for figures that transfer to new data.

One annotated volume (e.g. a FIB-SEM stack named once with crops along z) is cut into K slabs along
its first axis; several annotated images are cut into K groups of whole images, in their order.
Fold i holds out slab / group i and trains (and tunes) on the others: nothing of the held-out part
is seen before it is scored. Adjacent training slabs are joined into one source, so a patch can
span them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from segtrain.config import SourceConfig
from segtrain.errors import InputError


@dataclass
class Fold:
    index: int
    train: list[SourceConfig]
    heldout: list[SourceConfig]

    def describe(self) -> str:
        return f"fold {self.index}: train on {_names(self.train)}, score on {_names(self.heldout)}"


def _names(entries: Sequence[SourceConfig]) -> str:
    def name(e: SourceConfig) -> str:
        parts = [p for p in e.raw.replace("\\", "/").split("/") if p]
        short = "/".join(parts[-2:])
        return f"{short} z {e.crop[0][0]}-{e.crop[0][1]}" if e.crop else short
    return ", ".join(name(e) for e in entries)


def _volume_key(entry: SourceConfig) -> tuple:
    return entry.raw, entry.raw_dataset, entry.labels, entry.labels_dataset, entry.known, entry.known_dataset


def make_folds(entries: Sequence[SourceConfig], k: int,
               first_axis_length: Callable[[SourceConfig], int] | None = None) -> list[Fold]:
    """The K folds of the annotated ``entries`` (a config's ``data.train`` + ``data.val``).

    All entries crops of one volume (or one volume uncropped): K slabs of equal thickness along the
    first axis, over the range the entries cover (``first_axis_length(entry)`` gives the volume's
    length where an entry has no crop). Otherwise: K groups of whole entries, in order."""
    entries = [e for e in entries if e.labels]
    if k < 2:
        raise InputError(f"Cross-validation needs at least 2 folds, not {k}.")
    if not entries:
        raise InputError("The config names no annotated images (data.train / data.val with labels) to fold.")
    if len({_volume_key(e) for e in entries}) == 1:
        return _slab_folds(entries, k, first_axis_length)
    if len(entries) < k:
        raise InputError(f"{len(entries)} annotated images cannot make {k} folds; use --folds {len(entries)} or fewer.")
    groups = [list(g) for g in np.array_split(np.arange(len(entries)), k)]
    return [Fold(i, [entries[j] for g in groups[:i] + groups[i + 1:] for j in g], [entries[j] for j in group])
            for i, group in enumerate(groups)]


def _slab_folds(entries: list[SourceConfig], k: int, first_axis_length) -> list[Fold]:
    ranges = []
    for entry in entries:
        if entry.crop:
            ranges.append((int(entry.crop[0][0]), int(entry.crop[0][1])))
        elif first_axis_length is None:
            raise InputError("An uncropped volume needs its length to be cut into slabs.")
        else:
            ranges.append((0, int(first_axis_length(entry))))
    start, stop = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if stop - start < k:
        raise InputError(f"{stop - start} slices cannot make {k} slabs; use fewer folds.")
    bounds = np.linspace(start, stop, k + 1).round().astype(int)
    rest = [list(c) for c in (entries[0].crop or [])[1:]]

    def slab(a: int, b: int) -> SourceConfig:
        return dataclasses.replace(entries[0], crop=[[int(a), int(b)], *rest])

    folds = []
    for i in range(k):
        kept = [(bounds[j], bounds[j + 1]) for j in range(k) if j != i]
        joined: list[list[int]] = []
        for a, b in kept:
            if joined and joined[-1][1] == a:
                joined[-1][1] = b
            else:
                joined.append([a, b])
        folds.append(Fold(i, [slab(a, b) for a, b in joined], [slab(bounds[i], bounds[i + 1])]))
    return folds
