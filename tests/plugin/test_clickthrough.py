"""One end-to-end click-through per audience on the real data (cells: 2D instances; EM: 3D
affinities), in `segtrain gui` as a person uses it: tabs, clicks and typing only. With
SEGTRAIN_UPDATE_SCREENSHOTS=1 the panels are photographed mid-run into docs/ (at the window size
`segtrain gui` opens with; paths in the panels are relative, never temporary folders)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.clickthrough import cells_clickthrough, em_clickthrough

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _screenshots() -> Path | None:
    return DOCS if os.environ.get("SEGTRAIN_UPDATE_SCREENSHOTS") else None


@pytest.mark.shared_data
@pytest.mark.slow
def test_cells_clickthrough(cells_dir, gui, tmp_path, monkeypatch, qtbot, own_napari_app):
    monkeypatch.chdir(tmp_path)  # "runs" and "export" land here
    app = cells_clickthrough(cells_dir, gui, _screenshots())
    app.close()


@pytest.mark.shared_data
@pytest.mark.slow
def test_em_clickthrough(em3d_dir, gui, tmp_path, monkeypatch, qtbot, own_napari_app):
    monkeypatch.chdir(tmp_path)
    app = em_clickthrough(em3d_dir, gui, _screenshots())
    app.close()
