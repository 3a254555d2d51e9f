"""Everything that talks to waterz: input checks, scoring names, silencing its C++ chatter."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from segtrain.errors import InputError
from segtrain.scoring import WaterzTypes, scoring_function

#: short name -> waterz C++ type string, a view of :data:`segtrain.scoring.SCORING_TABLE`
SCORING_FUNCTIONS = WaterzTypes()

_STDOUT_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send everything written to file descriptor 1 (also by C++ code) to /dev/null."""
    with _STDOUT_LOCK:
        try:
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - a closed or odd stdout must not stop the work
            pass
        try:
            saved = os.dup(1)
        except OSError:  # no fd 1 at all: nothing to silence
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            with contextlib.redirect_stdout(io.StringIO()):  # Python-level prints too
                yield
        finally:
            try:
                sys.stdout.flush()
            except Exception:  # noqa: BLE001
                pass
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)


def scoring_type(scoring: str) -> str:
    """The waterz type string for a short scoring name (or the type string itself); InputError
    for anything else."""
    return scoring_function(scoring).waterz


def check_threshold(threshold: float, name: str = "threshold") -> float:
    """A float threshold in [0, 1], or an InputError."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise InputError(f"The {name} must be a number in [0, 1], not {threshold!r}.") from None
    if not (0.0 <= value <= 1.0):
        raise InputError(f"The {name} must be in [0, 1], not {value}.")
    return value


def spatial_shape_of(affs: np.ndarray) -> tuple[int, ...]:
    """Spatial shape of affinities ``(C, y, x)`` or ``(C, z, y, x)``."""
    return tuple(np.shape(affs)[1:])


def as_waterz_affinities(affs) -> tuple[np.ndarray, bool]:
    """Check affinities and convert them to waterz's layout.

    Accepts ``(C>=3, z, y, x)`` (3D; the first three channels are the z, y, x nearest neighbours)
    or ``(C>=2, y, x)`` (2D; the first two are y, x), floating point in [0, 1] or uint8 (0-255).

    Returns ``(affs float32 C-contiguous (3, z, y, x), is_2d)``; 2D becomes z = 1 with a zero
    z-channel.
    """
    if hasattr(affs, "compute") and not isinstance(affs, np.ndarray):
        affs = affs.compute()
    affs = np.asarray(affs)
    if affs.ndim == 4:
        if affs.shape[0] < 3:
            raise InputError(
                f"3D affinities need at least 3 channels (z, y, x neighbours) first, not shape "
                f"{affs.shape}; expected (channels, z, y, x)."
            )
        is_2d = False
    elif affs.ndim == 3:
        if affs.shape[0] < 2:
            raise InputError(
                f"2D affinities need at least 2 channels (y, x neighbours) first, not shape "
                f"{affs.shape}; expected (channels, y, x)."
            )
        is_2d = True
    else:
        raise InputError(
            f"Affinities must have shape (channels, z, y, x) or (channels, y, x), not {affs.shape}."
        )
    if min(affs.shape[1:]) == 0:
        raise InputError(f"The affinities are empty (shape {affs.shape}).")
    if affs.dtype == np.uint8:
        affs = affs.astype(np.float32) / 255.0
    elif not np.issubdtype(affs.dtype, np.floating):
        raise InputError(
            f"Affinities must be floating point in [0, 1] (or uint8 0-255), not {affs.dtype}; "
            "pass the network's affinity output."
        )
    if is_2d:
        nn = affs[:2].astype(np.float32)
    else:
        nn = affs[:3].astype(np.float32)
    if not np.all(np.isfinite(nn)):
        raise InputError(
            "The affinities contain NaN or infinite values; check the prediction that made them."
        )
    lo, hi = float(nn.min()), float(nn.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(
            f"Affinities must lie in [0, 1], these span [{lo:.3g}, {hi:.3g}]; apply a sigmoid "
            "to the network's output first."
        )
    np.clip(nn, 0.0, 1.0, out=nn)
    if is_2d:
        out = np.zeros((3, 1, *nn.shape[1:]), dtype=np.float32)
        out[1:, 0] = nn
    else:
        out = np.ascontiguousarray(nn)
    return out, is_2d


def as_waterz_fragments(fragments, spatial_shape: Sequence[int]) -> np.ndarray:
    """Check fragments against the affinities' spatial shape; a uint64 C-contiguous 3D copy."""
    if hasattr(fragments, "compute") and not isinstance(fragments, np.ndarray):
        fragments = fragments.compute()
    fragments = np.asarray(fragments)
    if tuple(fragments.shape) != tuple(spatial_shape):
        raise InputError(
            f"Fragments have shape {fragments.shape} but the affinities cover {tuple(spatial_shape)}; "
            "they must match voxel for voxel."
        )
    if not np.issubdtype(fragments.dtype, np.integer):
        raise InputError(f"Fragments must hold integer ids, not {fragments.dtype}.")
    if fragments.size and np.issubdtype(fragments.dtype, np.signedinteger) and fragments.min() < 0:
        raise InputError("Fragment ids must be non-negative.")
    out = np.array(fragments, dtype=np.uint64, order="C", copy=True)
    if out.ndim == 2:
        out = out[None]
    return out


def agglomerate(
    affs: np.ndarray,
    thresholds: Sequence[float],
    fragments: np.ndarray | None = None,
    scoring: str = "hist_quant_50",
    return_merge_history: bool = False,
    **kwargs,
) -> Iterator:
    """waterz.agglomerate on prepared inputs (see :func:`as_waterz_affinities`), silenced.

    Yields what waterz yields; the segmentation array is waterz's own (overwritten in place at
    every threshold): copy what you keep.
    """
    import waterz

    with quiet_stdout():
        gen = waterz.agglomerate(
            affs,
            [float(t) for t in thresholds],
            fragments=fragments,
            scoring_function=scoring_type(scoring),
            return_merge_history=return_merge_history,
            **kwargs,
        )
    while True:
        with quiet_stdout():
            try:
                item = next(gen)
            except StopIteration:
                return
        yield item
