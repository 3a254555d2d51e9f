"""Shared fixtures: the real data beside the checkout, skipped cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEGTRAIN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set SEGTRAIN_SHARED_DATA to its folder)")
    return path


@pytest.fixture
def shared_data() -> Path:
    """Root of ../shared/data; skips the test when it is absent."""
    return _shared("")


@pytest.fixture
def em3d_dir() -> Path:
    return _shared("em3d-fibsem")


@pytest.fixture
def isbi_dir() -> Path:
    return _shared("em2d-isbi2012")


@pytest.fixture
def cells_dir() -> Path:
    return _shared("cells2d-phase")
