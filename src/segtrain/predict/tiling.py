"""Tiles for blockwise inference with context cropping.

Each axis is cut into ``n`` cores (aligned to the network's downsampling divisor so that tiled
and whole-array predictions use the same pooling grid); a tile reads its core plus ``margin``
voxels of context on each inner side and writes back only its core. Tiles at the array border
read no context beyond it, so the only extra work is ``2 * margin`` per inner border.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    read: tuple[slice, ...]  # region of the input the network sees
    write: tuple[slice, ...]  # region of the output this tile fills (its core)
    crop: tuple[slice, ...]  # the core inside the tile's output

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.read)


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def axis_tiles(size: int, tile: int, margin: int, div: int = 1) -> list[tuple[int, int, int, int]]:
    """``(read_start, read_stop, write_start, write_stop)`` along one axis."""
    if size <= tile:
        return [(0, size, 0, size)]
    margin = _round_up(margin, div)
    if tile <= 2 * margin + div:
        raise ValueError(f"tile {tile} too small for margin {margin} (divisor {div})")
    n = 2
    while True:
        bounds = [0] + [(round(k * size / n) // div) * div for k in range(1, n)] + [size]
        reads = [(max(0, a - margin), min(size, b + margin)) for a, b in zip(bounds[:-1], bounds[1:])]
        if all(hi - lo <= tile for lo, hi in reads) and all(b > a for a, b in zip(bounds[:-1], bounds[1:])):
            return [(lo, hi, a, b) for (lo, hi), a, b in zip(reads, bounds[:-1], bounds[1:])]
        n += 1


def make_tiles(shape: Sequence[int], tile_shape: Sequence[int], margin: Sequence[int],
               divisor: Sequence[int]) -> list[Tile]:
    """All tiles covering ``shape`` (spatial), in C order."""
    per_axis = [axis_tiles(s, t, m, d) for s, t, m, d in zip(shape, tile_shape, margin, divisor)]
    tiles = []
    for combo in itertools.product(*per_axis):
        read = tuple(slice(lo, hi) for lo, hi, _, _ in combo)
        write = tuple(slice(a, b) for _, _, a, b in combo)
        crop = tuple(slice(a - lo, b - lo) for lo, _, a, b in combo)
        tiles.append(Tile(read, write, crop))
    return tiles


def computed_fraction(shape: Sequence[int], tiles: Sequence[Tile]) -> float:
    """Voxels the network computes divided by the voxels of the array (1.0 = no overhead)."""
    total = math.prod(shape)
    return sum(math.prod(t.shape) for t in tiles) / total if total else 1.0
