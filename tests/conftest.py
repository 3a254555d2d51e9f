"""Shared fixtures: the real data beside the checkout.

On a user's clone without ../shared/data the tests that need it are skipped with the reason. Where
the environment variable CI is set (`.ci/run` sets it) a missing data folder fails those tests, and
any skipped test fails the run: a broken import or a missing folder must never pass as a skip.
Tests that use the data fixtures get the ``shared_data`` marker by themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEGTRAIN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
DATA_FIXTURES = {"shared_data", "em3d_dir", "isbi_dir", "cells_dir"}


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        message = f"real data not found at {path} (set SEGTRAIN_SHARED_DATA to its folder)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI needs it")
        pytest.skip(message)
    return path


@pytest.fixture
def shared_data() -> Path:
    """Root of ../shared/data."""
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


@pytest.fixture(autouse=True)
def _runs_in_the_working_folder(monkeypatch):
    """Run folders of a test that names no runs folder go to ./runs of its working folder (as
    before the default became the user data folder), never to the user's own runs."""
    monkeypatch.setenv("SEGTRAIN_RUNS", "runs")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.shared_data)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = terminalreporter.stats.get("skipped", [])
    terminalreporter.write_line(f"skipped tests: {len(skipped)}")
    if os.environ.get("CI") and skipped:
        terminalreporter.write_line("CI: no test may be skipped here (everything they need is in the checkout and "
                                    "../shared/data); failing the run.", red=True)


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if os.environ.get("CI") and reporter is not None and reporter.stats.get("skipped") and exitstatus == 0:
        session.exitstatus = 1
