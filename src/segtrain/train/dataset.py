"""Torch datasets over sources: an endless stream of augmented training patches mixed by source
weight, and a fixed set of validation patches."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from segtrain.config import Config
from segtrain.errors import InputError
from segtrain.tasks import task_of
from segtrain.train.augment import augment, source_shape, zoom_factor, zoomed
from segtrain.train.sources import Source
from segtrain.train.targets import targets_for

FINGERPRINTS = 16  # training patches per process whose image hash is kept (to show ranks differ)


def distributed_rank() -> tuple[int, int]:
    """``(global rank, world size)`` of this process in a torch.distributed run, else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    return 0, 1


def prepare_sources(sources: Sequence[Source], config: Config) -> list[Source]:
    d = config.data
    for source in sources:
        source.prepare(config.ndim, d.in_channels, d.normalize, d.ignore_label)
    return list(sources)


def _as_tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def _voxel_size(source: Source, config: Config):
    return getattr(source, "voxel_size", None) or config.data.voxel_size


class PatchStream(IterableDataset):
    """Endless augmented training patches; each from a source chosen with probability ~ weight.
    ``augmented`` streams (training) centre patches on classes as ``data.class_sampling`` says
    (sources that hold arrays; see :meth:`ArraySource.use_class_sampling`)."""

    def __init__(self, sources: Sequence[Source], config: Config, seed: int = 0, augmented: bool = True):
        if not sources:
            raise InputError("No training data: give at least one image with labels.")
        self.sources = prepare_sources(sources, config)
        if augmented and config.data.class_sampling != "none":
            n_classes = task_of(config).class_count(config.model.n_classes)
            for source in self.sources:
                if hasattr(source, "use_class_sampling"):
                    source.use_class_sampling(config.data.class_sampling, n_classes)
        weights = np.array([s.weight for s in self.sources], dtype=float)
        if weights.sum() <= 0:
            raise InputError("All training sources have weight 0; give at least one a positive weight.")
        self.p = weights / weights.sum()
        self.config = config
        self.seed = seed
        self.augmented = augmented
        self.drawn = 0  # streams started (one per epoch/iteration start)
        self.patches = 0  # patches drawn by this process (num_workers=0)
        self.fingerprints: list[str] = []  # short hashes of the first training patches' images
        self.source_draws = [0] * len(self.sources)  # patches drawn from each source

    def draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        index = int(rng.choice(len(self.sources), p=self.p))
        self.source_draws[index] += 1
        source = self.sources[index]
        patch_shape = self.config.data.patch_shape
        factor = zoom_factor(self.config.data.augment, rng) if self.augmented else 1.0
        sample = source.sample(rng, source_shape(patch_shape, factor), self.config.data.min_annotated_fraction)
        if self.augmented:
            sample = augment(zoomed(sample, patch_shape), self.config.data.augment, rng)
        return targets_for(sample, self.config, _voxel_size(source, self.config))

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        # a new stream per epoch/iteration start, per worker and per distributed rank (each DDP
        # process must train on different patches), reproducible from the seed
        key = [self.seed, worker, self.drawn]
        rank, world_size = distributed_rank()
        if world_size > 1:
            key.append(rank)
        rng = np.random.default_rng(key)
        self.drawn += 1
        while True:
            sample = self.draw(rng)
            if len(self.fingerprints) < FINGERPRINTS:
                self.fingerprints.append(hashlib.sha1(np.ascontiguousarray(sample["raw"]).tobytes()).hexdigest()[:12])
            self.patches += 1
            yield _as_tensors(sample)


class FixedPatches(Dataset):
    """``n`` validation patches drawn once (no augmentation), the same at every validation."""

    def __init__(self, sources: Sequence[Source], config: Config, n: int, seed: int = 1):
        stream = PatchStream(sources, config, seed=seed, augmented=False)
        rng = np.random.default_rng(seed)
        self.items = [_as_tensors(stream.draw(rng)) for _ in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]
