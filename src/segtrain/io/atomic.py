"""Atomic writes: write to a temporary sibling, then rename into place.

A crash mid-write leaves the temporary (named ``.<name>.tmp-<random>``) and never a half-written
target; an existing target is only replaced when the caller asked for it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from segtrain.errors import InputError


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it onto ``target``.

    Works for single files and for folders (zarr, n5). The temporary is removed if the body raises.
    Raises :class:`InputError` when ``target`` exists and ``overwrite`` is false, or when its
    folder cannot be written.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise InputError(f"{target} already exists; choose another name or allow overwriting.")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"Folder {parent} does not exist; create it or choose another location.")
    if not parent.is_dir():
        raise InputError(f"Cannot write {target.name} into {parent}: it is a file, not a folder; choose a folder.")
    if not os.access(parent, os.W_OK):
        raise InputError(f"Folder {parent} is not writable; choose a folder you can write to.")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # the body creates a file or a folder at this path
    try:
        yield tmp
        if target.exists():
            backup = parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, backup) if not target.is_dir() else target.rename(backup)
            try:
                os.replace(tmp, target)
            except BaseException:
                backup.rename(target)
                raise
            _remove(backup)
        else:
            os.replace(tmp, target)
    finally:
        _remove_settled(tmp)


def _remove_settled(tmp: Path, wait_s: float = 2.0) -> None:
    """Remove ``tmp``, again while writers still in flight recreate it: a store written by several
    threads (zarr writes chunks concurrently) may still be writing chunks when a failed write
    reaches here."""
    deadline = time.monotonic() + wait_s
    while tmp.exists() or tmp.is_symlink():
        try:
            _remove(tmp)
        except OSError:  # a writer added a file while the folder was being removed: again
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
