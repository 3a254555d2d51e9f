"""How a prediction was made, as one typed record: written by prediction (in memory, into a
zarr group, blockwise) with :meth:`PredictionRecord.to_attrs`, and read back, strictly, with
:meth:`PredictionRecord.from_attrs` by the command line, the reader and panels, and the blockwise
pipeline. The record is the prediction's (or a layer's) attributes under these keys:

    task, model_ndim   what the model predicts, and its spatial dimensions (2 for a 2D model's stack)
    settings           the run's segment settings (a SegmentConfig, tuned ones included)
    run, checkpoint, step   where the model came from
    tta                test-time augmentation (transforms averaged)
    object_scale       the zoom factors of a size-matched prediction (one per image)
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from segtrain.config import ConfigError, Float, Int, SegmentConfig, Str, TaskName, from_mapping, section
from segtrain.errors import InputError


@section(frozen=True)
class PredictionRecord:
    """How a prediction was made; every field may be unknown (None), e.g. for a segmentation made
    from a file without a record."""

    _where: ClassVar[str] = ""

    task: TaskName | None = None
    model_ndim: Int | None = None
    settings: SegmentConfig | None = None
    run: Str | None = None
    checkpoint: Str | None = None
    step: Int | None = None
    tta: Int | None = None
    object_scale: list[Float] | None = None

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The attribute keys a record is written under."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_attrs(self) -> dict:
        """The JSON-able attributes of the record (unknown fields left out, settings as a mapping)."""
        attrs = {}
        for key in self.keys():
            value = getattr(self, key)
            if value is not None:
                attrs[key] = dataclasses.asdict(value) if key == "settings" else value
        return attrs

    def with_(self, **changes) -> PredictionRecord:
        """A copy with ``changes`` (checked like the parsed record)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_attrs(cls, attrs: dict, where: str = "the prediction") -> PredictionRecord | None:
        """The record in ``attrs`` (a file's or layer's attributes), None when they hold none of
        its keys (files that were not made by segtrain predict, or before it recorded anything).
        A malformed record raises :class:`InputError` with one sentence naming ``where`` (the
        file or layer) and the bad field."""
        values = {k: attrs[k] for k in cls.keys() if k in attrs and attrs[k] is not None}
        if not values:
            return None
        try:
            return from_mapping(cls, values)
        except ConfigError as error:
            problem = str(error).rstrip(".")
            raise InputError(f"{where} records how it was made wrongly: {problem}; predict it again, "
                             "or segment it with the settings given explicitly.") from None
