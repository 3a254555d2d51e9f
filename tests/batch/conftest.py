"""Fixtures of the batch tests: a tiny trained cells run (trained once per session)."""

import pytest
from helpers.batch import tiny_cells_run


@pytest.fixture
def cells_run(tmp_path_factory, cells_dir):
    return tiny_cells_run(tmp_path_factory.getbasetemp() / "cells-runs", cells_dir)
