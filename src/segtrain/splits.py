"""Splits that behave like new data: far apart in space, or of another acquisition.

Slabs of one volume and sets of one acquisition predict new data badly (issue 25: em3d VOI 0.31 on
the run's own z-slab, 0.97 on another region of the same tissue; cells F1 0.92 cross-validated,
0.50 on new dishes). The splits here choose presets and post-processing on parts that are as far
from training as the data allows:

- :func:`em_far_split` (one EM volume): train on one corner block in (y, x), tune and score on the
  diagonally opposite block, separated from it by at least the network's field of view
  (:func:`field_of_view`) along x, so no prediction of the far block sees a training voxel. The far
  block is cut along z into a tuning part and a scored part (both far from training). For
  em3d-fibsem (50 x 100 x 200, em3d_quick: field of view 44): train y 0-70, x 0-96 (all z); far
  block y 30-100, x 140-200; tune on its z 0-25, score z 25-50.
- :func:`sets_far_split` (several images): leave sets out (train on some, tune on others, score on
  the rest), the tuning and scored sets transformed as another acquisition would give them
  (:class:`Acquisition`: resampled, gamma, an illumination gradient, contrast), e.g. the held-out
  dishes of issue 25 (cells a third of the area: zoom 0.58).
- :func:`domain_split`: another dataset of the same kind (the ISBI 2D EM sections for FIB-SEM),
  resampled to the training data's pixel size.

Every split is a :class:`FarSplit`: source entries (as a config's ``data.train``) for training,
tuning and scoring, and the transform applied to the tuning and scored volumes. Qt-free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from segtrain.config import ModelConfig, SourceConfig
from segtrain.errors import InputError

Box = tuple[tuple[int, int], ...]  # per axis [start, stop)


def field_of_view(model: ModelConfig) -> int:
    """The in-plane receptive field (voxels) of a ``unet3d`` / ``unet2d`` model: two 3-wide
    convolutions per level on the way down and up and the pooling windows between them (an upper
    bound: the widest dependence of one output voxel on the input, measured by gradients, is 41
    for em3d_quick's 44 and 93 for em3d's 96)."""
    if model.architecture not in ("unet3d", "unet2d"):
        raise InputError(f"The field of view is known for unet3d / unet2d models, not {model.architecture!r}; "
                         "give the gap of the far-apart split explicitly.")
    factors = [int(f[-1]) for f in model.downsample_factors]
    field_, jump = 1, 1
    for f in factors:
        field_ += 2 * 2 * jump + (f - 1) * jump  # the level's two convolutions, then its pooling
        jump *= f
    field_ += 2 * 2 * jump  # the bottom level
    for f in reversed(factors):
        jump //= f
        field_ += 2 * 2 * jump
    return field_


def gap_between(a: Box, b: Box) -> int:
    """How far apart two boxes are: the largest separation along any axis (0 = they touch or
    overlap along every axis). A window narrower than this, centred in one box, never reaches
    the other."""
    return max(max(b0 - a1, a0 - b1, 0) for (a0, a1), (b0, b1) in zip(a, b))


@dataclass(frozen=True)
class Acquisition:
    """How another acquisition differs from the training images: in-plane ``zoom`` (objects
    ``zoom``x their size), ``gamma`` (on intensities normalised to [0, 1]), a linear illumination
    ``gradient`` (intensity x 1 -/+ gradient across the image, at ``angle`` degrees) and
    ``contrast`` (intensities scaled about their mean)."""

    zoom: float = 1.0
    gamma: float = 1.0
    gradient: float = 0.0
    angle: float = 30.0
    contrast: float = 1.0

    @property
    def identity(self) -> bool:
        return self == Acquisition(angle=self.angle) and self.gradient == 0.0

    def describe(self) -> str:
        if self.identity:
            return "native"
        return (f"zoom {self.zoom:g}, gamma {self.gamma:g}, gradient {self.gradient:g} at {self.angle:g} deg, "
                f"contrast {self.contrast:g}")


def recontrast(raw: np.ndarray, acquisition: Acquisition) -> np.ndarray:
    """``raw`` (``(..., y, x)``) with the intensity changes of ``acquisition`` (float32, in the
    image's own range: normalised by its 0.5 / 99.5 percentiles, changed, mapped back)."""
    raw = np.asarray(raw, np.float32)
    lo, hi = np.percentile(raw, [0.5, 99.5])
    scale = float(hi - lo) or 1.0
    x = np.clip((raw - lo) / scale, 0.0, 1.0)
    if acquisition.gamma != 1.0:
        x = x ** acquisition.gamma
    if acquisition.gradient:
        ny, nx = raw.shape[-2:]
        yy, xx = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
        t = np.deg2rad(acquisition.angle)
        ramp = (np.cos(t) * xx + np.sin(t) * yy) / (abs(np.cos(t)) + abs(np.sin(t)))
        x = x * (1.0 + acquisition.gradient * ramp).astype(np.float32)
    if acquisition.contrast != 1.0:
        x = x.mean() + acquisition.contrast * (x - x.mean())
    return (x * scale + lo).astype(np.float32)


def resample(volume: dict, zoom: float) -> dict:
    """A :func:`~segtrain.train.sources.whole_volume` resampled in-plane by ``zoom`` (image linear,
    labels and known mask nearest); works for 2D images and stacks / volumes (first axes kept)."""
    if zoom == 1.0:
        return volume

    def z(array, order):
        array = np.asarray(array)
        return ndimage.zoom(array, [1] * (array.ndim - 2) + [zoom, zoom], order=order, grid_mode=True,
                            mode="nearest")

    known = volume["known"]
    return {**volume, "raw": z(np.asarray(volume["raw"], np.float32), 1), "labels": z(volume["labels"], 0),
            "known": None if known is None else z(known.astype(np.uint8), 0).astype(bool)}


def acquired(volume: dict, acquisition: Acquisition) -> dict:
    """A volume as ``acquisition`` would give it: resampled, then re-contrasted."""
    out = resample(volume, acquisition.zoom)
    return {**out, "raw": recontrast(out["raw"], acquisition)} if not acquisition.identity else out


@dataclass
class FarSplit:
    """Entries to train on, tune on and score on (:class:`~segtrain.config.SourceConfig`), the
    acquisitions applied to the tuning and scored volumes (one per entry, cycled), the distance
    between training and the rest, and a description."""

    name: str
    train: list[SourceConfig]
    tune: list[SourceConfig]
    test: list[SourceConfig]
    acquisitions: list[Acquisition] = field(default_factory=lambda: [Acquisition()])
    gap: int | None = None
    description: str = ""

    def transformed(self, volumes: Sequence[dict]) -> list[dict]:
        """``volumes`` (of :attr:`tune` or :attr:`test`) as the far acquisitions give them."""
        return [acquired(v, self.acquisitions[i % len(self.acquisitions)]) for i, v in enumerate(volumes)]

    def with_acquisitions(self, acquisitions: Sequence[Acquisition], name: str | None = None) -> "FarSplit":
        return dataclasses.replace(self, acquisitions=list(acquisitions), name=name or self.name)


def em_far_blocks(shape: Sequence[int], gap: int, far_share: float = 0.3, y_share: float = 0.7
                  ) -> tuple[Box, Box, Box]:
    """Training, tuning and scored boxes (z, y, x) of a volume of ``shape``: training in the
    corner (y low, x low), the far block in the opposite corner (y high, x high), ``far_share`` of
    x wide, ``gap`` voxels beyond training in x; both blocks ``y_share`` of y high. The far block
    is halved along z: the first half tunes, the second is scored."""
    nz, ny, nx = (int(n) for n in shape)
    height = int(round(y_share * ny))
    far_x = int(round(far_share * nx))
    train_x = nx - far_x - int(gap)
    if train_x < far_x or nz < 2 or height < 1:
        raise InputError(f"A volume of shape {tuple(shape)} is too small for a far-apart split with a gap of {gap} "
                         "voxels; use a larger volume or the z-slab split.")
    train = ((0, nz), (0, height), (0, train_x))
    far_y, far_xs = (ny - height, ny), (nx - far_x, nx)
    tune = ((0, nz // 2), far_y, far_xs)
    test = ((nz // 2, nz), far_y, far_xs)
    return train, tune, test


def em_far_split(entry: SourceConfig, shape: Sequence[int], model: ModelConfig, gap: int | None = None,
                 **shares) -> FarSplit:
    """The far-apart split (:func:`em_far_blocks`) of one annotated EM volume (``entry`` names its
    files; any crop is replaced), the gap at least the model's :func:`field_of_view`."""
    fov = field_of_view(model)
    gap = fov if gap is None else int(gap)
    if gap < fov:
        raise InputError(f"A gap of {gap} voxels is less than the network's field of view ({fov}); use at least {fov}.")
    train, tune, test = em_far_blocks(shape, gap, **shares)

    def crop(box: Box) -> SourceConfig:
        return dataclasses.replace(entry, crop=[list(b) for b in box])

    return FarSplit(
        name="em-far", train=[crop(train)], tune=[crop(tune)], test=[crop(test)], gap=gap_between(train, test),
        description=f"train {_box(train)}; tune {_box(tune)}; score {_box(test)}; "
                    f"{gap_between(train, test)} voxels apart in x (field of view {fov})")


def _box(box: Box) -> str:
    return " ".join(f"{a} {lo}-{hi}" for a, (lo, hi) in zip("zyx"[-len(box):], box))


#: how the held-out dishes of issue 25 differ from cells2d-phase's sets (cells a third of the area:
#: zoom 0.58), and two ways the contrast of another acquisition differs; cycled over the images
HELD_OUT_DISHES = (
    Acquisition(zoom=0.58, gamma=0.7, gradient=0.25, angle=30.0, contrast=0.8),
    Acquisition(zoom=0.58, gamma=1.4, gradient=0.15, angle=120.0, contrast=1.2),
)


def sets_far_split(entries: Sequence[SourceConfig], n_tune: int, n_test: int,
                   acquisitions: Sequence[Acquisition] = HELD_OUT_DISHES, name: str = "sets-far") -> FarSplit:
    """Leave sets out: train on the first entries, tune on the next ``n_tune``, score the last
    ``n_test``; the tuning and scored images transformed by ``acquisitions``."""
    entries = [e for e in entries if e.labels]
    if n_tune < 1 or n_test < 1 or len(entries) < n_tune + n_test + 1:
        raise InputError(f"{len(entries)} annotated images cannot make a leave-sets-out split with {n_tune} to tune "
                         f"and {n_test} to score; name at least {n_tune + n_test + 1} images.")
    train = list(entries[: len(entries) - n_tune - n_test])
    tune = list(entries[len(train): len(train) + n_tune])
    test = list(entries[len(train) + n_tune:])
    split = FarSplit(name=name, train=train, tune=tune, test=test, acquisitions=list(acquisitions))
    split.description = (f"train on {len(train)} sets, tune on {len(tune)}, score {len(test)}; held-out images: "
                         + "; ".join(a.describe() for a in split.acquisitions))
    return split


def domain_split(train: Sequence[SourceConfig], tune: Sequence[SourceConfig], test: Sequence[SourceConfig],
                 zoom: float = 1.0, name: str = "domain") -> FarSplit:
    """Another dataset as the far data: train on ``train``, tune on ``tune`` and score ``test``
    (entries of the other dataset), resampled by ``zoom`` (the training pixel size over the other
    dataset's, e.g. FIB-SEM slices at ~10 nm shown to a model of ISBI's 4 nm sections: 2.5)."""
    acquisition = Acquisition(zoom=zoom)
    return FarSplit(name=name, train=list(train), tune=list(tune), test=list(test), acquisitions=[acquisition],
                    description=f"train on {len(train)} source(s) of one dataset; tune and score another "
                                f"({acquisition.describe()})")
