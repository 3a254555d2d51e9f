"""Training: data sources, augmentation, targets, losses and the Lightning training run."""

from segtrain.train.run import ProgressReport, TrainingRun, split_source
from segtrain.train.sources import (
    ArraySource,
    FileSource,
    GeneratorSource,
    Sample,
    Source,
    SyntheticSource,
    sources_from_config,
)

__all__ = [
    "ArraySource",
    "FileSource",
    "GeneratorSource",
    "ProgressReport",
    "Sample",
    "Source",
    "SyntheticSource",
    "TrainingRun",
    "sources_from_config",
    "split_source",
]
