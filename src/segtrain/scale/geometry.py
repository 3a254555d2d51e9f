"""The block grid of a blockwise job, in voxels: which block a region is, which block owns an id.

Blocks tile the volume from its first voxel in steps of ``block_shape`` (the last block along an
axis may be smaller). Fragment ids of the block with index ``i`` (C order over the grid) lie in
``[i * V + 1, (i + 1) * V]`` with ``V`` the voxels of a full block, so ids are unique across blocks
without any communication and the owner of an id is ``(id - 1) // V``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segtrain.errors import InputError


def as_shape(values: Sequence[int], what: str, ndim: int = 3, minimum: int = 1) -> tuple[int, ...]:
    """``values`` as a tuple of ``ndim`` integers >= ``minimum``, or an InputError."""
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"The {what} must be {ndim} integers, not {values!r}.") from None
    if len(out) != ndim or any(v < minimum for v in out):
        raise InputError(f"The {what} must be {ndim} integers >= {minimum}, not {tuple(values)}.")
    return out


@dataclass(frozen=True)
class BlockGrid:
    """Blocks of ``block_shape`` voxels over a volume of ``shape`` voxels (z, y, x)."""

    shape: tuple[int, int, int]
    block_shape: tuple[int, int, int]

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(math.ceil(s / b) for s, b in zip(self.shape, self.block_shape))

    @property
    def n_blocks(self) -> int:
        return math.prod(self.grid)

    @property
    def voxels_per_block(self) -> int:
        return math.prod(self.block_shape)

    def index(self, offset: Sequence[int]) -> int:
        """C-order index of the block whose write region starts at ``offset``."""
        loc = tuple(int(o) // b for o, b in zip(offset, self.block_shape))
        return int(np.ravel_multi_index(loc, self.grid))

    def id_offset(self, offset: Sequence[int]) -> int:
        """What is added to the local fragment ids 1..n of the block starting at ``offset``."""
        return self.index(offset) * self.voxels_per_block

    def owner(self, ids: np.ndarray) -> np.ndarray:
        """Index of the block each (non-zero) fragment id belongs to."""
        return (np.asarray(ids, dtype=np.int64) - 1) // self.voxels_per_block

    def id_range(self, index: int) -> tuple[int, int]:
        """``(first, last)`` fragment id block ``index`` may use."""
        return index * self.voxels_per_block + 1, (index + 1) * self.voxels_per_block


def roi_slices(offset: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(int(o), int(o) + int(s)) for o, s in zip(offset, shape))


def clip_roi(roi, shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(begin, end)`` of a daisy/funlib ``Roi`` intersected with ``[0, shape)``."""
    begin = tuple(max(0, int(b)) for b in roi.begin)
    end = tuple(min(int(s), int(e)) for e, s in zip(roi.end, shape))
    return begin, end


def block_regions(block, shape: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...], tuple[int, ...]]:
    """For a daisy block: the slices of its read region and of its write region in the volume
    (both clipped to the volume), the write region inside the read region, and its write offset.

    Returns ``(read, write_in_read, write_begin)``.
    """
    r0, r1 = clip_roi(block.read_roi, shape)
    w0, w1 = clip_roi(block.write_roi, shape)
    read = tuple(slice(a, b) for a, b in zip(r0, r1))
    inner = tuple(slice(a - r, b - r) for a, b, r in zip(w0, w1, r0))
    return read, inner, w0
