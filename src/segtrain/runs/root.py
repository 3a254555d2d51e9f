"""Where run folders go unless a runs folder is named."""

from __future__ import annotations

import os
import sys
from pathlib import Path

RUNS_ENV = "SEGTRAIN_RUNS"
RUNS_ROOT_TIP = ("Folder that holds the run folders. Default: $SEGTRAIN_RUNS when set, else segtrain/runs in "
                 "your user data folder (~/.local/share/segtrain/runs on Linux), wherever napari was started.")


def default_runs_root() -> Path:
    """Where run folders go unless a runs folder is named (CLI, GUI and Python alike):
    ``$SEGTRAIN_RUNS`` when set, else ``segtrain/runs`` in the user's data folder
    (``$XDG_DATA_HOME``, by default ``~/.local/share``, on Linux; ``~/Library/Application Support``
    on macOS; ``%LOCALAPPDATA%`` on Windows), never the folder a program happened to start in."""
    named = os.environ.get(RUNS_ENV, "").strip()
    if named:
        return Path(named).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "segtrain" / "runs"


def typed_runs_root(text: str, default: str | Path) -> Path:
    """The runs folder a user typed (a panel's field; blank: ``default``), stripped and with ``~``
    expanded: every panel reads the field this one way."""
    return Path(text.strip() or default).expanduser()
