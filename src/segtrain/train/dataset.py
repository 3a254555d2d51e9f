"""Torch datasets over sources: an endless stream of augmented training patches mixed by source
weight, and a fixed set of validation patches.

The training stream runs in DataLoader worker processes (``train.num_workers``, see
:func:`loader_options`): patch sampling, augmentation and targets happen beside the training step,
not in it. Each worker draws from its own generator, keyed by the seed, the worker's index, the
stream start and the distributed rank; the DataLoader takes whole batches from the workers in turn,
so a fixed seed and worker count give the same batches in the same order every time.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import sys
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
        self.drawn = 0  # streams started (one per epoch/iteration start), per process
        # counted where the batches arrive (the training process, also with worker processes): see note_batch
        self.patches = 0  # patches trained on
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
            yield _as_tensors(self.draw(rng))

    def note_batch(self, raw: torch.Tensor) -> None:
        """Count a batch of training images (``(B, ...)``) that reached the training step, and keep
        hashes of the first ones (called in the training process, whichever process drew them)."""
        self.patches += int(raw.shape[0])
        for image in raw[: max(0, FINGERPRINTS - len(self.fingerprints))]:
            data = np.ascontiguousarray(image.detach().cpu().numpy())
            self.fingerprints.append(hashlib.sha1(data.tobytes()).hexdigest()[:12])


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


def worker_count(setting: int | str, device_kind: str = "cpu") -> int:
    """DataLoader worker processes for ``train.num_workers``: ``auto`` is a share of the cores
    (:func:`segtrain.device.default_num_workers`) when the network trains on a GPU, and 0 when it
    trains on the CPU (workers would compete with it for the same cores: no faster on 2 cores,
    docs/training.md "Hardware"); 0 where worker processes cannot start safely (:func:`worker_context`)."""
    from segtrain.device import default_num_workers

    if setting == "auto":
        count = default_num_workers() if device_kind in ("cuda", "mps") else 0
    else:
        count = int(setting)
    return count if count > 0 and worker_context() is not None else 0


def worker_context() -> str | None:
    """How worker processes start: ``fork`` on Linux (the child has what the parent has and never
    re-imports the user's ``__main__``: a napari script without a main guard must not run again).
    Elsewhere fork is unsafe (macOS system libraries) and ``spawn`` re-imports ``__main__``; it is
    used only when that is harmless (a program started as a module, an interactive session), else
    None: patches are then made in the training process."""
    if sys.platform.startswith("linux"):
        return "fork"
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main_file is None or getattr(main, "__spec__", None) is not None:
        return "spawn"
    return None


def _seed_worker(worker_id: int) -> None:
    """Seed a worker's global generators from the DataLoader's per-worker seed (the patches come from
    the stream's own keyed generator; this covers any library that draws from the global ones).
    Ctrl-C reaches every process of the terminal's group: the workers ignore it, so the training
    process can finish its step and save a checkpoint with batches still coming."""
    import random
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def loader_options(config: Config, workers: int, pin_memory: bool) -> dict:
    """Keyword arguments of the training DataLoader for ``workers`` worker processes: persistent
    workers, pinned memory (for a CUDA GPU), a generator seeded from ``train.seed`` and the start
    method of :func:`worker_context`."""
    options: dict = {"num_workers": workers, "pin_memory": bool(pin_memory),
                     "generator": torch.Generator().manual_seed(int(config.train.seed))}
    if workers > 0:
        options.update(persistent_workers=True, prefetch_factor=2, worker_init_fn=_seed_worker,
                       multiprocessing_context=multiprocessing.get_context(worker_context()))
    return options
