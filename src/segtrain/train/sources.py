"""Where training samples come from.

A source hands out random patches (:class:`Sample`: raw, labels, which voxels are known, and
optional per-voxel loss weights). Sources of one split are mixed by their ``weight``.

- :class:`ArraySource`: in-memory (or dask/zarr) arrays, e.g. napari layer data; also the pseudo-
  label source (pass ``weights``, the per-voxel confidence).
- :class:`FileSource`: any file :func:`segtrain.io.read_volume` opens.
- :class:`GeneratorSource`: a callable making fresh (raw, labels) pairs, e.g. synthetic data
  (:class:`SyntheticSource` uses :mod:`segtrain.synthetic`).

Arrays are ``(*spatial)`` or ``(C, *spatial)`` for several channels; a ``(N, y, x)`` stack of 2D
images serves a 2D model (each patch comes from one image).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segtrain.errors import InputError
from segtrain.io.normalize import intensity_range, normalize  # noqa: F401 - also used by the sources below
from segtrain.io.read import check_finite
from segtrain.targets.masks import instance_labels
from segtrain import synthetic
from segtrain.io import read_volume


@dataclass
class Sample:
    """One training patch. ``raw`` is ``(C, *patch)`` float32 normalised to about [0, 1]."""

    raw: np.ndarray
    labels: np.ndarray  # (*patch) int64; 0 = background
    known: np.ndarray  # (*patch) bool; False = not annotated / ignored (no loss)
    weights: np.ndarray | None = None  # (*patch) float32 per-voxel loss weights (pseudo-labels)


CLASS_SAMPLING_VOXELS = 4_000_000  # class frequencies from a random sample of this many voxels, when larger
CLASS_COORDS = 100_000  # centres kept per class


def class_sampling_probabilities(counts: Sequence[int], mode: str) -> np.ndarray:
    """Probability of centring a patch on each class, from the classes' voxel ``counts``:
    ``inverse_sqrt`` ~ sqrt(count) (each voxel weighted by 1 / sqrt(its class's frequency)),
    ``inverse`` uniform over the classes present, ``none`` ~ count (as uniform patch positions)."""
    counts = np.asarray(counts, dtype=float)
    if mode == "inverse_sqrt":
        p = np.sqrt(counts)
    elif mode == "inverse":
        p = (counts > 0).astype(float)
    elif mode == "none":
        p = counts.copy()
    else:
        raise ValueError(f"unknown class sampling {mode!r}")
    total = p.sum()
    return p / total if total > 0 else p


# ----------------------------------------------------------------------------------------------


class Source:
    """Base class: ``sample(rng, patch_shape, min_annotated_fraction) -> Sample``."""

    weight: float = 1.0
    name: str = "source"

    def sample(self, rng: np.random.Generator, patch_shape: Sequence[int],
               min_annotated_fraction: float = 0.0) -> Sample:  # pragma: no cover - interface
        raise NotImplementedError

    def prepare(self, ndim: int, in_channels: int, normalize_mode: str, ignore_label: int | None) -> None:
        """Called once by the dataset with the model's expectations before sampling."""


class ArraySource(Source):
    """Patches from arrays in memory (numpy, dask or zarr; napari layer data works as is).

    Parameters
    ----------
    raw
        Image ``(*spatial)``, ``(C, *spatial)`` or, for a 2D model, a stack ``(N, y, x)``.
    labels
        Instance (or class) labels of the same spatial shape; 0 = background.
    known
        Optional bool mask, False = not annotated (no loss there). Sparse painting in napari:
        pass ``known = labels != 0`` together with a label for background strokes.
    voxel_size
        World size per spatial axis (for LSD sigma); default from the config or 1.
    weight
        Mixing weight among the sources of the same split.
    weights
        Optional per-voxel loss weights in [0, 1] (pseudo-label confidence).
    ignore_label
        Label value meaning "not annotated" (overrides the config's ``data.ignore_label``).
    crop
        Optional ``[start, stop]`` per array axis (channel axis excluded).
    generated
        The arrays come from this project's own generator (:class:`GeneratorSource`): finite
        images and whole labels by construction, so not checked for NaN or fractions again.
    """

    def __init__(self, raw, labels, known=None, voxel_size=None, weight: float = 1.0, weights=None,
                 ignore_label: int | None = None, crop: Sequence[Sequence[int]] | None = None,
                 name: str = "array", generated: bool = False):
        if labels is None:
            raise InputError(f"Source {name} has no labels; training needs an annotation for every image.")
        self.raw = raw
        self.labels = labels
        self.generated = generated
        self.known = known
        self.weights = weights
        self.voxel_size = tuple(float(v) for v in voxel_size) if voxel_size is not None else None
        self.weight = float(weight)
        self.ignore_label = ignore_label
        self.crop = crop
        self.name = name
        self._prepared = None
        self._class_coords: list[np.ndarray] | None = None  # per class: patch centres (class sampling)
        self.class_counts: dict[int, int] = {}  # voxels per class (of a sample when large), when class sampling
        self.class_p: dict[int, float] = {}  # probability of centring a patch on each class
        self.class_draws: dict[int, int] = {}  # patches centred on each class so far

    # -- setup --------------------------------------------------------------------------------
    def prepare(self, ndim: int, in_channels: int, normalize_mode: str, ignore_label: int | None) -> None:
        key = (ndim, in_channels, normalize_mode, ignore_label)
        if self._prepared == key:
            return
        raw = self.raw
        labels = self.labels
        shape_l = tuple(labels.shape)
        if in_channels > 1:
            if raw.ndim != len(shape_l) + 1 or raw.shape[0] != in_channels:
                raise InputError(
                    f"Source {self.name}: image of shape {tuple(raw.shape)} should have {in_channels} channels "
                    f"first and spatial shape {shape_l}."
                )
        else:
            if tuple(raw.shape) != shape_l:
                if raw.ndim == len(shape_l) + 1 and raw.shape[0] == 1:
                    raw = raw[0]
                else:
                    raise InputError(
                        f"Source {self.name}: image shape {tuple(raw.shape)} and labels shape {shape_l} differ; "
                        "they must cover the same voxels."
                    )
        if len(shape_l) not in (ndim, ndim + 1) or (len(shape_l) == ndim + 1 and ndim != 2):
            raise InputError(
                f"Source {self.name}: labels of shape {shape_l} do not fit a {ndim}D model; "
                f"give {ndim}D arrays{' or a stack of 2D images' if ndim == 2 else ''}."
            )
        self.stack = len(shape_l) == ndim + 1
        if self.crop is not None:
            if len(self.crop) > len(shape_l):
                raise InputError(f"Source {self.name}: crop {self.crop} has more axes than the labels {shape_l}.")
            sl = tuple(slice(int(a), int(b)) for a, b in self.crop)
            labels = labels[sl]
            raw = raw[(slice(None), *sl)] if in_channels > 1 else raw[sl]
            known = self.known[sl] if self.known is not None else None
            weights = self.weights[sl] if self.weights is not None else None
        else:
            known, weights = self.known, self.weights
        if np.dtype(raw.dtype) == bool:
            raise InputError(f"Source {self.name}: the image is boolean (a mask, not an image); give the raw image.")
        if not self.generated:
            self._check_values(raw, labels)
        self._raw = raw if in_channels > 1 else raw[None]
        self._labels = labels
        self._known = known
        self._weights = weights
        self._ignore = self.ignore_label if self.ignore_label is not None else ignore_label
        self.low, self.high = intensity_range(self._raw, normalize_mode)
        self.shape = tuple(labels.shape)
        if 0 in self.shape:
            raise InputError(f"Source {self.name} is empty after cropping ({self.shape}); check its crop.")
        self._known_coords = self._annotated_coordinates()
        self._class_coords = None
        self._prepared = key

    def _check_values(self, raw, labels) -> None:
        """Refuse NaN or infinity in the image or labels (NaN raw trains a NaN network) and
        labels with fractions."""
        check_finite(raw, f"the image of source {self.name}")
        check_finite(labels, f"the labels of source {self.name}")
        if isinstance(labels, np.ndarray) and np.issubdtype(labels.dtype, np.floating) \
                and not np.array_equal(labels, np.round(labels)):
            raise InputError(f"Source {self.name}: the labels are {labels.dtype} with fractions (a probability map?); "
                             "labels are whole object ids, 0 = background.")

    def use_class_sampling(self, mode: str, n_classes: int | None = None) -> None:
        """Centre training patches on a class drawn by :func:`class_sampling_probabilities` (every
        other attempt of :meth:`sample`, the others uniform). Classes are the label values clipped to
        ``n_classes - 1`` (task classes), or background / foreground when ``n_classes`` is None; only
        annotated voxels count. Call after :meth:`prepare`; ``mode`` ``none`` turns it off."""
        if self._prepared is None:
            raise RuntimeError("prepare() the source before choosing class sampling")
        if mode == "none":
            self._class_coords = None
            return
        labels = np.asarray(self._labels)
        known = None if self._known is None else np.asarray(self._known).astype(bool)
        rng = np.random.default_rng(0)
        flat = None
        if labels.size > CLASS_SAMPLING_VOXELS:  # a random sample of voxels stands for the whole
            flat = rng.integers(0, labels.size, CLASS_SAMPLING_VOXELS)
            values = labels.reshape(-1)[flat]
            keep = np.ones(len(flat), bool) if known is None else known.reshape(-1)[flat]
        else:
            values = labels.reshape(-1)
            keep = np.ones(values.shape, bool) if known is None else known.reshape(-1)
        if self._ignore is not None:
            keep &= values != self._ignore
        values = values.astype(np.int64)
        classes = np.clip(values, 0, n_classes - 1) if n_classes else (values > 0).astype(np.int64)
        n = n_classes or 2
        counts = np.bincount(classes[keep], minlength=n)[:n]
        p = class_sampling_probabilities(counts, mode)
        coords = []
        for c in range(n):
            index = np.flatnonzero(keep & (classes == c))
            if len(index) > CLASS_COORDS:
                index = rng.choice(index, CLASS_COORDS, replace=False)
            if flat is not None:
                index = flat[index]
            coords.append(np.stack(np.unravel_index(index, labels.shape), axis=1))
        self.class_counts = {c: int(counts[c]) for c in range(n)}
        self.class_p = {c: float(p[c]) for c in range(n)}
        self.class_draws = {c: 0 for c in range(n)}
        self._class_coords = coords if p.sum() > 0 else None

    def _annotated_coordinates(self) -> np.ndarray | None:
        """Coordinates of (a subsample of) known voxels, to centre patches on sparse annotations."""
        if self._known is None and self._ignore is None:
            return None
        known = np.ones(self.shape, bool) if self._known is None else np.asarray(self._known).astype(bool)
        if self._ignore is not None:
            known &= np.asarray(self._labels) != self._ignore
        if known.all():
            return None
        coords = np.argwhere(known)
        if len(coords) > 200_000:
            coords = coords[np.random.default_rng(0).choice(len(coords), 200_000, replace=False)]
        return coords

    # -- sampling -----------------------------------------------------------------------------
    def sample(self, rng, patch_shape, min_annotated_fraction: float = 0.0) -> Sample:
        if self._prepared is None:
            raise RuntimeError("prepare() the source before sampling")
        best = None
        for attempt in range(20):
            sample = self._draw(rng, tuple(patch_shape), attempt)
            fraction = float(sample.known.mean()) if sample.known.size else 0.0
            if fraction >= min_annotated_fraction and fraction > 0:
                return sample
            if best is None or fraction > best[0]:
                best = (fraction, sample)
        return best[1]

    def _draw(self, rng, patch_shape, attempt) -> Sample:
        spatial = self.shape[1:] if self.stack else self.shape
        lead: tuple = ()
        if self.stack:
            lead = (int(rng.integers(self.shape[0])),)
        starts = []
        coords = self._known_coords
        if self._class_coords is not None and attempt % 2 == 0:
            c = int(rng.choice(len(self._class_coords), p=list(self.class_p.values())))
            coords = self._class_coords[c]
            self.class_draws[c] += 1
        if coords is not None and len(coords) and attempt % 2 == 0:
            if self.stack:
                # centre on an annotated voxel of a random annotated image
                c = coords[int(rng.integers(len(coords)))]
                lead = (int(c[0]),)
                c = c[1:]
            else:
                c = coords[int(rng.integers(len(coords)))]
            for size, p, center in zip(spatial, patch_shape, c):
                starts.append(int(np.clip(center - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, max(0, size - p))))
        else:
            starts = [int(rng.integers(0, max(0, size - p) + 1)) for size, p in zip(spatial, patch_shape)]
        box = tuple(slice(s, min(s + p, size)) for s, p, size in zip(starts, patch_shape, spatial))
        index = lead + box
        raw = normalize(np.asarray(self._raw[(slice(None), *index)]), self.low, self.high)
        labels = np.asarray(self._labels[index]).astype(np.int64)
        known = np.ones(labels.shape, bool) if self._known is None else np.asarray(self._known[index]).astype(bool)
        if self._ignore is not None:
            ignored = labels == self._ignore
            known &= ~ignored
            labels[ignored] = 0
        weights = None if self._weights is None else np.asarray(self._weights[index], dtype=np.float32)
        pad = [(0, p - (b.stop - b.start)) for p, b in zip(patch_shape, box)]
        if any(after for _, after in pad):
            raw = np.pad(raw, [(0, 0), *pad], mode="symmetric")
            labels = np.pad(labels, pad)
            known = np.pad(known, pad)  # padding is unknown
            if weights is not None:
                weights = np.pad(weights, pad)
        return Sample(raw, labels, known, weights)


class FileSource(ArraySource):
    """Patches from files: any format :func:`segtrain.io.read_volume` reads (HDF5, zarr, n5, TIFF,
    PNG slice folders...). ``labels_kind="mask"`` turns a binary mask (e.g. ISBI's 255 = cell
    interior) into instances by connected components (per slice for stacks of 2D images)."""

    def __init__(self, raw_path, labels_path, raw_dataset: str | None = None, labels_dataset: str | None = None,
                 known_path=None, known_dataset: str | None = None, crop=None, weight: float = 1.0,
                 voxel_size=None, ignore_label: int | None = None, labels_kind: str = "instances"):
        raw = read_volume(raw_path, raw_dataset)
        if labels_path is None:
            raise InputError(f"Training source {raw_path} has no labels file; name one.")
        labels = read_volume(labels_path, labels_dataset)
        known = read_volume(known_path, known_dataset).data if known_path else None
        raw_data = raw.data
        if "c" in raw.axes and raw.axes.index("c") != 0:
            raw_data = np.moveaxis(np.asarray(raw_data), raw.axes.index("c"), 0)
        label_data = labels.data
        label_data = instance_labels(label_data, labels_kind)  # as they are, or a mask's components
        if voxel_size is None and any(v != 1 for v in raw.voxel_size):
            voxel_size = raw.voxel_size
        super().__init__(raw_data, label_data, known=None if known is None else np.asarray(known) != 0,
                         voxel_size=voxel_size, weight=weight, ignore_label=ignore_label, crop=crop,
                         name=Path(raw_path).name)
        # where the data came from (recorded in the run folder's run.json)
        self.raw_path, self.raw_dataset = str(raw_path), raw_dataset
        self.labels_path, self.labels_dataset = str(labels_path), labels_dataset


class GeneratorSource(Source):
    """Fresh samples from a callable ``generate(rng) -> (raw, labels)`` (e.g. synthetic data).

    A generated pair serves ``reuse`` patches before the next one is made; each pair is checked for
    NaN and infinite values like any image (``trusted``: a generator of segtrain's own, such as the
    synthetic one, whose pairs need no check).
    """

    trusted = False

    def __init__(self, generate: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]],
                 weight: float = 1.0, reuse: int = 8, voxel_size=None, name: str = "generated"):
        self.generate = generate
        self.weight = float(weight)
        self.reuse = int(reuse)
        self.voxel_size = voxel_size
        self.name = name
        self._current: ArraySource | None = None
        self._used = 0
        self._setup = None

    def prepare(self, ndim, in_channels, normalize_mode, ignore_label) -> None:
        self._setup = (ndim, in_channels, normalize_mode, ignore_label)

    def sample(self, rng, patch_shape, min_annotated_fraction: float = 0.0) -> Sample:
        if self._current is None or self._used >= self.reuse:
            raw, labels = self.generate(rng)
            self._current = ArraySource(raw, labels, voxel_size=self.voxel_size, name=self.name,
                                        generated=self.trusted)
            self._current.prepare(*self._setup)
            self._used = 0
        self._used += 1
        return self._current.sample(rng, patch_shape, min_annotated_fraction)


class SyntheticSource(GeneratorSource):
    """Synthetic EM volumes or well images from :mod:`segtrain.synthetic`, for co-training.

    ``kind``: ``em`` / ``em_volume`` (:func:`~segtrain.synthetic.make_em_volume`) or ``well`` /
    ``well_image`` (:func:`~segtrain.synthetic.make_well_image`); ``kwargs`` are the generator's
    parameters (each generated pair gets a fresh seed)."""

    trusted = True  # segtrain.synthetic's pairs are finite by construction: not checked each time

    def __init__(self, kind: str = "em", shape=None, weight: float = 1.0, reuse: int = 8, **kwargs):
        em = kind in ("em", "em_volume")
        if not em and kind not in ("well", "well_image"):
            raise InputError(f"Unknown synthetic generator {kind!r}; use em_volume or well_image.")

        def generate(rng):
            seed = int(rng.integers(2**31))
            if em:
                return synthetic.make_em_volume(shape=shape or (32, 128, 128), seed=seed, **kwargs)
            return synthetic.make_well_image(shape=shape or (256, 256), seed=seed, **kwargs)

        super().__init__(generate, weight=weight, reuse=reuse, name=f"synthetic-{'em' if em else 'well'}")


def synthetic_sources(data_config) -> list[SyntheticSource]:
    """The ``data.synthetic`` entries of a config as sources (their own weights)."""
    out = []
    for entry in data_config.synthetic:
        params = dict(entry.params)
        shape = params.pop("shape", None)
        out.append(SyntheticSource(entry.generator, shape=None if shape is None else tuple(shape),
                                   weight=entry.weight, **params))
    return out


def mix_synthetic(real: Sequence[Source], synthetic: Sequence[Source], ratio: float | None) -> list[Source]:
    """``real + synthetic``; with ``ratio`` (synthetic patches per real patch, e.g. 2.0 for 2:1) the
    synthetic sources' weights are scaled so that together they weigh ``ratio`` times the real ones
    (their own weights share that among them; the real sources' weights are kept)."""
    synthetic = list(synthetic)
    if ratio is not None and synthetic:
        real_total = sum(s.weight for s in real)
        syn_total = sum(s.weight for s in synthetic)
        if syn_total <= 0:
            raise InputError("Every data.synthetic entry has weight 0; give at least one a positive weight.")
        if real_total <= 0 and ratio > 0:
            raise InputError("data.synthetic_ratio needs real training sources with a positive weight.")
        for source in synthetic:
            source.weight = source.weight / syn_total * ratio * real_total
    return [*real, *synthetic]


def sources_from_config(entries, data_config) -> list[Source]:
    """FileSources for the ``data.train`` / ``data.val`` entries of a config."""
    out = []
    for entry in entries:
        out.append(FileSource(entry.raw, entry.labels, entry.raw_dataset, entry.labels_dataset,
                              known_path=entry.known, known_dataset=entry.known_dataset, crop=entry.crop,
                              weight=entry.weight, voxel_size=data_config.voxel_size,
                              labels_kind=getattr(entry, "labels_kind", "instances")))
    return out


def whole_volume(source: ArraySource, in_channels: int = 1) -> dict:
    """A prepared source as whole arrays: ``raw`` (spatial, or channels first when
    ``in_channels > 1``), ``labels`` (int64, ignored voxels set to 0), ``known`` (bool mask of
    annotated voxels, or None when every voxel is annotated) and ``voxel_size`` (or None). For
    validation and tuning."""
    known = None if source._known is None else np.asarray(source._known).astype(bool)
    labels = np.asarray(source._labels).astype(np.int64)
    if source._ignore is not None:
        ignored = labels == source._ignore
        known = ~ignored if known is None else known & ~ignored
        labels = np.where(ignored, 0, labels)
    raw = np.asarray(source._raw)
    voxel_size = getattr(source, "voxel_size", None)
    return {"raw": raw[0] if in_channels == 1 else raw, "labels": labels, "known": known,
            "voxel_size": None if voxel_size is None else tuple(voxel_size)}


def annotated_volumes(entries, config, max_voxels: int | None = None) -> list[dict]:
    """The ``data.train`` / ``data.val``-style ``entries`` (:class:`~segtrain.config.SourceConfig`)
    read, prepared as ``config`` trains on them and returned as :func:`whole_volume` s (for tuning
    and scoring). ``max_voxels``: refuse, in one sentence, a source larger than that (it is held in
    memory whole)."""

    volumes = []
    for source in sources_from_config(entries, config.data):
        source.prepare(config.ndim, config.data.in_channels, config.data.normalize, config.data.ignore_label)
        if max_voxels is not None and int(np.prod(source.shape)) > max_voxels:
            raise InputError(
                f"{source.name} has {int(np.prod(source.shape)):,} voxels, more than data.val_max_voxels "
                f"({max_voxels:,}) that tuning holds in memory; tune on a crop of it."
            )
        volumes.append(whole_volume(source, config.data.in_channels))
    return volumes
