"""Test-time augmentation: predict on flipped / transposed copies of the input and map every
output back exactly, so that the averaged prediction lives on the input's voxel grid.

The transforms form an ordered list; ``tta = N`` averages the first ``N`` of it. Transform ``k``
flips spatial axis ``ndim - 1 - i`` when bit ``i`` of ``k`` is set (x first, then y, then z),
and, for ``k >= 2**ndim``, then swaps the last two (in-plane) axes. So N = 1 is the plain
prediction, N = 2**ndim averages every combination of flips (8 in 3D, 4 in 2D), and N =
2**(ndim + 1) adds the in-plane transposes (16 in 3D; 8 in 2D: all eight 90-degree
rotations/reflections), which need equal voxel sizes along the last two axes.

How outputs map back (``M`` = the transform's signed permutation of coordinates: an axis of the
transformed input is an axis of the original, possibly reversed):

- probabilities: only the inverse spatial transform;
- affinities: the channel of offset ``o`` predicted on the transformed input holds, after the
  inverse spatial transform, the affinity at offset ``M o``. It fills the channel of offset
  ``M o`` as it is, or the channel of offset ``q = -M o`` shifted by ``q``
  (``aff_q[v] = back[v + q]``: a flipped axis turns the "-1 neighbour" into the "+1 neighbour"),
  where ``v + q`` lies inside the tile; a channel with neither partner among the model's offsets
  (e.g. a diagonal offset flipped along one axis only) gets no contribution from that transform;
- LSDs (:mod:`segtrain.targets.lsds` layout: mean offsets, variances, Pearson correlations per
  axis pair, size): mean offsets along a reversed axis mirror around 0.5 (``v -> 1 - v``),
  correlations of pairs with exactly one reversed axis mirror likewise (``(r + 1) / 2``, so
  ``r -> -r``), variances and size keep their values; a transpose swaps the y and x channels.
  Background voxels (LSDs 0 in the targets) therefore average towards 0.5 in the mirrored
  channels; nothing downstream reads LSDs there.

The average is per voxel and channel over the transforms that contributed (the identity always
does). With ``uncertainty``, the same pass also keeps the members' running variance of the main
head and adds the output ``uncertainty`` (:mod:`segtrain.predict.uncertainty`). Everything runs
with torch on the tensors' own device (CPU or CUDA).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from segtrain.config import Config
from segtrain.errors import InputError
from segtrain.models.build import offsets_for
from segtrain.predict.uncertainty import (
    UNCERTAINTY,
    channel_spread,
    spread_head,
    welford_update,
)
from segtrain.tasks import is_affinities, is_lsds, task_of

Forward = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def tta_counts(ndim: int, voxel_size: Sequence[float] | None = None) -> tuple[int, ...]:
    """The allowed numbers of transforms: 1, 2, 4, ... 2**ndim, and 2**(ndim + 1) when the last
    two axes have equal voxel sizes (unknown voxel size counts as equal)."""
    counts = tuple(2**k for k in range(ndim + 1))
    if voxel_size is None or len(voxel_size) < 2 or np.isclose(float(voxel_size[-1]), float(voxel_size[-2])):
        counts += (2 ** (ndim + 1),)
    return counts


@dataclass(frozen=True)
class Transform:
    """Flip ``flips`` (spatial axes), then, if ``transpose``, swap the last two spatial axes."""

    flips: tuple[int, ...]
    transpose: bool
    ndim: int

    @property
    def is_identity(self) -> bool:
        return not self.flips and not self.transpose

    def source_axis(self, axis: int) -> int:
        """The original axis that transformed axis ``axis`` comes from (and vice versa)."""
        if self.transpose and axis >= self.ndim - 2:
            return 2 * self.ndim - 3 - axis
        return axis

    def sign(self, axis: int) -> int:
        """-1 where the transform reverses (original) axis ``axis``, else 1."""
        return -1 if axis in self.flips else 1

    def map_vector(self, vector: Sequence[int]) -> tuple[int, ...]:
        """``M v``: a displacement ``v`` in the transformed input's grid, in the original grid."""
        return tuple(self.sign(d) * int(vector[self.source_axis(d)]) for d in range(self.ndim))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The transformed batch ``(N, C, *spatial)``."""
        if self.flips:
            x = torch.flip(x, [2 + a for a in self.flips])
        if self.transpose:
            x = x.transpose(-1, -2)
        return x

    def invert(self, y: torch.Tensor) -> torch.Tensor:
        """The inverse spatial transform of an output batch ``(N, C, *spatial)`` (channels untouched)."""
        if self.transpose:
            y = y.transpose(-1, -2)
        if self.flips:
            y = torch.flip(y, [2 + a for a in self.flips])
        return y


def tta_transforms(n: int, ndim: int, voxel_size: Sequence[float] | None = None) -> list[Transform]:
    """The first ``n`` transforms of the ordered list (see the module docstring)."""
    allowed = tta_counts(ndim, voxel_size)
    if n not in allowed:
        if n == 2 ** (ndim + 1):
            raise InputError(
                f"TTA with {n} transforms needs in-plane transposes, which need equal y and x voxel sizes "
                f"(got {tuple(voxel_size)}); use {allowed[-1]} transforms or fewer."
            )
        raise InputError(f"TTA needs one of {', '.join(map(str, allowed))} transforms for {ndim}D data, not {n}.")
    out = []
    for k in range(n):
        flips = tuple(sorted(ndim - 1 - i for i in range(ndim) if k >> i & 1))
        out.append(Transform(flips, k >= 2**ndim, ndim))
    return out


@dataclass(frozen=True)
class ChannelSource:
    """Where one output channel comes from: ``value[target] = mirror(back[source])`` moved by ``shift``
    (``target[v] = back[v + shift]``)."""

    target: int
    source: int
    mirror: bool = False
    shift: tuple[int, ...] | None = None


def affinity_sources(transform: Transform, offsets: Sequence[Sequence[int]]) -> list[ChannelSource]:
    """Channel mapping of affinities with ``offsets`` back from ``transform`` (see the module docstring)."""
    offsets = [tuple(int(v) for v in o) for o in offsets]
    mapped = [transform.map_vector(o) for o in offsets]
    sources = []
    for c, o in enumerate(offsets):
        negated = tuple(-v for v in o)
        if o in mapped:
            sources.append(ChannelSource(c, mapped.index(o)))
        elif negated in mapped:
            sources.append(ChannelSource(c, mapped.index(negated), shift=o))
    return sources


def lsd_sources(transform: Transform) -> list[ChannelSource]:
    """Channel mapping of LSDs (mean offsets, variances, correlations, size) back from ``transform``."""
    ndim = transform.ndim
    pairs = [(i, j) for i in range(ndim) for j in range(i + 1, ndim)]
    source_axis, sign = transform.source_axis, transform.sign
    sources = [ChannelSource(d, source_axis(d), mirror=sign(d) < 0) for d in range(ndim)]
    sources += [ChannelSource(ndim + d, ndim + source_axis(d)) for d in range(ndim)]
    for p, (i, j) in enumerate(pairs):
        source = pairs.index(tuple(sorted((source_axis(i), source_axis(j)))))
        sources.append(ChannelSource(2 * ndim + p, 2 * ndim + source, mirror=sign(i) * sign(j) < 0))
    size = 2 * ndim + len(pairs)
    sources.append(ChannelSource(size, size))
    return sources


def _moved(shape: Sequence[int], shift: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices ``(here, there)`` with ``there = here + shift``, both inside ``shape``."""
    here, there = [], []
    for size, s in zip(shape, shift):
        lo, hi = max(0, -s), min(size, size - s)
        hi = max(hi, lo)
        here.append(slice(lo, hi))
        there.append(slice(lo + s, hi + s))
    return tuple(here), tuple(there)


def add_back(sums: torch.Tensor, counts: torch.Tensor, back: torch.Tensor, sources: list[ChannelSource]) -> None:
    """Add the channels of the inverse-transformed output ``back`` ``(N, C, *spatial)`` that
    ``sources`` map into ``sums`` (same shape), in place, and count them in ``counts`` ``(C, *spatial)``."""
    spatial = back.shape[2:]
    for s in sources:
        here, there = _moved(spatial, s.shift or (0,) * len(spatial))
        source = back[(slice(None), s.source, *there)]
        target = sums[(slice(None), s.target, *here)]
        if s.mirror:
            target.sub_(source).add_(1.0)
        else:
            target.add_(source)
        counts[(s.target, *here)] += 1.0


def map_back(back: torch.Tensor, sources: list[ChannelSource]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, weights)`` of one head from its inverse-transformed output ``back`` ``(N, C, *spatial)``:
    weights ``(C, *spatial)`` are 1 where a value was filled in, 0 elsewhere."""
    values = torch.zeros_like(back)
    weights = torch.zeros(back.shape[1:], dtype=back.dtype, device=back.device)
    add_back(values, weights, back, sources)
    return values, weights


class TestTimeAugmentation:
    """Averages a segtrain model's outputs over transforms of its input.

    Parameters
    ----------
    transforms
        From :func:`tta_transforms`.
    offsets
        The affinity offsets, in channel order. The head named ``affinities`` is mapped back with
        them, ``lsds`` as LSDs, any other head (probabilities) only spatially.
    uncertainty
        Also return ``uncertainty`` ``(N, 1, *spatial)``: the members' standard deviation of the
        affinities (else probabilities), averaged over channels, from a running (Welford) variance
        in the same pass; needs two or more transforms.
    """

    __test__ = False  # not a pytest class

    def __init__(self, transforms: list[Transform], offsets: Sequence[Sequence[int]] | None = None,
                 uncertainty: bool = False):
        if uncertainty and len(transforms) < 2:
            raise InputError("Uncertainty is the disagreement between test-time augmented predictions: "
                             "use test-time augmentation with 2 or more transforms (e.g. 8).")
        self.transforms = transforms
        self.offsets = [tuple(o) for o in offsets or []]
        self.uncertainty = bool(uncertainty)

    def __len__(self) -> int:
        return len(self.transforms)

    def _sources(self, transform: Transform, head: str, channels: int) -> list[ChannelSource]:
        if is_affinities(head):
            return affinity_sources(transform, self.offsets)
        if is_lsds(head):
            return lsd_sources(transform)
        return [ChannelSource(c, c) for c in range(channels)]

    def __call__(self, forward: Forward, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The averaged outputs of ``forward`` (batch ``(N, C, *spatial)`` -> ``{head: (N, C', *spatial)}``)."""
        if len(self.transforms) == 1 and self.transforms[0].is_identity:
            return forward(x)
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, torch.Tensor] = {}
        m2: torch.Tensor | None = None
        spread = None
        for transform in self.transforms:
            out = forward(transform.apply(x))
            if self.uncertainty and spread is None:
                spread = spread_head(list(out))
                if spread is None:
                    raise InputError(f"Uncertainty needs an affinities or probabilities output; this model has "
                                     f"{', '.join(out)}.")
            for name, value in out.items():
                back = transform.invert(value.float())
                if name not in sums:
                    sums[name] = torch.zeros_like(back)
                    counts[name] = torch.zeros(back.shape[1:], dtype=back.dtype, device=back.device)
                sources = self._sources(transform, name, back.shape[1])
                if name == spread:
                    if m2 is None:
                        m2 = torch.zeros_like(back)
                    welford_update(sums[name], counts[name], m2, *map_back(back, sources))
                else:
                    add_back(sums[name], counts[name], back, sources)
            del out
        result = {}
        if spread is not None:
            result[UNCERTAINTY] = channel_spread(m2, counts[spread])
            del m2
        result.update({name: sums[name].div_(counts[name].clamp_(min=1.0)) for name in sums})
        return result


def model_tta(config: Config, n: int, voxel_size: Sequence[float] | None = None,
              uncertainty: bool = False) -> TestTimeAugmentation:
    """Test-time augmentation with ``n`` transforms for a model built from ``config``; the voxel
    size (else ``config.data.voxel_size``) decides whether in-plane transposes are allowed;
    ``uncertainty`` adds the members' disagreement (see :class:`TestTimeAugmentation`)."""
    if voxel_size is None or len(voxel_size) == 0:
        voxel_size = config.data.voxel_size
    n = int(n)
    if n < 1:
        raise InputError(f"TTA needs 1 or more transforms (1 = off), not {n}.")
    transforms = tta_transforms(n, config.ndim, voxel_size)
    offsets = offsets_for(config) if task_of(config).agglomerates else None
    return TestTimeAugmentation(transforms, offsets, uncertainty=uncertainty)
