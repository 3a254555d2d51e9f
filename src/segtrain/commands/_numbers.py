"""The one place that reads numbers from the command line: argparse ``type=`` functions that
refuse what no command can use (``nan``, ``inf``, a negative batch size, a zero tile) with one
sentence, before any work (``segtrain predict: error: argument --batch-size: must be a whole
number of 1 or more, not -3; see `segtrain predict --help`.``), and :func:`int_tuple` for
comma-separated shapes such as ``--chunks 64,256,256``."""

from __future__ import annotations

import argparse
import math

from segtrain.errors import InputError


def _number(text: str, kind: type):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        name = "whole number" if kind is int else "number"
        raise argparse.ArgumentTypeError(f"must be a {name}, not {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number of 1 or more (batch sizes, steps, workers, tile sizes)."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, not {text}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number of 0 or more (margins, sizes, retries)."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of 0 or more, not {text}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (its range is checked where it is used, e.g. thresholds in [0, 1])."""
    return _number(text, float)


def positive_float(text: str) -> float:
    """A finite number above 0 (times, voxel sizes)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, not {text}")
    return value


def int_tuple(text: str | None, what: str, minimum: int = 1) -> tuple[int, ...] | None:
    """``"64,256,256"`` -> ``(64, 256, 256)``; each entry a whole number of ``minimum`` or more."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"Cannot read the {what} {text!r}; give comma-separated whole numbers such as "
                         "64,256,256.") from None
    if any(v < minimum for v in values):
        raise InputError(f"Every entry of the {what} {text!r} must be a whole number of {minimum} or more; give "
                         "e.g. 64,256,256.")
    return values


def float_tuple(text: str | None, what: str) -> tuple[float, ...] | None:
    """``"40,4,4"`` -> ``(40.0, 4.0, 4.0)``; each entry finite and above 0 (voxel sizes)."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"Cannot read the {what} {text!r}; give comma-separated numbers such as 40,4,4.") from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"The {what} {text!r} must hold finite numbers above 0, such as 40,4,4.")
    return values
